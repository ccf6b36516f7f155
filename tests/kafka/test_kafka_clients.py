"""Real Kafka clients against a real broker's Kafka listener: kafka-python 3
and aiokafka 0.14 create, describe and delete topics, read watermarks,
produce (idempotent, compressed) and consume field by field, and records
cross between the Kafka and the native clients both ways."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTP
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewTopic as AioNewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tailrace.broker.metrics import definitions as metrics
from tailrace.client import Admin
from tailrace.client import Consumer as NativeConsumer
from tailrace.client import Producer as NativeProducer


def test_kafka_python_admin_and_watermarks(kafka_broker):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.kafka_address)
    try:
        admin.create_topics([NewTopic("kp", 3, 1)])
        assert "kp" in admin.list_topics()
        tps = [TopicPartition("kp", p) for p in range(3)]
        assert consumer.partitions_for_topic("kp") == {0, 1, 2}
        assert consumer.beginning_offsets(tps) == dict.fromkeys(tps, 0)
        assert consumer.end_offsets(tps) == dict.fromkeys(tps, 0)
        admin.delete_topics(["kp"])
        assert "kp" not in admin.list_topics()
    finally:
        consumer.close()
        admin.close()


def test_aiokafka_admin_and_watermarks(kafka_broker):
    async def scenario() -> tuple[list[str], dict, list[str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
        await admin.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.kafka_address)
        await consumer.start()
        try:
            await admin.create_topics([AioNewTopic("aio", 3, 1)])
            before = await admin.list_topics()
            tps = [AioTP("aio", p) for p in range(3)]
            ends = await consumer.end_offsets(tps)
            await admin.delete_topics(["aio"])
            after = await admin.list_topics()
        finally:
            await consumer.stop()
            await admin.close()
        return before, {tp.partition: off for tp, off in ends.items()}, after

    before, ends, after = asyncio.run(scenario())
    assert "aio" in before
    assert ends == {0: 0, 1: 0, 2: 0}
    assert "aio" not in after


def _records(n: int, topic_partitions: int) -> list[dict]:
    base = 1_700_000_000_000
    return [
        {
            "partition": i % topic_partitions,
            "key": b"key-%d" % i,
            "value": b"value-%d" % i * 3,
            "headers": [("h", b"%d" % i), ("empty", b"")],
            "timestamp_ms": base + i * 10,
        }
        for i in range(n)
    ]


def _stored_bytes_served() -> float:
    """Fetch bytes served as stored: by sendfile, or read and written in one
    call for a small response (down-converted bytes are counted in neither)."""
    return sum(metrics.FETCH_BYTES[path]._value.get() for path in ("sendfile", "copy"))


def test_aiokafka_idempotent_produce_then_consume_field_by_field(kafka_broker):
    wanted = _records(30, 3)

    async def scenario():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
        await admin.start()
        await admin.create_topics([AioNewTopic("aio-data", 3, 1)])
        await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_broker.kafka_address,
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
        )
        await producer.start()
        try:
            for r in wanted:
                await producer.send_and_wait("aio-data", **r)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.kafka_address)
        await consumer.start()
        stored_before = _stored_bytes_served()
        try:
            tps = [AioTP("aio-data", p) for p in range(3)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            got = []
            while len(got) < len(wanted):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend(records)
            ends = await consumer.end_offsets(tps)
            times = await consumer.offsets_for_times(
                {AioTP("aio-data", 1): wanted[7]["timestamp_ms"]}
            )
        finally:
            await consumer.stop()
        return got, ends, times, _stored_bytes_served() - stored_before

    got, ends, times, served_as_stored = asyncio.run(scenario())
    # only Kafka-format batches in these partitions: served as stored
    assert served_as_stored > 0
    assert {tp.partition: off for tp, off in ends.items()} == {0: 10, 1: 10, 2: 10}
    # record 7 went to partition 1 as its 3rd record (offset 2)
    assert times[AioTP("aio-data", 1)].offset == 2
    by_key = {r.key: r for r in got}
    assert len(by_key) == 30
    for i, w in enumerate(wanted):
        r = by_key[w["key"]]
        assert (r.partition, r.value, r.timestamp) == (
            w["partition"],
            w["value"],
            w["timestamp_ms"],
        )
        assert list(r.headers) == w["headers"]
        assert r.offset == i // 3


def test_kafka_python_produce_and_the_native_consumer_reads_it_and_the_reverse(kafka_broker):
    producer = KafkaProducer(bootstrap_servers=kafka_broker.kafka_address, acks="all")
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
    try:
        admin.create_topics([NewTopic("crossed", 1, 1)])
        for i in range(5):
            producer.send(
                "crossed",
                value=b"k%d" % i,
                key=b"%d" % i,
                headers=[("from", b"kafka")],
                timestamp_ms=1_700_000_000_000 + i,
                partition=0,
            )
        producer.flush(30)
    finally:
        producer.close()
        admin.close()
    with NativeProducer(kafka_broker.address) as native:
        for i in range(5, 10):
            native.send(
                "crossed",
                b"k%d" % i,
                key=b"%d" % i,
                headers=[("from", b"native")],
                partition=0,
                timestamp=1_700_000_000_000 + i,
            )
        native.flush(30)
    with NativeConsumer(kafka_broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("crossed", 0)])
        got_native = []
        deadline = time.monotonic() + 30
        while len(got_native) < 10 and time.monotonic() < deadline:
            got_native.extend(consumer.poll(timeout_ms=500))
    expected = [(i, b"%d" % i, b"k%d" % i, 1_700_000_000_000 + i) for i in range(10)]
    assert [(r.offset, r.key, r.value, r.timestamp) for r in got_native] == expected
    assert [dict(r.headers)["from"] for r in got_native] == [b"kafka"] * 5 + [b"native"] * 5

    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.kafka_address)
    try:
        tp = TopicPartition("crossed", 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got_kafka = []
        deadline = time.monotonic() + 30
        while len(got_kafka) < 10 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got_kafka.extend(records)
    finally:
        consumer.close()
    assert [(r.offset, r.key, r.value, r.timestamp) for r in got_kafka] == expected
    # (this slice mixes both formats: converted on the copy path, whole)
    assert [dict(r.headers)["from"] for r in got_kafka] == [b"kafka"] * 5 + [b"native"] * 5


def test_down_converted_fetches_stay_under_the_budget_and_give_it_back(kafka_broker):
    """Native batches are down-converted in memory for Kafka consumers; the
    bytes not yet written count against a per-broker budget
    (broker/kafka/copy_budget.py). With a budget far below the topic, a
    consumer still reads every record (each fetch gets what is left), and
    once the responses are written the budget is whole again."""
    budget = kafka_broker.broker.context.kafka_copy_budget
    budget.limit = 64 * 1024
    with Admin(kafka_broker.address) as admin:
        admin.create_topic("converted", partitions=1)
    with NativeProducer(kafka_broker.address, linger_ms=5) as native:
        for i in range(300):
            native.send("converted", b"%05d" % i + b"x" * 2000, partition=0)
        native.flush(30)
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_broker.kafka_address, auto_offset_reset="earliest"
    )
    try:
        tp = TopicPartition("converted", 0)
        consumer.assign([tp])
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(values) < 300 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(r.value[:5] for r in records)
    finally:
        consumer.close()
    assert values == [b"%05d" % i for i in range(300)]
    assert budget.held == 0
