"""The connection writer's socket helpers over real socket pairs."""

from __future__ import annotations

import os

import pytest
import trio

from tailrace.broker.server.sendfile import sendfile_all, write_all


async def test_write_all_waits_for_room_and_delivers_everything_in_order(tmp_path):
    left, right = trio.socket.socketpair()
    data = os.urandom(8 << 20)  # far more than the socket buffer holds
    path = tmp_path / "f"
    path.write_bytes(data)
    got = bytearray()

    async def read() -> None:
        while len(got) < 2 * len(data) + 5:
            chunk = await right.recv(1 << 20)
            assert chunk
            got.extend(chunk)

    fd = os.open(path, os.O_RDONLY)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await write_all(left, b"head:")
            await sendfile_all(left, fd, 0, len(data))
            await write_all(left, data)
    finally:
        os.close(fd)
        left.close()
        right.close()
    assert bytes(got) == b"head:" + data + data


async def test_write_all_to_a_closed_peer_is_a_broken_resource():
    left, right = trio.socket.socketpair()
    right.close()
    with pytest.raises(trio.BrokenResourceError):
        await write_all(left, b"x" * 65536)  # EPIPE: the peer is gone
    left.close()
    with pytest.raises(trio.BrokenResourceError):
        await write_all(left, b"x")  # closed socket: fileno -1, EBADF
