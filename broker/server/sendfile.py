"""Writing file bytes to a socket without copying them through Python.

trio has no sendfile (python-trio/trio#45), so this drives ``os.sendfile``
on trio's non-blocking socket directly: send what the socket buffer takes,
wait for it to become writable on EAGAIN, loop over partial sends. The event
loop never blocks on a slow reader; other tasks run between chunks.

One caveat, shared with every sendfile server: if the file's pages are not
in the page cache, the kernel reads them from disk inside the call. Data
that was just written (the common, caught-up consumer) is always cached.
"""

from __future__ import annotations

import os
import socket

import trio

__all__ = ["cork", "pread_all", "sendfile_all", "write_all"]

_TCP_CORK = getattr(socket, "TCP_CORK", None)

# Give other tasks a turn after this many bytes even if the socket keeps
# accepting (loopback buffers can be large).
_YIELD_EVERY = 4 * 1024 * 1024
_PREAD_CHUNK = 1024 * 1024


async def sendfile_all(sock: trio.socket.SocketType, fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``fd`` from ``offset`` to ``sock``.

    Returns the bytes sent (always ``count``). Raises trio.BrokenResourceError
    when the peer goes away, and OSError for a file that is shorter than
    asked (the caller holds a reference that keeps the segment alive, so
    that would be a bug).
    """
    out = sock.fileno()
    sent_total = 0
    since_yield = 0
    while count:
        try:
            sent = os.sendfile(out, fd, offset, count)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            since_yield = 0
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise trio.BrokenResourceError(f"peer closed during sendfile: {exc}") from exc
        if sent == 0:
            raise OSError(f"sendfile hit the end of the file with {count} bytes still to send")
        offset += sent
        count -= sent
        sent_total += sent
        since_yield += sent
        if since_yield >= _YIELD_EVERY:
            await trio.lowlevel.checkpoint()
            since_yield = 0
    return sent_total


def cork(sock: trio.socket.SocketType, on: bool) -> None:
    """TCP_CORK on or off (Linux; a no-op elsewhere): while on, the kernel
    holds partial segments, so a response header written before a sendfile
    goes out in the same segment as the data instead of alone (with
    TCP_NODELAY, trio's default) waking the reader for a few bytes. Turning
    it off sends what is held."""
    if _TCP_CORK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1 if on else 0)
        except OSError as exc:  # the socket is closed or broken
            raise trio.BrokenResourceError(f"socket unusable: {exc}") from exc


async def write_all(sock: trio.socket.SocketType, data: bytes) -> None:
    """Write ``data`` to the non-blocking socket without a schedule point
    while the socket buffer takes it (``stream.send_all`` yields after every
    send: between a response's header and its sendfile that lets every other
    ready task run first). Waits for writability only when it is full."""
    out = sock.fileno()
    view = memoryview(data)
    while view:
        try:
            sent = os.write(out, view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise trio.BrokenResourceError(f"peer closed: {exc}") from exc
        view = view[sent:]


async def pread_all(stream: trio.abc.SendStream, fd: int, offset: int, count: int) -> int:
    """The copying path: read the bytes into memory and send them.

    Used when ``fetch_zero_copy`` is off and on TLS streams, where bytes must
    pass through user space to be encrypted.
    """
    sent_total = 0
    while count:
        chunk = os.pread(fd, min(count, _PREAD_CHUNK), offset)
        if not chunk:
            raise OSError(f"read hit the end of the file with {count} bytes still to send")
        await stream.send_all(chunk)
        offset += len(chunk)
        count -= len(chunk)
        sent_total += len(chunk)
    return sent_total
