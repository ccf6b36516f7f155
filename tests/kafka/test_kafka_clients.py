"""Real Kafka clients against a real broker's Kafka listener: kafka-python 3
and aiokafka 0.14 create, describe and delete topics and read watermarks."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTP
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewTopic as AioNewTopic
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


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
