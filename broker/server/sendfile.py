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

import trio

__all__ = ["pread_all", "sendfile_all", "write_all", "writev_all"]

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
        except OSError as exc:  # what trio's send_all reports for a broken socket
            raise trio.BrokenResourceError(f"socket unusable: {exc}") from exc
        view = view[sent:]


async def writev_all(sock: trio.socket.SocketType, buffers: list[bytes]) -> None:
    """Write ``buffers`` back to back with one ``os.writev`` while the socket
    takes them (the usual case for a small response: one syscall, one TCP
    segment); a partial write continues with :func:`write_all`."""
    out = sock.fileno()
    try:
        sent = os.writev(out, buffers)
    except BlockingIOError:
        sent = 0
    except OSError as exc:  # what trio's send_all reports for a broken socket
        raise trio.BrokenResourceError(f"socket unusable: {exc}") from exc
    total = sum(map(len, buffers))
    if sent < total:
        await write_all(sock, b"".join(buffers)[sent:])


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
