"""One client connection: read requests, run them, write responses in order.

Shape (one trio nursery per connection)::

    reader task ──> [pending responses, bounded queue] ──> writer task
        │                                                     ▲
        └── a request that must wait (durability, long poll) ─┘
            runs in its own task and fills its slot later

Rules:

1. Requests are handled in arrival order up to the point where they would
   wait: the produce path validates and appends synchronously in the reader,
   so pipelined produces keep their order. Only the waiting part runs in a
   task of its own.
2. Responses are written strictly in request order, one at a time: by the
   writer task; by the reader, for an immediate reply to the last request
   it has read while the writer is idle (every earlier reply written); or,
   for the reply the writer is waiting for (a long poll
   woken by an append), by the task that completed it, which saves a task
   switch, or earlier still by the step of the request that woke it
   (:meth:`ConnectionHandler.answer_now`, one non-blocking write); nothing
   else writes to the socket.
3. The queue bounds how many requests one connection may have in flight;
   when it is full the reader stops reading and TCP pushes back.
4. A malformed request (intact frame) gets an error response. Broken framing
   closes the connection with a logged reason. An unexpected exception in a
   handler is logged with its traceback and answered with
   UNKNOWN_SERVER_ERROR; it never takes the broker down.
5. A connection with nothing in flight that sends nothing for
   ``idle_timeout`` seconds is closed, and so is one whose peer does not take
   a response for that long (a consumer that never reads), and one whose
   request frame is not complete that long after its first byte (a client
   trickling bytes).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from tailrace.client.errors import BrokerError, RemoteProtocolError, UnknownServerError
from tailrace.client.protocol import (
    CLOSED,
    NEED_DATA,
    BadRequest,
    Limits,
    Request,
    SendfileSlice,
    ServerConnection,
)
from tailrace.client.transport.connection import receive_when_readable

from ..metrics import definitions as metrics
from .ratelimit import RateLimitedLogger
from .sendfile import pread_all, sendfile_all, write_all, writev_all

__all__ = [
    "ALREADY_WRITTEN",
    "NO_REPLY",
    "CloseConnection",
    "ConnectionHandler",
    "ConnectionInfo",
    "Later",
    "Streamed",
]

log = logging.getLogger(__name__)
bad_clients = RateLimitedLogger(log, per_second=5)

# metric children, bound once (see ..metrics.definitions)
_RECEIVED = metrics.BYTES_RECEIVED
_SENT = metrics.BYTES_SENT
_SENDFILE_BYTES = metrics.FETCH_BYTES["sendfile"]
_COPIED_BYTES = metrics.FETCH_BYTES["copy"]

#: A zero-copy response up to this size is read into memory and written in one
#: call with its header (one TCP segment) instead of header + sendfile.
SMALL_RESPONSE_BYTES = 16 * 1024

_RECEIVE_MIN = 64 * 1024
_RECEIVE_MAX = 8 * 1024 * 1024


class CloseConnection(Exception):
    """Raised by a handler to end the connection after logging ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Streamed:
    """A response whose records parts may include SendfileSlices.

    ``parts`` are written after ``prefix`` in order; each SendfileSlice's
    ``source`` has ``fd``, ``position``, ``length`` and ``release()``.
    """

    __slots__ = ("on_release", "parts", "prefix")

    def __init__(
        self, prefix: bytes, parts: list, on_release: Callable[[], None] | None = None
    ) -> None:
        self.prefix = prefix
        self.parts = parts
        #: called once when the response is written or dropped (the Kafka
        #: front-end returns its down-conversion budget here)
        self.on_release = on_release

    def release(self) -> None:
        for part in self.parts:
            if type(part) is SendfileSlice and part.source is not None:
                part.source.release()
                part.source = None
        done, self.on_release = self.on_release, None
        if done is not None:
            done()


class _NoReply:
    __repr__ = lambda self: "NO_REPLY"  # noqa: E731


