"""Kafka requests of large frames, from a real client.

A frame with at least 256 KiB still to come is received into a buffer of its
own (client/protocol/frames.py, LARGE_FRAME), which is writable; kio's
readers refused such a buffer, so every produce request of a batch above
256 KiB (librdkafka batches up to 1 MB by default) closed the connection and
the producer retried it forever. Found by tools/bench_kafka_clients.py.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tailrace.client import Admin

RECORDS = 6000
VALUE = bytes(range(100))


def test_a_produce_request_above_the_large_frame_size_is_stored_and_read_back(kafka_broker):
    with Admin(kafka_broker.address) as admin:
        admin.create_topic("big", 1)
    failed: list[str] = []
    producer = Producer(
        {
            "bootstrap.servers": kafka_broker.kafka_address,
            "enable.idempotence": True,
            # one batch of ~650 KB: every record is queued before the linger ends
            "linger.ms": 2000,
            "batch.size": 1_000_000,
            "on_delivery": lambda err, _msg: failed.append(str(err)) if err else None,
        }
    )
    for _ in range(RECORDS):
        producer.produce("big", VALUE)
    assert producer.flush(30) == 0
    assert failed == []
    with Admin(kafka_broker.address) as admin:
        assert admin.topic_offsets("big") == {0: (0, RECORDS)}

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_broker.kafka_address,
            "group.id": "big-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition("big", 0, OFFSET_BEGINNING)])
        got = []
        for _ in range(30):
            got += consumer.consume(RECORDS, 1.0)
            if len(got) >= RECORDS:
                break
    finally:
        consumer.close()
    assert [m.error() for m in got if m.error()] == []
    assert [m.offset() for m in got] == list(range(RECORDS))
    assert all(m.value() == VALUE for m in got)
