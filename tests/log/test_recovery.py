"""Recovery after an unclean stop: torn tails, interior corruption, index
rebuilds, leftovers. Crashes are simulated by abandoning the log (kill -9:
the page cache keeps what was written) and then damaging files."""

from __future__ import annotations

import logging
import os

import pytest
from log_helpers import FaultIO, SimulatedCrash, batch, config, open_log, read_records

from tailrace.broker.log import CorruptLogError
from tailrace.client.records import iter_headers


def _fill(path, n=30, **cfg):
    log = open_log(path, config(**cfg))
    expected = []
    for k in range(n):
        r = log.append(batch([f"value-{k}".encode() * (1 + k % 5)], ts=1000 + k))
        expected.append((r.base_offset, f"value-{k}".encode() * (1 + k % 5)))
    return log, expected


def _batches(seg_path, size=None):
    with open(seg_path, "rb") as f:
        data = f.read()
    return [(p, h) for p, h in iter_headers(data[:size] if size else data)]


@pytest.mark.parametrize(
    "damage",
    ["truncate_mid_batch", "zeros_after", "garbage_after", "half_batch", "zero_mid_batch"],
)
def test_torn_tail_is_truncated_to_the_longest_valid_prefix(tmp_path, damage, caplog):
    log, expected = _fill(tmp_path / "p", segment_bytes=1 << 20)
    rp = log.recovery_point  # 0: nothing flushed, everything may be torn
    active = log.segments[-1]
    size = active.size
    log.abandon()
    batches = _batches(active.log_path, size)
    last_pos, last_h = batches[-1]
    keep = len(batches) - 1  # the last batch is damaged unless said otherwise
    with open(active.log_path, "r+b") as f:
        if damage == "truncate_mid_batch":
            f.truncate(last_pos + last_h.size // 2)
        elif damage == "zeros_after":
            f.truncate(size + 5000)  # beyond the preallocated tail: all zeros
            keep = len(batches)
        elif damage == "garbage_after":
            f.seek(size)
            f.write(os.urandom(3000))
            keep = len(batches)
        elif damage == "half_batch":
            f.seek(last_pos)
            f.write(last_h.size.to_bytes(4, "big") * 4)  # a header that lies
        elif damage == "zero_mid_batch":
            f.seek(last_pos + 40)
            f.write(bytes(10))
    caplog.set_level(logging.INFO)
    log = open_log(tmp_path / "p", recovery_point=rp, clean=False)
    assert log.log_end_offset == keep
    assert read_records(log) == expected[:keep]
    r = log.append(batch([b"next"]))
    assert r.base_offset == keep  # offsets continue densely
    assert read_records(log)[-1] == (keep, b"next")
    if damage in ("garbage_after", "truncate_mid_batch", "half_batch", "zero_mid_batch"):
        assert any("torn tail" in m and "00000000000000000000.log" in m for m in caplog.messages)
    log.close()
    # files were cut to the valid data: a clean reopen agrees
    log = open_log(tmp_path / "p", clean=True)
    assert log.log_end_offset == keep + 1
    log.close()


def test_torn_tail_in_an_unsynced_sealed_segment_drops_later_segments(tmp_path, caplog):
    log, expected = _fill(tmp_path / "p", n=40, segment_bytes=600)
    segs = log.segments
    assert len(segs) >= 4
    victim = segs[1]
    log.abandon()
    batches = _batches(victim.log_path)
    cut_pos, cut_h = batches[2]
    with open(victim.log_path, "r+b") as f:
        f.seek(cut_pos + 70)
        f.write(b"\xff" * 8)
    log = open_log(tmp_path / "p", recovery_point=0, clean=False)
    assert log.log_end_offset == cut_h.base_offset
    assert read_records(log) == expected[: cut_h.base_offset]
    assert [s.base_offset for s in log.segments] == [0, victim.base_offset]
    assert sorted(os.listdir(tmp_path / "p")) == sorted(
        f"{b:020d}{s}" for b in (0, victim.base_offset) for s in (".log", ".index", ".timeindex")
    )
    dropped = len(segs) - 2
    assert any(f"and {dropped} later segment(s)" in m for m in caplog.messages)
    log.close()


def test_untrimmed_sealed_segment_is_trimmed_not_truncated(tmp_path):
    """A crash after a roll, before the sealed segment's trim reached disk:
    it ends in zeros, but its batches reach the next segment's base offset."""
    log, expected = _fill(tmp_path / "p", n=40)
    segs = log.segments
    log.abandon()
    with open(segs[1].log_path, "r+b") as f:
        f.truncate(segs[1].size + 8192)
    log = open_log(tmp_path / "p", recovery_point=0, clean=False)
    assert log.log_end_offset == len(expected)
    assert read_records(log) == expected
    assert os.path.getsize(segs[1].log_path) == segs[1].size
    log.close()


def test_corruption_below_the_recovery_point_refuses_the_partition(tmp_path):
    log, _ = _fill(tmp_path / "p", segment_bytes=1 << 20)
    log.close()  # everything durable: recovery point = log end
    seg_path = log.segments[0].log_path
    p, h = _batches(seg_path)[7]
    with open(seg_path, "r+b") as f:
        f.seek(p + 30)
        f.write(b"\x00\x01\x02")
    with pytest.raises(CorruptLogError) as info:
        open_log(tmp_path / "p", recovery_point=30, clean=False)
    err = info.value
    assert err.path == seg_path
    assert err.position == p
    assert err.first_offset == h.base_offset == 7
    assert err.last_offset == 29
    assert f"at byte {p}" in str(err)
    assert "CRC" in str(err)
    # nothing was truncated by the refusal
    assert os.path.getsize(seg_path) == log.segments[0].size


def test_same_corruption_above_the_recovery_point_is_a_torn_tail(tmp_path):
    log, expected = _fill(tmp_path / "p", segment_bytes=1 << 20)
    log.close()
    seg_path = log.segments[0].log_path
    p, _h = _batches(seg_path)[7]
    with open(seg_path, "r+b") as f:
        f.seek(p + 30)
        f.write(b"\x00\x01\x02")
    log = open_log(tmp_path / "p", recovery_point=7, clean=False)
    assert read_records(log) == expected[:7]
    log.close()


def test_missing_durable_data_refuses(tmp_path):
    log, _ = _fill(tmp_path / "p", segment_bytes=1 << 20)
    log.close()
    seg_path = log.segments[0].log_path
    p, _h = _batches(seg_path)[20]
    os.truncate(seg_path, p)
    with pytest.raises(CorruptLogError, match="recovery point"):
        open_log(tmp_path / "p", recovery_point=30, clean=False)


def test_changed_base_offset_is_caught(tmp_path):
    # base_offset is outside the CRC: density catches a flipped one
    log, _ = _fill(tmp_path / "p", segment_bytes=1 << 20)
    log.close()
    seg_path = log.segments[0].log_path
    p, _h = _batches(seg_path)[5]
    with open(seg_path, "r+b") as f:
        f.seek(p + 7)
        f.write(b"\x63")
    with pytest.raises(CorruptLogError, match="base offset 99, expected 5"):
        open_log(tmp_path / "p", recovery_point=30, clean=False)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "zeros", "wrong"])
