"""One client connection to the broker, pipelined, over trio.

The sans-I/O :class:`~tailrace.client.protocol.ClientConnection` does the
protocol; this class moves its bytes. Requests are written by whoever calls
:meth:`BrokerConnection.send` (under a lock, so correlation ids go out in
the order they were assigned); one reader task, started in a nursery the
caller owns, reads responses and hands each to the request waiting for it.

A request can also be written from another thread (:meth:`BrokerConnection.
send_from_thread`, the blocking producer's direct path): on a plain TCP
socket, with no write in progress, it assigns the correlation id, registers
the pending response and writes the frame with one non-blocking send, all
under ``_write_lock`` (a threading lock the trio side takes too, briefly,
to assign its correlation ids and to break the connection). What the send
could not take is left in ``_unsent`` and written by the trio thread before
anything else, so frames never interleave.

Failure rules:

* The connection breaks as a whole: a lost socket, a fatal protocol error or
  a request timing out (the response might still come and would be
  mismatched) fails every outstanding request with
  :class:`BrokerUnavailableError` (retriable) and refuses new ones. Callers
  reconnect (see pool.py).
* Request-level and partition-level broker errors are not raised here; the
  response body carries them and the caller decides.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from ..errors import (
    BrokerUnavailableError,
    RemoteProtocolError,
    TailraceError,
    TimeoutError,
    TlsHandshakeError,
)
from ..protocol import CLOSED, NEED_DATA, ClientConnection, Limits, ProduceRequest

__all__ = ["BrokerConnection", "PendingResponse", "receive_when_readable"]


async def receive_when_readable(sock: trio.socket.SocketType, size: int) -> bytes:
    """Up to ``size`` bytes from a connected trio TCP socket (b"" at the
    peer's end of stream), waiting for readability *before* the read.

    trio's ``recv`` tries the read first and, when nothing is there, waits
    and reads again: for a peer that answers one request at a time the
    first read almost always finds nothing, so every message cost a failed
    recv (EAGAIN) besides the one that read it. A reader that has used up
    what it received waits first. Raises trio.ClosedResourceError when the
    socket is closed under the wait, OSError when the connection broke."""
    fd = sock.fileno()
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return os.read(fd, size)
        except BlockingIOError:  # readable was a false alarm
            continue


log = logging.getLogger(__name__)

_RECEIVE_MIN = 256 * 1024
_RECEIVE_MAX = 16 * 1024 * 1024


class PendingResponse:
    """The handle of one sent request; ``await wait()`` gives the response body.

    ``on_done(fn)`` instead calls ``fn(pending)`` in the step that settles it
    (the connection's reader, or whatever breaks the connection): no task
    waits for it, so a caller with many requests in flight (the producer's
    sender) needs no task per request. ``result()`` then gives the body or
    raises the failure."""

    __slots__ = ("_callback", "_error", "_event", "_result", "correlation_id")

    def __init__(self, correlation_id: int) -> None:
        self.correlation_id = correlation_id
        self._event = trio.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._callback: Callable[[PendingResponse], None] | None = None

    def _set(self, result: Any) -> None:
        self._result = result
        self._event.set()
        self._settled()

    def _fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()
            self._settled()

    def _settled(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(self)

    def on_done(self, fn: Callable[[PendingResponse], None]) -> None:
        """Call ``fn(self)`` once settled (at once if it already is; one
        callback per request)."""
        if self._event.is_set():
            fn(self)
        else:
            self._callback = fn

    def result(self) -> Any:
        """The response body of a settled request, or its failure raised."""
        if self._error is not None:
            raise self._error
        return self._result

    def done(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> Any:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._result


class BrokerConnection:
    """A connected, pipelining client connection.

    Create with :meth:`connect` inside a nursery that will run the reader::

        async with trio.open_nursery() as nursery:
            conn = await BrokerConnection.connect(nursery, "127.0.0.1:7420")
            response = await conn.request(MetadataRequest())
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        *,
        limits: Limits | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.stream = stream
        self.address = address
        self.codec = ClientConnection(limits)
        self.request_timeout = request_timeout
        self._pending: deque[PendingResponse] = deque()
        self._send_lock = trio.Lock()
        self._broken: BrokerUnavailableError | None = None
        self._closed = trio.Event()
        self._reader_scope: trio.CancelScope | None = None
        #: whether any response arrived (a TLS session ended before one is a refusal)
        self._answered = False
        #: taken (briefly) around correlation-id assignment, the pending
        #: queue and the start of a write, by the trio side and by
        #: send_from_thread; never held across a wait
        self._write_lock = threading.Lock()
        #: a frame is being written by the trio side (or the rest of one a
        #: thread could not write is in ``_unsent``): no thread may write
        self._writing = False
        #: the tail of a frame send_from_thread could not write at once
        self._unsent = b""
        #: set by connect(): where send_from_thread hands ``_unsent`` over
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    @classmethod
    async def connect(
        cls,
        nursery: trio.Nursery,
        address: str,
        *,
        limits: Limits | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        local_address: str | None = None,
    ) -> BrokerConnection:
        """``local_address``: the source address to connect from (a broker's
        ``cluster.bind_host``); None lets the OS choose."""
        host, port = split_address(address)
        try:
            with trio.fail_after(connect_timeout):
                stream: trio.abc.Stream = await trio.open_tcp_stream(
                    host, port, local_address=local_address
                )
                if ssl_context is not None:
                    tls = trio.SSLStream(
                        stream,
                        ssl_context,
                        server_hostname=server_hostname or host,
                        https_compatible=False,
                    )
                    try:
                        await tls.do_handshake()
                    except BaseException as exc:
                        await trio.aclose_forcefully(stream)
                        if isinstance(exc, trio.BrokenResourceError):
                            raise _tls_failure(address, exc) from exc
                        raise
                    stream = tls
        except trio.TooSlowError:
            raise BrokerUnavailableError(
                address, f"no connection within {connect_timeout:g} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise BrokerUnavailableError(address, _connect_failure_reason(exc)) from exc
        conn = cls(stream, address, limits=limits, request_timeout=request_timeout)
        conn._nursery = nursery
        conn._token = trio.lowlevel.current_trio_token()
        nursery.start_soon(conn._reader)
        return conn

    @property
    def broken(self) -> bool:
        return self._broken is not None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def send(self, body: Any, api_version: int = 0) -> PendingResponse | None:
        """Write a request and return its handle (None for an acks-0 produce,
        which gets no response)."""
        if self._broken is not None:
            raise self._broken
        # The lock is almost always free: take it without a schedule point,
        # so the request is written in the caller's step (a schedule point
        # here lets every other ready task run, and the event loop poll,
        # before the bytes leave). Cancellation is still honoured first.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        try:
            with self._write_lock:  # held by another thread only for a non-blocking send
                if self._broken is not None:
                    raise self._broken
                correlation_id, prefix, buffers = self.codec.send_request(body, api_version)
                expects = not (type(body) is ProduceRequest and body.acks == 0)
                pending = PendingResponse(correlation_id) if expects else None
                if pending is not None:
                    self._pending.append(pending)
                self._writing = True
            try:
                if self._unsent:  # a thread's frame goes out first, whole
                    await self._write_unsent()
                if buffers:
                    if sum(len(b) for b in buffers) < 64 * 1024:
                        await self.stream.send_all(b"".join([prefix, *buffers]))
                    else:
                        await self.stream.send_all(prefix)
                        for buf in buffers:
                            await self.stream.send_all(buf)
                else:
                    await self.stream.send_all(prefix)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._break(f"send failed: {exc}")
                raise self._broken from exc
            except trio.Cancelled:
                # A half-written frame desynchronises the stream for good.
                self._break("a request was cancelled while being written")
                raise
            finally:
                self._writing = False
        finally:
            self._send_lock.release()
        return pending

    @property
    def thread_writable(self) -> bool:
        """Whether :meth:`send_from_thread` can be used at all: a plain TCP
        connection made by :meth:`connect` (TLS writes stay on the trio
        thread)."""
        return type(self.stream) is trio.SocketStream and self._token is not None

    def send_from_thread(
        self, body: Any, register: Callable[[PendingResponse], None], api_version: int = 0
    ) -> PendingResponse | None:
        """Write a request from a thread other than the trio thread, now.

        Returns None, having changed nothing, when that cannot be done
        without waiting: not a plain TCP connection, broken, another write
        in progress (or the lock held by one). Otherwise the request is
        committed: ``register(pending)`` is called once its correlation id is
        taken and before any byte leaves (its response may be read by the
        trio thread the moment they do), then the frame is written with one
        non-blocking send. What the socket does not take (a full send
        buffer), or a send that fails, is handed to the trio thread, which
        writes it before any other request (or breaks the connection, failing
        the request as a trio-side write would). ``body`` must expect a
        response."""
        if not self.thread_writable or not self._write_lock.acquire(blocking=False):
            return None
        try:
            if self._broken is not None or self._writing or self._send_lock.locked():
                return None
            correlation_id, prefix, buffers = self.codec.send_request(body, api_version)
            pending = PendingResponse(correlation_id)
            register(pending)
            self._pending.append(pending)
            frame = b"".join([prefix, *buffers]) if buffers else prefix
            try:  # the socket is non-blocking (trio's)
                sent = os.write(self.stream.socket.fileno(), frame)  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the trio thread's write of it meets the error and breaks
            if sent < len(frame):
                self._unsent = frame[sent:]
                self._writing = True
                assert self._token is not None
                self._token.run_sync_soon(self._start_unsent_writer)
            return pending
        finally:
            self._write_lock.release()

    def _start_unsent_writer(self) -> None:
        # trio thread: the connection's nursery owns the writer task
        if self._nursery is not None and self._broken is None:
            self._nursery.start_soon(self._write_unsent_locked)
        elif self._broken is None:
            self._break("a request written from another thread could not be finished")

    async def _write_unsent_locked(self) -> None:
        async with self._send_lock:
            if not self._unsent:
                return  # a trio-side send wrote it first
            try:
                await self._write_unsent()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._break(f"send failed: {exc}")
            finally:
                self._writing = False

    async def _write_unsent(self) -> None:
        # under _send_lock, _writing set: the rest of a thread's frame
        data, self._unsent = self._unsent, b""
        await self.stream.send_all(data)

    async def request(
        self,
        body: Any,
        api_version: int = 0,
        timeout: float | None = None,
        on_response: Callable[[PendingResponse], None] | None = None,
    ) -> Any:
        """Send ``body`` and wait for its response body. ``on_response``, if
        given, is called with the settled request in the step that reads the
        response (or fails the request), before the caller resumes."""
        pending = await self.send(body, api_version)
        if pending is None:
            return None
        if on_response is not None:
            pending.on_done(on_response)
        return await self.wait(pending, timeout)

    async def wait(self, pending: PendingResponse, timeout: float | None = None) -> Any:
        limit = self.request_timeout if timeout is None else timeout
        with trio.move_on_after(limit if limit > 0 else math.inf) as scope:
            return await pending.wait()
        if scope.cancelled_caught:
            self._break(f"no response within {limit:g} s")
            raise TimeoutError(f"request to {self.address} got no response within {limit:g} s")
        raise AssertionError("unreachable")

    def expire(self, pending: PendingResponse, limit: float) -> None:
        """``pending`` got no response within ``limit`` seconds (the caller
        keeps the clock, as ``wait`` does): it fails with TimeoutError, and
        the connection breaks (a late response would be mismatched)."""
        pending._fail(TimeoutError(f"request to {self.address} got no response within {limit:g} s"))
        self._break(f"no response within {limit:g} s")

    def _break(self, reason: str) -> None:
        with self._write_lock:  # no thread is between registering and writing
            if self._broken is None:
                self._broken = BrokerUnavailableError(self.address, reason)
                log.debug("connection to %s broken: %s", self.address, reason)
            failed = list(self._pending)
            self._pending.clear()
        for pending in failed:
            pending._fail(self._broken)
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    async def _reader(self) -> None:
        codec = self.codec
        sock = getattr(self.stream, "socket", None)  # plain TCP: recv_into works
        with trio.CancelScope() as self._reader_scope:
            try:
                while True:
                    try:
                        event = codec.next_event()
                    except RemoteProtocolError as exc:
                        self._break(f"protocol error: {exc}")
                        return
                    if event is NEED_DATA:
                        try:
                            target = codec.receive_buffer() if sock is not None else None
                            if target is not None:
                                # a large frame: straight from the kernel into it
                                codec.received_into(await sock.recv_into(target))
                                continue
                            wanted = codec.bytes_wanted()
                            size = min(max(wanted, _RECEIVE_MIN), _RECEIVE_MAX)
                            if sock is not None:
                                data = await receive_when_readable(sock, size)
                            else:
                                data = await self.stream.receive_some(size)
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                            reason = _loss_reason(exc)
                            if type(self.stream) is trio.SSLStream and not self._answered:
                                reason += (
                                    " (the broker ended the TLS session before answering: a "
                                    "mutual-TLS listener does so when the client certificate "
                                    "is missing or not signed by its CA)"
                                )
                            self._break(f"connection lost: {reason}")
                            return
                        codec.receive_data(data)
                        continue
                    if event is CLOSED:
                        self._break("the broker closed the connection")
                        return
                    if not self._pending:
                        self._break("a response arrived for no request")
                        return
                    self._answered = True
                    self._pending.popleft()._set(event.body)
            finally:
                # However the reader ends (broken, closed, cancelled with its
                # nursery), the connection is finished: fail what waits and
                # close the socket.
                self._break("the connection's reader stopped")
                self._closed.set()
                await trio.aclose_forcefully(self.stream)

    def abort(self, reason: str) -> None:
        """Break the connection now: outstanding requests fail with
        BrokerUnavailableError(reason); the reader closes the socket."""
        self._break(reason)

    async def aclose(self) -> None:
        """Close the connection; outstanding requests fail."""
        self._break("connection closed by the client")
        await trio.aclose_forcefully(self.stream)


def _tls_failure(address: str, exc: BaseException) -> TailraceError:
    """What a failed TLS handshake means. The broker's certificate refused
    here, or an alert from the broker, will not change on retry
    (TlsHandshakeError); a connection that merely closed during the
    handshake may be a broker restarting (BrokerUnavailableError, retried)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return TlsHandshakeError(
            address, f"the broker's certificate is not accepted: {cause.verify_message}"
        )
    if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
        reason = (cause.reason or str(cause)).lower().replace("_", " ")
        if "wrong version" in reason or "record layer" in reason:
            reason += " (the broker does not speak TLS there: is it a plaintext listener?)"
        return TlsHandshakeError(address, reason)
    return BrokerUnavailableError(
        address,
        "the connection closed during the TLS handshake (a plaintext listener, or the "
        "broker refused our certificate, or it is restarting)",
    )


def _loss_reason(exc: BaseException) -> str:
    """Why the connection broke, with the TLS alert when there was one (a
    broker refusing a client certificate says so only after TLS 1.3's
    handshake, at the first read)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return "TLS error: " + cause.reason.lower().replace("_", " ")
    return str(exc) or type(exc).__name__


def _connect_failure_reason(exc: BaseException) -> str:
    """Why a connect failed, in the OS's words ("Connection refused").

    trio.open_tcp_stream tries every address the host resolves to and then
    raises OSError("all attempts to connect to H:P failed") from an
    ExceptionGroup of the attempts' errors: their reasons are the useful part.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons = dict.fromkeys(
            os.strerror(e.errno) if e.errno else str(e)
            for e in cause.exceptions
            if isinstance(e, OSError)
        )
        if reasons:
            return "; ".join(reasons)
    return str(exc) or type(exc).__name__


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"bad broker address {address!r}: expected host:port")
    return host, int(port_text)
