"""The blocking producer's direct path: with a request slot free and nothing
queued, a due batch (linger 0) is written by the thread that called
``send``, not by the producer's trio thread (Sender.send_direct,
BrokerConnection.send_from_thread), behind any requests still in flight.

The producer tests run a real broker on its own thread and read what it
stored with a real consumer. They prove where a request was written by
*freezing* the producer's trio thread (a callback that blocks it until the
test lets go): a record the broker stores meanwhile was written by the
sending thread. The connection test uses a real loopback socket whose peer
does not read, so a large frame cannot be written at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import trio

from tailrace.client import Admin, Consumer, Producer
from tailrace.client.producer.batch import ProducerBatch
from tailrace.client.protocol import (
    Limits,
    ProducePartition,
    ProduceRequest,
    ProduceResponse,
    ProduceTopic,
    ServerConnection,
)
from tailrace.client.protocol.connection import NEED_DATA, Request
from tailrace.client.transport.connection import BrokerConnection, PendingResponse


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


@contextlib.contextmanager
def _frozen(producer: Producer, then: Callable[[], None] | None = None) -> Iterator[None]:
    """Block the producer's trio thread for the ``with`` body; ``then()``
    runs on it, in the same step, when the body ends."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(60)
        if then is not None:
            then()

    assert producer._loop is not None
    producer._loop.run_sync_soon(hold)
    assert entered.wait(30)
    try:
        yield
    finally:
        release.set()


def _idle_producer(address: str, topic: str, **config: object) -> Producer:
    """A linger-0 producer whose first record is acknowledged and whose
    sender is parked idle (a direct send may run)."""
    producer = Producer(address, linger_ms=0, **config)
    assert producer.send(topic, b"warm-up").result(30).offset == 0
    sender = producer._core.sender
    assert sender is not None
    _wait_for(lambda: sender._direct_ok)
    return producer


def _values(consumer: Consumer, count: int) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {got} arrived"
        got += [r.value for r in consumer.poll(timeout_ms=200)]
    return got


def _create(address: str, topic: str) -> None:
    with Admin(address) as admin:
        admin.create_topic(topic, config={"flush": "none"})


def test_a_lone_record_is_written_by_the_sending_thread(threaded_broker):
    _create(threaded_broker.address, "direct")
    with (
        _idle_producer(threaded_broker.address, "direct") as producer,
        Consumer(threaded_broker.address, auto_offset_reset="earliest") as consumer,
    ):
        consumer.assign([("direct", 0)])
        assert _values(consumer, 1) == [b"warm-up"]
        sender = producer._core.sender
        assert sender is not None
        before = sender.direct_requests
        with _frozen(producer):
            # the trio thread cannot take a step: only this thread can write
            future = producer.send("direct", b"lone")
            assert _values(consumer, 1) == [b"lone"]
            assert not future.done()  # its answer waits for the trio thread
            assert sender.direct_requests == before + 1
        assert future.result(30).offset == 1


def test_direct_and_trio_thread_requests_keep_order_and_never_duplicate(threaded_broker):
    """A direct request whose answer is lost (its connection breaks before
    the trio thread reads it) is retried by the trio thread with its
    sequence number, ahead of the record sent meanwhile; the broker keeps
    one copy of each, in order, and the producer never needs a new epoch.
    Then the next lone record goes out directly again. One request slot:
    while "a" holds it, "b" is the trio thread's to send."""
    _create(threaded_broker.address, "mixed")
    with (
        _idle_producer(threaded_broker.address, "mixed", max_in_flight=1) as producer,
        Consumer(threaded_broker.address, auto_offset_reset="earliest") as consumer,
    ):
        consumer.assign([("mixed", 0)])
        assert _values(consumer, 1) == [b"warm-up"]
        sender = producer._core.sender
        client = producer._core.client
        assert sender is not None
        assert client is not None
        conn = client.ready_connection()
        assert conn is not None
        epoch, direct = sender.producer_epoch, sender.direct_requests
        with _frozen(producer, then=lambda: conn.abort("test: the answer is lost")):
            a = producer.send("mixed", b"a")
            assert _values(consumer, 1) == [b"a"]  # stored; its answer is never read
            # in flight (unanswered), no slot left: the next one is for the
            # trio thread
            b = producer.send("mixed", b"b")
            assert not sender._direct_ok
            assert sender.direct_requests == direct + 1
        assert (a.result(30).offset, b.result(30).offset) == (1, 2)
        assert conn.broken
        assert client.ready_connection() is not conn
        _wait_for(lambda: sender._direct_ok)
        c = producer.send("mixed", b"c")
        assert c.result(30).offset == 3
        assert sender.direct_requests == direct + 2
        assert sender.producer_epoch == epoch
        assert _values(consumer, 2) == [b"b", b"c"]  # the retry of "a" was not stored again
        producer.flush()
    with Consumer(threaded_broker.address, auto_offset_reset="earliest") as again:
        again.assign([("mixed", 0)])
        assert _values(again, 4) == [b"warm-up", b"a", b"b", b"c"]


