"""Replies written where they are made, not by the connection's writer task:
a long poll woken by an append is answered from the appending request's
step (handlers/fetch.py, _WokenAnswer; ConnectionHandler.answer_now), before
the producer's own response, and a request answered at once is written by
the reader when nothing before it is unwritten. Everything the ordinary
path promises still holds (order on the connection, one response per
request, nothing torn)."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from harness import broker_config
from test_broker_wire import batch, connect, create, fetch_request, offsets_in, produce

from tailrace.broker.app import Broker
from tailrace.broker.metrics.definitions import REGISTRY
from tailrace.broker.server.connection import ConnectionHandler
from tailrace.client.protocol import (
    NEED_DATA,
    ClientConnection,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)


def answered_in_place() -> float:
    return REGISTRY.get_sample_value("tailrace_fetch_long_polls_answered_in_place_total") or 0.0


async def start(nursery: trio.Nursery, tmp_path, flush: str) -> tuple[Broker, str]:
    b = Broker(broker_config(tmp_path / "d", topic_defaults__flush=flush))
    listeners = await nursery.start(b.serve)
    return b, listeners[0].address


async def read_responses(sock, codec: ClientConnection, count: int) -> list:
    """The next ``count`` responses on a raw socket (bounded wait)."""
    responses = []
    with trio.fail_after(10):
        while len(responses) < count:
            event = codec.next_event()
            if event is NEED_DATA:
                data = await sock.recv(65536)
                assert data, "the broker closed the connection"
                codec.receive_data(data)
                continue
            responses.append(event)
    return responses


@pytest.mark.parametrize("flush", ["none", "sync"])
async def test_a_woken_long_poll_is_written_by_the_appending_request(tmp_path, nursery, flush):
    b, address = await start(nursery, tmp_path, flush)
    reader = await connect(nursery, address)
    writer = await connect(nursery, address)
    await create(writer, "ip")
    got = {}

    async def poll() -> None:
        response = await reader.request(fetch_request("ip", 0, max_wait_ms=30_000))
        got["records"] = response.topics[0].partitions[0].records

    before = answered_in_place()
    async with trio.open_nursery() as n:
        n.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()  # the fetch is parked
        assert "records" not in got
        assert (await produce(writer, "ip", batch(0))).error_code == 0
    assert offsets_in(got["records"]) == [0]
    # with flush = sync the high watermark moves in the produce's durable
    # wait (its own task), which answers the poll there
    assert answered_in_place() == before + 1
    # the connection goes on in order: a second long poll, woken again
    async with trio.open_nursery() as n:
        n.start_soon(_poll_into, reader, got, fetch_request("ip", 1, max_wait_ms=30_000))
        await trio.testing.wait_all_tasks_blocked()
        assert (await produce(writer, "ip", batch(1, n=3))).error_code == 0
    assert offsets_in(got["records"]) == [1, 2, 3]
    assert answered_in_place() == before + 2
    b.shutdown()


async def _poll_into(conn, got: dict, request) -> None:
    response = await conn.request(request)
    got["records"] = response.topics[0].partitions[0].records


async def test_a_large_woken_response_is_left_to_the_polls_task(tmp_path, nursery):
    """Above 16 KiB a response is not read into memory: the poll's task
    writes it with sendfile as before."""
    b, address = await start(nursery, tmp_path, "none")
    reader = await connect(nursery, address)
    writer = await connect(nursery, address)
    await create(writer, "big")
    got = {}
    before = answered_in_place()
    async with trio.open_nursery() as n:
        n.start_soon(_poll_into, reader, got, fetch_request("big", 0, max_wait_ms=30_000))
        await trio.testing.wait_all_tasks_blocked()
        assert (await produce(writer, "big", batch(0, n=40, size=1000))).error_code == 0
    assert offsets_in(got["records"]) == list(range(40))
    assert answered_in_place() == before
    b.shutdown()


async def test_a_woken_response_the_socket_takes_in_part_arrives_whole(tmp_path, nursery):
    """A consumer that is slow to read: its socket takes only part of the
    response written in place; the poll's task writes the rest, in order,
    and the response after it follows intact."""
    b, address = await start(nursery, tmp_path, "none")
    writer = await connect(nursery, address)
    await create(writer, "slow")
    host, port = address.rsplit(":", 1)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: a small window
    with sock:
        await sock.connect((host, int(port)))
        codec = ClientConnection()
        chunk = batch(0, n=14, size=1000)  # ~15 KiB
        assert (await produce(writer, "slow", chunk)).error_code == 0
        # 1: answered at once and never read here: it fills the send buffer
        # 2: a long poll, answered in place once the second chunk lands, into a
        #    socket that has room for part of it at most
        # 3: a fetch behind it
        asked = [
            fetch_request("slow", 0, max_wait_ms=0),
            fetch_request("slow", 14, max_wait_ms=30_000),
            fetch_request("slow", 0, max_wait_ms=0, max_bytes=1, part_max=1),
        ]
        cids = []
        for request in asked[:2]:
            cid, prefix, _ = codec.send_request(request)
            cids.append(cid)
            await sock.send(prefix)
        await trio.sleep(0.2)  # the first answered, the long poll parked
        before = answered_in_place()
        assert (await produce(writer, "slow", chunk)).error_code == 0
        assert answered_in_place() == before  # the socket took it in part, or not at all
        cid, prefix, _ = codec.send_request(asked[2])
        cids.append(cid)
        await sock.send(prefix)
        responses = await read_responses(sock, codec, 3)
        assert [r.correlation_id for r in responses] == cids
        first, second, third = (r.body.topics[0].partitions[0].records for r in responses)
        assert offsets_in(first) == list(range(14))
        assert offsets_in(second) == list(range(14, 28))
        assert offsets_in(third) == list(range(14))  # the first batch comes whole
    b.shutdown()


async def test_an_immediate_reply_is_written_by_the_reader_when_the_writer_is_idle(
    tmp_path, nursery, monkeypatch
):
    """A request answered at once, with nothing before it unwritten, is
    written by the connection's reader itself: the writer task does not
    wake for it."""
    writes: list[object] = []
    real_write = ConnectionHandler._write

    async def counting_write(self, reply):  # type: ignore[no-untyped-def]
        writes.append(reply)
        return await real_write(self, reply)

    monkeypatch.setattr(ConnectionHandler, "_write", counting_write)
    b, address = await start(nursery, tmp_path, "none")
    conn = await connect(nursery, address)
    await create(conn, "now")
    writes.clear()
    for i in range(5):
        assert (await produce(conn, "now", batch(i))).base_offset == i
    response = await conn.request(fetch_request("now", 0))
    assert offsets_in(response.topics[0].partitions[0].records) == [0, 1, 2, 3, 4]
    assert writes == []
    b.shutdown()


async def test_pipelined_replies_stay_in_order_behind_a_waiting_one(tmp_path, nursery):
    """Requests sent together: a long poll that waits, then two answered at
    once. The two wait for the poll's answer (the reader writes a reply
    only when nothing before it is unwritten), and all three come in the
    order asked."""
    b, address = await start(nursery, tmp_path, "none")
    writer = await connect(nursery, address)
    await create(writer, "wait")
    await create(writer, "other")
    host, port = address.rsplit(":", 1)
    with trio.socket.socket() as sock:
        await sock.connect((host, int(port)))
        codec = ClientConnection()
        asked = [
            fetch_request("wait", 0, max_wait_ms=30_000),
            ProduceRequest(
                acks=1,
                timeout_ms=10_000,
                topics=[
                    ProduceTopic(
                        name="other", partitions=[ProducePartition(partition=0, records=batch(0))]
                    )
                ],
            ),
            fetch_request("other", 0),
        ]
        frames, cids = [], []
        for request in asked:
            cid, prefix, buffers = codec.send_request(request)
            cids.append(cid)
            frames.append(b"".join([prefix, *buffers]))
        await sock.send(b"".join(frames))
        await trio.sleep(0.2)  # all three read; the first waits
        assert (await produce(writer, "wait", batch(7, n=2))).error_code == 0
        responses = await read_responses(sock, codec, 3)
    assert [r.correlation_id for r in responses] == cids
    polled, produced, fetched = (r.body for r in responses)
    assert offsets_in(polled.topics[0].partitions[0].records) == [0, 1]
    assert produced.topics[0].partitions[0].base_offset == 0
    assert offsets_in(fetched.topics[0].partitions[0].records) == [0]
    b.shutdown()
