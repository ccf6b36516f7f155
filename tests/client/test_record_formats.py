"""Both record formats through a real broker: the native producer writing
either, a Kafka client's batches produced raw, and the native consumer
reading a partition that holds both, field by field."""

from __future__ import annotations

import pytest
import trio
from batch_samples import RECORDS, build_with

from tailrace.client import AsyncAdmin, AsyncConsumer, AsyncProducer, Record
from tailrace.client.protocol import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from tailrace.client.records import iter_headers
from tailrace.client.transport import BrokerConnection


def _value(i: int) -> bytes:
    return b"%05d" % i


async def _send(producer, topic, start, n, ts0):
    handles = []
    for i in range(start, start + n):
        handles.append(
            await producer.send(
                topic,
                _value(i),
                key=b"k%d" % i if i % 2 else None,
                headers=[("n", b"%d" % i), ("null", None)] if i % 3 else None,
                partition=0,
                timestamp=ts0 + i,
            )
        )
    await producer.flush()
    return [(await h).offset for h in handles]


async def _drain(consumer, n):
    got = []
    with trio.fail_after(30):
        while len(got) < n:
            got += await consumer.poll(timeout_ms=500)
    return got


async def _raw_batches(address, topic, offset):
    async with trio.open_nursery() as nursery:
        conn = await BrokerConnection.connect(nursery, address)
        response = await conn.request(
            FetchRequest(
                max_wait_ms=0,
                min_bytes=1,
                max_bytes=1 << 20,
                topics=[
                    FetchTopic(
                        name=topic,
                        partitions=[
                            FetchPartition(partition=0, fetch_offset=offset, max_bytes=1 << 20)
                        ],
                    )
                ],
            )
        )
        await conn.aclose()
        nursery.cancel_scope.cancel()
    return bytes(response.topics[0].partitions[0].records)


@pytest.mark.parametrize("compression", [None, "gzip", "lz4", "zstd", "snappy"])
async def test_native_consumer_reads_a_partition_of_both_formats(broker, compression):
    topic = "mixed"
    async with AsyncAdmin(broker.address) as admin:
        await admin.create_topic(topic, partitions=1, config={"flush": "none"})
    ts0 = 1_700_000_000_000
    offsets = []
    native_compression = compression if compression in (None, "gzip") else "gzip"
    # alternate rounds: native batches, Kafka batches, native again
    for k, fmt in enumerate(["native", "kafka", "native", "kafka"]):
        codec = native_compression if fmt == "native" else compression
        async with AsyncProducer(
            broker.address, record_format=fmt, compression=codec, linger_ms=1, batch_bytes=1024
        ) as producer:
            offsets += await _send(producer, topic, 40 * k, 40, ts0)
    assert offsets == list(range(160))

    async with AsyncConsumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        got = await _drain(consumer, 160)
    assert [type(r) for r in got] == [Record] * 160
    for i, r in enumerate(got):
        assert r.offset == i
        assert r.timestamp == ts0 + i
        assert r.key == (b"k%d" % i if i % 2 else None)
        assert r.value == _value(i)
        assert r.headers == (((("n", b"%d" % i), ("null", None))) if i % 3 else None)

    # the stored batches really are of both formats
    magics = set()
    offset = 0
    while offset < 160:
        data = await _raw_batches(broker.address, topic, offset)
        for _pos, h in iter_headers(data):
            magics.add(h.magic)
            offset = h.next_offset
    assert magics == {1, 2}


async def test_native_consumer_reads_batches_of_a_kafka_client_builder(broker):
    topic = "raw"
    async with AsyncAdmin(broker.address) as admin:
        await admin.create_topic(topic, partitions=1, config={"flush": "none"})
    async with trio.open_nursery() as nursery:
        conn = await BrokerConnection.connect(nursery, broker.address)
        for codec in range(5):
            batch = build_with("kafka-python-3", compression=codec, producer=(-1, -1, -1))
            response = await conn.request(
                ProduceRequest(
                    acks=1,
                    timeout_ms=10_000,
                    topics=[
                        ProduceTopic(
                            name=topic, partitions=[ProducePartition(partition=0, records=batch)]
                        )
                    ],
                )
            )
            assert response.topics[0].partitions[0].error_code == 0
        await conn.aclose()
        nursery.cancel_scope.cancel()
    n = 5 * len(RECORDS)
    async with AsyncConsumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        got = await _drain(consumer, n)
        # seek into the middle of a compressed Kafka batch
        consumer.seek((topic, 0), 6)
        middle = await _drain(consumer, n - 6)
    want = [
        (j * len(RECORDS) + i, ts, key, value, tuple(headers) or None)
        for j in range(5)
        for i, (ts, key, value, headers) in enumerate(RECORDS)
    ]
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in got] == want
    assert [r.offset for r in middle] == list(range(6, n))
    assert middle[0].value == want[6][3]


def test_producer_record_format_options_checked():
    from tailrace.client.producer.core import ProducerConfig

    with pytest.raises(ValueError, match="record_format"):
        ProducerConfig(record_format="avro")
    with pytest.raises(ValueError, match="compression"):
        ProducerConfig(compression="lz4")  # native batches: none or gzip only
    assert ProducerConfig(record_format="kafka", compression="zstd").compression == "zstd"
