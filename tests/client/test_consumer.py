"""The consumers against a real broker: positions, seeking, CRC errors,
restarts, and the RecordList poll returns."""

from __future__ import annotations

import time

import pytest
import trio
from harness import BrokerProcess

from tailrace.client import (
    Admin,
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    Consumer,
    CorruptRecordError,
    Producer,
    Record,
)
from tailrace.client.consumer import RecordList
from tailrace.client.errors import OffsetOutOfRangeError


async def setup_topic(address, name, count, partitions=1, timestamps=None, **config):
    async with AsyncAdmin(address) as admin:
        await admin.create_topic(name, partitions=partitions, config=config or {"flush": "none"})
    async with AsyncProducer(address, linger_ms=1, batch_bytes=2048) as producer:
        for i in range(count):
            ts = None if timestamps is None else timestamps(i)
            await producer.send(name, b"%05d" % i, partition=i % partitions, timestamp=ts)


async def drain(consumer, expected, timeout=20):
    got = []
    with trio.fail_after(timeout):
        while len(got) < expected:
            got += await consumer.poll(timeout_ms=500)
    return got


async def test_poll_returns_records_in_order_and_positions_advance(broker):
    await setup_topic(broker.address, "p", 500)
    async with AsyncConsumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("p", 0)])
        assert await consumer.position(("p", 0)) == 0
        first = await consumer.poll(timeout_ms=5000, max_records=7)
        assert [r.offset for r in first] == list(range(7))
        assert await consumer.position(("p", 0)) == 7
        rest = await drain(consumer, 493)
        assert [r.offset for r in rest] == list(range(7, 500))
        assert await consumer.position(("p", 0)) == 500
        assert consumer.highwater(("p", 0)) == 500
        assert len(await consumer.poll(timeout_ms=50)) == 0


async def test_latest_is_the_default_start(broker):
    await setup_topic(broker.address, "l", 10)
    async with AsyncConsumer(broker.address) as consumer:
        consumer.assign([("l", 0)])
        assert await consumer.position(("l", 0)) == 10
        async with AsyncProducer(broker.address) as producer:
            await producer.send("l", b"new")
        got = await drain(consumer, 1)
        assert [(r.offset, r.value) for r in got] == [(10, b"new")]


async def test_seek_by_offset_beginning_end_and_time(broker):
    await setup_topic(broker.address, "s", 100, timestamps=lambda i: 1_000_000 + 10 * i)
    async with AsyncConsumer(broker.address, auto_offset_reset="earliest") as consumer:
        tp = ("s", 0)
        consumer.assign([tp])
        consumer.seek(tp, 42)
        got = await drain(consumer, 58)
        assert got[0].offset == 42
        await consumer.seek_to_beginning()
        assert (await consumer.poll(timeout_ms=5000, max_records=1))[0].offset == 0
        await consumer.seek_to_end([tp])
        assert await consumer.position(tp) == 100
        found = await consumer.offsets_for_times({tp: 1_000_000 + 10 * 30 + 5})
        assert found[tp] == (31, 1_000_000 + 310)
        assert (await consumer.offsets_for_times({tp: 99_000_000}))[tp] is None
        await consumer.seek_to_time({tp: 1_000_000 + 10 * 77})
        assert (await consumer.poll(timeout_ms=5000, max_records=1))[0].offset == 77
        with pytest.raises(ValueError, match="not assigned"):
            consumer.seek(("other", 0), 1)


async def test_out_of_range_resets_or_raises(broker):
    await setup_topic(broker.address, "r", 20)
    async with AsyncConsumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("r", 0)])
        consumer.seek(("r", 0), 1000)  # past the log end: reset to earliest
        got = await drain(consumer, 20)
        assert got[0].offset == 0
    async with AsyncConsumer(broker.address, auto_offset_reset="none") as consumer:
        consumer.assign([("r", 0)])
        with pytest.raises(OffsetOutOfRangeError):
            await consumer.poll(timeout_ms=100)
        consumer.seek(("r", 0), 1000)

        async def poll_forever() -> None:
            while True:
                await consumer.poll(timeout_ms=100)

        with pytest.raises(OffsetOutOfRangeError), trio.fail_after(5):
            await poll_forever()


