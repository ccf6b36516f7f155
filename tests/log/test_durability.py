"""Flush modes, group commit, the high watermark, and the fault seam: a full
disk (fallocate ENOSPC) and a failed fsync (EIO, the fsyncgate rule)."""

from __future__ import annotations

import os

import pytest
import trio
from log_helpers import EIO, ENOSPC, FaultIO, batch, config, open_log, read_records

from tailrace.client.errors import StorageError, StorageFullError


async def test_sync_mode_acks_after_fdatasync(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "p", config(flush="sync"), io=io)
    r = log.append(batch(2))
    assert (log.log_end_offset, log.high_watermark, io.calls["fdatasync"]) == (2, 0, 0)
    assert log.read(0, 100) is None  # not durable: consumers can't see it
    await log.wait_durable(r)
    assert (log.high_watermark, io.calls["fdatasync"]) == (2, 1)
    assert log.recovery_point == 2
    assert [o for o, _v in read_records(log)] == [0, 1]
    await log.wait_durable(r)  # already durable: no second sync
    assert io.calls["fdatasync"] == 1
    await log.aclose()


async def test_group_commit_shares_syncs_between_writers(tmp_path):
    io = FaultIO()
    io.sync_delay = 0.02  # a slow disk: appends pile up behind each sync
    log = open_log(tmp_path / "p", config(flush="sync", segment_bytes=1 << 20), io=io)
    writers, rounds = 8, 5
    acked: list[tuple[int, int]] = []

    async def writer(w: int) -> None:
        for k in range(rounds):
            r = log.append(batch([f"{w}-{k}".encode()]))
            await log.wait_durable(r)
            assert log.high_watermark > r.last_offset
            acked.append((w, k))

    async with trio.open_nursery() as nursery:
        for w in range(writers):
            nursery.start_soon(writer, w)
    assert len(acked) == writers * rounds
    # one sync per round of eight appends, not one per append
    assert io.calls["fdatasync"] <= 2 * rounds
    assert len(read_records(log)) == writers * rounds
    await log.aclose()


async def test_sync_mode_roll_fsyncs_sealed_segment_and_directory(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "p", config(flush="sync", segment_bytes=300), io=io)
    io.calls.clear()
    for _ in range(3):
        await log.wait_durable(log.append(batch(1, size=150)))
    assert len(log.segments) == 3
    # each roll: the sealed segment's log and two indexes fsynced, the
    # directory (new files) fsynced, before the data after it was acked
    assert io.calls["fsync"] == 2 * 3
    assert io.calls["fsync_dir"] == 2
    assert log.recovery_point == 3
    await log.aclose()


async def test_interval_mode_acks_at_append_and_flushes_on_schedule(tmp_path):
    io = FaultIO()
    now = [10_000]
    log = open_log(
        tmp_path / "p", config(flush="interval", flush_ms=1000), io=io, clock_ms=lambda: now[0]
    )
    r = log.append(batch(3))
    assert log.high_watermark == 3  # page cache: visible and acked at once
    await log.wait_durable(r)
    assert (io.calls["fdatasync"], log.recovery_point) == (0, 0)
    now[0] += 999
    await log.maybe_flush()
    assert io.calls["fdatasync"] == 0
    now[0] += 1
    await log.maybe_flush()
    assert (io.calls["fdatasync"], log.recovery_point) == (1, 3)
    now[0] += 5000
    await log.maybe_flush()  # nothing new: no sync
    assert io.calls["fdatasync"] == 1
    await log.aclose()


async def test_none_mode_fsyncs_only_on_roll_and_close(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "p", config(flush="none", segment_bytes=1000), io=io)
    io.calls.clear()
    for _ in range(5):
        await log.wait_durable(log.append(batch(1, size=60)))
    await log.maybe_flush()
    assert io.calls["fdatasync"] == 0
    assert io.calls["fsync"] == 0
    assert len(log.segments) == 1
    for _ in range(3):
        log.append(batch(1, size=400))  # rolls
    await log.maybe_flush()
    assert io.calls["fdatasync"] == 0  # the active segment's data is the OS's business
    assert io.calls["fsync"] > 0  # the sealed ones were fsynced
    assert log.recovery_point == log.segments[-1].base_offset
    fsyncs = io.calls["fsync"]
    await log.aclose()
    assert io.calls["fsync"] > fsyncs


async def test_fsync_failure_takes_the_partition_offline(tmp_path):
    io = FaultIO()
    io.sync_delay = 0.01
    log = open_log(tmp_path / "p", config(flush="sync"), io=io)
    await log.wait_durable(log.append(batch(1)))
    io.fail["fdatasync"] = EIO
    errors = []

    async def writer() -> None:
        r = log.append(batch(1))
        try:
            await log.wait_durable(r)
        except StorageError as exc:
            errors.append(str(exc))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(writer)
    assert len(errors) == 4
    assert all("EIO" in e and "fsync failed" in e for e in errors)
    assert log.offline
    assert log.high_watermark == 1  # nothing past the failure was acked
    del io.fail["fdatasync"]  # even if the disk "recovers": never retried
    syncs = io.calls["fdatasync"]
    with pytest.raises(StorageError, match="offline"):
        log.append(batch(1))
    with pytest.raises(StorageError, match="offline"):
        log.read(0, 100)
    with pytest.raises(StorageError, match="offline"):
        await log.wait_durable(5)
    await log.maybe_flush()
    assert io.calls["fdatasync"] == syncs
    assert not await log.aclose()  # not a clean close
    # after a restart, recovery decides what survived
    log = open_log(tmp_path / "p", recovery_point=1, clean=False)
    assert log.log_end_offset == 5
    log.close()


