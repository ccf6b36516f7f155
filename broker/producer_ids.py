"""Idempotent-producer ids that are never handed out twice.

Ids come in blocks: before the first id of a block is given out, the end of
the block is written durably to ``data_dir/~producer-ids`` (write-temp,
fsync, rename, fsync directory). After any restart, crash included,
allocation resumes after the last block written, so an id is unique for the
life of the data directory.

In a cluster every broker hands out ids for the same partitions, so a block
is first reserved cluster-wide (``reserve``: the cluster member's
compare-and-swap on one counter in etcd, at or above this directory's next
free id), then written to the file as before.

File layout (text, one line)::

    tailrace-producer-ids 1 <next free id> crc32c <8 hex digits of the CRC of the part before>
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import crc32c
import trio

from tailrace.client.errors import StorageError

from .log.files import atomic_write
from .log.storage_io import StorageIO

__all__ = ["ProducerIdAllocator"]

FILE_NAME = "~producer-ids"
BLOCK = 1000
_MAX_EPOCH = 2**15 - 1
_HEADER = "tailrace-producer-ids 1"


#: ``reserve(size, at_least) -> first id`` of a block reserved for this broker alone
Reserve = Callable[[int, int], Awaitable[int]]


class ProducerIdAllocator:
    def __init__(self, data_dir: str, io: StorageIO | None = None) -> None:
        self.path = os.path.join(data_dir, FILE_NAME)
        self._io = io or StorageIO()
        #: set in cluster mode (ClusterMember.reserve_producer_ids)
        self.reserve: Reserve | None = None
        self._next = self._read()
        self._limit = self._next  # nothing reserved yet in this run
        self._lock = trio.Lock()

    def _read(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(256)
        except FileNotFoundError:
            return 0
        text = data.decode("ascii", "replace").strip()
        body, _, crc = text.rpartition(" crc32c ")
        parts = body.split()
        if (
            len(parts) != 3
            or " ".join(parts[:2]) != _HEADER
            or not parts[2].isdigit()
            or crc != f"{crc32c.crc32c(body.encode()):08x}"
        ):
            raise StorageError(f"{self.path} is damaged; refusing to risk reusing producer ids")
        return int(parts[2])

    def _write(self, next_free: int) -> None:
        body = f"{_HEADER} {next_free}"
        atomic_write(
            self._io, self.path, f"{body} crc32c {crc32c.crc32c(body.encode()):08x}\n".encode()
        )

    async def allocate(self) -> int:
        """A fresh producer id."""
        async with self._lock:
            if self._next >= self._limit:
                if self.reserve is not None:
                    self._next = await self.reserve(BLOCK, self._next)
                limit = self._next + BLOCK
                try:
                    await trio.to_thread.run_sync(self._write, limit)
                except OSError as exc:
                    raise StorageError(f"cannot reserve producer ids: {exc}") from exc
                self._limit = limit
            pid = self._next
            self._next += 1
            return pid

    async def init(self, producer_id: int, producer_epoch: int) -> tuple[int, int]:
        """InitProducerId: a new id at epoch 0, or the same id one epoch up
        (a new id when the epoch would overflow)."""
        if producer_id < 0:
            return await self.allocate(), 0
        if producer_epoch < 0 or producer_epoch >= _MAX_EPOCH:
            return await self.allocate(), 0
        return producer_id, producer_epoch + 1