def test_damaged_sealed_index_is_rebuilt(tmp_path, damage, caplog):
    cfg = {"index_interval_bytes": 100, "segment_bytes": 900}
    log, expected = _fill(tmp_path / "p", n=40, **cfg)
    assert log.close()
    assert len(log.segments) > 3
    seg = log.segments[1]
    index = seg.path(".index")
    with open(index, "rb") as f:
        original = f.read()
    assert len(original) >= 16
    if damage == "missing":
        os.unlink(index)
    elif damage == "truncated":
        os.truncate(index, len(original) - 3)
    elif damage == "garbage":
        with open(index, "wb") as f:
            f.write(os.urandom(len(original)))
    elif damage == "zeros":
        with open(index, "r+b") as f:
            f.seek(8)
            f.write(bytes(8))
    elif damage == "wrong":  # well-formed, but the last entry points nowhere
        with open(index, "r+b") as f:
            f.seek(len(original) - 4)
            f.write((int.from_bytes(original[-4:], "big") + 1).to_bytes(4, "big"))
    caplog.set_level(logging.WARNING)
    log = open_log(tmp_path / "p", config(**cfg), clean=True)
    assert read_records(log) == expected
    assert any("rebuilding" in m for m in caplog.messages)
    with open(index, "rb") as f:
        assert f.read() == original  # the rebuilt index is the one written
    log.close()


def test_damaged_active_index_with_clean_marker_falls_back_to_recovery(tmp_path, caplog):
    cfg = {"index_interval_bytes": 100}
    log, expected = _fill(tmp_path / "p", n=40, **cfg)
    assert log.close()
    active = log.segments[-1]
    with open(active.path(".index"), "r+b") as f:
        f.write(b"\xff" * 8)
    caplog.set_level(logging.WARNING)
    log = open_log(tmp_path / "p", config(**cfg), recovery_point=active.base_offset, clean=True)
    assert any("does not check out" in m for m in caplog.messages)
    assert read_records(log) == expected
    log.close()