async def test_full_disk_is_a_retriable_error_and_writes_resume(tmp_path):
    io = FaultIO()
    cfg = config(flush="sync", preallocate_bytes=4096, segment_bytes=1 << 20)
    log = open_log(tmp_path / "p", cfg, io=io)
    await log.wait_durable(log.append(batch(1, size=1000)))
    files_before = {n: os.path.getsize(tmp_path / "p" / n) for n in os.listdir(tmp_path / "p")}
    io.fail["fallocate"] = ENOSPC
    for _ in range(3):
        with pytest.raises(StorageFullError, match="ENOSPC") as info:
            log.append(batch(1, size=4000))  # needs a new preallocation step
        assert info.value.retriable
    assert log.log_end_offset == 1
    assert not log.offline
    files_after = {n: os.path.getsize(tmp_path / "p" / n) for n in os.listdir(tmp_path / "p")}
    assert files_after == files_before
    assert [o for o, _v in read_records(log)] == [0]  # reads still work
    del io.fail["fallocate"]
    r = log.append(batch(1, size=4000))
    assert r.base_offset == 1
    await log.wait_durable(r)
    assert [o for o, _v in read_records(log)] == [0, 1]
    await log.aclose()


async def test_full_disk_at_roll_leaves_an_empty_usable_segment(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "p", config(segment_bytes=300), io=io)
    log.append(batch(1, size=150))
    io.fail["fallocate"] = ENOSPC
    with pytest.raises(StorageFullError):
        log.append(batch(1, size=150))  # rolls, then cannot preallocate
    assert log.log_end_offset == 1
    del io.fail["fallocate"]
    assert log.append(batch(1, size=150)).base_offset == 1
    await log.aclose()
    log = open_log(tmp_path / "p", clean=True)
    assert [o for o, _v in read_records(log)] == [0, 1]
    log.close()


async def test_switching_to_none_publishes_the_page_cache(tmp_path):
    log = open_log(tmp_path / "p", config(flush="sync"))
    log.append(batch(4))
    assert log.high_watermark == 0
    log.update_config(config(flush="none"))
    assert log.high_watermark == 4
    await log.aclose()


async def test_long_poll_waits_for_the_high_watermark(tmp_path):
    log = open_log(tmp_path / "p", config(flush="sync"))
    woke: list[int] = []

    async def consumer() -> None:
        await log.wait_for_high_watermark(1)  # until offset 1 is visible
        woke.append(log.high_watermark)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        r = log.append(batch(1))
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []  # appended, not durable, so not visible
        await log.wait_durable(r)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []  # offset 0 visible; the consumer wants 1
        event = log.hw_event
        await log.wait_durable(log.append(batch(2)))
        assert event.is_set()
    assert woke == [3]
    await log.aclose()


async def test_hw_watchers_are_called_at_each_advance_until_unwatched(tmp_path):
    log = open_log(tmp_path / "p", config(flush="none"))
    calls: list[int] = []

    def wake() -> None:
        calls.append(log.high_watermark)

    log.watch_hw(wake)
    log.append(batch(1))
    log.append(batch(2))
    assert calls == [1, 3]  # synchronously, in the append, with the new HW
    log.wake_hw_watchers()  # what a draining broker does
    assert calls == [1, 3, 3]
    log.unwatch_hw(wake)
    log.append(batch(1))
    assert calls == [1, 3, 3]
    await log.aclose()


async def test_available_bytes_follows_the_high_watermark(tmp_path):
    log = open_log(tmp_path / "p", config(flush="sync", segment_bytes=500))
    sizes = []
    for k in range(6):
        b = batch(1, size=100 + k)
        sizes.append(len(b))
        await log.wait_durable(log.append(b))
    assert len(log.segments) > 2
    start = log.position_of(0)
    assert log.available_bytes(start) == sum(sizes)
    with log.read(0, 10) as s:
        assert log.available_bytes(s.next_position) == sum(sizes) - sizes[0]
    mid = log.position_of(4)
    assert log.available_bytes(mid) == sum(sizes[4:])
    log.append(batch(1, size=100))  # not durable yet: not available
    assert log.available_bytes(mid) == sum(sizes[4:])
    assert log.available_bytes(log.position_of(6)) == 0
    await log.aclose()


async def test_close_acknowledges_writers_still_waiting(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "p", config(flush="sync"), io=io)
    r = log.append(batch(2))  # not durable yet
    io.delay["fsync"] = 0.05  # the close's fsyncs are slow
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.aclose)
        await trio.testing.wait_all_tasks_blocked()  # the close is fsyncing
        await log.wait_durable(r)  # waits for the close, which made it durable
        assert log.high_watermark == 2
    with pytest.raises(StorageError, match="closed"):
        log.append(batch(1))
    with pytest.raises(StorageError, match="closed"):
        await log.wait_durable(3)
