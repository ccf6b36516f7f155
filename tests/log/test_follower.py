"""The partition log's follower primitives (issue 16): append_as_follower,
truncate_to / truncate_fully_and_start_at (crash-safe), the replicated high
watermark, and reads past the high watermark for replicas. Real files in
tmp_path; crashes at the named crash points (FaultIO) and power cuts
(PowerCutIO) as the other log tests use them."""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest
import trio
from log_helpers import FaultIO, SimulatedCrash, batch, config, open_log, read_records

from tailrace.broker.faultkit.powercut import PowerCut, PowerCutIO
from tailrace.broker.log import FollowerAppendError, TruncationOffsetError
from tailrace.broker.log.epoch_checkpoint import read_epoch_checkpoint
from tailrace.broker.log.truncation import TRUNCATION_FILE
from tailrace.client.errors import (
    CorruptRecordError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    StorageError,
)
from tailrace.client.records import CODEC_LZ4, CODEC_NONE, build_kafka_batch, iter_headers


def kbatch(n: int, *, ts: int = 1_000, codec: int = CODEC_NONE, producer=(-1, -1, -1)) -> bytes:
    pid, epoch, seq = producer
    return bytes(
        build_kafka_batch(
            [(ts + i, b"k", b"v%d" % (ts + i), []) for i in range(n)],
            compression=codec,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
        )
    )


def stored(log, start: int | None = None, up_to: int | None = None) -> bytes:
    """Every stored byte from ``start`` up to the HW (or ``up_to``), via read()."""
    offset = log.log_start_offset if start is None else start
    end = log.high_watermark if up_to is None else up_to
    out = []
    while offset < end and (s := log.read(offset, 1 << 20, up_to=up_to)) is not None:
        with s:
            out.append(s.read_bytes())
            offset = s.last_offset + 1
    return b"".join(out)


async def build_leader(path, cfg=None, *, epochs=(1, 3)):
    """A leader log over several segments and two epochs, native and Kafka
    batches, an idempotent producer."""
    log = open_log(path, cfg or config())
    seq = 0
    for k, epoch in enumerate(epochs):
        await log.become_leader(epoch)
        for i in range(8):
            log.append(batch(3, ts=1000 + 10 * i, producer=(7, 0, seq)))
            seq += 3
            log.append(kbatch(2, ts=2000 + i, codec=CODEC_LZ4 if (i + k) % 2 else CODEC_NONE))
    return log


async def replicate(leader, follower, chunk: int = 700, up_to: int | None = None) -> None:
    """Copy the leader's log to the follower as a fetcher would: slices
    past the HW up to the LEO, appended as they are."""
    end = leader.log_end_offset if up_to is None else up_to
    while follower.log_end_offset < end:
        s = leader.read(follower.log_end_offset, chunk, up_to=end)
        assert s is not None
        with s:
            data = s.read_bytes()
        result = await follower.append_as_follower(data)
        await follower.wait_durable(result)


# ----------------------------------------------------------- append_as_follower


async def test_follower_log_is_byte_identical_with_epochs_and_producers(tmp_path):
    leader = await build_leader(tmp_path / "l" / "t-0")
    follower = open_log(tmp_path / "f" / "t-0")
    follower.set_replicated(True)
    await replicate(leader, follower)
    assert follower.log_end_offset == leader.log_end_offset
    follower.set_replicated_high_watermark(follower.log_end_offset)
    leader_bytes = stored(leader)
    assert stored(follower) == leader_bytes
    assert {h.leader_epoch for _p, h in iter_headers(leader_bytes)} == {1, 3}
    assert follower.epoch_cache == leader.epoch_cache
    assert read_epoch_checkpoint(follower.path) == leader.epoch_cache.entries()
    # idempotence survives a failover: the follower, now leader, dedups a retry
    await follower.become_leader(5)
    retry = follower.append(batch(3, ts=1070, producer=(7, 0, 45)))
    assert retry.duplicate
    assert follower.log_end_offset == leader.log_end_offset
    leader.close()
    follower.close()
    # and the bytes survive recovery (segments, indexes, epochs)
    again = open_log(tmp_path / "f" / "t-0", recovery_point=0)
    assert stored(again) == leader_bytes
    assert again.epoch_cache.entries()[:2] == leader.epoch_cache.entries()
    again.close()


