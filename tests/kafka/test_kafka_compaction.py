"""A compacted topic read by a Kafka client: after the broker's cleaner has
rewritten it (offset gaps, batches rewritten as magic 2, native batches
that lost nothing down-converted), kafka-python reads from the beginning
exactly the records the native consumer reads, at the same offsets, and
the latest value of every key."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka_harness import KafkaBroker

from tailrace.client import Admin
from tailrace.client import Consumer as NativeConsumer
from tailrace.client import Producer as NativeProducer

KEYS = 20
ROUNDS = 25


def _native_read(address: str, end: int) -> list[tuple[int, bytes, bytes]]:
    out: list[tuple[int, bytes, bytes]] = []
    with NativeConsumer(address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("kc", 0)])
        deadline = time.monotonic() + 30
        while (not out or out[-1][0] < end - 1) and time.monotonic() < deadline:
            out += [(r.offset, r.key, r.value) for r in consumer.poll(timeout_ms=500)]
    return out


def test_kafka_python_reads_a_compacted_topic_with_gaps(tmp_path):
    b = KafkaBroker(tmp_path / "data", cleaner__check_interval_ms=10)
    try:
        with Admin(b.address) as admin:
            admin.create_topic(
                "kc",
                1,
                {
                    "cleanup_policy": "compact",
                    "segment_bytes": 3000,
                    "min_cleanable_dirty_ratio": "0.01",
                },
            )
        latest: dict[bytes, bytes] = {}
        with NativeProducer(b.address) as producer:
            for r in range(ROUNDS):
                for k in range(KEYS):
                    key, value = b"k%02d" % k, b"native-%d-%d-" % (r, k) + b"n" * 40
                    producer.send("kc", value, key=key)
                    latest[key] = value
                producer.flush()
        kp = KafkaProducer(bootstrap_servers=b.kafka_address, compression_type="gzip")
        for r in range(ROUNDS):
            for k in range(0, KEYS, 2):
                key, value = b"k%02d" % k, b"kafka-%d-%d-" % (r, k) + b"q" * 40
                kp.send("kc", value, key=key, partition=0)
                latest[key] = value
            kp.flush()
        kp.close()
        plog = b.broker.manager.get("kc", 0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (plog.last_clean is None or plog.dirty_ratio > 0.2):
            time.sleep(0.05)
        assert plog.last_clean is not None
        end = plog.high_watermark
        native = _native_read(b.address, end)
        consumer = KafkaConsumer(
            bootstrap_servers=b.kafka_address,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=3000,
        )
        tp = TopicPartition("kc", 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        kafka = []
        for msg in consumer:
            kafka.append((msg.offset, msg.key, msg.value))
            if msg.offset >= end - 1:
                break
        consumer.close()
    finally:
        b.stop()
    assert kafka == native
    offsets = [o for o, _k, _v in kafka]
    assert offsets == sorted(set(offsets))
    assert len(offsets) < ROUNDS * KEYS * 3 // 2  # compacted: gaps
    assert offsets[-1] == end - 1
    assert {k: v for _o, k, v in kafka} == latest
