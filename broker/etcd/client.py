"""A thin etcd v3 client over the HTTP/JSON gateway, on trio through httpx.

No etcd client library runs on trio (python-etcd3 does not import with
current protobuf; aetcd and etcetra are asyncio only), but etcd serves its
whole v3 API as JSON over HTTP: this module posts what codec.py builds.

Rules, from measuring Debian's etcd 3.4 here (docs/operations.md):

* Every request has a deadline (``timeout``, 2 s by default): a member cut
  off from its quorum holds a request ~7 s before answering "timed out".
* Reads and lease keepalives fail over to the next endpoint on a timeout, a
  refused connection or a 5xx answer, trying each endpoint once. Writes fail
  over only when the request cannot have reached etcd (the connection was
  refused); after that an unanswered write raises
  :class:`EtcdUnavailableError` with ``ambiguous=True``: it may have applied,
  so the caller re-reads instead of guessing. Either way the next request
  starts at the next endpoint.
* A watch sends ``Grpc-Metadata-hasleader: true``, else a watch on a member
  without a quorum stays open and silent; it resumes from the revision after
  the last one it delivered when its stream breaks, and raises
  :class:`WatchCompactedError` when etcd compacted that revision away.
* Replies are read with a size bound (``max_reply_bytes``) before they are
  parsed; watch lines too.
* Keepalives run in :meth:`EtcdClient.keep_alive`, a task the caller starts
  in its own nursery; it raises :class:`LeaseExpiredError` when the lease is
  gone or could not be renewed within its TTL.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import h11
import httpx
import trio

from ..logs import log_event
from .codec import (
    Compare,
    KeyValue,
    Op,
    RangeResult,
    TxnResult,
    WatchReply,
    b64,
    delete_body,
    parse_range,
    parse_txn,
    parse_watch_reply,
    prefix_end,
    put_body,
    range_body,
    txn_body,
)
from .errors import (
    EtcdRequestError,
    EtcdUnavailableError,
    LeaseExpiredError,
    WatchCompactedError,
)

__all__ = ["EtcdClient", "Lease"]

log = logging.getLogger("tailrace.etcd")

#: gRPC NotFound: the gateway's code for "requested lease not found"
_GRPC_NOT_FOUND = 5
_WATCH_HEADERS = {"Grpc-Metadata-hasleader": "true"}


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


class _Retry(Exception):
    """One endpoint failed in a way another endpoint may not."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        #: whether the request may have reached etcd
        self.sent = sent