async def test_follower_append_refuses_what_does_not_continue_the_log(tmp_path):
    leader = await build_leader(tmp_path / "l" / "t-0")
    follower = open_log(tmp_path / "f" / "t-0")
    s = leader.read(0, 10_000, up_to=leader.log_end_offset)
    with s:
        data = s.read_bytes()
    headers = [h for _p, h in iter_headers(data)]
    second = headers[0].batch_length + 12
    with pytest.raises(FollowerAppendError) as err:
        await follower.append_as_follower(data[second:])
    assert (err.value.expected, err.value.actual) == (0, headers[1].base_offset)
    # a gap between two batches
    third = second + headers[1].batch_length + 12
    with pytest.raises(FollowerAppendError):
        await follower.append_as_follower(data[:second] + data[third:])
    # a flipped bit inside a batch
    bad = bytearray(data[:second])
    bad[-3] ^= 0x40
    with pytest.raises(CorruptRecordError):
        await follower.append_as_follower(bytes(bad))
    # half a batch
    with pytest.raises(InvalidRecordError):
        await follower.append_as_follower(data[: second - 5])
    assert follower.log_end_offset == 0
    assert follower.epoch_cache.entries() == []
    assert read_epoch_checkpoint(follower.path) is None
    await follower.append_as_follower(data[:second])
    assert follower.log_end_offset == headers[0].next_offset
    leader.close()
    follower.close()


async def test_new_epoch_is_checkpointed_before_its_batch(tmp_path):
    """A crash after the epoch checkpoint and before the batch: the reopened
    log has no record of the epoch and a cache fitted to it."""
    leader = await build_leader(tmp_path / "l" / "t-0", epochs=(1, 4))
    io = FaultIO()
    path = tmp_path / "f" / "t-0"
    follower = open_log(path, io=io)
    epoch4 = leader.epoch_cache.start_offset_of(4)
    await replicate(leader, follower, up_to=epoch4)
    assert follower.log_end_offset == epoch4
    io.crash_at = "follower.epoch"
    s = leader.read(epoch4, 1 << 20, up_to=leader.log_end_offset)
    with s, pytest.raises(SimulatedCrash):
        await follower.append_as_follower(s.read_bytes())
    assert read_epoch_checkpoint(str(path)) == [(1, 0), (4, epoch4)]
    follower.abandon()
    follower = open_log(path, recovery_point=0)
    assert follower.log_end_offset == epoch4
    assert follower.epoch_cache.entries() == [(1, 0)]
    leader.close()
    follower.close()


async def test_single_node_follower_append_moves_the_hw_as_append_does(tmp_path):
    follower = open_log(tmp_path / "t-0")
    r = await follower.append_as_follower(batch(2))
    assert follower.high_watermark == r.end_offset == 2
    follower.close()


# ------------------------------------------------------------- replicated HW


async def test_replicated_high_watermark_moves_only_when_set(tmp_path):
    log = open_log(tmp_path / "t-0", config(flush="sync"))
    log.append(batch(2))
    await log.flush()
    log.set_replicated(True)
    assert log.high_watermark == 0  # a restarted replica knows nothing committed
    woken = []
    log.watch_hw(lambda: woken.append(log.high_watermark))
    ends = []
    log.watch_end(lambda: ends.append(log.log_end_offset))
    r = log.append(batch(3))
    assert ends == [5]
    assert log.durable_offset == 2  # flush sync: not synced yet
    assert not log.set_replicated_high_watermark(0)
    assert log.set_replicated_high_watermark(100)  # clamped to the durable offset
    assert log.high_watermark == 2
    await log.wait_durable(r)
    assert log.durable_offset == 5
    assert log.high_watermark == 2  # the sync did not move it
    assert log.read(2, 1000) is None
    s = log.read(2, 1000, up_to=log.log_end_offset)  # a replica reads past it
    assert s is not None
    with s:
        assert (s.first_offset, s.last_offset) == (2, 4)
    assert not log.set_high_watermark(3)  # inside the batch 2..4: rounded down to 2
    assert log.high_watermark == 2
    assert log.set_replicated_high_watermark(5)
    assert log.high_watermark == 5
    assert not log.set_replicated_high_watermark(4)  # never lowered
    assert woken[-1] == 5
    assert [o for o, _v in read_records(log)] == [0, 1, 2, 3, 4]
    log.set_replicated(False)  # back to the flush mode's watermark
    assert log.high_watermark == log.durable_offset == 5
    log.close()


