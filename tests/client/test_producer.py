"""The producers against a real broker: order, partitioning, batching,
back-pressure, idempotent retries, both APIs."""

from __future__ import annotations

import random
import threading
import time

import pytest
import trio
from harness import LossyProxy

from tailrace.client import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    BufferFullError,
    ClientClosedError,
    Consumer,
    Producer,
)
from tailrace.client.errors import RecordTooLargeError, UnknownTopicOrPartitionError
from tailrace.client.producer import partition_for_key
from tailrace.client.protocol import ApiKey
from tailrace.client.records import iter_headers


async def make_topic(address, name, partitions=1, **config):
    async with AsyncAdmin(address) as admin:
        await admin.create_topic(name, partitions=partitions, config=config or None)


async def read_all(address, topic, partitions, expected, **config):
    async with AsyncConsumer(address, auto_offset_reset="earliest", **config) as consumer:
        consumer.assign([(topic, p) for p in range(partitions)])
        got = []
        with trio.fail_after(20):
            while len(got) < expected:
                got += await consumer.poll(timeout_ms=1000)
        got += await consumer.poll(timeout_ms=100)
    return got


async def test_order_is_kept_per_partition(broker):
    await make_topic(broker.address, "o", partitions=3, flush="none")
    async with AsyncProducer(broker.address, linger_ms=1, batch_bytes=4096) as producer:
        for i in range(3000):
            await producer.send("o", b"%d" % i, partition=i % 3)
    got = await read_all(broker.address, "o", 3, 3000)
    for p in range(3):
        values = [int(r.value) for r in got if r.partition == p]
        assert values == sorted(values)
        assert len(values) == 1000
        offsets = [r.offset for r in got if r.partition == p]
        assert offsets == list(range(1000))


async def test_keys_land_where_kafkas_partitioner_puts_them(broker):
    await make_topic(broker.address, "k", partitions=7, flush="none")
    keys = [b"user-%d" % i for i in range(200)] + [b"", b"21", b"foobar"]
    async with AsyncProducer(broker.address) as producer:
        handles = [await producer.send("k", b"v", key=k) for k in keys]
    for key, handle in zip(keys, handles, strict=True):
        metadata = await handle
        assert metadata.partition == partition_for_key(key, 7)
    got = await read_all(broker.address, "k", 7, len(keys))
    assert {(r.key, r.partition) for r in got} == {(k, partition_for_key(k, 7)) for k in keys}


async def test_records_without_key_fill_batches_on_one_partition(broker):
    await make_topic(broker.address, "s", partitions=4, flush="none")
    async with AsyncProducer(broker.address, linger_ms=200) as producer:
        handles = [await producer.send("s", b"x" * 10) for _ in range(50)]
        await producer.flush()
    partitions = {(await h).partition for h in handles}
    assert len(partitions) == 1  # sticky: one lingering batch, one partition


async def test_linger_makes_one_batch_of_many_records(broker):
    await make_topic(broker.address, "l", flush="none")
    async with AsyncProducer(broker.address, linger_ms=300) as producer:
        for i in range(100):
            await producer.send("l", b"%03d" % i)
    # read raw: how many batches hold the 100 records?
    plog = broker.broker.manager.get("l", 0)
    with plog.read(0, 1 << 20) as fslice:
        data = fslice.read_bytes()
    headers = [h for _pos, h in iter_headers(data)]
    assert sum(h.record_count for h in headers) == 100
    assert len(headers) == 1


async def test_record_metadata_and_headers_and_timestamps(broker):
    await make_topic(broker.address, "m", flush="none")
    async with AsyncProducer(broker.address) as producer:
        h1 = await producer.send(
            "m", b"one", key=b"k", headers=[("a", b"1"), ("b", None)], timestamp=1234
        )
        h2 = await producer.send("m", "two", headers={"c": "3"})
        h3 = await producer.send("m", None, key="tomb")
    m1, m2, m3 = await h1, await h2, await h3
    assert (m1.topic, m1.partition, m1.offset, m1.timestamp) == ("m", 0, 0, 1234)
    assert (m2.offset, m3.offset) == (1, 2)
    got = await read_all(broker.address, "m", 1, 3)
    assert got[0].headers == (("a", b"1"), ("b", None))
    assert got[0].timestamp == 1234
    assert got[1].value == b"two"
    assert got[1].headers == (("c", b"3"),)
    assert got[2].key == b"tomb"
    assert got[2].value is None


