"""The log holding Kafka (magic-2) batches, alone and beside native ones, in
real segment files: stored byte for byte, served byte for byte, found by
timestamp, recovered after a crash, deduplicated, dumped."""

from __future__ import annotations

import io
import json
import struct

import pytest
from log_helpers import batch, config, open_log

from tailrace.broker.log import dump_log
from tailrace.client.errors import (
    CorruptRecordError,
    InvalidRecordError,
    UnsupportedForMessageFormatError,
)
from tailrace.client.records import (
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_SNAPPY,
    CODEC_ZSTD,
    build_kafka_batch,
    iter_headers,
    iter_records,
    validate_batch,
)


def kbatch(n: int, *, ts: int = 1_000, codec: int = CODEC_NONE, producer=(-1, -1, -1)) -> bytes:
    """n records with timestamps ts, ts + 1, ...; values v<ts+i>."""
    pid, epoch, seq = producer
    return bytes(
        build_kafka_batch(
            [(ts + i, b"k", b"v%d" % (ts + i), [("h", b"%d" % i)]) for i in range(n)],
            compression=codec,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
        )
    )


def _served(log, offset=0) -> bytes:
    out = []
    while (s := log.read(offset, 1 << 20)) is not None:
        with s:
            out.append(s.read_bytes())
            offset = s.last_offset + 1
    return b"".join(out)


def _all_records(data: bytes) -> list[tuple]:
    out = []
    for pos, h in iter_headers(data):
        validate_batch(data, pos, max_batch_bytes=1 << 24)
        out += list(iter_records(data, h, pos))
    return out


async def test_magic_2_batches_stored_and_served_byte_for_byte(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20))
    sent = [kbatch(3, ts=1_000, codec=c) for c in (CODEC_NONE, CODEC_LZ4, CODEC_SNAPPY, CODEC_ZSTD)]
    for i, b in enumerate(sent):
        r = log.append(b)
        assert (r.base_offset, r.last_offset) == (3 * i, 3 * i + 2)
    data = _served(log)
    stored = [data[pos : pos + h.size] for pos, h in iter_headers(data)]
    assert len(stored) == 4
    for i, (orig, got) in enumerate(zip(sent, stored, strict=True)):
        # only base offset (bytes 0-8) and leader epoch (12-16) patched
        assert struct.unpack_from(">q", got)[0] == 3 * i
        assert struct.unpack_from(">i", got, 12)[0] == 0
        assert got[8:12] == orig[8:12]
        assert got[16:] == orig[16:]
    # and the bytes on disk are the bytes served
    on_disk = (tmp_path / "p" / log.segments[0].log_path.rsplit("/", 1)[1]).read_bytes()
    assert on_disk[: len(data)] == data
    recs = _all_records(data)
    assert [r[0] for r in recs] == list(range(12))
    assert recs[4] == (4, 1_001, b"k", b"v1001", [("h", b"1")])
    log.close()


async def test_mixed_formats_in_one_partition_and_recovery(tmp_path):
    path = tmp_path / "p"
    log = open_log(path, config(segment_bytes=600, index_interval_bytes=100))
    for k in range(10):
        log.append(kbatch(2, ts=1_000 + 10 * k) if k % 2 else batch(2, ts=1_000 + 10 * k))
    assert len(log.segments) > 2
    before = _served(log)
    log.abandon()  # no clean shutdown: the next open scans and validates every batch
    log = open_log(path)
    assert log.log_end_offset == 20
    assert _served(log) == before
    assert {h.magic for _p, h in iter_headers(before)} == {1, 2}
    assert [r[0] for r in _all_records(before)] == list(range(20))
    log.close()


async def test_timestamp_lookup_over_magic_2_batches(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=500, index_interval_bytes=100))
    # batch k: records at 1000 + 10k, +1, +2; every other batch native
    for k in range(20):
        make = kbatch if k % 2 == 0 else (lambda n, ts: batch(n, ts=ts))
        log.append(make(3, ts=1_000 + 10 * k))
    assert len(log.segments) > 3
    assert log.offset_for_timestamp(0) == (0, 1_000)
    assert log.offset_for_timestamp(1_003) == (3, 1_010)
    for k in range(20):
        for i in range(3):
            assert log.offset_for_timestamp(1_000 + 10 * k + i) == (3 * k + i, 1_000 + 10 * k + i)
    assert log.offset_for_timestamp(1_193) is None
    await log.aclose()
    log = open_log(tmp_path / "p", clean=True)
    assert log.offset_for_timestamp(1_121) == (37, 1_121)
    log.close()


async def test_timestamp_lookup_with_out_of_order_record_timestamps(tmp_path):
    # a Kafka producer may give records earlier timestamps than the first:
    # negative timestamp deltas
    log = open_log(tmp_path / "p")
    b = build_kafka_batch(
        [(5_000, None, b"a", None), (4_000, None, b"b", None), (6_000, None, b"c", None)]
    )
    log.append(bytes(b))
    assert log.offset_for_timestamp(4_500) == (0, 5_000)
    assert log.offset_for_timestamp(5_500) == (2, 6_000)
    log.close()


async def test_idempotent_magic_2_retry_stored_once(tmp_path):
    log = open_log(tmp_path / "p")
    first = log.append(kbatch(3, producer=(9, 0, 0)))
    again = log.append(kbatch(3, producer=(9, 0, 0)))
    assert again.duplicate
    assert (again.base_offset, again.last_offset) == (0, 2)
    nxt = log.append(kbatch(2, producer=(9, 0, 3)))
    assert (first.base_offset, nxt.base_offset) == (0, 3)
    assert log.log_end_offset == 5
    log.close()


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], CorruptRecordError),
        (lambda b: b[:22] + b"\x10" + b[23:], CorruptRecordError),  # attribute bit, CRC stale
    ],
)
async def test_bad_magic_2_batch_writes_nothing(tmp_path, mutate, error):
    log = open_log(tmp_path / "p")
    log.append(kbatch(1))
    good = kbatch(2, ts=2_000)
    with pytest.raises(error):
        log.append(good + mutate(good))  # a good batch first: still nothing written
    assert log.log_end_offset == 1
    log.close()


async def test_transactional_batch_refused_nothing_written(tmp_path):
    from aiokafka.record._crecords import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(2, 0, 1, 5, 0, 0, 1 << 20)
    b.append(0, 1000, None, b"v", [])
    log = open_log(tmp_path / "p")
    with pytest.raises(UnsupportedForMessageFormatError):
        log.append(bytes(b.build()))
    with pytest.raises(InvalidRecordError):
        log.append(kbatch(1)[:-1])
    assert log.log_end_offset == 0
    log.close()


async def test_dump_log_shows_magic_2_records(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20))
    log.append(batch(1, ts=500))
    log.append(kbatch(2, ts=1_000, codec=CODEC_ZSTD))
    path = log.segments[0].log_path
    log.close()
    out = io.StringIO()
    assert dump_log(path, records=True, as_json=True, out=out) == 0
    batches = json.loads(out.getvalue())
    assert [(b["magic"], b["compression"], b["crc_ok"]) for b in batches] == [
        (1, "none", True),
        (2, "zstd", True),
    ]
    recs = batches[1]["records"]
    assert [(r["offset"], r["timestamp"], r["value"]) for r in recs] == [
        (1, 1_000, "v1000"),
        (2, 1_001, "v1001"),
    ]
    assert recs[1]["headers"] == [{"key": "h", "value": "1"}]