async def test_set_hw_needs_replicated_mode(tmp_path):
    log = open_log(tmp_path / "t-0")
    with pytest.raises(RuntimeError):
        log.set_replicated_high_watermark(0)
    log.close()


# ------------------------------------------------------------------ truncate_to


async def _follower_copy(tmp_path, cfg=None):
    cfg = cfg or config(segment_bytes=1024)
    leader = await build_leader(tmp_path / "l" / "t-0", cfg)
    follower = open_log(tmp_path / "f" / "t-0", cfg)
    await replicate(leader, follower)
    return leader, follower


def _boundaries(log) -> list[int]:
    return [h.base_offset for _p, h in iter_headers(stored(log, up_to=log.log_end_offset))]


@pytest.mark.parametrize("where", ["mid-segment", "segment-base", "log-start", "log-end"])
async def test_truncate_to_a_batch_boundary(tmp_path, where):
    leader, follower = await _follower_copy(tmp_path)
    bases = [s.base_offset for s in follower.segments]
    assert len(bases) > 3
    bounds = _boundaries(follower)
    target = {
        "mid-segment": next(b for b in bounds if b > bases[2]),
        "segment-base": bases[2],
        "log-start": 0,
        "log-end": follower.log_end_offset,
    }[where]
    before = stored(leader, up_to=target)
    await follower.truncate_to(target)
    assert follower.log_end_offset == target
    assert follower.high_watermark <= target
    assert follower.recovery_point <= target
    assert stored(follower, up_to=target) == before
    assert all(e.start_offset < target for e in follower.epoch_cache.entries())
    assert read_epoch_checkpoint(follower.path) in (None, follower.epoch_cache.entries())
    assert not [
        n
        for n in os.listdir(follower.path)
        if n.endswith(".snapshot") and int(n.split(".")[0]) > target
    ]
    # the producer state is as of the cut: the next sequence after the cut appends
    pid_batches = [h for _p, h in iter_headers(before) if h.producer_id == 7]
    next_seq = pid_batches[-1].base_sequence + 3 if pid_batches else 0
    if where != "log-end":
        assert follower.producer_state.producers.get(7) is None or (
            follower.producer_state.producers[7].batches[-1].last_seq == next_seq - 1
        )
    # and the leader's data refetched from there makes it identical again
    await replicate(leader, follower)
    assert stored(follower, up_to=follower.log_end_offset) == stored(
        leader, up_to=leader.log_end_offset
    )
    assert follower.epoch_cache == leader.epoch_cache
    follower.close()
    again = open_log(follower.path, recovery_point=0)
    assert stored(again, up_to=again.log_end_offset) == stored(leader, up_to=leader.log_end_offset)
    again.close()
    leader.close()


async def test_truncate_to_refuses_offsets_it_cannot_end_at(tmp_path):
    leader, follower = await _follower_copy(tmp_path)
    bounds = _boundaries(follower)
    inside = bounds[3] + 1
    assert inside not in bounds
    with pytest.raises(TruncationOffsetError) as err:
        await follower.truncate_to(inside)
    assert err.value.batch == (bounds[3], bounds[4] - 1)
    with pytest.raises(TruncationOffsetError):
        await follower.truncate_to(follower.log_end_offset + 1)
    with pytest.raises(OffsetOutOfRangeError):
        await follower.truncate_to(-1)
    assert follower.log_end_offset == leader.log_end_offset
    assert TRUNCATION_FILE not in os.listdir(follower.path)
    leader.close()
    follower.close()


