"""Scenario 2: power cuts, modelled by PowerCutIO under a LogManager.

Per seed: a LogManager (two partitions, tiny segments so rolls, index
entries, checkpoints and producer snapshots all happen) is driven by
idempotent writers under a fake clock, with the flush loop and checkpoints
interleaved at random. The power is cut at a random seam call, at a random
crash point or at a random step; PowerCutIO then rewrites the directory as
one state a real machine could wake up in (names per directory fsync,
contents per file fsync, torn tails of zeros, garbage or half a batch).
Sometimes the power fails again during the recovery that follows.

Then, after recovery: no partition is refused (nothing below a recovery
point was lost), every batch served passes its CRC, and the oracle checks
the files on disk:

* flush sync: no acknowledged value lost; the writers re-send every batch
  whose outcome they did not learn (same producer id, epoch, sequence) and
  each is stored exactly once (deduplicated if it had survived);
* flush interval: only values acknowledged within flush_ms (plus one clock
  step) before the cut may be lost;
* flush none: only values at or above the partition's recovery point at the
  cut may be lost;
* always: no duplicates, order kept per producer, offsets dense, index
  entries at batch starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil

import pytest
import trio
import trio.lowlevel
from rel_helpers import Clock, Writer, create_topic, live_broker, producing
from rel_profile import record_result, seeds, size

from tailrace.broker.faultkit.oracle import Attempt, History, check, read_topic_dir
from tailrace.broker.faultkit.powercut import PowerCut, PowerCutIO
from tailrace.broker.faultkit.workload import read_topic
from tailrace.broker.log import LogConfig, LogManager
from tailrace.client import AsyncConsumer
from tailrace.client.errors import BrokerError, StorageError, TailraceError
from tailrace.client.records import iter_headers, validate_batch

PARTITIONS = 2
FLUSH_MS = 100
MAX_STEP_MS = 30
#: A producer has at most this many batches per partition in flight (the
#: broker remembers the last five per producer for deduplication).
IN_FLIGHT = 5


def log_config(mode: str) -> LogConfig:
    return LogConfig.from_mapping(
        {
            "flush": mode,
            "flush_ms": FLUSH_MS,
            "segment_bytes": 6000,
            "index_interval_bytes": 300,
            "preallocate_bytes": 4096,
            "retention_ms": -1,
        }
    )


async def run_one(root: str, mode: str, seed: int) -> dict:
    """One power cut; returns figures, raises AssertionError naming the seed."""
    rng = random.Random(seed)
    data_dir = os.path.join(root, f"{mode}-{seed}")
    os.makedirs(data_dir)
    clock = Clock()
    cfg = log_config(mode)
    sim = PowerCutIO(data_dir)
    manager = LogManager.open(data_dir, cfg, io=sim, clock_ms=clock)
    await manager.create_topic("t", PARTITIONS)
    how = rng.choice(("calls", "point", "step"))
    steps = size(150, 400)
    if how == "calls":
        sim.cut_after_calls = rng.randint(1, {"sync": 250, "interval": 200, "none": 180}[mode])
    elif how == "point":
        sim.cut_at_point = rng.choice(("segment.roll", "segment.created", "index.append"))
        sim.cut_point_hit = rng.randint(0, 3)
    cut_step = rng.randint(1, steps) if how == "step" else steps
    sim.arm()
    history = History(clock=clock)
    writers = [Writer(pid, PARTITIONS) for pid in range(1, 4)]
    logs = [manager.get("t", p) for p in range(PARTITIONS)]
    pad = rng.choice((0, 60, 400))

    async def wait_and_ack(w: Writer, p: int, entry, result) -> None:
        try:
            await logs[p].wait_durable(result)
        except StorageError:
            return  # outcome unknown: stays pending, re-sent after recovery
        ack(w, p, entry, result.base_offset)

    def ack(w: Writer, p: int, entry, base: int) -> None:
        w.pending[p].remove(entry)
        for i, s in enumerate(entry[1]):
            history.acked(w.name, s, p, base + i)

    async with trio.open_nursery() as nursery:
        for step in range(steps):
            if step == cut_step:
                sim.cut()
            if sim.is_cut:
                break
            w = rng.choice(writers)
            p = rng.randrange(PARTITIONS)
            if len(w.pending[p]) >= IN_FLIGHT:
                await trio.lowlevel.checkpoint()
                continue
            data, vseqs = w.batch(p, rng.randint(1, 3), clock.now, pad)
            for s in vseqs:
                history.sent(w.name, s, "t", p)
            entry = (data, vseqs)
            w.pending[p].append(entry)
            try:
                result = logs[p].append(data)
            except BrokerError:
                continue  # the cut hit this append: unknown, re-sent later
            if mode == "sync":
                nursery.start_soon(wait_and_ack, w, p, entry, result)
            else:
                ack(w, p, entry, result.base_offset)
            clock.now += rng.randint(1, MAX_STEP_MS)
            try:
                await manager.flush_due()  # the broker's flush loop, once per tick
                if rng.random() < 0.04:
                    await manager.checkpoint()
            except OSError:
                pass  # the cut hit the checkpoint
            await trio.lowlevel.checkpoint()
        sim.cut()
    cut_ms = clock.now
    points_at_cut = {p: logs[p].recovery_point for p in range(PARTITIONS)}
    with contextlib.suppress(OSError):  # closing after the cut fails: the machine is off
        await manager.aclose()
    image = sim.materialize(seed)
    assert sim.outside <= {"~lock"}, f"files made outside the seam: {sim.outside}"

    # Sometimes the power fails again while recovery runs.
    if rng.random() < 0.3:
        again = PowerCutIO(data_dir, cut_after_calls=rng.randint(1, 20))
        again.arm()
        try:
            reopened = LogManager.open(data_dir, cfg, io=again, clock_ms=clock)
        except PowerCut:
            image += "\nsecond cut, during recovery:\n"
        else:
            again.cut()
            with contextlib.suppress(OSError):
                await reopened.aclose()
            image += "\nsecond cut, after recovery:\n"
        image += again.materialize(seed + 1)

    context = f"seed {seed} (replay: RELIABILITY_SEED={seed}), mode {mode}, cut by {how}\n"
    context += image
    try:
        return await _recover_and_check(
            data_dir, cfg, clock, mode, writers, history, points_at_cut, cut_ms, context, ack
        )
    except Exception as exc:
        exc.add_note(context)
        raise


async def _recover_and_check(
    data_dir, cfg, clock, mode, writers, history, points_at_cut, cut_ms, context, ack
) -> dict:
    manager = LogManager.open(data_dir, cfg, clock_ms=clock)
    try:
        assert not manager.failed, f"partitions refused after the cut: {manager.failed}\n{context}"
        logs = [manager.get("t", p) for p in range(PARTITIONS)]
        for log in logs:
            _check_served(log, context)
        redelivered = 0
        if mode == "sync":
            # the producers reconnect and re-send what they never heard about
            for w in writers:
                for p in range(PARTITIONS):
                    for entry in list(w.pending[p]):
                        result = logs[p].append(entry[0])
                        await logs[p].wait_durable(result)
                        redelivered += not result.duplicate
                        ack(w, p, entry, result.base_offset)
    finally:
        await manager.aclose()
    history.finish()
    window_start = cut_ms - FLUSH_MS - MAX_STEP_MS

    def may_lose(a: Attempt) -> bool:
        if mode == "sync":
            return False
        if a.offset < points_at_cut[a.partition]:
            return False  # below the recovery point: it was fsynced
        return mode == "none" or (a.done_at or 0) > window_start

    report = check(history, read_topic_dir(data_dir, "t"), may_lose=may_lose)
    assert report.ok, f"{report}\n{context}"
    shutil.rmtree(data_dir)
    return {
        "acked": report.acked,
        "lost_allowed": report.lost_allowed,
        "read": report.records_read,
        "redelivered": redelivered,
        "unknown_present": report.unknown_present,
    }


def _check_served(log, context: str) -> None:
    """Every batch the recovered log serves passes every check (CRC included)."""
    offset = log.log_start_offset
    while True:
        fslice = log.read(offset, 64 * 1024)
        if fslice is None:
            return
        with fslice:
            data = fslice.read_bytes()
        for pos, _h in iter_headers(data):
            validate_batch(data, pos, max_batch_bytes=1 << 24)
        offset = fslice.last_offset + 1
        assert offset <= log.high_watermark, context


@pytest.mark.parametrize("mode", ["sync", "interval", "none"])
async def test_power_cut_loses_only_what_the_flush_mode_allows(tmp_path, mode, caplog):
    caplog.set_level(logging.CRITICAL)  # recovery warns about every torn tail
    totals = {"acked": 0, "lost_allowed": 0, "read": 0, "redelivered": 0, "unknown_present": 0}
    runs = seeds({"sync": 1000, "interval": 2000, "none": 3000}[mode], short=25, long=2000)
    for seed in runs:
        figures = await run_one(str(tmp_path), mode, seed)
        for k, v in figures.items():
            totals[k] += v
    assert totals["acked"] > 0
    record_result(
        f"power cut, flush {mode}",
        runs=len(runs),
        faults=len(runs),
        records_checked=totals["read"],
        acked=totals["acked"],
        lost=0,
        lost_allowed_by_mode=totals["lost_allowed"],
        redelivered_after_cut=totals["redelivered"],
    )


async def test_power_cut_under_a_live_broker_loses_no_acknowledged_record_or_commit(tmp_path):
    """The whole broker over loopback (flush sync): three idempotent
    producers and a committer run until the power is cut at a random
    moment; the restarted broker serves every acknowledged record exactly
    once and the group's committed offset is at least the last one
    acknowledged (committed offsets never go backwards)."""
    runs = seeds(4000, short=2, long=40)
    totals = {"acked": 0, "read": 0, "commits": 0}
    for seed in runs:
        rng = random.Random(seed)
        data = tmp_path / f"broker-{seed}"
        data.mkdir()
        sim = PowerCutIO(str(data))
        history = History()
        commits: list[int] = []
        async with live_broker(data, io=sim) as b:
            await create_topic(b.address, "t", 3, segment_bytes=40_000, index_interval_bytes=2000)
            sim.arm()
            async with (
                producing(
                    b.address,
                    "t",
                    history,
                    producers=3,
                    partitions=3,
                    pad=200,
                    config={"delivery_timeout_ms": 5000},
                    close_timeout=0.5,
                ),
                trio.open_nursery() as side,
            ):
                side.start_soon(_committer, b.address, history, commits)
                # the cut comes at a random moment once writes are being
                # acknowledged: on a slow machine the first acknowledgement
                # (producer ids, metadata, the first group commit's fsync)
                # can take longer than the random delay, and a cut before
                # it would check nothing
                await history.until(lambda h=history: sum(h.acked_in.values()) > 0)
                await trio.sleep(rng.uniform(0.3, 1.0))
                sim.cut()
                side.cancel_scope.cancel()
        image = sim.materialize(seed)
        context = f"seed {seed} (replay: RELIABILITY_SEED={seed})\n{image}"
        assert sim.outside <= {"~lock", "~cluster-id"}, sim.outside
        async with live_broker(data) as b:
            reads = await read_topic(b.address, "t")
            committed = await _committed(b.address)
        history.finish()
        report = check(history, reads)
        assert report.ok, f"{report}\n{context}"
        assert report.acked > 0, context
        if commits:
            assert committed is not None, context
            assert committed >= commits[-1], (
                f"committed offset {committed} is below the last acknowledged commit "
                f"{commits[-1]}\n{context}"
            )
        totals["acked"] += report.acked
        totals["read"] += report.records_read
        totals["commits"] += len(commits)
    record_result(
        "power cut, live broker, flush sync",
        runs=len(runs),
        faults=len(runs),
        records_checked=totals["read"],
        acked=totals["acked"],
        commits_acked=totals["commits"],
        lost=0,
    )


async def _committer(address: str, history: History, commits: list[int]) -> None:
    """Commit, for group g, one past the newest acknowledged offset of t-0."""
    async with AsyncConsumer(address, group_id="g", enable_auto_commit=False) as consumer:
        consumer.assign([("t", 0)])
        while True:
            acked = [
                a.offset
                for a in list(history.attempts.values())
                if a.status == "acked" and a.partition == 0
            ]
            target = max(acked, default=-1) + 1
            if target > (commits[-1] if commits else 0):
                try:
                    await consumer.commit({("t", 0): target})
                except TailraceError:
                    return  # the disk died under the commit: unknown outcome
                commits.append(target)
            await trio.sleep(0.02)


async def _committed(address: str) -> int | None:
    async with AsyncConsumer(address, group_id="g", enable_auto_commit=False) as consumer:
        got = await consumer.committed(("t", 0))
    return None if got is None else got.offset
