"""Shared helpers for the storage-engine tests: batches, a fault-injecting
StorageIO, and readers that decode what a log serves."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter

from tailrace.broker.log import LogConfig, PartitionLog, StorageIO
from tailrace.client.records import build_batch, iter_headers, unpack_records

#: Small settings so a few batches roll segments and add index entries.
SMALL = {
    "segment_bytes": 2048,
    "index_interval_bytes": 256,
    "preallocate_bytes": 4096,
    "flush": "none",
}


def config(**overrides: object) -> LogConfig:
    return LogConfig.from_mapping({**SMALL, **overrides})


def batch(
    values: list[bytes] | int = 1,
    *,
    ts: int = 1_000,
    size: int = 40,
    producer: tuple[int, int, int] | None = None,
) -> bytes:
    """A batch of ``values`` (or that many values of ``size`` bytes); record i
    gets timestamp ``ts + i``. ``producer`` is (id, epoch, base sequence)."""
    if isinstance(values, int):
        values = [bytes([65 + i % 26]) * size for i in range(values)]
    pid, epoch, seq = producer if producer else (-1, -1, -1)
    return build_batch(
        [(ts + i, None, v, None) for i, v in enumerate(values)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def open_log(path, cfg: LogConfig | None = None, **kw: object) -> PartitionLog:
    return PartitionLog.open(str(path), cfg or config(), **kw)


def read_records(log: PartitionLog, start: int | None = None) -> list[tuple[int, bytes]]:
    """Every (offset, value) from ``start`` (log start) to the HW, through read()."""
    out: list[tuple[int, bytes]] = []
    offset = log.log_start_offset if start is None else start
    while True:
        s = log.read(offset, 1000)
        if s is None:
            return out
        with s:
            data = s.read_bytes()
            assert s.first_offset <= offset <= s.last_offset
        for pos, h in iter_headers(data):
            for i, rec in enumerate(unpack_records(data, h, pos)):
                if h.base_offset + i >= offset:
                    out.append((h.base_offset + i, rec[2]))
        offset = s.last_offset + 1


class FaultIO(StorageIO):
    """Counts durability calls; raises chosen errnos; can slow fdatasync.

    ``fail[name] = errno`` makes that method raise OSError(errno) until
    removed. ``crash_at`` names a crash point that raises SimulatedCrash.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, int] = {}
        self.crash_at: str | None = None
        self.sync_delay = 0.0
        #: name -> seconds to sleep in that call (a slow disk)
        self.delay: dict[str, float] = {}
        self._lock = threading.Lock()

    def _enter(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
            code = self.fail.get(name)
            pause = self.delay.get(name, 0.0)
        if pause:
            time.sleep(pause)
        if code is not None:
            raise OSError(code, os.strerror(code))

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._enter("fallocate")
        super().fallocate(fd, offset, length)

    def fdatasync(self, fd: int) -> None:
        self._enter("fdatasync")
        if self.sync_delay:
            time.sleep(self.sync_delay)
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._enter("fsync")
        super().fsync(fd)

    def fsync_dir(self, path: str) -> None:
        self._enter("fsync_dir")
        super().fsync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        self._enter("rename")
        super().rename(src, dst)

    def crash_point(self, name: str) -> None:
        if name == self.crash_at:
            raise SimulatedCrash(name)


class NoSyncIO(StorageIO):
    """Skips fsync/fdatasync: for tests whose crashes keep the page cache
    (kill -9) and which must not spend their time waiting for the disk."""

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


class SimulatedCrash(Exception):
    """Raised at a crash point: the test then abandons and reopens."""


ENOSPC = errno.ENOSPC
EIO = errno.EIO