async def test_several_partitions(broker):
    await setup_topic(broker.address, "m", 900, partitions=3)
    async with AsyncConsumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("m", 0), ("m", 1), ("m", 2)])
        got = await drain(consumer, 900)
    assert sorted(int(r.value) for r in got) == list(range(900))
    for p in range(3):
        assert [r.offset for r in got if r.partition == p] == list(range(300))


def test_record_list_is_a_read_only_sequence():
    parts = [
        ("t", 0, 10, 1000, (0, 5), (None, b"k"), (b"a", b"b"), (None, None)),
        ("t", 1, 3, 2000, (1,), (None,), (b"c",), ((("h", b"1"),),)),
    ]
    records = RecordList(parts)
    expected = [
        Record("t", 0, 10, 1000, None, b"a", None),
        Record("t", 0, 11, 1005, b"k", b"b", None),
        Record("t", 1, 3, 2001, None, b"c", (("h", b"1"),)),
    ]
    assert len(records) == 3
    assert bool(records)
    assert list(records) == expected
    assert records == expected
    assert [records[i] for i in range(3)] == expected
    assert records[-1] == expected[-1]
    assert records[1:] == expected[1:]
    assert records[1].value == b"b"
    with pytest.raises(IndexError):
        records[3]
    assert not RecordList()
    assert RecordList() == []
    with pytest.raises(TypeError):
        hash(records)


def test_crc_corruption_surfaces_naming_the_offsets(tmp_path):
    """A bit flipped in a segment while the broker is stopped (after a clean
    shutdown, so no recovery scan runs) is caught by the consumer's CRC check
    and reported with the batch's offset range, never returned as data."""
    data = tmp_path / "data"
    with BrokerProcess(data) as proc:
        with Admin(proc.address) as admin:
            admin.create_topic("c", config={"flush": "none"})
        with Producer(proc.address, linger_ms=0) as producer:
            for i in range(3):
                producer.send("c", b"batch%d" % i * 20).result(10)
        assert proc.terminate() == 0
    segment = data / "c" / "0" / ("0" * 20 + ".log")
    raw = bytearray(segment.read_bytes())
    # the second batch: find its start by walking the first one's length
    first_size = int.from_bytes(raw[8:12], "big") + 12
    raw[first_size + 70] ^= 0x01
    segment.write_bytes(bytes(raw))
    with BrokerProcess(data) as proc, Consumer(proc.address, auto_offset_reset="earliest") as c:
        c.assign([("c", 0)])
        good = []
        deadline = time.monotonic() + 10
        with pytest.raises(CorruptRecordError, match=r"offsets 1\.\.1") as info:  # noqa: PT012
            while time.monotonic() < deadline:
                good += c.poll(timeout_ms=500)
        assert "c/0" in str(info.value)
        assert [r.offset for r in good] == [0]
        assert c.position(("c", 0)) == 1
        with pytest.raises(CorruptRecordError):  # again, until the user moves on
            c.poll(timeout_ms=500)
        c.seek(("c", 0), 2)
        after = c.poll(timeout_ms=5000)
        assert [r.offset for r in after] == [2]


def test_consumer_resumes_after_a_broker_kill_and_restart(tmp_path):
    data = tmp_path / "data"
    proc = BrokerProcess(data).start()
    port = proc.port
    try:
        with Admin(proc.address) as admin:
            admin.create_topic("k", config={"flush": "sync"})
        with Producer(proc.address, linger_ms=1) as producer:
            for i in range(200):
                producer.send("k", b"%d" % i)
        consumer = Consumer(proc.address, auto_offset_reset="earliest", retry_backoff_ms=50)
        consumer.assign([("k", 0)])
        got = []
        while len(got) < 100:
            got += consumer.poll(timeout_ms=2000, max_records=100 - len(got))
        proc.kill()
        # restart on the same port so the consumer's bootstrap address stays valid
        proc = BrokerProcess(data, listen=f"127.0.0.1:{port}").start()
        with Producer(proc.address, linger_ms=1) as producer:
            for i in range(200, 250):
                producer.send("k", b"%d" % i)
        deadline = time.monotonic() + 20
        while len(got) < 250 and time.monotonic() < deadline:
            got += consumer.poll(timeout_ms=500)
        consumer.close()
        assert [int(r.value) for r in got] == list(range(250))
    finally:
        proc.kill()
