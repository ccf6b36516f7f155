"""The batch-level calls: Producer.send_many and RecordList.values(),
against a real broker (a broker thread, the blocking clients)."""

from __future__ import annotations

import pytest

from tailrace.client import Admin, Consumer, Producer
from tailrace.client.producer import partition_for_key
from tailrace.client.producer.batch import ProducerBatch


def consume_all(address, topic, partitions, expected):
    with Consumer(address, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, p) for p in range(partitions)])
        got = []
        while len(got) < expected:
            got += consumer.poll(timeout_ms=5000)
    return got


def test_send_many_keeps_order_offsets_and_batches(threaded_broker):
    address = threaded_broker.address
    with Admin(address) as admin:
        admin.create_topic("many", partitions=1, config={"flush": "none"})
    # small batches and odd sizes: every call spans several batches and the
    # fast path runs out of reservation in the middle of a call
    values = [b"v%d-" % i + b"x" * (i % 37) for i in range(5000)]
    with Producer(address, batch_bytes=4096, linger_ms=1) as producer:
        handles = producer.send_many("many", values[:1])
        for start in range(1, 5000, 999):
            handles += producer.send_many("many", values[start : start + 999])
        producer.flush()
        metadata = [h.result(timeout=10) for h in handles]
    assert all(m.partition == 0 for m in metadata)
    assert max(m.offset for m in metadata) == 4999  # the last record has a handle
    got = consume_all(address, "many", 1, 5000)
    assert [r.value for r in got] == values
    assert [r.offset for r in got] == list(range(5000))


def test_send_many_routes_by_key_or_partition(threaded_broker):
    address = threaded_broker.address
    with Admin(address) as admin:
        admin.create_topic("routed", partitions=4, config={"flush": "none"})
    with Producer(address) as producer:
        producer.send_many("routed", [b"a", b"b", b"c"], key=b"user-7")
        producer.send_many("routed", (b"d", b"e"), partition=2)
        assert producer.send_many("routed", []) == []
        producer.flush()
    got = consume_all(address, "routed", 4, 5)
    keyed = partition_for_key(b"user-7", 4)
    assert [(r.partition, r.key, r.value) for r in got if r.value in (b"a", b"b", b"c")] == [
        (keyed, b"user-7", v) for v in (b"a", b"b", b"c")
    ]
    assert [(r.partition, r.value) for r in got if r.value in (b"d", b"e")] == [
        (2, b"d"),
        (2, b"e"),
    ]


def test_send_many_refuses_what_it_cannot_send_and_sends_nothing(threaded_broker):
    with Producer(threaded_broker.address) as producer:
        with pytest.raises(TypeError):
            producer.send_many("t", [b"a", "b"])  # a str among the bytes
        with pytest.raises(TypeError):
            producer.send_many("t", iter([b"a"]))  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            producer.send_many("t", [b"a"], key="k")  # type: ignore[arg-type]
        producer.flush()
        assert producer._core.unfinished() == []


def test_values_are_the_records_values_in_order(threaded_broker):
    address = threaded_broker.address
    with Admin(address) as admin:
        admin.create_topic("vals", partitions=2, config={"flush": "none"})
    with Producer(address, batch_bytes=2048) as producer:
        for i in range(3000):
            producer.send("vals", b"%d" % i if i % 5 else None, partition=i % 2)
    with Consumer(address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("vals", 0), ("vals", 1)])
        seen = 0
        while seen < 3000:
            records = consumer.poll(timeout_ms=5000)
            assert records.values() == [r.value for r in records]
            seen += len(records)
    assert seen == 3000


def test_send_many_grows_reservations_in_place_not_by_a_send_each(threaded_broker):
    address = threaded_broker.address
    with Admin(address) as admin:
        admin.create_topic("kib", partitions=1, config={"flush": "none"})
    values = [b"%06d" % i + b"k" * 1018 for i in range(3000)]  # 1 KiB each
    with Producer(address, batch_bytes=256 * 1024, linger_ms=50) as producer:
        general = []
        send = producer.send

        def counted(*args, **kwargs):
            general.append(args[1])
            return send(*args, **kwargs)

        producer.send = counted  # what send_many falls back to
        handles = []
        for start in range(0, 3000, 1000):
            handles += producer.send_many("kib", values[start : start + 1000])
        producer.flush()
        assert all(h.exception(10) is None for h in handles)
    # about 12 batches of 256 KiB: the general path opens each (and the
    # first call learns the topic); growing a 64 KiB reservation no longer
    # takes a general send (that was about 4 a batch)
    assert len(general) <= 3000 * 1040 // (256 * 1024) + 3
    got = consume_all(address, "kib", 1, 3000)
    assert [r.value for r in got] == values


def test_send_many_waits_for_buffer_space_as_send_does(threaded_broker):
    address = threaded_broker.address
    with Admin(address) as admin:
        admin.create_topic("tight", partitions=1, config={"flush": "none"})
    # a buffer of four batches: the calls outrun it and must wait for acks
    values = [b"%05d" % i + b"t" * 1019 for i in range(2000)]
    with Producer(address, batch_bytes=16 * 1024, buffer_bytes=64 * 1024) as producer:
        handles = producer.send_many("tight", values[:1000])
        handles += producer.send_many("tight", values[1000:])
        producer.flush()
        assert all(h.exception(10) is None for h in handles)
    got = consume_all(address, "tight", 1, 2000)
    assert [r.value for r in got] == values


def test_send_many_sizes_a_call_by_its_longest_value(threaded_broker, monkeypatch):
    address = threaded_broker.address
    with Admin(address) as admin:
        admin.create_topic("mixed", partitions=1, config={"flush": "none"})
    sizes = []
    encode = ProducerBatch.encode

    def recorded(self, *args, **kwargs):
        sizes.append(self.size)
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(ProducerBatch, "encode", recorded)
    # the first value is small, later ones much longer: the estimate from the
    # first value must not overfill a batch
    values = [b"s"] + [b"%04d" % i + b"L" * 3000 for i in range(200)] + [b"e"]
    with Producer(address, batch_bytes=16 * 1024, linger_ms=1) as producer:
        handles = producer.send_many("mixed", values)
        producer.flush()
        assert all(h.exception(10) is None for h in handles)
    assert len(sizes) >= 200 * 3016 // (16 * 1024)
    assert max(sizes) <= 16 * 1024
    got = consume_all(address, "mixed", 1, len(values))
    assert [r.value for r in got] == values