class EtcdClient:
    """``async with EtcdClient(["http://127.0.0.1:2379", ...]) as etcd:``.

    ``local_address`` binds the source address of every connection (so a
    network fault rule can match one node by its 127.0.0.N).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 2.0,
        local_address: str | None = None,
        max_reply_bytes: int = 64 * 1024 * 1024,
        max_watch_line_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self.max_watch_line_bytes = max_watch_line_bytes
        #: index of the endpoint the next request starts with
        self._current = 0
        self._local_address = local_address
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=local_address),
            # the whole-request deadline is ours (trio.move_on_after); httpx's
            # per-phase ones are a backstop, off for watch streams
            timeout=httpx.Timeout(timeout),
        )

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def endpoint(self) -> str:
        """The endpoint the next request goes to first."""
        return self.endpoints[self._current]

    def _rotate(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.endpoints)

    def skip_endpoint(self, endpoint: str) -> None:
        """Start the next requests (and watches) past ``endpoint``, which is
        misbehaving in a way no request failed on (a stalled watch)."""
        if endpoint in self.endpoints:
            self._rotate(self.endpoints.index(endpoint))

    # --- one request ---------------------------------------------------------

    async def call(
        self, path: str, body: dict[str, Any], *, idempotent: bool, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` with failover; the JSON reply.
        ``timeout``: each endpoint's deadline, when shorter than the client's."""
        reasons: list[str] = []
        start = self._current
        n = len(self.endpoints)
        for attempt in range(n):
            index = (start + attempt) % n
            try:
                return await self._post_once(index, path, body, timeout)
            except _Retry as exc:
                reasons.append(f"{self.endpoints[index]}: {exc.reason}")
                self._rotate(index)
                if exc.sent and not idempotent:
                    raise EtcdUnavailableError(
                        f"etcd {path}: no answer, the write may have been applied "
                        f"({'; '.join(reasons)})",
                        ambiguous=True,
                    ) from None
        raise EtcdUnavailableError(f"etcd {path}: no endpoint answered ({'; '.join(reasons)})")

    async def _post_once(
        self, index: int, path: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        url = f"{self.endpoints[index]}/v3/{path}"
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        with trio.move_on_after(limit) as deadline:
            try:
                async with self._http.stream("POST", url, json=body) as response:
                    raw = await self._read_bounded(response)
                    status = response.status_code
            except httpx.ConnectError as exc:
                raise _Retry(f"cannot connect ({exc})", sent=False) from None
            except httpx.TimeoutException:
                raise _Retry("timed out", sent=True) from None
            except httpx.TransportError as exc:
                raise _Retry(f"{type(exc).__name__}: {exc}", sent=True) from None
        if deadline.cancelled_caught:
            # a connection to a stopped member opens (the kernel accepts it):
            # whether the request got further cannot be told
            raise _Retry(f"no answer within {limit:g} s", sent=True)
        reply = _decode(raw, url)
        if status == 200:
            return reply
        message = str(reply.get("message") or reply.get("error") or raw[:200])
        if status >= 500:
            raise _Retry(f"HTTP {status}: {message}", sent=True)
        grpc_code = int(reply.get("code", -1))
        if grpc_code == _GRPC_NOT_FOUND and "lease not found" in message and path != "lease/revoke":
            # a put or txn attaching a key to a lease that expired meanwhile
            raise LeaseExpiredError(_lease_in(body))
        raise EtcdRequestError(
            f"etcd {path}: HTTP {status}: {message}", grpc_code=grpc_code, status=status
        )

    async def _read_bounded(self, response: httpx.Response) -> bytes:
        chunks = []
        size = 0
        # Past the bound, stop by cancelling rather than by leaving the loop:
        # a Cancelled raised inside httpx's reader unwinds its inner async
        # generators, which abandoning the loop would leave unclosed
        with trio.CancelScope() as scope:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_reply_bytes:
                    scope.cancel()
                    continue
                chunks.append(chunk)
        if size > self.max_reply_bytes:
            raise EtcdRequestError(
                f"etcd reply larger than {self.max_reply_bytes} bytes (max_reply_bytes)"
            )
        return b"".join(chunks)

    # --- key-value -------------------------------------------------------------

    async def range(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        end: bytes | None = None,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
    ) -> RangeResult:
        """Keys ``key`` (or every key under the prefix ``key``), linearizable;
        ``keys_only`` leaves the values out."""
        body = range_body(
            key, prefix=prefix, end=end, revision=revision, limit=limit, keys_only=keys_only
        )
        return parse_range(await self.call("kv/range", body, idempotent=True))

    async def get(self, key: bytes) -> KeyValue | None:
        result = await self.range(key)
        return result.kvs[0] if result.kvs else None

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Write ``key``; the store's revision after the write."""
        reply = await self.call("kv/put", put_body(key, value, lease=lease), idempotent=False)
        return int((reply.get("header") or {}).get("revision", 0))

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        """Delete ``key`` (or every key under the prefix); how many went."""
        reply = await self.call("kv/deleterange", delete_body(key, prefix=prefix), idempotent=False)
        return int(reply.get("deleted", 0))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """If every comparison holds, run ``success``, else ``failure``: atomically."""
        reply = await self.call("kv/txn", txn_body(compare, success, failure), idempotent=False)
        return parse_txn(reply)

    async def create(self, key: bytes, value: bytes, *, lease: int = 0) -> TxnResult:
        """Create ``key`` only if it does not exist. On failure the result's
        one range holds the key that is there."""
        return await self.txn(
            [Compare.absent(key)], [Op.put(key, value, lease=lease)], [Op.get(key)]
        )

    async def compact(self, revision: int) -> None:
        await self.call("kv/compaction", {"revision": str(revision)}, idempotent=True)

    # --- leases ----------------------------------------------------------------

    async def grant(self, ttl: int) -> Lease:
        """A new lease of ``ttl`` seconds (etcd may round it up to its minimum)."""
        reply = await self.call("lease/grant", {"TTL": ttl}, idempotent=False)
        if reply.get("error"):
            raise EtcdRequestError(f"etcd lease/grant: {reply['error']}")
        return Lease(int(reply["ID"]), int(reply.get("TTL", ttl)))

    async def revoke(self, lease_id: int) -> None:
        """End the lease now (its keys are deleted); a gone lease is fine."""
        try:
            await self.call("lease/revoke", {"ID": str(lease_id)}, idempotent=True)
        except EtcdRequestError as exc:
            if exc.grpc_code != _GRPC_NOT_FOUND:
                raise

    async def keepalive_once(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Renew the lease; its remaining TTL. :class:`LeaseExpiredError` when
        gone. ``timeout``: each endpoint's deadline (see :meth:`call`)."""
        reply = await self.call(
            "lease/keepalive", {"ID": str(lease_id)}, idempotent=True, timeout=timeout
        )
        result = reply.get("result", reply)
        if "error" in reply and "result" not in reply:
            raise EtcdUnavailableError(f"etcd lease/keepalive: {reply['error']}")
        ttl = int(result.get("TTL", 0))
        if ttl <= 0:
            raise LeaseExpiredError(lease_id)
        return ttl

    async def keep_alive(
        self, lease: Lease, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Renew ``lease`` every third of its TTL until cancelled. Raises
        :class:`LeaseExpiredError` when etcd says it is gone, or when no
        renewal got through for a whole TTL (it may be gone: the holder must
        act as if it were). Start it in the nursery that owns the lease."""
        interval = max(lease.ttl / 3, 0.05)
        # a member that hangs (paused, cut off) must not use up the TTL before
        # the next endpoint is tried: each gets at most one interval
        per_endpoint = min(self.timeout, interval)
        await self.keepalive_once(lease.id)  # a lease already gone fails the start
        last_renewed = trio.current_time()
        task_status.started()
        while True:
            await trio.sleep(interval)
            # one attempt may try every endpoint; it must not outlast the TTL
            left = lease.ttl - (trio.current_time() - last_renewed)
            renewed = False
            with trio.move_on_after(max(left, 0)):
                try:
                    await self.keepalive_once(lease.id, timeout=per_endpoint)
                    renewed = True
                except EtcdUnavailableError as exc:
                    log_event(log, logging.WARNING, "lease keepalive failed", error=str(exc))
            if renewed:
                last_renewed = trio.current_time()
            elif trio.current_time() - last_renewed >= lease.ttl:
                raise LeaseExpiredError(lease.id)

    # --- watch -----------------------------------------------------------------

    async def watch(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        start_revision: int,
        prev_kv: bool = False,
        retry_delay: float = 0.2,
    ) -> AsyncIterator[WatchReply]:
        """Every change to ``key`` (or under the prefix) from
        ``start_revision`` on, one reply per etcd revision batch, forever.

        A broken stream (the member died, lost its leader, a timeout) is
        opened again on the next endpoint from the revision after the last
        one delivered, so nothing is missed or repeated. Raises
        :class:`WatchCompactedError` when that revision was compacted away.
        Use as ``async with contextlib.aclosing(etcd.watch(...)) as replies``.
        """
        request: dict[str, Any] = {"key": b64(key)}
        if prefix:
            request["range_end"] = b64(prefix_end(key))
        if prev_kv:
            request["prev_kv"] = True
        next_revision = start_revision
        while True:
            request["start_revision"] = str(next_revision)
            index = self._current
            problem = "stream ended"
            try:
                lines = self._stream_lines(index, "/v3/watch", {"create_request": request})
                async with contextlib.aclosing(lines):
                    async for line in lines:
                        reply = parse_watch_reply(_decode(line, self.endpoints[index]))
                        if reply.error:
                            problem = reply.error
                            break
                        if reply.canceled:
                            if reply.compact_revision:
                                raise WatchCompactedError(reply.compact_revision)
                            problem = f"cancelled: {reply.cancel_reason or 'no reason'}"
                            break
                        if reply.events:
                            next_revision = reply.events[-1].kv.mod_revision + 1
                            yield reply
            # trio.BrokenResourceError: a reset connection (a member killed
            # with unread data in its socket sends RST), which trio's socket
            # stream raises in place of the OSError
            except (
                OSError,
                trio.BrokenResourceError,
                trio.TooSlowError,
                h11.ProtocolError,
                _Retry,
            ) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except EtcdRequestError as exc:
                problem = str(exc)
            self._rotate(index)
            log_event(
                log,
                logging.WARNING,
                "etcd watch broke, resuming",
                endpoint=self.endpoints[index],
                from_revision=next_revision,
                reason=problem,
            )
            await trio.sleep(retry_delay)

    async def _stream_lines(
        self, index: int, path: str, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        """POST ``body`` and yield the streamed reply's lines, each bounded.

        Written with h11 on a trio stream rather than httpx: an httpx stream
        abandoned part-way (a watch that is closed, or breaks on an error
        line) leaves httpx's and httpcore's inner async generators unclosed,
        which trio reports when they are collected. Connecting and reading
        the response head have the request deadline; the body has none (a
        watch is quiet while nothing changes).
        """
        url = httpx.URL(self.endpoints[index])
        host, port = url.host, url.port or 80
        payload = json.dumps(body).encode()
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_watch_line_bytes)
        head = [
            ("Host", f"{host}:{port}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            *_WATCH_HEADERS.items(),
        ]
        with trio.fail_after(self.timeout):
            stream = await trio.open_tcp_stream(host, port, local_address=self._local_address)
        try:
            with trio.fail_after(self.timeout):
                await stream.send_all(
                    conn.send(h11.Request(method="POST", target=path, headers=head))
                    + conn.send(h11.Data(data=payload))
                    + conn.send(h11.EndOfMessage())
                )
                event = await _next_event(conn, stream)
            if not isinstance(event, h11.Response):
                raise _Retry(f"no response head ({type(event).__name__})", sent=True)
            if event.status_code != 200:
                raise _Retry(f"HTTP {event.status_code}", sent=True)
            pending = b""
            while True:
                event = await _next_event(conn, stream)
                if not isinstance(event, h11.Data):
                    return  # EndOfMessage or ConnectionClosed
                pending += event.data
                lines = pending.split(b"\n")
                pending = lines.pop()
                if len(pending) > self.max_watch_line_bytes:
                    raise EtcdRequestError(
                        f"etcd watch line longer than {self.max_watch_line_bytes} bytes"
                    )
                for line in lines:
                    if line.strip():
                        yield line
        finally:
            await stream.aclose()


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(65536))


def _lease_in(body: Any) -> int:
    """The lease a request attaches keys to (0 if none is found)."""
    if isinstance(body, dict):
        for key in ("lease", "ID"):
            if key in body:
                return int(body[key])
        values: Any = body.values()
    elif isinstance(body, list):
        values = body
    else:
        return 0
    for value in values:
        found = _lease_in(value)
        if found:
            return found
    return 0


def _decode(raw: bytes, url: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise EtcdRequestError(f"{url}: not JSON: {raw[:200]!r}") from None
    if not isinstance(value, dict):
        raise EtcdRequestError(f"{url}: not a JSON object: {raw[:200]!r}")
    return value