async def test_gzip_batches_round_trip(broker):
    await make_topic(broker.address, "z", flush="none")
    values = [random.randbytes(50) + b"a" * 500 for _ in range(300)]
    async with AsyncProducer(broker.address, compression="gzip", linger_ms=50) as producer:
        for v in values:
            await producer.send("z", v)
    got = await read_all(broker.address, "z", 1, 300)
    assert [r.value for r in got] == values
    size = broker.broker.manager.get("z", 0).size_bytes
    assert size < sum(len(v) for v in values) / 3  # it really was compressed


async def test_bad_arguments_fail_fast(broker):
    await make_topic(broker.address, "b", flush="none")
    async with AsyncProducer(broker.address) as producer:
        with pytest.raises(TypeError):
            await producer.send("b", 12345)
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send("b", b"x", partition=5)
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send("no-such-topic", b"x")
        with pytest.raises(RecordTooLargeError):
            await producer.send("b", b"x" * (9 << 20))
    with pytest.raises(ClientClosedError):
        await producer.send("b", b"late")


async def test_acks_zero_records_land_without_answers(broker):
    await make_topic(broker.address, "a0", flush="none")
    async with AsyncProducer(broker.address, acks=0) as producer:
        handles = [await producer.send("a0", b"%d" % i) for i in range(500)]
        await producer.flush()
    assert [(await h).offset for h in handles] == [-1] * 500
    got = await read_all(broker.address, "a0", 1, 500)
    assert [int(r.value) for r in got] == list(range(500))