#: A handler's answer when the protocol says no response is sent (acks 0).
NO_REPLY = _NoReply()


class _Written:
    __repr__ = lambda self: "WRITTEN"  # noqa: E731


#: A slot's reply once the task that completed it wrote it (the writer skips
#: it); a long poll's handler returns it when answer_now wrote its response.
ALREADY_WRITTEN = _WRITTEN = _Written()


class Later:
    """A handler's answer when it must wait: ``await fn(*args)`` gives the
    reply. Runs in its own task so later requests are not held up, unless
    ``barrier`` is set: then the connection reads nothing more until it is
    done (for waits that later requests on the connection depend on, such as
    creating the topic a pipelined produce writes to)."""

    __slots__ = ("args", "barrier", "fn")

    def __init__(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, barrier: bool = False
    ) -> None:
        self.fn = fn
        self.args = args
        self.barrier = barrier


class ConnectionInfo:
    """What handlers may know about the connection they serve."""

    __slots__ = ("answer_now", "listener", "peer", "principal", "state", "zero_copy")

    def __init__(self, listener: str, peer: str, zero_copy: bool) -> None:
        self.listener = listener
        self.peer = peer
        self.zero_copy = zero_copy
        self.principal = "User:ANONYMOUS"
        #: free slot for per-connection protocol state (authentication)
        self.state: Any = None
        #: ``answer_now(request, build)``: the connection's
        #: :meth:`ConnectionHandler.answer_now` on a plain zero-copy socket,
        #: else None
        self.answer_now: Callable[[Request, Callable[[], Streamed]], Any] | None = None


Dispatch = Callable[[ConnectionInfo, Request | BadRequest], Any]


class _Slot:
    __slots__ = ("done", "reply", "request")

    def __init__(self) -> None:
        self.reply: Any = None
        self.done: trio.Event | None = None
        #: the request of a slot answered Later (see answer_now)
        self.request: Any = None


