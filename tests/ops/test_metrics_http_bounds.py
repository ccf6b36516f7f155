"""The metrics endpoint bounds what a client may cost: an oversize request
head, a client that sends slowly, methods other than GET, a GET with a
body, too many connections. None of it disturbs scrapes or the broker."""

from __future__ import annotations

import h11
import trio
from ops_helpers import batch, create_topic, http_get, metered_broker, produce, read_reply

from tailrace.broker.metrics import endpoint
from tailrace.client.transport import BrokerConnection


async def _open(address: str) -> trio.SocketStream:
    host, port = address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _raw_exchange(address: str, data: bytes) -> tuple[bytes, bytes]:
    """Send ``data``, read until the server closes: (status line, body)."""
    stream = await _open(address)
    async with stream:
        await stream.send_all(data)
        received = bytearray()
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


async def _closed_by_server(stream: trio.SocketStream, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = bytearray()
    with trio.fail_after(timeout):
        while chunk := await stream.receive_some(65536):
            received += chunk
    return bytes(received)


async def _broker_works(nursery, broker, address: str) -> None:
    conn = await BrokerConnection.connect(nursery, address)
    response = await produce(conn, "events", batch(0, n=3))
    assert response.topics[0].partitions[0].error_code == 0
    await conn.aclose()
    assert broker.metrics is not None
    assert (await http_get(broker.metrics.address, "/health/live")).status == 200
    assert (await http_get(broker.metrics.address, "/metrics")).status == 200


async def test_methods_paths_and_bodies(nursery, tmp_path):
    broker = metered_broker(tmp_path / "data")
    listeners = await nursery.start(broker.serve)
    assert broker.metrics is not None
    address = broker.metrics.address

    reply = await http_get(address, "/metrics", method="POST")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET"
    assert (await http_get(address, "/health/ready", method="DELETE")).status == 405
    assert (await http_get(address, "/nowhere")).status == 404
    assert (await http_get(address, "/")).status == 404
    assert (await http_get(address, "/metrics?name=x")).status == 200

    # a PUT announcing a gigabyte is answered at once; its body is never read
    status, _ = await _raw_exchange(
        address, b"PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
    )
    assert status == b"HTTP/1.1 405 Method Not Allowed"
    status, body = await _raw_exchange(
        address, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"body" in body
    status, _ = await _raw_exchange(address, b"this is not http\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400")

    # keep-alive: two requests on one connection
    stream = await _open(address)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        for path in ("/health/live", "/metrics"):
            request = h11.Request(method="GET", target=path, headers=[("Host", address)])
            await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
            reply = await read_reply(conn, stream)
            assert reply.status == 200
            conn.start_next_cycle()

    conn = await BrokerConnection.connect(nursery, listeners[0].address)
    await create_topic(conn, "events")
    await conn.aclose()
    await _broker_works(nursery, broker, listeners[0].address)


async def test_an_oversize_request_head_gets_431_and_is_closed(nursery, tmp_path):
    broker = metered_broker(tmp_path / "data")
    listeners = await nursery.start(broker.serve)
    assert broker.metrics is not None
    long_line = b"GET /" + b"a" * (endpoint.MAX_REQUEST_HEAD_BYTES + 1000) + b" HTTP/1.1\r\n"
    status, _ = await _raw_exchange(broker.metrics.address, long_line)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    many_headers = b"GET /metrics HTTP/1.1\r\n" + b"X-Filler: 0123456789abcdef\r\n" * 1000
    status, _ = await _raw_exchange(broker.metrics.address, many_headers)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    conn = await BrokerConnection.connect(nursery, listeners[0].address)
    await create_topic(conn, "events")
    await conn.aclose()
    await _broker_works(nursery, broker, listeners[0].address)


async def test_a_slow_client_is_cut_off_and_holds_up_nobody(nursery, tmp_path, monkeypatch):
    monkeypatch.setattr(endpoint, "REQUEST_TIMEOUT_S", 0.5)
    broker = metered_broker(tmp_path / "data")
    listeners = await nursery.start(broker.serve)
    assert broker.metrics is not None
    address = broker.metrics.address
    conn = await BrokerConnection.connect(nursery, listeners[0].address)
    await create_topic(conn, "events")
    await conn.aclose()

    slow = await _open(address)
    idle = await _open(address)
    async with slow, idle:
        await slow.send_all(b"GET /metr")  # ... and nothing more
        # meanwhile scrapes and the broker go on
        await _broker_works(nursery, broker, listeners[0].address)
        # cut off once the request time is up, without an answer
        assert await _closed_by_server(slow) == b""
        # an idle connection (keep-alive that was never used) is closed too
        assert await _closed_by_server(idle) == b""
    with trio.fail_after(10):
        while broker.metrics.open:  # noqa: ASYNC110 - the endpoint's tasks change it
            await trio.sleep(0.01)


async def test_connections_beyond_the_maximum_are_closed_at_accept(nursery, tmp_path, monkeypatch):
    monkeypatch.setattr(endpoint, "MAX_CONNECTIONS", 2)
    broker = metered_broker(tmp_path / "data")
    await nursery.start(broker.serve)
    assert broker.metrics is not None
    address = broker.metrics.address
    held = [await _open(address) for _ in range(2)]
    with trio.fail_after(10):
        while broker.metrics.open < 2:  # noqa: ASYNC110 - the endpoint's tasks change it
            await trio.sleep(0.01)
    extra = await _open(address)
    async with extra:
        assert await _closed_by_server(extra) == b""
    assert broker.metrics.refused == 1
    for stream in held:
        await stream.aclose()
    with trio.fail_after(10):
        while broker.metrics.open:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert (await http_get(address, "/health/live")).status == 200