def test_records_follow_unanswered_ones_directly_while_a_slot_is_free(threaded_broker):
    """At a steady rate a record usually finds the previous one's answer
    still on its way: it is pipelined behind it from the sending thread
    (the trio thread, frozen, reads no answer meanwhile), up to the request
    slots; the next goes to the trio thread, and every answer arrives."""
    _create(threaded_broker.address, "piped")
    with (
        _idle_producer(threaded_broker.address, "piped", max_in_flight=3) as producer,
        Consumer(threaded_broker.address, auto_offset_reset="earliest") as consumer,
    ):
        consumer.assign([("piped", 0)])
        assert _values(consumer, 1) == [b"warm-up"]
        sender = producer._core.sender
        assert sender is not None
        before = sender.direct_requests
        with _frozen(producer):
            futures = [producer.send("piped", b"r%d" % i) for i in range(3)]
            assert _values(consumer, 3) == [b"r0", b"r1", b"r2"]
            assert sender.direct_requests == before + 3
            assert not sender._direct_ok  # every slot is taken
            futures.append(producer.send("piped", b"r3"))
            assert sender.direct_requests == before + 3
            assert not any(f.done() for f in futures)
        assert [f.result(30).offset for f in futures] == [1, 2, 3, 4]
        assert _values(consumer, 1) == [b"r3"]
        _wait_for(lambda: sender._direct_ok)
        assert producer.send("piped", b"r4").result(30).offset == 5
        assert sender.direct_requests == before + 4


def test_pipelined_direct_requests_whose_answers_are_lost_are_stored_once(threaded_broker):
    """Two direct requests in flight when their connection breaks: the trio
    thread retries both, in order, with their sequence numbers; the broker
    keeps one copy of each and the producer keeps its epoch."""
    _create(threaded_broker.address, "lost2")
    with (
        _idle_producer(threaded_broker.address, "lost2") as producer,
        Consumer(threaded_broker.address, auto_offset_reset="earliest") as consumer,
    ):
        consumer.assign([("lost2", 0)])
        assert _values(consumer, 1) == [b"warm-up"]
        sender = producer._core.sender
        client = producer._core.client
        assert sender is not None
        assert client is not None
        conn = client.ready_connection()
        assert conn is not None
        epoch, direct = sender.producer_epoch, sender.direct_requests
        with _frozen(producer, then=lambda: conn.abort("test: the answers are lost")):
            a = producer.send("lost2", b"a")
            b = producer.send("lost2", b"b")
            assert _values(consumer, 2) == [b"a", b"b"]
            assert sender.direct_requests == direct + 2
        assert (a.result(30).offset, b.result(30).offset) == (1, 2)
        assert sender.producer_epoch == epoch
        producer.flush()
    with Consumer(threaded_broker.address, auto_offset_reset="earliest") as again:
        again.assign([("lost2", 0)])
        assert _values(again, 3) == [b"warm-up", b"a", b"b"]
        assert again.poll(timeout_ms=300) == []


def _big_request(size: int) -> ProduceRequest:
    batch = ProducerBatch("t", 0, 0)
    batch.records.append((0, None, bytes(size), None))
    return ProduceRequest(
        acks=1,
        topics=[
            ProduceTopic(
                name="t", partitions=[ProducePartition(partition=0, records=batch.encode(0, 6))]
            )
        ],
    )


async def test_a_write_the_socket_cannot_take_is_finished_by_the_trio_thread(nursery):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    port = listener.socket.getsockname()[1]
    conn = await BrokerConnection.connect(nursery, f"127.0.0.1:{port}")
    peer = await listener.accept()  # reads nothing until told
    conn.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    assert conn.thread_writable

    registered: list[PendingResponse] = []
    first = await trio.to_thread.run_sync(
        conn.send_from_thread, _big_request(2 << 20), registered.append
    )
    assert first is not None
    assert registered == [first]
    # 2 MiB cannot fit the socket's buffers: the rest is the trio thread's
    # to write, and until it is, no other thread may write
    assert conn._writing
    refused = await trio.to_thread.run_sync(
        conn.send_from_thread, _big_request(10), registered.append
    )
    assert refused is None
    assert registered == [first]

    seconds: list[PendingResponse] = []
    second_sent = trio.Event()

    async def send_second() -> None:
        pending = await conn.send(_big_request(10))
        assert pending is not None
        seconds.append(pending)
        second_sent.set()

    nursery.start_soon(send_second)
    server = ServerConnection(Limits(max_frame_bytes=64 << 20, max_body_bytes=16 << 20))
    requests: list[Request] = []
    while len(requests) < 2:
        event = server.next_event()
        if event is NEED_DATA:
            server.receive_data(await peer.receive_some(1 << 20))
            continue
        assert type(event) is Request
        requests.append(event)
    assert [r.correlation_id for r in requests] == [first.correlation_id, first.correlation_id + 1]
    sizes = [len(r.body.topics[0].partitions[0].records) for r in requests]
    assert sizes[0] > 2 << 20  # the big frame arrived whole, first
    assert sizes[1] < 1024
    for r in requests:
        await peer.send_all(server.send_response(r, ProduceResponse()))
    assert type(await first.wait()) is ProduceResponse
    await second_sent.wait()
    assert type(await seconds[0].wait()) is ProduceResponse
    assert not conn.broken
    await conn.aclose()
    await peer.aclose()
    await listener.aclose()
