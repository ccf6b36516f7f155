"""The HTTP endpoint: ``/metrics``, ``/health/live`` and ``/health/ready``.

It runs on the broker's trio loop (so ``/health/live`` answering proves the
loop is responsive, and the scrape-time collectors read broker state from
the thread that owns it). HTTP/1.1 is parsed by h11, sans-I/O; this module
only moves bytes and applies the bounds, since the port may be reachable by
anything on the network:

* a request head (request line and headers) is at most
  :data:`MAX_REQUEST_HEAD_BYTES`, else 431 and the connection is closed;
* a whole request must arrive within :data:`REQUEST_TIMEOUT_S` of the
  connection becoming idle, and a response must be taken within as long,
  else the connection is closed (a slow client holds a connection, never
  the loop);
* at most :data:`MAX_CONNECTIONS` connections are open; more are closed at
  accept;
* only ``GET`` is served: another method gets 405 (with ``Allow: GET``) and
  a body is never read; a GET with a body gets 400; an unknown path gets
  404. After an error answer the connection is closed, once what the client
  still sends has been drained (at most :data:`LINGER_BYTES` for
  :data:`LINGER_S`) so that a reset does not destroy the answer unread.

Keep-alive is supported (Prometheus reuses its connection), bounded by the
timeout above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import h11
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from ..logs import log_event
from ..server.ratelimit import RateLimitedLogger

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_REQUEST_HEAD_BYTES",
    "REQUEST_TIMEOUT_S",
    "HttpEndpoint",
]

log = logging.getLogger(__name__)
bad_requests = RateLimitedLogger(log, per_second=1)

MAX_REQUEST_HEAD_BYTES = 8 * 1024
REQUEST_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 16
#: After an error answer: how long, and how many bytes, to drain before closing.
LINGER_S = 1.0
LINGER_BYTES = 1024 * 1024
_RECEIVE_BYTES = 4096
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
#: What generate_latest writes for names that need no escaping (all of ours):
#: the text format every Prometheus version reads.
_EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
_NOT_FOUND = b"not found: the paths are /metrics, /health/live and /health/ready\n"

#: A route answers (status, content type, body).
Route = Callable[[], Awaitable[tuple[int, str, bytes]]]


def json_route(fn: Callable[[], tuple[int, dict[str, Any]]]) -> Route:
    async def route() -> tuple[int, str, bytes]:
        status, body = fn()
        return status, _JSON, (json.dumps(body, sort_keys=True) + "\n").encode()

    return route


class _Collected:
    """Metric families already collected, for formatting elsewhere."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def metrics_route(registry: CollectorRegistry) -> Route:
    """Collect on the loop (broker state belongs to it; about a quarter of the
    work), format the text in a worker thread (the rest: ~25 ms for 1,000
    partitions, which the loop should not stall for)."""

    async def route() -> tuple[int, str, bytes]:
        families = list(registry.collect())
        body = await trio.to_thread.run_sync(generate_latest, _Collected(families))
        return 200, _EXPOSITION, body

    return route


async def _linger(stream: trio.SocketStream) -> None:
    """Close gently after an error answer: send our end of stream, then read
    and drop what the client still sends (bounded in bytes and time). Closing
    with unread bytes would make the kernel reset the connection, and the
    client could lose the answer before reading it."""
    with trio.move_on_after(LINGER_S):
        await stream.send_eof()
        drained = 0
        while drained < LINGER_BYTES:
            data = await stream.receive_some(_RECEIVE_BYTES)
            if not data:
                return
            drained += len(data)


class _Reject(Exception):
    """Answer with ``status`` and close the connection."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class HttpEndpoint:
    """Serves ``routes`` (path -> Route) on one listening address."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.open = 0
        #: connections closed at accept because MAX_CONNECTIONS were open
        self.refused = 0
        self.address = ""

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind ``host:port`` (0: any free port), report the bound address
        through ``task_status``, serve until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        async with trio.open_nursery() as nursery:
            task_status.started(self.address)
            await trio.serve_listeners(self._connection, listeners, handler_nursery=nursery)

    async def _connection(self, stream: trio.SocketStream) -> None:
        if self.open >= MAX_CONNECTIONS:
            self.refused += 1
            bad_requests.info("metrics connection refused", max_connections=MAX_CONNECTIONS)
            await trio.aclose_forcefully(stream)
            return
        self.open += 1
        try:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
            while await self._one_exchange(conn, stream):
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            self.open -= 1
            await trio.aclose_forcefully(stream)

    async def _one_exchange(self, conn: h11.Connection, stream: trio.SocketStream) -> bool:
        """Read one request and answer it; whether to keep the connection."""
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                path = await self._read_request(conn, stream)
        except trio.TooSlowError:
            if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                return False  # an idle keep-alive connection: close quietly
            bad_requests.info(
                "metrics connection closed: request not complete in time",
                timeout_s=REQUEST_TIMEOUT_S,
            )
            return False
        except _Reject as reject:
            bad_requests.info("metrics request refused", status=reject.status, reason=reject.reason)
            body = (reject.reason + "\n").encode()
            await self._send(conn, stream, reject.status, _TEXT, body, reject.headers, close=True)
            await _linger(stream)
            return False
        if path is None:
            return False  # closed between requests
        route = self.routes.get(path)
        if route is None:
            status, ctype, body = 404, _TEXT, _NOT_FOUND
        else:
            try:
                status, ctype, body = await route()
            except Exception:
                log.exception("metrics endpoint: %s failed", path)
                status, ctype, body = 500, _TEXT, b"internal error (logged)\n"
        await self._send(conn, stream, status, ctype, body, [], close=False)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream) -> str | None:
        """The path of the next GET request, None at a clean end of stream;
        raises _Reject for anything else."""
        path: str | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Reject(exc.error_status_hint, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_RECEIVE_BYTES)
                conn.receive_data(data)  # b"" is the end of stream
                continue
            if type(event) is h11.ConnectionClosed:
                if path is not None:
                    raise _Reject(400, "connection closed mid-request")
                return None
            if type(event) is h11.Request:
                method = event.method.decode("ascii", "replace")
                if method != "GET":
                    raise _Reject(405, f"method {method} not allowed", [("Allow", "GET")])
                target = event.target.decode("ascii", "replace")
                path = target.split("?", 1)[0]
                continue
            if type(event) is h11.Data:
                raise _Reject(400, "a GET request must not have a body")
            if type(event) is h11.EndOfMessage:
                assert path is not None
                return path
            raise _Reject(400, f"unexpected {type(event).__name__}")

    async def _send(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        content_type: str,
        body: bytes,
        extra: list[tuple[str, str]],
        *,
        close: bool,
    ) -> None:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *extra,
        ]
        if close:
            headers.append(("Connection", "close"))
        try:
            response = h11.Response(
                status_code=status, headers=headers, reason=HTTPStatus(status).phrase
            )
            data = conn.send(response)
            data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return  # the state allows no response (e.g. the peer already broke the protocol)
        with trio.move_on_after(REQUEST_TIMEOUT_S) as scope:
            await stream.send_all(data)
        if scope.cancelled_caught:
            log_event(log, logging.DEBUG, "metrics client took no response in time", status=status)
            raise trio.ClosedResourceError("response not taken in time")