def test_unclean_recovery_rebuilds_the_index_it_would_have_written(tmp_path):
    log, _ = _fill(tmp_path / "p", n=25, segment_bytes=1 << 20, index_interval_bytes=100)
    log.abandon()  # the active segment's index files are still preallocated
    cfg = config(segment_bytes=1 << 20, index_interval_bytes=100)
    log = open_log(tmp_path / "p", cfg, recovery_point=0, clean=False)
    log.close()
    seg = log.segments[0]
    with open(seg.path(".index"), "rb") as f:
        rebuilt = f.read()
    # a log written in one go and closed cleanly has the same index
    log2, _ = _fill(tmp_path / "q", n=25, segment_bytes=1 << 20, index_interval_bytes=100)
    log2.close()
    with open(log2.segments[0].path(".index"), "rb") as f:
        assert f.read() == rebuilt
    assert len(rebuilt) > 0


def test_leftovers_are_removed_at_open(tmp_path):
    log, expected = _fill(tmp_path / "p", n=20)
    assert log.close()
    d = tmp_path / "p"
    for name in (
        "00000000000000000999.log.deleted",
        "00000000000000000998.index.deleted",
        "00000000000000000005.snapshot.tmp",
        "00000000000000000777.index",  # orphan: no .log
        "00000000000000000777.timeindex",
    ):
        (d / name).write_bytes(b"x")
    log = open_log(d, clean=True)
    names = os.listdir(d)
    assert not [
        n for n in names if n.endswith((".deleted", ".tmp")) or n.startswith("0" * 17 + "777")
    ]
    assert read_records(log) == expected
    log.close()


def test_recovery_point_skips_scanning_older_segments(tmp_path):
    """Only the segment holding the last offset below the recovery point
    and later ones are scanned: corruption in an older durable segment is
    found by the reader, not by recovery (as in Kafka)."""
    log, _ = _fill(tmp_path / "p", n=40)
    assert log.close()
    first = log.segments[0]
    p, _h = _batches(first.log_path)[1]
    with open(first.log_path, "r+b") as f:
        f.seek(p + 40)
        f.write(b"\xee")
    rp = log.segments[-1].base_offset + 1
    log = open_log(tmp_path / "p", recovery_point=rp, clean=False)
    assert log.log_end_offset == 40
    log.close()


@pytest.mark.parametrize("point", ["segment.roll", "segment.created", "index.append"])
def test_crash_points_in_the_write_path(tmp_path, point):
    """A crash inside an append (its data possibly half copied, its headers
    half patched) loses at most that unacknowledged append."""
    io = FaultIO()
    cfg = config(segment_bytes=700, index_interval_bytes=150)
    log = open_log(tmp_path / "p", cfg, io=io)
    acked = []
    for k in range(12):
        r = log.append(batch([f"acked-{k}".encode() * 8]))
        acked.append((r.base_offset, f"acked-{k}".encode() * 8))
    io.crash_at = point

    def append_until_the_crash() -> None:
        for k in range(40):
            log.append(batch([f"lost-{k}".encode() * 8]) * 2)  # two batches per append

    with pytest.raises(SimulatedCrash):
        append_until_the_crash()
    log.abandon()
    log = open_log(tmp_path / "p", cfg, recovery_point=0, clean=False)
    records = read_records(log)
    assert records[: len(acked)] == acked
    assert [o for o, _v in records] == list(range(log.log_end_offset))
    assert all(v.startswith((b"acked-", b"lost-")) for _o, v in records)
    r = log.append(batch([b"after"]))
    assert r.base_offset == len(records)
    log.close()


def test_unclean_restart_of_an_idle_log_writes_nothing(tmp_path):
    """kill -9 of a broker whose partition was idle (everything flushed and
    checkpointed): recovery rescans the active segment, finds exactly what
    the files hold, and neither rewrites nor fsyncs anything."""
    log, expected = _fill(tmp_path / "p", n=40, segment_bytes=900)
    assert log.close()
    rp = log.log_end_offset
    before = {n: (tmp_path / "p" / n).read_bytes() for n in os.listdir(tmp_path / "p")}
    io = FaultIO()
    log = open_log(tmp_path / "p", config(segment_bytes=900), recovery_point=rp, clean=False, io=io)
    assert read_records(log) == expected
    assert (io.calls["fsync"], io.calls["fdatasync"], io.calls["fsync_dir"]) == (0, 0, 0)
    after = {n: (tmp_path / "p" / n).read_bytes() for n in os.listdir(tmp_path / "p")}
    assert after == before
    log.close()