async def test_truncate_to_a_log_start_inside_a_batch_empties_the_log(tmp_path):
    leader, follower = await _follower_copy(tmp_path)
    bounds = _boundaries(follower)
    start = bounds[5] + 1
    assert await follower.delete_records(start) == start
    await follower.truncate_to(start)
    assert (follower.log_start_offset, follower.log_end_offset) == (start, start)
    assert follower.epoch_cache.entries() == []
    follower.close()
    again = open_log(follower.path, recovery_point=0)
    assert (again.log_start_offset, again.log_end_offset) == (start, start)
    again.close()
    leader.close()


async def test_truncate_fully_and_start_at_past_the_log_end(tmp_path):
    leader, follower = await _follower_copy(tmp_path)
    target = leader.log_end_offset + 100
    await follower.truncate_fully_and_start_at(target)
    assert (follower.log_start_offset, follower.log_end_offset) == (target, target)
    assert [s.base_offset for s in follower.segments] == [target]
    r = await follower.append_as_follower(_rebased(kbatch(1), target))
    assert r.base_offset == target
    follower.close()
    again = open_log(follower.path, recovery_point=0)
    assert (again.log_start_offset, again.log_end_offset) == (target, target + 1)
    again.close()
    leader.close()


def _rebased(data: bytes, base: int) -> bytes:
    return base.to_bytes(8, "big") + data[8:]


async def test_reopen_with_a_recovery_point_from_before_the_cut(tmp_path):
    """The manager's checkpoint may still hold the old, higher recovery
    point: the marker lets recovery start at the cut instead of refusing
    the log, until the manager checkpoints again and the marker goes."""
    leader, follower = await _follower_copy(tmp_path)
    stale = follower.log_end_offset
    await follower.flush()
    target = follower.segments[1].base_offset
    await follower.truncate_to(target)
    await follower.append_as_follower(_rebased(kbatch(2), target))
    follower.abandon()
    again = open_log(follower.path, recovery_point=stale)
    assert again.log_end_offset == target + 2
    assert TRUNCATION_FILE in os.listdir(again.path)
    await again.recovery_point_saved(again.truncation_generation)
    assert TRUNCATION_FILE not in os.listdir(again.path)
    again.close()
    leader.close()


async def test_log_manager_checkpoint_removes_the_marker(tmp_path):
    from tailrace.broker.log import LogManager

    manager = LogManager.open(str(tmp_path / "data"))
    await manager.create_topic("t", 1, {"flush": "none", "segment_bytes": 2048})
    log = manager.get("t", 0)
    for _ in range(20):
        log.append(batch(2))
    await log.truncate_to(10)
    assert TRUNCATION_FILE in os.listdir(log.path)
    await manager.checkpoint()
    assert TRUNCATION_FILE not in os.listdir(log.path)
    assert await manager.aclose()


# ------------------------------------------------------------ crash safety


@pytest.mark.parametrize("point", ["truncation.marked", "truncation.deleted", "truncation.cut"])
async def test_a_crash_inside_truncate_to_recovers_truncated(tmp_path, point):
    leader, follower = await _follower_copy(tmp_path)
    await follower.flush()
    stale = follower.log_end_offset
    target = next(b for b in _boundaries(follower) if b > follower.segments[1].base_offset)
    expected = stored(leader, up_to=target)
    io = FaultIO()
    follower.close()
    follower = open_log(follower.path, io=io, recovery_point=stale, clean=True)
    io.crash_at = point
    with pytest.raises(SimulatedCrash):
        await follower.truncate_to(target)
    follower.abandon()
    again = open_log(follower.path, recovery_point=stale)
    assert again.log_end_offset == target
    assert stored(again, up_to=target) == expected
    assert all(e.start_offset < target for e in again.epoch_cache.entries())
    await replicate(leader, again)
    assert stored(again, up_to=again.log_end_offset) == stored(leader, up_to=leader.log_end_offset)
    again.close()
    leader.close()