class ConnectionHandler:
    """Serves one accepted stream until the peer leaves or the broker drains."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        info: ConnectionInfo,
        dispatch: Dispatch,
        *,
        limits: Limits,
        max_in_flight: int,
        idle_timeout: float,
        error_response: Callable[[Request | BadRequest, BrokerError], bytes] | None = None,
        codec: Any = None,
    ) -> None:
        self.stream = stream
        self.info = info
        self.dispatch = dispatch
        #: the protocol's sans-I/O codec: the native ServerConnection unless
        #: another is given (the Kafka front-end's KafkaServerConnection has
        #: the same surface; its error_response may answer None: close)
        self.conn = codec if codec is not None else ServerConnection(limits)
        self._bad_request = getattr(self.conn, "BAD_REQUEST", BadRequest)
        self.max_in_flight = max_in_flight
        self.idle_timeout = idle_timeout if idle_timeout > 0 else math.inf
        self.in_flight = 0
        self._reader_scope: trio.CancelScope | None = None
        #: when the request frame under way must be complete (see _reader)
        self._frame_deadline = math.inf
        #: when the reader last read (or last waited for something else)
        self._last_read = 0.0
        self._closing_reason: str | None = None
        self._writer_done = False
        #: the slot whose reply the writer is waiting for (see _complete)
        self._awaited: _Slot | None = None
        #: the writer waits for a slot with every earlier reply written (a
        #: plain socket): the reader may write an immediate reply itself
        self._writer_idle = False
        self._sock = getattr(stream, "socket", None)
        if self._sock is not None and info.zero_copy:
            info.answer_now = self.answer_now

    def stop_reading(self) -> None:
        """Stop taking requests; those already read are still answered."""
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    async def run(self) -> None:
        send, receive = trio.open_memory_channel[_Slot](self.max_in_flight)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, receive, nursery.cancel_scope)
                async with send:
                    with trio.CancelScope() as self._reader_scope:
                        await self._reader(send, nursery)
        finally:
            if self._closing_reason:
                bad_clients.info(
                    "closing connection",
                    peer=self.info.peer,
                    listener=self.info.listener,
                    reason=self._closing_reason,
                )

    # --- reading -------------------------------------------------------

    async def _reader(self, send: trio.MemorySendChannel[_Slot], nursery: trio.Nursery) -> None:
        # One timer for both limits, and no cancel scope, nor even a deadline
        # set, per read (each costs microseconds on the hot path): a read only
        # notes its time. The timer is armed for the earliest moment a limit
        # could run out (_timer_deadline); when it goes off, the limits are
        # checked against what happened since, and unless one ran out it is
        # armed again. A cancelled scope stays cancelled: each arming is a
        # new one.
        self._frame_deadline = math.inf
        self._last_read = trio.current_time()
        while True:
            with trio.CancelScope(deadline=self._timer_deadline()) as timer:
                if await self._read_requests(timer, send, nursery):
                    return
            if not timer.cancelled_caught:
                continue  # it went off as data came: the data was taken, renew it
            now = trio.current_time()
            if now >= self._frame_deadline:
                self._closing_reason = (
                    f"a request frame took longer than {self.idle_timeout:g} s to arrive"
                )
                return
            if self.in_flight == 0 and now >= self._last_read + self.idle_timeout:
                self._closing_reason = f"idle for {self.idle_timeout:g} s"
                return

    def _timer_deadline(self) -> float:
        """When the reader's timer must go off: ``idle_timeout`` after the
        last read (with requests in flight once that passed: a whole timeout
        more), or the frame under way's deadline if sooner."""
        idle = self._last_read + self.idle_timeout
        if idle <= trio.current_time():
            idle = trio.current_time() + self.idle_timeout
        return min(self._frame_deadline, idle)

    async def _read_requests(
        self, timer: trio.CancelScope, send: trio.MemorySendChannel[_Slot], nursery: trio.Nursery
    ) -> bool:
        """Read and dispatch requests until the connection ends (True) or
        ``timer`` goes off (False, or Cancelled out of a read)."""
        conn = self.conn
        while True:
            event = self._next_event()
            if event is NEED_DATA:
                # A frame under way must be complete within idle_timeout of
                # its first byte (the clock restarts with each whole frame): a
                # client trickling bytes (slow loris) would otherwise hold its
                # connection forever.
                if conn.buffered and self._frame_deadline == math.inf:
                    # its first bytes came with the last read
                    self._frame_deadline = self._last_read + self.idle_timeout
                # a large frame (a big produce) goes straight into its own buffer
                target = conn.receive_buffer() if self._sock is not None else None
                if target is None:
                    wanted = conn.bytes_wanted()
                    size = _RECEIVE_MIN if wanted <= _RECEIVE_MIN else min(wanted, _RECEIVE_MAX)
                data = await (self._receive(size) if target is None else self._receive_into(target))
                self._last_read = trio.current_time()
                if data is False:
                    return True
                if target is None:
                    conn.receive_data(data)
                    _RECEIVED.inc(len(data))
                else:
                    conn.received_into(data)
                    _RECEIVED.inc(data)
                if timer.cancel_called:
                    return False  # before anything else waits in a cancelled scope
                continue
            self._frame_deadline = math.inf
            if event is CLOSED or event is None:
                return True
            slot = _Slot()
            try:
                if type(event) is self._bad_request:
                    raise event.error
                reply = self.dispatch(self.info, event)
            except CloseConnection as exc:
                self._closing_reason = exc.reason
                return True
            except BrokerError as exc:
                reply = self._error_reply(event, exc)
            except Exception as exc:
                log.exception("request handler failed (api_key %s)", event.api_key)
                reply = self._error_reply(event, UnknownServerError(f"{type(exc).__name__}"))
            if type(reply) is CloseConnection:
                self._closing_reason = reply.reason
                return True
            if type(reply) is Later and reply.barrier:
                slot.done = trio.Event()
                self.in_flight += 1
                timer.deadline = math.inf  # the timer is for reads only
                await self._complete(slot, event, reply)
                self._rearm(timer)
                reply = slot.reply
                slot.done = None
                if isinstance(reply, CloseConnection):
                    return True
            if reply is NO_REPLY:
                continue
            if type(reply) is Later:
                slot.done = trio.Event()
                slot.request = event
                self.in_flight += 1
                nursery.start_soon(self._complete, slot, event, reply)
            else:
                if self._writer_idle and not conn.buffered and _immediate(reply):
                    # the last request read so far, answered at once, with
                    # nothing before it unwritten: written here (no writer
                    # task switch); what the socket does not take goes to
                    # the writer, first
                    reply = self._write_now(reply)
                    if reply is None:
                        continue
                slot.reply = reply
            self._writer_idle = False  # it has a slot to write now
            try:
                # No task switch per request: requests already buffered are
                # handled in one go and the writer then sends their responses
                # together. The socket read below is the checkpoint.
                send.send_nowait(slot)
            except trio.WouldBlock:
                # max_in_flight reached: wait for the writer (the timer is for reads only)
                timer.deadline = math.inf
                await send.send(slot)
                self._rearm(timer)

    def _rearm(self, timer: trio.CancelScope) -> None:
        """Arm the reader's timer again after the reader waited for something
        else than a read, which counts as activity: the idle clock restarts."""
        self._last_read = trio.current_time()
        timer.deadline = self._timer_deadline()

    def _error_reply(self, event: Any, exc: BrokerError) -> bytes | CloseConnection:
        """The codec's answer to a failed request, or CloseConnection when the
        protocol has no answer for it (Kafka closes instead)."""
        reply = self.conn.error_response(event, exc)
        if reply is None:
            return CloseConnection(
                f"api_key {event.api_key} v{event.api_version} failed: {exc.message}"
            )
        return reply

    def _next_event(self) -> Any:
        try:
            return self.conn.next_event()
        except RemoteProtocolError as exc:
            self._closing_reason = f"protocol error: {exc}"
            return None

    async def _receive(self, size: int) -> bytes | bool:
        """Bytes from the peer, b"" at its end of stream, False if it broke."""
        try:
            if self._sock is not None:
                # wait, then read: no failed recv per request (see there)
                data = await receive_when_readable(self._sock, size)
            else:
                data = await self.stream.receive_some(size)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._closing_reason = f"connection lost: {exc}"
            return False
        return data

    async def _receive_into(self, target: memoryview) -> int | bool:
        """Bytes read into ``target`` (0 at end of stream), False if it broke."""
        try:
            return await self._sock.recv_into(target)
        except OSError as exc:
            self._closing_reason = f"connection lost: {exc}"
            return False

    async def _complete(self, slot: _Slot, event: Request, later: Later) -> None:
        try:
            await self._run_later(slot, event, later)
            if self._awaited is slot and not self._writer_done:
                await self._write_awaited(slot)
        finally:
            assert slot.done is not None
            slot.done.set()
            if self._writer_done and isinstance(slot.reply, Streamed):
                slot.reply.release()  # finished after the writer gave up

    async def _write_awaited(self, slot: _Slot) -> None:
        """Write the reply the writer is waiting for from the task that made
        it (a long poll woken by an append), in this step: handing it to the
        writer costs a task switch and a turn of the event loop. Every
        earlier response is written (the writer waits for this one) and the
        writer does not write while it waits, so the order and the single
        writer at a time hold; the writer then skips the slot."""
        reply = slot.reply
        if type(reply) is not bytes and type(reply) is not Streamed:
            return  # NO_REPLY is not queued; CloseConnection: the writer ends it
        with trio.move_on_after(self.idle_timeout) as scope:
            ok = await self._write(reply)
        if scope.cancelled_caught:
            slot.reply = CloseConnection(f"peer took no response bytes for {self.idle_timeout:g} s")
        elif not ok:
            slot.reply = CloseConnection(self._closing_reason or "connection lost while writing")
        else:
            slot.reply = _WRITTEN

    def answer_now(self, request: Request, build: Callable[[], Streamed]) -> Any:
        """Write a waiting request's response from the current step, from
        any task (a long poll answered by the append that woke it).

        Only when the writer waits for exactly this request's slot (every
        earlier response is written, nothing is being written) and the
        response is small: ``build()`` is then called, its slices read into
        memory and the whole response written with one non-blocking send.
        Returns None when nothing was built (the request's task answers as
        usual), ALREADY_WRITTEN when all of it went out, else what is left to
        write (the bytes the socket did not take, or the built Streamed when
        it is not small): the request's handler returns that as its reply,
        and the task writes it in order."""
        slot = self._awaited
        if slot is None or slot.request is not request or self._writer_done:
            return None
        reply = build()
        if not _small(reply):
            return reply
        rest = self._write_now(reply)
        return _WRITTEN if rest is None else rest

    def _write_now(self, reply: bytes | Streamed) -> bytes | None:
        """Write ``reply`` (bytes, or a small Streamed, its slices read into
        memory and released) with one non-blocking send, from the current
        step, when no other write can be under way (the writer idle, or
        waiting for exactly this reply). None when all of it went out, else
        the bytes left, for whoever writes next in order."""
        if type(reply) is Streamed:
            try:
                data = b"".join(_read_small(reply))
            finally:
                reply.release()
        else:
            data = reply
        try:
            sent = os.write(self._sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return data  # the next send meets the broken socket and says so
        _SENT.inc(sent)
        return None if sent == len(data) else data[sent:]

    async def _run_later(self, slot: _Slot, event: Request, later: Later) -> None:
        try:
            slot.reply = await later.fn(*later.args)
        except CloseConnection as exc:
            self._closing_reason = exc.reason
            slot.reply = exc
        except BrokerError as exc:
            slot.reply = self._error_reply(event, exc)
        except trio.Cancelled:
            raise
        except Exception as exc:
            log.exception("request handler failed (api_key %s)", event.api_key)
            slot.reply = self._error_reply(event, UnknownServerError(type(exc).__name__))
        finally:
            if type(slot.reply) is CloseConnection:
                self._closing_reason = slot.reply.reason
            self.in_flight -= 1

    # --- writing -------------------------------------------------------

    async def _writer(
        self, receive: trio.MemoryReceiveChannel[_Slot], connection_scope: trio.CancelScope
    ) -> None:
        held: _Slot | None = None  # taken from the channel, not yet written
        try:
            while True:
                if held is not None:
                    slot, held = held, None
                else:
                    try:
                        slot = receive.receive_nowait()
                    except trio.WouldBlock:
                        # parked with every reply written: until the reader
                        # queues the next slot (it clears this as it does)
                        self._writer_idle = self._sock is not None
                        try:
                            slot = await receive.receive()
                        except trio.EndOfChannel:
                            break
                        finally:
                            self._writer_idle = False
                    except trio.EndOfChannel:
                        break
                if slot.done is not None:
                    self._awaited = slot
                    try:
                        await slot.done.wait()
                    finally:
                        self._awaited = None
                reply = slot.reply
                if reply is _WRITTEN:
                    continue
                if isinstance(reply, CloseConnection):
                    break
                if type(reply) is bytes:
                    # Pipelined requests finish in bursts: write the responses
                    # that are ready together, in one send, in order.
                    batch = [reply]
                    while True:
                        try:
                            nxt = receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        if (nxt.done is None or nxt.done.is_set()) and type(nxt.reply) is bytes:
                            batch.append(nxt.reply)
                            continue
                        held = nxt
                        break
                    if len(batch) > 1:
                        reply = b"".join(batch)
                with trio.move_on_after(self.idle_timeout) as scope:
                    ok = await self._write(reply)
                if scope.cancelled_caught:
                    self._closing_reason = (
                        f"peer took no response bytes for {self.idle_timeout:g} s"
                    )
                    break
                if not ok:
                    break
        finally:
            # Whatever ends the writer ends the connection: release what the
            # unsent responses hold and stop the reader and waiting tasks.
            self._writer_done = True
            if held is not None and isinstance(held.reply, Streamed):
                held.reply.release()
            self._release_unsent(receive)
            receive.close()
            connection_scope.cancel()

    async def _write(self, reply: Any) -> bool:
        try:
            if type(reply) is bytes:
                await self.stream.send_all(reply)
                _SENT.inc(len(reply))
                return True
            sent = 0
            sock = self._sock if self.info.zero_copy else None
            if sock is not None and _small(reply):
                # a small response (a caught-up consumer's few records): its
                # slices read into memory and written with the header in one
                # call, so it leaves as one TCP segment and the consumer reads
                # it with one recv (header then sendfile: two segments, and
                # often two reads or two wake-ups); still two syscalls here
                try:
                    buffers = _read_small(reply)
                    await writev_all(sock, buffers)
                    sent = sum(map(len, buffers))
                finally:
                    _SENT.inc(sent)
                    reply.release()
                return True
            if sock is not None:
                # header, slices and bytes written back to back, no schedule
                # point between them (stream.send_all yields after each send)
                try:
                    await write_all(sock, reply.prefix)
                    sent = len(reply.prefix)
                    for part in reply.parts:
                        if type(part) is SendfileSlice:
                            src = part.source
                            await sendfile_all(sock, src.fd, src.position, src.length)
                            _SENDFILE_BYTES.inc(src.length)
                            sent += src.length
                        else:
                            await write_all(sock, part)
                            sent += len(part)
                finally:
                    _SENT.inc(sent)
                    reply.release()
                return True
            try:
                await self.stream.send_all(reply.prefix)
                sent = len(reply.prefix)
                for part in reply.parts:
                    if type(part) is SendfileSlice:
                        src = part.source
                        await pread_all(self.stream, src.fd, src.position, src.length)
                        _COPIED_BYTES.inc(src.length)
                        sent += src.length
                    else:
                        await self.stream.send_all(part)
                        sent += len(part)
            finally:
                _SENT.inc(sent)
                reply.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._closing_reason = f"connection lost while writing: {exc}"
            return False
        return True

    @staticmethod
    def _release_unsent(receive: trio.MemoryReceiveChannel[_Slot]) -> None:
        while True:
            try:
                slot = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            if isinstance(slot.reply, Streamed):
                slot.reply.release()


def _immediate(reply: Any) -> bool:
    """A reply the reader may write itself: bytes, or a small Streamed."""
    kind = type(reply)
    return kind is bytes or (kind is Streamed and _small(reply))


def _read_small(reply: Streamed) -> list[bytes]:
    """A small response as buffers, its slices read into memory (counted as
    copied fetch bytes); the slices stay the reply's to release."""
    buffers = [reply.prefix]
    copied = 0
    for part in reply.parts:
        if type(part) is SendfileSlice:
            src = part.source
            data = os.pread(src.fd, src.length, src.position)
            if len(data) != src.length:
                raise OSError(f"read {len(data)} of {src.length} slice bytes")
            buffers.append(data)
            copied += src.length
        else:
            buffers.append(part)
    _COPIED_BYTES.inc(copied)
    return buffers


def _small(reply: Streamed) -> bool:
    size = len(reply.prefix)
    for part in reply.parts:
        size += part.source.length if type(part) is SendfileSlice else len(part)
        if size > SMALL_RESPONSE_BYTES:
            return False
    return True
