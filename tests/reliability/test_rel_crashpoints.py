"""Scenario 3: crashes at the storage engine's crash points and in the offset
commit path, in-process and as a real process dying with ``os._exit``.

In-process, a LogManager leads a busy life: idempotent appends to a sync
topic with tiny segments (rolls, index entries), checkpoints, size
retention, and short-lived topics created and deleted. The machine stops
at the n-th hit of one crash point (PowerCutIO freezes it there), and the
directory is rewritten twice: as a process crash leaves it (every file as
the page cache held it) and as a power cut may (seeded). Reopened:

* no partition refused, no leftover or half-made file or topic
  (``audit_data_dir``), short-lived topics complete or absent;
* the oracle: no acknowledged record lost except below the log start that
  retention had reached, the log start never past where it was at the
  crash, no duplicates, order, dense offsets, index entries at batch starts.

The committed-offset store (``__consumer_offsets``: an OffsetStore with tiny
segments, snapshots and retention) is crashed the same way at each point
during commits: after reload no group's offset is below its last
acknowledged commit, and every loaded offset was committed.

Last, ``faulty_broker`` subprocesses exit at a crash point while producers
and a committer run; the broker restarted on the same directory passes the
same checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import zlib

import pytest
import trio
from harness import BrokerProcess
from rel_helpers import (
    Clock,
    FaultyBrokerProcess,
    Writer,
    committed_offset,
    create_topic,
    producing,
    run_committer,
)
from rel_profile import record_result, size

from tailrace.broker.coordinator.records import OffsetEntry
from tailrace.broker.coordinator.store import OffsetStore, StoreSettings
from tailrace.broker.faultkit.faults import CRASH_EXIT_CODE
from tailrace.broker.faultkit.oracle import (
    Attempt,
    History,
    audit_data_dir,
    check,
    read_topic_dir,
)
from tailrace.broker.faultkit.powercut import PowerCutIO
from tailrace.broker.faultkit.workload import read_topic
from tailrace.broker.log import CRASH_POINTS, LogConfig, LogManager
from tailrace.client import AsyncAdmin
from tailrace.client.errors import BrokerError, TailraceError
from tailrace.client.records import build_batch

PARTITIONS = 2
IMAGES = ("process crash", "power cut")
#: the log cleaner's points have their own scenario (test_rel_cleaner.py):
#: this busy life has no compacted topic; a follower's truncation and
#: appends have theirs in tests/log/test_follower.py (a single node has none)
BROKER_POINTS = [
    p for p in CRASH_POINTS if not p.startswith(("cleaner.", "truncation.", "follower."))
]


def _config() -> LogConfig:
    return LogConfig(
        flush="sync",
        segment_bytes=3000,
        index_interval_bytes=200,
        preallocate_bytes=4096,
        retention_bytes=9000,
        retention_ms=-1,
    )


def _materialize(sim: PowerCutIO, image: str, seed: int) -> str:
    if image == "process crash":
        return sim.materialize(seed, names="everything", contents="current")
    return sim.materialize(seed)


async def _busy_life(
    manager: LogManager, sim: PowerCutIO, history: History, writers: list[Writer], clock: Clock
) -> None:
    """Appends, flushes, checkpoints, retention and topic churn until the
    machine stops (every later storage call fails)."""
    rng = random.Random(1)
    logs = [manager.get("t", p) for p in range(PARTITIONS)]
    temp = 0
    for step in range(400):
        if sim.is_cut:
            return
        clock.now += 7
        try:
            w = writers[step % len(writers)]
            p = rng.randrange(PARTITIONS)
            data, vseqs = w.batch(p, rng.randint(1, 4), clock.now, 80)
            for s in vseqs:
                history.sent(w.name, s, "t", p)
            result = logs[p].append(data)
            await logs[p].wait_durable(result)
            for i, s in enumerate(vseqs):
                history.acked(w.name, s, p, result.base_offset + i)
            if step % 7 == 0:
                await manager.flush_due()
            if step % 11 == 0:
                await manager.checkpoint()
            if step % 13 == 0:
                await manager.enforce_retention()
            if step % 17 == 0:
                temp += 1
                await manager.create_topic(f"tmp{temp}", 2, {"segment_bytes": 2000})
                manager.get(f"tmp{temp}", 1).append(build_batch([(clock.now, None, b"x", None)]))
                if temp > 1:
                    await manager.delete_topic(f"tmp{temp - 1}")
        except (BrokerError, OSError):
            if not sim.is_cut:
                raise
            return


async def _crash_once(root: str, point: str, hit: int, image: str) -> dict:
    data_dir = os.path.join(root, f"{point}-{hit}-{image.replace(' ', '-')}")
    os.makedirs(data_dir)
    clock = Clock()
    cfg = _config()
    sim = PowerCutIO(data_dir, cut_at_point=point, cut_point_hit=hit)
    manager = LogManager.open(data_dir, cfg, io=sim, clock_ms=clock)
    await manager.create_topic("t", PARTITIONS)
    sim.arm()
    history = History(clock=clock)
    writers = [Writer(pid, PARTITIONS) for pid in (1, 2)]
    await _busy_life(manager, sim, history, writers, clock)
    if not sim.is_cut:
        return {"hit": False}
    starts_at_cut = {p: manager.get("t", p).log_start_offset for p in range(PARTITIONS)}
    with contextlib.suppress(OSError):
        await manager.aclose()
    seed = zlib.crc32(f"{point}:{hit}".encode()) & 0xFFFF
    context = f"{point} hit {hit}, {image}\n" + _materialize(sim, image, seed)
    manager = LogManager.open(data_dir, cfg, clock_ms=clock)
    try:
        assert not manager.failed, f"refused after the crash: {manager.failed}\n{context}"
        topics = manager.topics()
        assert "t" in topics, context
        starts = {p: manager.get("t", p).log_start_offset for p in range(PARTITIONS)}
        for p in range(PARTITIONS):
            assert starts[p] <= starts_at_cut[p], f"log start moved past the crash: {context}"
            # read everything once: lazily loaded indexes get checked (and rebuilt)
            log = manager.get("t", p)
            offset = log.log_start_offset
            while (s := log.read(offset, 1 << 20)) is not None:
                with s:
                    offset = s.last_offset + 1
    finally:
        await manager.aclose()
    history.finish()

    def below_start(a: Attempt) -> bool:
        return a.offset < starts[a.partition]

    report = check(history, read_topic_dir(data_dir, "t"), may_lose=below_start)
    assert report.ok, f"{report}\n{context}"
    problems = audit_data_dir(data_dir)
    assert not problems, "\n".join(problems) + "\n" + context
    return {"hit": True, "read": report.records_read, "acked": report.acked}


@pytest.mark.parametrize("image", IMAGES)
async def test_crash_points_restart_clean_and_keep_every_acknowledged_record(
    tmp_path, image, caplog
):
    caplog.set_level(logging.CRITICAL)
    hits = size(3, 25)
    runs = faults = read = acked = 0
    never = []
    for point in BROKER_POINTS:
        fired = 0
        for hit in range(hits):
            figures = await _crash_once(str(tmp_path), point, hit, image)
            runs += 1
            if figures["hit"]:
                fired += 1
                faults += 1
                read += figures["read"]
                acked += figures["acked"]
        if not fired:
            never.append(point)
    assert not never, f"the busy life never reached {never}"
    record_result(
        f"crash points ({image})",
        runs=runs,
        faults=faults,
        records_checked=read,
        acked=acked,
        lost=0,
    )


# --- the offset commit path -------------------------------------------------------

SMALL = StoreSettings(
    retention_bytes=40 * 1024,
    segment_bytes=10 * 1024,
    preallocate_bytes=4096,
    cleanup_policy="delete",
)
GROUPS = 4
KEYS = [(f"g{g}", ("orders", p)) for g in range(GROUPS) for p in range(3)]


class Seen:
    def __init__(self) -> None:
        self.state: dict = {}

    def __call__(self, group, tp, entry) -> None:
        if entry is None:
            self.state.pop((group, tp), None)
        else:
            self.state[(group, tp)] = entry


async def _commit_until_cut(store: OffsetStore, sim: PowerCutIO, manager: LogManager) -> dict:
    """Commit rising offsets until the machine stops; returns, per key, the
    last commit acknowledged (durable) and every offset ever committed."""
    rng = random.Random(5)
    acked: dict = {}
    offsets = dict.fromkeys(KEYS, 0)
    for step in range(3000):
        key = rng.choice(KEYS)
        offsets[key] += rng.randint(1, 50)
        try:
            result = store.append([(key[0], key[1], OffsetEntry(offsets[key], "m" * 30, step))])
            await store.wait_durable(result)
            acked[key] = offsets[key]
            if step % 40 == 0:
                await manager.checkpoint()
            if step % 60 == 0:
                await manager.enforce_retention()
        except (BrokerError, OSError):
            if not sim.is_cut:
                raise
            break
    return acked


@pytest.mark.parametrize("image", IMAGES)
async def test_crash_points_in_the_offset_commit_path_never_move_offsets_back(
    tmp_path, image, caplog
):
    caplog.set_level(logging.CRITICAL)
    hits = size(2, 15)
    runs = commits = 0
    for point in (
        "segment.roll",
        "segment.created",
        "index.append",
        "retention.renamed",
        "checkpoint.written",
    ):
        for hit in range(hits):
            data_dir = str(tmp_path / f"{point}-{hit}")
            os.makedirs(data_dir)
            sim = PowerCutIO(data_dir, cut_at_point=point, cut_point_hit=hit)
            manager = LogManager.open(data_dir, io=sim)
            store = OffsetStore(manager, Seen(), SMALL)
            await store.ensure_log()
            sim.arm()
            acked = await _commit_until_cut(store, sim, manager)
            assert sim.is_cut, f"{point} hit {hit} never reached"
            with contextlib.suppress(OSError):
                await manager.aclose()
            context = f"{point} hit {hit}, {image}\n" + _materialize(sim, image, hit)
            manager = LogManager.open(data_dir)
            seen = Seen()
            try:
                assert not manager.failed, context
                await OffsetStore(manager, seen, SMALL).load()
            finally:
                await manager.aclose()
            for key, offset in acked.items():
                got = seen.state.get(key)
                assert got is not None, f"{key}: committed {offset} is gone\n{context}"
                assert got.offset >= offset, (
                    f"{key}: offset went back from {offset} to {got.offset}\n{context}"
                )
            problems = audit_data_dir(data_dir)
            assert not problems, "\n".join(problems) + "\n" + context
            runs += 1
            commits += len(acked)
    record_result(
        f"crash points in the offset commit path ({image})",
        runs=runs,
        faults=runs,
        commit_keys_checked=commits,
        lost=0,
    )


# --- a real process exiting at a crash point ---------------------------------------


#: crash point -> (hits before the exit, broker settings, topic settings,
#: whether topics are created and deleted alongside)
PROCESS_POINTS = {
    "segment.roll": (3, {}, {}, False),
    "segment.created": (3, {}, {}, False),
    "index.append": (30, {}, {}, False),
    "retention.renamed": (
        1,
        {"TAILRACE_RETENTION_CHECK_INTERVAL_MS": "100"},
        {"retention_bytes": 90_000},
        False,
    ),
    "checkpoint.written": (1, {"TAILRACE_RECOVERY_CHECKPOINT_INTERVAL_MS": "200"}, {}, False),
    "topic.create.staged": (3, {}, {}, True),
    "topic.delete.renamed": (1, {}, {}, True),
}


async def _churn(address: str) -> None:
    """Create and delete topics, riding through broker restarts."""
    k = 0
    while True:
        k += 1
        try:
            async with AsyncAdmin(address) as admin:
                await admin.create_topic(f"churn{k}", partitions=2)
                if k > 1:
                    await admin.delete_topic(f"churn{k - 1}")
        except TailraceError:
            pass
        await trio.sleep(0.05)


async def test_a_broker_process_dying_at_a_crash_point_restarts_clean(tmp_path):
    """faulty_broker exits (os._exit, like kill -9 at that instant) at a
    crash point under producers, a committer and topic churn; restarted
    normally, it serves every acknowledged record once (retention aside),
    the committed offset held, and nothing half-made is left."""
    points = size(("segment.roll", "retention.renamed", "topic.create.staged"), BROKER_POINTS)
    runs = 0
    read = 0
    for point in points:
        after, env, topic_config, churn = PROCESS_POINTS[point]
        data = tmp_path / point
        history = History()
        commits: list[int] = []
        faulty = FaultyBrokerProcess(data, point, after=after, env=env)
        proc = BrokerProcess(data)
        await trio.to_thread.run_sync(faulty.start)
        listen = faulty.address
        try:
            await create_topic(
                listen, "t", 3, segment_bytes=30_000, index_interval_bytes=512, **topic_config
            )
            async with (
                producing(
                    listen,
                    "t",
                    history,
                    producers=3,
                    partitions=3,
                    pad=100,
                    config={"delivery_timeout_ms": 60_000, "request_timeout_ms": 2000},
                    close_timeout=30,
                ) as stop,
                trio.open_nursery() as side,
            ):
                side.start_soon(run_committer, listen, history, "t", commits)
                if churn:
                    side.start_soon(_churn, listen)
                code = await trio.to_thread.run_sync(faulty.wait_exit)
                assert code == CRASH_EXIT_CODE, f"{point}: exit status {code}"
                last_commit = commits[-1] if commits else None
                proc.listen = listen
                await trio.to_thread.run_sync(proc.start)
                if last_commit is not None:
                    got = await committed_offset(listen, "t")
                    assert got is not None
                    assert got >= last_commit, point
                await trio.sleep(0.3)
                stop.set()
                side.cancel_scope.cancel()
            history.finish()
            reads = await read_topic(listen, "t")
            assert await trio.to_thread.run_sync(proc.terminate) == 0
        finally:
            faulty.kill()
            proc.kill()
        starts = {r.partition: r.log_start for r in reads}
        report = check(history, reads, may_lose=lambda a, s=starts: a.offset < s[a.partition])
        assert report.ok, f"{point}: {report}"
        assert report.acked > 0
        problems = audit_data_dir(str(data))
        assert not problems, problems
        runs += 1
        read += report.records_read
    record_result(
        "broker process exiting at a crash point",
        runs=runs,
        faults=runs,
        records_checked=read,
        lost=0,
    )
