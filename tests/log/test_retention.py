"""Retention by time and size: whole segments, oldest first, safe against
readers and crashes; the timestamp lookup that shares the time index."""

from __future__ import annotations

import os

import pytest
from log_helpers import FaultIO, SimulatedCrash, batch, config, open_log, read_records

from tailrace.client.errors import OffsetOutOfRangeError


def _log_files(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".log"))


async def test_retention_by_time_deletes_old_segments_oldest_first(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=400, retention_ms=10_000))
    # two old segments (timestamps ~1000), then newer data
    for k in range(6):
        log.append(batch(1, ts=1_000 + k, size=120))
    old_segments = len(log.segments)
    for k in range(6):
        log.append(batch(1, ts=50_000 + k, size=120))
    bases = [s.base_offset for s in log.segments]
    expired = [s.max_timestamp < 20_000 for s in log.segments]
    assert expired[: old_segments - 1] == [True] * (old_segments - 1)
    assert expired.index(False) >= 2
    deleted = await log.enforce_retention(now_ms=30_000)
    assert deleted == expired.index(False)
    remaining = [s.base_offset for s in log.segments]
    assert remaining == bases[deleted:]
    assert log.log_start_offset == remaining[0]
    assert _log_files(tmp_path / "p") == [f"{b:020d}.log" for b in remaining]
    assert not [n for n in os.listdir(tmp_path / "p") if n.endswith(".deleted")]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 100)
    assert [o for o, _v in read_records(log)] == list(range(log.log_start_offset, 12))
    await log.aclose()
    log = open_log(tmp_path / "p", clean=True)
    assert log.log_start_offset == remaining[0]
    log.close()


async def test_retention_by_size_keeps_at_most_the_limit(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=400, retention_bytes=1000))
    for k in range(20):
        log.append(batch(1, ts=1_000 + k, size=120))
    total = log.size_bytes
    deleted = await log.enforce_retention()
    assert deleted > 0
    assert log.size_bytes <= 1000 + 400  # excess below one segment is kept
    assert log.size_bytes < total
    assert log.log_end_offset == 20
    # a second pass has nothing to do
    assert await log.enforce_retention() == 0
    await log.aclose()


async def test_a_reader_keeps_its_slice_while_retention_deletes(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=400, retention_ms=1))
    for k in range(8):
        log.append(batch([f"payload-{k}".encode() * 10], ts=1_000 + k))
    first = log.segments[0]
    held = log.read(0, 1 << 20)  # holds segment 0
    expected = held.read_bytes()
    assert await log.enforce_retention(now_ms=10_000) > 0
    assert first not in log.segments
    assert not os.path.exists(first.log_path)
    assert first.fd >= 0  # still open for the reader...
    assert held.read_bytes() == expected  # ...which reads the unlinked file
    held.release()
    assert first.fd == -1  # closed on release
    await log.aclose()


async def test_expired_active_segment_is_rolled_so_the_log_can_empty(tmp_path):
    log = open_log(tmp_path / "p", config(retention_ms=1000, segment_bytes=1 << 20))
    for k in range(5):
        log.append(batch(1, ts=1_000 + k))
    assert len(log.segments) == 1
    assert await log.enforce_retention(now_ms=100_000) == 1
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (5, 5, 5)
    assert [s.base_offset for s in log.segments] == [5]
    assert log.read(5, 100) is None
    assert log.append(batch(1, ts=200_000)).base_offset == 5
    await log.aclose()
    log = open_log(tmp_path / "p", clean=True)
    assert (log.log_start_offset, log.log_end_offset) == (5, 6)
    log.close()
    log = open_log(tmp_path / "p", recovery_point=0, clean=False)
    assert (log.log_start_offset, log.log_end_offset) == (5, 6)
    log.close()


async def test_retention_never_deletes_at_or_above_the_high_watermark(tmp_path):
    log = open_log(tmp_path / "p", config(flush="sync", segment_bytes=400, retention_ms=1))
    for k in range(6):
        log.append(batch(1, ts=1_000 + k, size=120))
    assert log.high_watermark == 0
    assert await log.enforce_retention(now_ms=10_000) == 0
    await log.flush()
    assert await log.enforce_retention(now_ms=10_000) > 0
    await log.aclose()


async def test_crash_during_retention_leaves_a_consistent_log(tmp_path):
    io = FaultIO()
    io.crash_at = "retention.renamed"
    log = open_log(tmp_path / "p", config(segment_bytes=400, retention_ms=1), io=io)
    for k in range(8):
        log.append(batch(1, ts=1_000 + k, size=120))
    with pytest.raises(SimulatedCrash):
        await log.enforce_retention(now_ms=10_000)
    start = log.log_start_offset
    log.abandon()
    assert [n for n in os.listdir(tmp_path / "p") if n.endswith(".deleted")]
    log = open_log(tmp_path / "p", recovery_point=0, clean=False)
    assert not [n for n in os.listdir(tmp_path / "p") if n.endswith(".deleted")]
    assert log.log_start_offset == start
    assert log.log_end_offset == 8
    assert [o for o, _v in read_records(log)] == list(range(start, 8))
    log.close()


async def test_offset_for_timestamp(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=500, index_interval_bytes=100))
    # batch k holds records with timestamps 1000 + 10k, 1000 + 10k + 1, ...
    for k in range(30):
        log.append(batch(3, ts=1_000 + 10 * k, size=20))
    assert len(log.segments) > 3
    assert log.offset_for_timestamp(0) == (0, 1_000)
    assert log.offset_for_timestamp(1_000) == (0, 1_000)
    assert log.offset_for_timestamp(1_001) == (1, 1_001)
    assert log.offset_for_timestamp(1_003) == (3, 1_010)  # no record at 1003
    for k in range(30):
        for i in range(3):
            assert log.offset_for_timestamp(1_000 + 10 * k + i) == (3 * k + i, 1_000 + 10 * k + i)
    assert log.offset_for_timestamp(1_293) is None
    await log.aclose()
    log = open_log(tmp_path / "p", clean=True)  # through lazily loaded indexes
    assert log.offset_for_timestamp(1_151) == (46, 1_151)
    log.close()


async def test_delete_records_moves_the_start_deletes_whole_segments_and_is_durable(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=400))
    for k in range(12):
        log.append(batch(1, ts=1_000 + k, size=120))
    bases = [s.base_offset for s in log.segments]
    middle = bases[2] + 1  # inside the third segment
    assert await log.delete_records(middle) == middle
    assert log.log_start_offset == middle
    # the segments wholly below it are gone; the one holding it stays
    assert [s.base_offset for s in log.segments] == bases[2:]
    assert _log_files(tmp_path / "p") == [f"{b:020d}.log" for b in bases[2:]]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(middle - 1, 100)
    assert [o for o, _v in read_records(log)][-1] == 11
    # never down; -1 is the high watermark; beyond it is out of range
    assert await log.delete_records(1) == middle
    with pytest.raises(OffsetOutOfRangeError):
        await log.delete_records(13)
    assert log.log_start_offset == middle
    # a reopen keeps it (it was checkpointed before it applied)
    log.close()
    log = open_log(tmp_path / "p", config(segment_bytes=400))
    assert log.log_start_offset == middle
    assert await log.delete_records(-1) == 12
    assert log.log_end_offset == 12
    log.append(batch(1, ts=2_000))
    assert [o for o, _v in read_records(log)] == [12]
    await log.aclose()
    log = open_log(tmp_path / "p", clean=True)
    assert (log.log_start_offset, log.log_end_offset) == (12, 13)
    log.close()
