"""Down-conversion is bounded: a Kafka fetch of native (magic-1) batches
converts at most DOWN_CONVERSION_MAX_BYTES per partition, whatever the
fetch's max_bytes, because converted bytes sit in the broker's memory until
the client reads them (tests/reliability/test_rel_hostile.py shows what
never-reading clients did before the cap). A larger single batch still
comes whole, and the reader gets everything by fetching on."""

from __future__ import annotations

from kafka.protocol.consumer import FetchRequest
from kafka.record import MemoryRecords
from kafka_samples import RawKafkaClient, request

from tailrace.broker.kafka.data import DOWN_CONVERSION_MAX_BYTES
from tailrace.client import Admin, Producer

MiB = 1 << 20
_F = FetchRequest.FetchTopic


def _fetch(client: RawKafkaClient, offset: int) -> bytes:
    part = _F.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=64 * MiB)
    req = request(
        1, 11, max_wait_ms=0, min_bytes=1, max_bytes=64 * MiB,
        topics=[_F(topic="native", partitions=[part])],
    )  # fmt: skip
    response = client.call(req, 11)
    (partition,) = response.responses[0].partitions
    assert partition.error_code == 0
    return partition.records


def _offsets(records: bytes) -> list[int]:
    out = []
    batches = MemoryRecords(records)
    while batches.has_next():
        batch = batches.next_batch()
        out.extend(r.offset for r in batch)
    return out


def test_native_batches_are_converted_a_bounded_amount_at_a_time(kafka_broker):
    with Admin(kafka_broker.address) as admin:
        admin.create_topic("native", 1)
    with Producer(kafka_broker.address, linger_ms=50, batch_bytes=64 * 1024) as producer:
        for i in range(800):  # ~3.3 MiB in batches of up to 64 KiB
            producer.send("native", b"%06d" % i + b"x" * 4096, partition=0)
    seen: list[int] = []
    sizes = []
    with RawKafkaClient(kafka_broker.kafka_address) as client:
        while len(seen) < 800:
            records = _fetch(client, len(seen))
            sizes.append(len(records))
            got = _offsets(records)
            assert got, "a fetch made no progress"
            seen.extend(got)
    assert seen == list(range(800))
    assert len(sizes) >= 3
    assert max(sizes) <= DOWN_CONVERSION_MAX_BYTES + 64 * 1024


def test_a_batch_larger_than_the_cap_still_comes_whole(kafka_broker):
    with Admin(kafka_broker.address) as admin:
        admin.create_topic("native", 1)
    big = DOWN_CONVERSION_MAX_BYTES + 100_000  # one record: one batch (8 MiB at most)
    with Producer(kafka_broker.address) as p:
        p.send("native", b"v" * big, partition=0).result()
    with RawKafkaClient(kafka_broker.kafka_address) as client:
        records = _fetch(client, 0)
    assert _offsets(records) == [0]
    assert len(records) > big
