"""Accept loops, shaped like trio's serve_listeners.

One nursery runs an accept loop per listening socket; each accepted stream
gets a handler task in the handler nursery, wrapped so the stream is always
closed (``aclose_forcefully``) when the handler ends. Only accept errors that
mean "the system is out of something" (EMFILE, ENFILE, ENOBUFS, ENOMEM) are
logged and retried after 100 ms; anything else propagates. Connections past
``max_connections`` are closed at once, before any byte is read.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from ..logs import log_event
from .ratelimit import RateLimitedLogger

__all__ = ["BoundListener", "ConnectionCounter", "open_listener", "serve_listeners"]

log = logging.getLogger(__name__)
refusals = RateLimitedLogger(log, per_second=1)

ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
SLEEP_TIME = 0.100


@dataclass
class BoundListener:
    """A configured listener and its bound sockets."""

    name: str
    host: str
    port: int  # the bound port (resolved when 0 was asked)
    sockets: list[trio.SocketListener] = field(default_factory=list)
    #: the listener's configuration (security, authentication), opaque here
    config: object = None
    #: wraps an accepted stream (e.g. in TLS) before the handler sees it
    wrap: Callable[[trio.SocketStream], trio.abc.Stream] | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ConnectionCounter:
    """Counts open connections against the broker-wide maximum."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.open = 0
        self.refused = 0
        self.accepted = 0


async def open_listener(name: str, host: str, port: int, *, backlog: int = 1024) -> BoundListener:
    """Bind ``host:port`` (port 0 picks a free one)."""
    sockets = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    bound_port = sockets[0].socket.getsockname()[1]
    return BoundListener(name=name, host=host, port=bound_port, sockets=sockets)


Handler = Callable[[trio.abc.Stream, BoundListener], Awaitable[object]]


async def _run_handler(
    stream: trio.SocketStream, listener: BoundListener, handler: Handler, counter: ConnectionCounter
) -> None:
    try:
        wrapped: trio.abc.Stream = listener.wrap(stream) if listener.wrap else stream
        await handler(wrapped, listener)
    finally:
        counter.open -= 1
        await trio.aclose_forcefully(stream)


async def _serve_one(
    sock: trio.SocketListener,
    listener: BoundListener,
    handler_nursery: trio.Nursery,
    handler: Handler,
    counter: ConnectionCounter,
) -> None:
    async with sock:
        while True:
            try:
                stream = await sock.accept()
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    log_event(
                        log,
                        logging.ERROR,
                        "accept failed, retrying",
                        listener=listener.name,
                        error=errno.errorcode[exc.errno],
                        retry_s=SLEEP_TIME,
                    )
                    await trio.sleep(SLEEP_TIME)
                    continue
                raise
            if counter.open >= counter.maximum:
                counter.refused += 1
                refusals.warning(
                    "connection refused: max_connections reached",
                    listener=listener.name,
                    max_connections=counter.maximum,
                )
                await trio.aclose_forcefully(stream)
                continue
            counter.open += 1
            counter.accepted += 1
            handler_nursery.start_soon(_run_handler, stream, listener, handler, counter)


async def serve_listeners(
    handler: Handler,
    listeners: list[BoundListener],
    *,
    handler_nursery: trio.Nursery,
    counter: ConnectionCounter,
    task_status: trio.TaskStatus[list[BoundListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run accept loops until cancelled; ``nursery.start`` returns the
    listeners. Cancelling this stops accepting; handlers live on in
    ``handler_nursery``."""
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            for sock in listener.sockets:
                nursery.start_soon(_serve_one, sock, listener, handler_nursery, handler, counter)
        task_status.started(listeners)
