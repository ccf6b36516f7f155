"""A flood of bad clients cannot flood the log: connection errors and
refusals are rate limited (a burst, then a steady rate), and the lines that
get through count what was suppressed, so nothing goes unaccounted."""

from __future__ import annotations

import logging

import trio
from harness import broker_config

from tailrace.broker.app import Broker
from tailrace.broker.server import connection, listeners
from tailrace.broker.server.ratelimit import RateLimitedLogger

BAD_FRAME = b"\xff\xff\xff\xff" + b"not a frame"


def _lines(caplog, logger: str, msg: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == logger and r.getMessage() == msg]


async def _bad_client(host: str, port: int) -> None:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(BAD_FRAME)
        with trio.fail_after(10):
            while await stream.receive_some(1024):
                pass  # until the broker closes it


async def test_a_flood_of_bad_clients_logs_a_burst_then_a_steady_rate(
    nursery, tmp_path, caplog, monkeypatch
):
    limiter = RateLimitedLogger(connection.log, per_second=5, burst=20)
    monkeypatch.setattr(connection, "bad_clients", limiter)  # fresh tokens for this test
    broker = Broker(broker_config(tmp_path / "data"))
    bound = await nursery.start(broker.serve)
    host, port = bound[0].address.rsplit(":", 1)
    flood = 200
    caplog.set_level(logging.INFO, logger=connection.log.name)

    started = trio.current_time()
    for _ in range(flood):
        await _bad_client(host, int(port))
    elapsed = trio.current_time() - started
    await trio.sleep(1 / limiter.rate + 0.05)  # one token back
    await _bad_client(host, int(port))

    lines = _lines(caplog, connection.log.name, "closing connection")
    assert all("protocol error" in f["reason"] for f in lines)
    # the burst, then at most the rate over the time the flood took
    assert len(lines) <= limiter.burst + limiter.rate * (elapsed + 1) + 1
    assert len(lines) < flood
    # the last line got through and carries the count of what was dropped
    assert lines[-1].get("suppressed_since_last", 0) > 0
    suppressed = sum(f.get("suppressed_since_last", 0) for f in lines)
    assert len(lines) + suppressed == flood + 1
    broker.shutdown()


async def test_refusals_at_max_connections_are_rate_limited(nursery, tmp_path, caplog, monkeypatch):
    limiter = RateLimitedLogger(listeners.log, per_second=1, burst=5)
    monkeypatch.setattr(listeners, "refusals", limiter)
    broker = Broker(broker_config(tmp_path / "data", limits__max_connections=1))
    bound = await nursery.start(broker.serve)
    host, port = bound[0].address.rsplit(":", 1)
    caplog.set_level(logging.INFO, logger=listeners.log.name)
    held = await trio.open_tcp_stream(host, int(port))
    async with held:
        with trio.fail_after(10):
            while broker.counter.open < 1:  # noqa: ASYNC110 - the accept loop changes it
                await trio.sleep(0.01)
        for _ in range(50):
            extra = await trio.open_tcp_stream(host, int(port))
            async with extra:
                with trio.fail_after(10):
                    assert await extra.receive_some(1) == b""
    assert broker.counter.refused == 50
    lines = _lines(caplog, listeners.log.name, "connection refused: max_connections reached")
    assert limiter.burst <= len(lines) < 50
    assert all(f["max_connections"] == 1 for f in lines)
    broker.shutdown()