async def test_back_pressure_when_the_buffer_is_full(nursery):
    """A 'broker' that accepts connections and never answers: the buffer
    fills, send waits max_block_ms, then raises BufferFullError."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    address = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    async def mute(stream):
        async with stream:
            await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, mute, listeners)
    sent = 0
    with trio.fail_after(10):
        async with AsyncProducer(
            address, buffer_bytes=64 * 1024, max_block_ms=300, enable_idempotence=False, linger_ms=1
        ) as producer:
            producer._core.partition_counts["t"] = 1  # metadata would never come either

            async def fill() -> None:
                nonlocal sent
                for _ in range(10_000):
                    await producer.send("t", b"x" * 1000, partition=0)
                    sent += 1

            start = trio.current_time()
            with pytest.raises(BufferFullError):
                await fill()
            waited = trio.current_time() - start
            assert 30 <= sent <= 70  # about 64 KiB of records were accepted
            assert waited >= 0.29
            await producer.close(timeout=0.2)  # unacknowledged records fail


async def test_retries_after_lost_responses_never_duplicate(broker, nursery):
    """The proxy loses every third Produce response after the broker appended
    the batch: the producer resends, the broker recognises the batch and the
    log holds each record exactly once, in order."""
    await make_topic(broker.address, "r", partitions=2)
    produce_responses = 0

    def drop(api_key):
        nonlocal produce_responses
        if api_key != ApiKey.PRODUCE:
            return False
        produce_responses += 1
        return produce_responses % 3 == 0

    proxy = LossyProxy(broker.address, drop)
    address = await nursery.start(proxy.serve)
    async with AsyncProducer(
        address, linger_ms=2, batch_bytes=2048, retry_backoff_ms=10
    ) as producer:
        handles = [await producer.send("r", b"%05d" % i, partition=i % 2) for i in range(2000)]
        await producer.flush()
    assert proxy.dropped >= 5
    metas = [await h for h in handles]
    got = await read_all(broker.address, "r", 2, 2000)
    values = [r.value for r in got]
    assert len(values) == len(set(values)) == 2000
    for p in range(2):
        mine = [int(r.value) for r in got if r.partition == p]
        assert mine == sorted(mine)
    by_value = {r.value: (r.partition, r.offset) for r in got}
    for i, m in enumerate(metas):
        assert by_value[b"%05d" % i] == (m.partition, m.offset)


# --- the blocking producer ----------------------------------------------------


def test_blocking_producer_from_several_threads(threaded_broker):
    from tailrace.client import Admin

    with Admin(threaded_broker.address) as admin:
        admin.create_topic("mt", partitions=2, config={"flush": "none"})
    futures = []
    lock = threading.Lock()
    with Producer(threaded_broker.address, linger_ms=2) as producer:

        def worker(n):
            for i in range(500):
                f = producer.send("mt", b"%d-%d" % (n, i), key=b"%d" % n)
                with lock:
                    futures.append(f)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        producer.flush()
        assert all(f.done() for f in futures)
    callbacks = []
    with Producer(threaded_broker.address) as producer:
        f = producer.send("mt", b"cb", partition=1)
        f.add_done_callback(callbacks.append)
        metadata = f.result(timeout=10)
    assert callbacks == [f]
    assert f.exception() is None
    assert metadata.partition == 1
    with Consumer(threaded_broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("mt", 0), ("mt", 1)])
        got = []
        while len(got) < 2001:
            got += consumer.poll(timeout_ms=5000)
    for n in range(4):
        mine = [int(r.value.split(b"-")[1]) for r in got if r.value.startswith(b"%d-" % n)]
        assert mine == list(range(500))  # per key, in order


def test_linger_zero_threads_mixing_direct_and_trio_sends_lose_and_repeat_nothing(
    threaded_broker,
):
    """Linger 0 from four threads, some waiting for each answer and some
    not, plus records sent from completion callbacks (on the trio thread):
    direct sends from the threads, pipelined behind unanswered requests,
    interleave with the trio thread's; every record is stored once, each
    key's in order, under one producer epoch."""
    from tailrace.client import Admin

    with Admin(threaded_broker.address) as admin:
        admin.create_topic("mix0", partitions=2, config={"flush": "none"})
    futures = []
    lock = threading.Lock()
    with Producer(threaded_broker.address, linger_ms=0) as producer:
        sender = producer._core.sender
        assert sender is not None
        producer.send("mix0", b"warm-up", key=b"w").result(30)
        epoch = sender.producer_epoch

        def echo(value):
            def send_from_callback(f):
                # on the trio thread: a record sent from a completion callback
                assert f.exception() is None
                producer.send("mix0", b"cb-" + value, key=b"cb")

            return send_from_callback

        def worker(n):
            for i in range(300):
                value = b"%d-%d" % (n, i)
                f = producer.send("mix0", value, key=b"%d" % n)
                if i % 50 == 0:
                    f.add_done_callback(echo(value))
                if n % 2 == 0:
                    f.result(30)  # closed loop: the next send finds no request
                elif i % 7 == 0:
                    time.sleep(0.0005)
                with lock:
                    futures.append(f)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        producer.flush()
        assert all(f.done() and f.exception() is None for f in futures)
        assert sender.direct_requests > 0
        assert sender.producer_epoch == epoch
    with Consumer(threaded_broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("mix0", 0), ("mix0", 1)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 1 + 1200 + 24 and time.monotonic() < deadline:
            got += consumer.poll(timeout_ms=1000)
        assert consumer.poll(timeout_ms=300) == []
    values = [r.value for r in got]
    assert len(values) == len(set(values)) == 1 + 1200 + 24
    for n in range(4):
        mine = [int(v.split(b"-")[1]) for v in values if v.startswith(b"%d-" % n)]
        assert mine == list(range(300))  # per key, in order, once


def test_blocking_producer_close_with_broker_gone_fails_pending_records(threaded_broker):
    from tailrace.client import Admin

    with Admin(threaded_broker.address) as admin:
        admin.create_topic("gone")
    producer = Producer(threaded_broker.address, linger_ms=1, delivery_timeout_ms=60_000)
    producer.send("gone", b"first").result(10)
    threaded_broker.stop()
    late = producer.send("gone", b"second")
    producer.close(timeout=0.5)
    assert late.done()
    assert late.exception() is not None