async def test_a_power_cut_during_truncate_to_leaves_old_or_truncated(tmp_path):
    """Cut the power at the n-th seam call of a truncation (n = 1..12, with
    a random post-cut image each); every image recovers to the old log or
    the truncated one, never a mix, and both outcomes occur."""
    leader, follower = await _follower_copy(tmp_path / "src")
    await follower.flush()
    assert follower.close()
    old_end = leader.log_end_offset
    bounds = [b for b in _boundaries(leader) if b > 0]
    target = bounds[len(bounds) // 2]
    outcomes = set()
    for seed in range(12):
        data = tmp_path / f"data{seed}"
        path = data / "t-0"
        os.makedirs(data)
        shutil.copytree(follower.path, path)
        sim = PowerCutIO(str(data), cut_after_calls=1 + seed)
        sim.arm()
        log = open_log(path, io=sim, recovery_point=old_end, clean=True)
        with contextlib.suppress(PowerCut, StorageError):
            await log.truncate_to(target)
        sim.cut()
        log.abandon()
        how = sim.materialize(seed)
        again = open_log(path, recovery_point=old_end)
        end = again.log_end_offset
        assert end in (old_end, target), how
        assert stored(again, up_to=end) == stored(leader, up_to=end), how
        assert all(e.start_offset < end for e in again.epoch_cache.entries()), how
        outcomes.add(end)
        again.close()
    assert outcomes == {old_end, target}
    leader.close()


async def test_appends_wait_while_truncating_and_syncs_do_not_run(tmp_path):
    leader, follower = await _follower_copy(tmp_path, config(flush="sync"))
    follower.set_replicated(True)
    target = follower.segments[1].base_offset
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower.truncate_to, target)
        await trio.testing.wait_all_tasks_blocked()
        if follower.log_end_offset != target:  # still under way
            with pytest.raises(StorageError):
                follower.append(batch(1))
            assert not follower.flush_wanted(10**12)
    assert follower.log_end_offset == target
    await follower.flush()
    assert follower.durable_offset == target
    leader.close()
    follower.close()


async def test_follower_of_a_cleaned_compacted_leader_keeps_its_gaps(tmp_path):
    """The internal offsets topic is compacted: a follower catching up
    copies batches the leader's cleaner rewrote with offset gaps; its own
    recovery must accept them."""
    t0 = 1_000_000
    cfg = config(cleanup_policy="compact", segment_bytes=600, index_interval_bytes=100)
    leader = open_log(tmp_path / "l" / "t-0", cfg)
    for r in range(8):
        for k in range(5):
            leader.append(
                bytes(build_kafka_batch([(t0 + r, b"key-%d" % k, b"v%d" % r + b"x" * 40, [])]))
            )
    await leader.flush()
    assert await leader.clean(now_ms=t0 + 100, force=True) is not None
    data = stored(leader, up_to=leader.log_end_offset)
    assert any(h.record_count != h.last_offset_delta + 1 for _p, h in iter_headers(data))
    follower = open_log(tmp_path / "f" / "t-0", cfg)
    await replicate(leader, follower)
    assert stored(follower, up_to=follower.log_end_offset) == data
    follower.abandon()
    again = open_log(tmp_path / "f" / "t-0", cfg, recovery_point=0)
    assert again.log_end_offset == leader.log_end_offset
    assert stored(again, up_to=again.log_end_offset) == data
    again.close()
    leader.close()


async def test_replicated_sync_follower_fsyncs_before_its_position_counts(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "t-0", config(flush="sync"), io=io)
    log.set_replicated(True)
    ends = []
    log.watch_end(lambda: ends.append(log.durable_offset))
    r = await log.append_as_follower(batch(4))
    assert log.durable_offset == 0
    assert log.flush_wanted(0)
    syncs = io.calls["fdatasync"]
    await log.wait_durable(r)
    assert io.calls["fdatasync"] == syncs + 1
    assert log.durable_offset == 4
    assert ends[-1] == 4  # the sync woke the end watchers
    assert log.high_watermark == 0  # still the replication logic's to move
    assert not log.flush_wanted(0)
    log.close()
