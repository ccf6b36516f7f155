"""A compacted topic on a real broker: a consumer reading the partition
from the start while the broker's cleaner rewrites it sees every latest
value exactly once, in offset order, and every record it sees is one that
was produced at that offset."""

from __future__ import annotations

import trio
from harness import broker_config

from tailrace.broker.app import Broker
from tailrace.client import AsyncAdmin, AsyncConsumer, AsyncProducer

KEYS = 40
ROUNDS = 60


async def test_consumer_from_the_start_while_the_cleaner_rewrites(nursery, tmp_path):
    b = Broker(broker_config(tmp_path / "data", cleaner__check_interval_ms=5))
    address = (await nursery.start(b.serve))[0].address
    async with AsyncAdmin(address) as admin:
        await admin.create_topic(
            "table",
            1,
            {
                "cleanup_policy": "compact",
                "segment_bytes": 2048,
                "min_cleanable_dirty_ratio": "0.01",
                "flush": "none",
            },
        )
    produced: dict[int, tuple[bytes, bytes]] = {}
    latest: dict[bytes, int] = {}
    seen: list[tuple[int, bytes, bytes]] = []
    done_producing = trio.Event()

    async def produce(rounds: range) -> None:
        async with AsyncProducer(address, linger_ms=0) as producer:
            for r in rounds:
                handles = []
                for k in range(KEYS):
                    key, value = b"key-%02d" % k, b"round-%03d-" % r + b"x" * 30
                    handles.append((key, value, await producer.send("table", value, key=key)))
                for key, value, handle in handles:
                    meta = await handle
                    produced[meta.offset] = (key, value)
                    latest[key] = meta.offset
                await trio.sleep(0.002)
        done_producing.set()

    async def consume() -> None:
        async with AsyncConsumer(
            address,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1024,
            max_poll_records=25,
        ) as consumer:
            consumer.assign([("table", 0)])
            while True:
                for r in await consumer.poll(timeout_ms=200):
                    seen.append((r.offset, r.key, r.value))
                if done_producing.is_set() and seen and seen[-1][0] >= max(produced):
                    return
                await trio.sleep(0.003)  # let the cleaner in between the fetches

    await produce(range(ROUNDS))  # the cleaner works on it meanwhile
    done_producing = trio.Event()
    async with trio.open_nursery() as inner:
        # more rounds while the consumer reads from the start: the cleaner
        # keeps rewriting the segments ahead of (and under) the reader
        inner.start_soon(produce, range(ROUNDS, 2 * ROUNDS))
        inner.start_soon(consume)
    offsets = [o for o, _k, _v in seen]
    assert offsets == sorted(set(offsets))  # increasing, no record twice
    for offset, key, value in seen:
        assert produced[offset] == (key, value)  # nothing made up, nothing moved
    got = {o for o, _k, _v in seen}
    assert all(offset in got for offset in latest.values())  # every latest value
    plog = b.manager.get("table", 0)
    assert plog.last_clean is not None
    assert b.cleaner is not None
    # and the cleaner really removed records under the reader's feet
    assert len(seen) < len(produced)
    b.shutdown()
