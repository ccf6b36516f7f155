"""Scenario: crashes at the log cleaner's crash points (cleaner.py), as a
process crash and as a power cut, checked against what was acknowledged.

In-process, a LogManager runs a compacted topic (flush = sync, tiny
segments) through puts and tombstones over a few keys, group-commit syncs,
checkpoints and a cleaning every few appends, some with a tiny key map
(several passes). The machine stops at the n-th hit of one cleaner crash
point (PowerCutIO freezes it there); the directory is rewritten as a process
crash leaves it (the page cache) and as a power cut may (seeded). Reopened:

* no partition refused, no leftover file (no ``.cleaned`` file, no swap
  manifest: ``audit_data_dir``);
* nothing compaction should keep is lost: for every key, a record at or
  after its last acknowledged one is there (the latest value survives);
* nothing is made up or moved: every record read was appended at that
  offset, with that key and value; offsets increase;
* the cleaner runs again on the recovered log and the same holds.

Last, ``faulty_broker`` subprocesses (the broker's own cleaner, every 10 ms)
exit with ``os._exit`` at a cleaner point while a producer writes keyed
records; the broker restarted on the same directory serves, for every key,
a record at or after the last acknowledged one, and only records that were
sent.
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
from rel_helpers import Clock, FaultyBrokerProcess, create_topic
from rel_profile import record_result, size

from tailrace.broker.faultkit.faults import CRASH_EXIT_CODE
from tailrace.broker.faultkit.oracle import audit_data_dir
from tailrace.broker.faultkit.powercut import PowerCutIO
from tailrace.broker.log import CRASH_POINTS, LogConfig, LogManager
from tailrace.broker.log.cleaner import CleanerSettings
from tailrace.client import AsyncAdmin, AsyncConsumer, AsyncProducer
from tailrace.client.errors import BrokerError, TailraceError
from tailrace.client.records import build_batch, iter_headers, iter_records, validate_batch

IMAGES = ("process crash", "power cut")
POINTS = [p for p in CRASH_POINTS if p.startswith("cleaner.")]
KEYS = [b"key-%02d" % i for i in range(12)]
SMALL_MAP = CleanerSettings(key_map_bytes=600)


def _config() -> LogConfig:
    return LogConfig(
        flush="sync",
        cleanup_policy="compact",
        segment_bytes=1500,
        index_interval_bytes=200,
        preallocate_bytes=4096,
        retention_ms=-1,
        delete_retention_ms=10**12,
        min_cleanable_dirty_ratio=0.0,
    )


def _materialize(sim: PowerCutIO, image: str, seed: int) -> str:
    if image == "process crash":
        return sim.materialize(seed, names="everything", contents="current")
    return sim.materialize(seed)


def _read(log) -> list[tuple[int, bytes | None, bytes | None]]:  # type: ignore[no-untyped-def]
    out = []
    offset = log.log_start_offset
    while (s := log.read(offset, 1 << 20)) is not None:
        with s:
            data = s.read_bytes()
        for pos, h in iter_headers(data):
            validate_batch(data, pos, max_batch_bytes=1 << 30, allow_gaps=True)
            out += [(o, k, v) for o, _t, k, v, _h in iter_records(data, h, pos) if o >= offset]
        offset = s.last_offset + 1
    return out


def _check(records, appended, acked_latest, context: str) -> None:  # type: ignore[no-untyped-def]
    offsets = [o for o, _k, _v in records]
    assert offsets == sorted(set(offsets)), f"offsets out of order or repeated\n{context}"
    for offset, key, value in records:
        assert appended.get(offset) == (key, value), f"offset {offset} was not appended\n{context}"
    newest: dict[bytes, int] = {}
    for offset, key, _v in records:
        newest[key] = offset
    for key, offset in acked_latest.items():
        assert newest.get(key, -1) >= offset, (
            f"{key!r}: acknowledged at {offset}, newest left {newest.get(key)}\n{context}"
        )


async def _life(manager: LogManager, sim: PowerCutIO, clock: Clock, appended, acked) -> int:  # type: ignore[no-untyped-def]
    """Puts, tombstones and cleanings until the machine stops; returns the
    cleanings that completed."""
    rng = random.Random(3)
    log = manager.get("c", 0)
    cleanings = 0
    for step in range(600):
        if sim.is_cut:
            return cleanings
        clock.now += 5
        try:
            recs = [
                (clock.now, rng.choice(KEYS), None if rng.random() < 0.1 else b"v%05d" % step, None)
                for _ in range(rng.randint(1, 3))
            ]
            result = log.append(build_batch(recs))
            for i, (_ts, key, value, _h) in enumerate(recs):
                appended[result.base_offset + i] = (key, value)
            await log.wait_durable(result)
            for i, (_ts, key, _value, _h) in enumerate(recs):
                acked[key] = result.base_offset + i
            if step % 6 == 5:
                settings = SMALL_MAP if step % 12 == 5 else None
                if await log.clean(settings, force=True) is not None:
                    cleanings += 1
            if step % 17 == 0:
                await manager.checkpoint()
        except (BrokerError, OSError):
            if not sim.is_cut:
                raise
            return cleanings
    return cleanings


async def _crash_once(root: str, point: str, hit: int, image: str) -> dict:
    data_dir = os.path.join(root, f"{point}-{hit}-{image.replace(' ', '-')}")
    os.makedirs(data_dir)
    clock = Clock()
    cfg = _config()
    sim = PowerCutIO(data_dir, cut_at_point=point, cut_point_hit=hit)
    manager = LogManager.open(data_dir, cfg, io=sim, clock_ms=clock)
    await manager.create_topic("c", 1)
    sim.arm()
    appended: dict[int, tuple[bytes, bytes | None]] = {}
    acked: dict[bytes, int] = {}
    await _life(manager, sim, clock, appended, acked)
    if not sim.is_cut:
        await manager.aclose()
        return {"hit": False}
    with contextlib.suppress(OSError):
        await manager.aclose()
    seed = zlib.crc32(f"{point}:{hit}:{image}".encode()) & 0xFFFF
    context = f"{point} hit {hit}, {image}\n" + _materialize(sim, image, seed)
    manager = LogManager.open(data_dir, cfg, clock_ms=clock)
    try:
        assert not manager.failed, f"refused after the crash: {manager.failed}\n{context}"
        log = manager.get("c", 0)
        records = _read(log)
        _check(records, appended, acked, context)
        # the cleaner goes on from the recovered state
        await log.clean(force=True)
        _check(_read(log), appended, acked, context + "\n(after cleaning again)")
    finally:
        await manager.aclose()
    problems = audit_data_dir(data_dir)
    assert not problems, "\n".join(problems) + "\n" + context
    return {"hit": True, "read": len(records), "acked": len(acked)}


@pytest.mark.parametrize("image", IMAGES)
async def test_cleaner_crash_points_lose_nothing_compaction_keeps(tmp_path, image, caplog):
    caplog.set_level(logging.CRITICAL)
    hits = size(2, 12)
    runs = faults = read = 0
    never = []
    for point in POINTS:
        fired = 0
        for hit in range(hits):
            figures = await _crash_once(str(tmp_path), point, hit, image)
            runs += 1
            if figures["hit"]:
                fired += 1
                faults += 1
                read += figures["read"]
        if not fired:
            never.append(point)
    assert not never, f"the cleanings never reached {never}"
    record_result(
        f"cleaner crash points ({image})",
        runs=runs,
        faults=faults,
        records_checked=read,
        lost=0,
    )


async def _produce_until_gone(address: str, sent: set, acked: dict) -> None:
    try:
        async with AsyncProducer(
            address, linger_ms=0, delivery_timeout_ms=5_000, request_timeout_ms=1_000
        ) as producer:
            step = 0
            while True:
                key, value = KEYS[step % len(KEYS)], b"v%06d" % step + b"p" * 60
                sent.add((key, value))
                meta = await (await producer.send("c", value, key=key))
                acked[key] = meta.offset
                step += 1
    except (TailraceError, OSError):
        return


async def _read_topic(address: str) -> list[tuple[int, bytes | None, bytes | None]]:
    async with AsyncAdmin(address) as admin:
        end = (await admin.describe_topic("c")).partitions[0].high_watermark
    out: list[tuple[int, bytes | None, bytes | None]] = []
    async with AsyncConsumer(address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("c", 0)])
        with trio.fail_after(60):
            while not out or out[-1][0] < end - 1:
                out += [(r.offset, r.key, r.value) for r in await consumer.poll(timeout_ms=500)]
    return out


async def test_a_broker_process_dying_at_a_cleaner_point_keeps_every_latest_value(tmp_path):
    points = size(("cleaner.committed", "cleaner.swapping"), POINTS)
    runs = read = 0
    for point in points:
        data = tmp_path / point
        faulty = FaultyBrokerProcess(
            data, point, after=1, env={"TAILRACE_CLEANER_CHECK_INTERVAL_MS": "10"}
        )
        proc = BrokerProcess(data)
        sent: set = set()
        acked: dict[bytes, int] = {}
        await trio.to_thread.run_sync(faulty.start)
        listen = faulty.address
        try:
            await create_topic(
                listen,
                "c",
                1,
                cleanup_policy="compact",
                segment_bytes=2000,
                index_interval_bytes=200,
                min_cleanable_dirty_ratio="0.01",
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_produce_until_gone, listen, sent, acked)
                code = await trio.to_thread.run_sync(faulty.wait_exit)
                assert code == CRASH_EXIT_CODE, f"{point}: exit status {code}"
            proc.listen = listen
            await trio.to_thread.run_sync(proc.start)
            records = await _read_topic(listen)
            assert await trio.to_thread.run_sync(proc.terminate) == 0
        finally:
            faulty.kill()
            proc.kill()
        offsets = [o for o, _k, _v in records]
        assert offsets == sorted(set(offsets)), point
        assert all((k, v) in sent for _o, k, v in records), point
        newest = {k: o for o, k, _v in records}
        lost = {k: o for k, o in acked.items() if newest.get(k, -1) < o}
        assert not lost, f"{point}: latest acknowledged values lost: {lost}"
        assert acked
        problems = audit_data_dir(str(data))
        assert not problems, problems
        runs += 1
        read += len(records)
    record_result(
        "broker process exiting at a cleaner crash point",
        runs=runs,
        faults=runs,
        records_checked=read,
        lost=0,
    )
