"""The three broker shapes the suite uses all serve produce and fetch."""

from __future__ import annotations

from tailrace.client import Admin, AsyncAdmin, AsyncConsumer, AsyncProducer, Consumer, Producer


async def test_in_process_broker_round_trip(broker):
    async with AsyncAdmin(broker.address) as admin:
        await admin.create_topic("t", partitions=2)
    async with AsyncProducer(broker.address) as producer:
        handles = [await producer.send("t", b"v%d" % i, key=b"k%d" % (i % 7)) for i in range(200)]
    metas = [await h for h in handles]
    assert all(m.offset >= 0 for m in metas)
    async with AsyncConsumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0), ("t", 1)])
        got = []
        while len(got) < 200:
            got += await consumer.poll(timeout_ms=5000)
    assert sorted(r.value for r in got) == sorted(b"v%d" % i for i in range(200))


def test_threaded_broker_with_blocking_clients(threaded_broker):
    with Admin(threaded_broker.address) as admin:
        admin.create_topic("t")
    with Producer(threaded_broker.address) as producer:
        futures = [producer.send("t", b"x%d" % i) for i in range(100)]
        producer.flush()
    assert [f.result(5).offset for f in futures] == list(range(100))
    with Consumer(threaded_broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0)])
        got = []
        while len(got) < 100:
            got += consumer.poll(timeout_ms=5000)
    assert [r.offset for r in got] == list(range(100))


def test_broker_process_stops_on_sigterm(broker_process):
    broker_process.start()
    with Admin(broker_process.address) as admin:
        admin.create_topic("t")
    assert broker_process.terminate() == 0
    assert any("stopped clean=True" in line for line in broker_process.log_lines)
