"""The log cleaner on a real PartitionLog in tmp_path: latest value per
key, tombstones until delete_retention_ms, offsets kept, every format and
codec, producer state, bounded key map (several passes), readers in flight,
crash points with recovery."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from log_helpers import FaultIO, SimulatedCrash, config, open_log

from tailrace.broker.log import CRASH_POINTS, dump_log
from tailrace.broker.log.cleaner import CleanerSettings, CleanerStopped, Throttle
from tailrace.client.errors import OffsetOutOfRangeError, StorageError
from tailrace.client.records import (
    build_batch,
    build_kafka_batch,
    iter_headers,
    iter_records,
    validate_batch,
)

T0 = 1_000_000


def compacted(**kw: object):  # type: ignore[no-untyped-def]
    return config(
        **{"cleanup_policy": "compact", "segment_bytes": 600, "index_interval_bytes": 100, **kw}
    )


def put(log, key: bytes, value: bytes | None, ts: int = T0, fmt: str = "native", **kw) -> int:  # type: ignore[no-untyped-def]
    build = build_batch if fmt == "native" else build_kafka_batch
    return log.append(build([(ts, key, value, None)], **kw)).base_offset


def read_all(log, start: int | None = None) -> list[tuple[int, bytes | None, bytes | None]]:  # type: ignore[no-untyped-def]
    """(offset, key, value) of every record from ``start`` to the HW through
    read(), each batch checked as a consumer checks it."""
    out = []
    offset = log.log_start_offset if start is None else start
    while True:
        s = log.read(offset, 700)
        if s is None:
            return out
        with s:
            data = s.read_bytes()
        prev = -1
        for pos, h in iter_headers(data):
            validate_batch(data, pos, max_batch_bytes=1 << 30, allow_gaps=True)
            assert prev < 0 or h.base_offset == prev + 1  # batches stay contiguous
            prev = h.last_offset
            for off, _ts, key, value, _h in iter_records(data, h, pos):
                if off >= offset:
                    out.append((off, key, value))
        offset = s.last_offset + 1


def latest(log_records):  # type: ignore[no-untyped-def]
    seen = {}
    for off, key, value in log_records:
        seen[key] = (off, value)
    return seen


async def _fill(log, n_keys: int = 5, rounds: int = 8, fmt: str = "native") -> dict:  # type: ignore[no-untyped-def]
    expected = {}
    for r in range(rounds):
        for k in range(n_keys):
            key = b"key-%d" % k
            value = b"v%d-%d" % (k, r) + b"x" * 40
            off = put(log, key, value, ts=T0 + r, fmt=fmt)
            expected[key] = (off, value)
    await log.flush()  # the cleaner takes only sealed segments already fsynced
    return expected


@pytest.mark.parametrize("fmt", ["native", "kafka"])
async def test_cleaning_keeps_the_latest_value_of_every_key_at_its_offset(tmp_path, fmt):
    log = open_log(tmp_path / "p", compacted())
    expected = await _fill(log, fmt=fmt)
    before = read_all(log)
    assert len(log.segments) > 3
    assert log.dirty_ratio == 1.0
    result = await log.clean(now_ms=T0 + 100)
    assert result is not None
    assert result.records_removed > 0
    after = read_all(log)
    active = log.segments[-1].base_offset
    # below the active segment: exactly one record per key, the latest
    cleaned = [r for r in after if r[0] < active]
    assert len({k for _o, k, _v in cleaned}) == len(cleaned)
    assert latest(after) == expected
    # every surviving record has the offset it had before
    assert set(after) <= set(before)
    assert after == sorted(after)
    assert log.dirty_ratio == 0.0
    assert log.clean_to == active
    await log.aclose()
    # and after a restart (clean, then unclean)
    for clean in (True, False):
        log = open_log(tmp_path / "p", compacted(), clean=clean)
        assert read_all(log) == after
        log.abandon() if not clean else await log.aclose()


async def test_tombstones_stay_until_delete_retention_then_go(tmp_path):
    log = open_log(tmp_path / "p", compacted(delete_retention_ms=1_000))
    await _fill(log, n_keys=3, rounds=2)
    gone = put(log, b"key-1", None, ts=T0 + 50)
    await _fill(log, n_keys=1, rounds=12)  # pushes the tombstone out of the active segment
    await log.clean(now_ms=T0 + 100, force=True)
    recs = read_all(log)
    assert (gone, b"key-1", None) in recs
    assert [r for r in recs if r[1] == b"key-1"] == [(gone, b"key-1", None)]
    put(log, b"key-9", b"y", ts=T0 + 60)
    await _fill(log, n_keys=1, rounds=12)
    await log.clean(now_ms=T0 + 50 + 1_000, force=True)
    recs = read_all(log)
    assert not [r for r in recs if r[1] == b"key-1"]
    assert [r[2][:5] for r in recs if r[1] == b"key-2"] == [b"v2-1x"]
    await log.aclose()


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
async def test_compressed_batches_are_rewritten_with_their_codec(tmp_path, codec):
    log = open_log(tmp_path / "p", compacted(segment_bytes=2000))
    for r in range(12):
        batch = build_kafka_batch(
            [(T0 + r, b"k%d" % i, b"r%d" % r + b"z" * 30, None) for i in range(4)]
            + [(T0 + r, b"only-%d" % r, b"once", None)],
            compression=codec,
        )
        log.append(batch)
    await log.flush()
    await log.clean(now_ms=T0 + 100, force=True)
    seg = log.segments[0]
    with log.read(seg.base_offset, 1 << 20) as s:
        data = s.read_bytes()
    codecs = {h.compression for _p, h in iter_headers(data) if h.record_count}
    assert codecs == {codec}
    keys = [k for _o, k, _v in read_all(log)]
    assert keys.count(b"only-0") == 1
    await log.aclose()


async def test_a_native_gzip_batch_that_loses_records_becomes_magic_2_gzip(tmp_path):
    log = open_log(tmp_path / "p", compacted(segment_bytes=300))
    for r in range(12):
        log.append(
            build_batch(
                [(T0 + r, b"k%d" % i, b"r%d" % r + b"z" * 40, None) for i in range(3)]
                + [(T0 + r, b"only-%d" % r, b"once", None)],
                compression=1,
            )
        )
    await log.flush()
    assert len(log.segments) > 2
    await log.clean(now_ms=T0 + 100, force=True)
    with log.read(0, 1 << 20) as s:
        data = s.read_bytes()
    headers = [h for _p, h in iter_headers(data)]
    assert headers[0].magic == 2
    assert headers[0].compression == 1
    assert headers[0].last_offset_delta == 3
    assert headers[0].record_count == 1  # only-0 is the only live record there
    await log.aclose()


async def test_an_emptied_batch_stays_while_producer_state_needs_it(tmp_path):
    log = open_log(tmp_path / "p", compacted(), clock_ms=lambda: T0 + 100)
    put(log, b"a", b"1" * 50, producer_id=7, producer_epoch=0, base_sequence=0)
    put(log, b"a", b"2" * 50, producer_id=8, producer_epoch=0, base_sequence=0)
    for r in range(20):
        put(log, b"a", b"3" * 50, ts=T0 + r)  # supersedes both, rolls segments
    await log.flush()
    await log.clean(now_ms=T0 + 100, force=True)
    with log.read(0, 1 << 20) as s:
        data = s.read_bytes()
    first = [h for _p, h in iter_headers(data)][:2]
    assert [(h.base_offset, h.record_count, h.producer_id) for h in first] == [(0, 0, 7), (1, 0, 8)]
    assert log.producer_state.producers[7].batches[-1].last_seq == 0
    # an idempotent retry of the first batch is still seen as a duplicate
    dup = log.append(
        build_batch([(T0, b"a", b"1" * 50, None)], producer_id=7, producer_epoch=0, base_sequence=0)
    )
    assert dup.duplicate
    assert dup.base_offset == 0
    await log.aclose()
    # recovery replays the empty batches' headers
    log = open_log(tmp_path / "p", compacted(), clock_ms=lambda: T0 + 100)
    assert log.producer_state.producers[8].batches[-1].first_offset == 1
    log.abandon()


async def test_a_small_key_map_cleans_in_several_passes(tmp_path):
    log = open_log(tmp_path / "p", compacted())
    expected = await _fill(log, n_keys=40, rounds=3)
    small = CleanerSettings(key_map_bytes=2_000)
    passes = 0
    while True:
        result = await log.clean(small, now_ms=T0 + 100, force=True)
        if result is None:
            break
        passes += 1
        assert passes < 50
    assert passes > 1
    assert latest(read_all(log)) == expected
    active = log.segments[-1].base_offset
    cleaned = [r for r in read_all(log) if r[0] < active]
    assert len({k for _o, k, _v in cleaned}) == len(cleaned)
    await log.aclose()


async def test_min_compaction_lag_and_the_dirty_ratio_gate_cleaning(tmp_path):
    log = open_log(tmp_path / "p", compacted(min_compaction_lag_ms=1_000))
    await _fill(log)
    assert await log.clean(now_ms=T0 + 10) is None  # too young
    assert await log.clean(now_ms=T0 + 2_000) is not None
    await _fill(log, rounds=1)  # a little dirty data: below a ratio of 0.9
    assert 0 < log.dirty_ratio < 0.9
    log.update_config(compacted(min_cleanable_dirty_ratio=0.9))
    assert await log.clean(now_ms=T0 + 5_000) is None
    log.update_config(compacted(min_cleanable_dirty_ratio=0.01))
    assert await log.clean(now_ms=T0 + 5_000) is not None
    await log.aclose()


async def test_a_reader_holding_a_replaced_segment_reads_the_old_file_to_its_end(tmp_path):
    log = open_log(tmp_path / "p", compacted())
    await _fill(log)
    held = log.read(0, 1 << 20)
    assert held is not None
    before = held.read_bytes()
    await log.clean(now_ms=T0 + 100, force=True)
    os.lseek(held.fd, 0, os.SEEK_SET)
    assert held.read_bytes() == before  # the old inode, whole
    held.release()
    assert log.segments[0].size < len(before)
    await log.aclose()


async def test_offsets_in_gaps_read_the_next_record_and_timestamps_are_found(tmp_path):
    log = open_log(tmp_path / "p", compacted())
    await _fill(log)
    await log.clean(now_ms=T0 + 100, force=True)
    recs = read_all(log)
    offsets = [o for o, _k, _v in recs]
    gap = next(o for o in range(offsets[-1]) if o not in offsets)
    after = next(o for o in offsets if o > gap)
    assert read_all(log, gap)[0][0] == after
    # a timestamp lookup lands on the first live record at or after it
    found = log.offset_for_timestamp(T0 + 3)
    assert found is not None
    assert found.offset in offsets
    assert found.timestamp >= T0 + 3
    with pytest.raises(OffsetOutOfRangeError):
        log.read(log.log_end_offset + 1, 100)
    await log.aclose()


CLEANER_POINTS = [p for p in CRASH_POINTS if p.startswith("cleaner.")]


@pytest.mark.parametrize("point", CLEANER_POINTS)
async def test_a_crash_at_each_cleaner_point_leaves_old_or_new_segments(tmp_path, point):
    io = FaultIO()
    log = open_log(tmp_path / "p", compacted(), io=io)
    expected = await _fill(log)
    before = read_all(log)
    io.crash_at = point
    with pytest.raises(SimulatedCrash):
        await log.clean(now_ms=T0 + 100, force=True)
    log.abandon()
    log = open_log(tmp_path / "p", compacted(), recovery_point=0)
    after = read_all(log)
    assert latest(after) == expected
    committed = point not in ("cleaner.cleaned", "cleaner.committing")
    if committed:
        assert len(after) < len(before)
        assert log.clean_to > 0
    else:
        assert after == before
    names = os.listdir(tmp_path / "p")
    assert not [n for n in names if n.endswith(".cleaned") or n == "cleaner-swap"]
    # and it cleans again from there
    await log.clean(now_ms=T0 + 100, force=True)
    assert latest(read_all(log)) == expected
    await log.aclose()


async def test_dump_log_reads_a_cleaned_segment_without_calling_gaps_corruption(tmp_path):
    log = open_log(tmp_path / "p", compacted())
    await _fill(log)
    await log.clean(now_ms=T0 + 100, force=True)
    paths = [s.log_path for s in log.segments[:-1]]
    await log.aclose()
    for path in paths:
        out = io.StringIO()
        assert dump_log(path, records=True, out=out) == 0, out.getvalue()


async def test_max_compaction_lag_cleans_whatever_the_ratio(tmp_path):
    log = open_log(tmp_path / "p", compacted(min_cleanable_dirty_ratio=1.0))
    await _fill(log)
    await log.clean(now_ms=T0 + 10, force=True)
    await _fill(log, rounds=1)
    assert log.dirty_ratio < 1.0
    assert await log.clean(now_ms=T0 + 10) is None
    log.update_config(compacted(min_cleanable_dirty_ratio=1.0, max_compaction_lag_ms=500))
    assert await log.clean(now_ms=T0 + 100) is None  # the oldest dirty record is young
    assert await log.clean(now_ms=T0 + 1_000) is not None
    await log.aclose()


async def test_a_stopped_cleaner_gives_up_before_committing_and_leaves_nothing(tmp_path):
    log = open_log(tmp_path / "p", compacted())
    await _fill(log)
    before = read_all(log)
    throttle = Throttle(0)
    throttle.stop()
    with pytest.raises(CleanerStopped):
        await log.clean(throttle=throttle, force=True)
    assert read_all(log) == before
    assert not [n for n in os.listdir(tmp_path / "p") if n.endswith(".cleaned")]
    assert await log.clean(force=True) is not None  # and it cleans afterwards
    await log.aclose()


async def test_an_io_error_during_the_rewrite_changes_nothing(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "p", compacted(), io=io)
    await _fill(log)
    before = read_all(log)
    io.fail["rename"] = 5  # EIO: the manifest's rename fails, nothing committed
    with pytest.raises(StorageError):
        await log.clean(force=True)
    del io.fail["rename"]
    assert not log.offline
    assert read_all(log) == before
    assert await log.clean(force=True) is not None
    await log.aclose()


async def test_a_batch_damaged_at_rest_fails_the_cleaning_instead_of_being_rewritten(tmp_path):
    log = open_log(tmp_path / "p", compacted())
    await _fill(log)
    seg = log.segments[1]
    path, size = seg.log_path, seg.size
    await log.aclose()
    damaged = bytearray(Path(path).read_bytes())
    damaged[size - 3] ^= 0x20  # a value byte of the segment's last batch
    Path(path).write_bytes(damaged)
    log = open_log(tmp_path / "p", compacted(), clean=True)
    with pytest.raises(StorageError, match="cleaning failed"):
        await log.clean(force=True)
    assert not log.offline
    assert Path(path).read_bytes() == damaged  # not laundered under a fresh CRC
    assert not [n for n in os.listdir(tmp_path / "p") if n.endswith(".cleaned")]
    await log.aclose()
