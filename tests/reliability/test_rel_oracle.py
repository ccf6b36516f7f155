"""The oracle itself: it must see every kind of violation it claims to check
(a checker that cannot fail proves nothing), on logs written by the real
storage engine and then damaged or misreported on purpose."""

from __future__ import annotations

import os
import struct

import pytest

from tailrace.broker.faultkit.oracle import (
    History,
    PartitionRead,
    audit_data_dir,
    check,
    decode_value,
    encode_value,
    read_partition_dir,
)
from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.client.records import build_batch


def _write(path: str, values: list[bytes], **cfg: object) -> PartitionLog:
    log = PartitionLog.open(
        path, LogConfig(flush="none", segment_bytes=600, index_interval_bytes=100, **cfg)
    )
    for v in values:
        log.append(build_batch([(1_000, None, v, None)]))
    assert log.close()
    return log


def _history(n: int, partition: int = 0) -> History:
    h = History()
    for seq in range(n):
        h.sent("p", seq, "t", partition)
        h.acked("p", seq, partition, seq)
    return h


def test_values_name_their_producer_and_sequence():
    assert decode_value(encode_value("p7", 42, pad=30)) == ("p7", 42)
    assert len(encode_value("p7", 42, pad=30)) == 30
    assert decode_value(b"garbage") is None
    assert decode_value(None) is None


def test_a_clean_log_passes(tmp_path):
    path = str(tmp_path / "t" / "0")
    _write(path, [encode_value("p", s) for s in range(40)])
    read = read_partition_dir(path, "t", 0)
    assert read.segments > 2
    assert not read.problems
    report = check(_history(40), [read])
    assert report.ok, str(report)
    assert report.records_read == 40


@pytest.mark.parametrize(
    ("records", "kind"),
    [
        ([(o, encode_value("p", o)) for o in range(9)], "lost"),
        ([(o, encode_value("p", min(o, 9))) for o in range(11)], "duplicated"),
        (
            [(o, encode_value("p", s)) for o, s in enumerate([0, 1, 3, 2, 4, 5, 6, 7, 8, 9])],
            "reordered",
        ),
        ([(o + 1, encode_value("p", o)) for o in range(10)], "misplaced"),
        ([(o, encode_value("p", o)) for o in range(10)] + [(10, b"junk")], "unexpected"),
        ([(o if o < 5 else o + 3, encode_value("p", o)) for o in range(10)], "offset gap"),
    ],
)
def test_each_violation_is_reported(records, kind):
    report = check(_history(10), [PartitionRead("t", 0, records=records)])
    assert report.count(kind) >= 1, str(report)
    assert not report.ok
    assert kind in str(report)


def test_a_definitely_failed_value_in_the_log_is_reported():
    h = History()
    h.sent("p", 0, "t", 0)
    h.failed("p", 0, "refused", definite=True)
    report = check(h, [PartitionRead("t", 0, records=[(0, encode_value("p", 0))])])
    assert report.count("failed present") == 1
    # an unknown outcome may be there or not
    h2 = History()
    h2.sent("p", 0, "t", 0)
    h2.failed("p", 0, "timed out")
    assert check(h2, [PartitionRead("t", 0, records=[(0, encode_value("p", 0))])]).ok


def test_an_allowed_loss_is_counted_apart():
    report = check(
        _history(10),
        [PartitionRead("t", 0, records=[(o, encode_value("p", o)) for o in range(8)])],
        may_lose=lambda a: a.offset >= 8,
    )
    assert report.ok
    assert report.lost_allowed == 2


def test_the_disk_reader_reports_damage(tmp_path):
    path = str(tmp_path / "t" / "0")
    log = _write(path, [encode_value("p", s, pad=50) for s in range(40)])
    seg = log.segments[1]
    # a flipped byte inside a batch of a middle segment
    with open(seg.log_path, "r+b") as f:
        f.seek(70)
        b = f.read(1)
        f.seek(70)
        f.write(bytes([b[0] ^ 1]))
    # an index entry of the first segment moved off its batch
    index = os.path.join(path, "00000000000000000000.index")
    with open(index, "r+b") as f:
        rel, pos = struct.unpack(">II", f.read(8))
        f.seek(0)
        f.write(struct.pack(">II", rel, pos + 1))
    read = read_partition_dir(path, "t", 0)
    text = "\n".join(read.problems)
    assert "undecodable bytes" in text
    assert "does not point at the start of the batch" in text
    assert not check(_history(40), [read]).ok


def test_the_audit_finds_leftovers(tmp_path):
    data = tmp_path / "data"
    path = str(data / "t" / "0")
    _write(path, [encode_value("p", s) for s in range(5)])
    (data / "t" / "topic.json").write_text('{"partitions": 1}')
    assert audit_data_dir(str(data)) == []
    (data / "~staging-abc").mkdir()
    (data / "t" / "0" / "00000000000000000000.log.deleted").write_bytes(b"")
    os.unlink(os.path.join(path, "00000000000000000000.timeindex"))
    problems = "\n".join(audit_data_dir(str(data)))
    assert "~staging-abc" in problems
    assert ".deleted" in problems
    assert "lacks index files" in problems
