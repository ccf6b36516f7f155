"""StorageIO subclasses that fail on purpose: failing syscalls and crash points.

:class:`FaultyIO` makes chosen seam methods raise ``OSError(errno)``: EIO
from ``fdatasync`` (fsyncgate), ENOSPC from ``fallocate`` or ``pwrite`` (a
full disk), optionally only for paths matching a substring, only after some
calls, and only a number of times. It counts every call.

:class:`CrashPointIO` stops the process at a named crash point (one of
``CRASH_POINTS``) on its n-th hit: ``action="raise"`` raises
:class:`SimulatedCrash` (in-process tests then abandon the log and reopen
the files), ``action="exit"`` calls ``os._exit`` (a subprocess broker dies
there, exactly like kill -9 at that instant; see faulty_broker.py).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass

from ..log.storage_io import CRASH_POINTS, StorageIO

__all__ = ["CRASH_EXIT_CODE", "CrashPointIO", "FaultyIO", "SimulatedCrash", "fd_path"]

#: Exit status of a process stopped at a crash point.
CRASH_EXIT_CODE = 86


class SimulatedCrash(Exception):
    """Raised at a crash point: the test abandons the files and reopens them."""

    def __init__(self, point: str) -> None:
        super().__init__(f"simulated crash at {point}")
        self.point = point


def fd_path(fd: int) -> str:
    """The path an fd was opened with (Linux /proc), or "" if unknown."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


@dataclass
class _Rule:
    method: str
    errno: int
    match: str | None
    skip: int
    times: int | None


class FaultyIO(StorageIO):
    """Raises chosen errnos from chosen methods (see the module docstring)."""

    METHODS = (
        "open",
        "fallocate",
        "pwrite",
        "ftruncate",
        "fdatasync",
        "fsync",
        "fsync_dir",
        "rename",
        "unlink",
        "mkdir",
        "rmtree",
    )

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def fail(
        self,
        method: str,
        errno: int,
        *,
        match: str | None = None,
        skip: int = 0,
        times: int | None = None,
    ) -> None:
        """Make ``method`` raise OSError(errno) for paths containing ``match``
        (any path if None), after ``skip`` matching calls, ``times`` times
        (None: until :meth:`clear`)."""
        if method not in self.METHODS:
            raise ValueError(f"unknown seam method {method!r}")
        with self._lock:
            self._rules.append(_Rule(method, errno, match, skip, times))

    def clear(self, method: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if method is not None and r.method != method]

    def _enter(self, method: str, path: str) -> None:
        with self._lock:
            self.calls[method] += 1
            for rule in self._rules:
                if rule.method != method or (rule.match is not None and rule.match not in path):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                self.injected[method] += 1
                raise OSError(rule.errno, os.strerror(rule.errno), path)

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._enter("open", path)
        return super().open(path, flags, mode)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._enter("fallocate", fd_path(fd))
        super().fallocate(fd, offset, length)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        self._enter("pwrite", fd_path(fd))
        super().pwrite(fd, data, offset)

    def ftruncate(self, fd: int, length: int) -> None:
        self._enter("ftruncate", fd_path(fd))
        super().ftruncate(fd, length)

    def fdatasync(self, fd: int) -> None:
        self._enter("fdatasync", fd_path(fd))
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._enter("fsync", fd_path(fd))
        super().fsync(fd)

    def fsync_dir(self, path: str) -> None:
        self._enter("fsync_dir", path)
        super().fsync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        self._enter("rename", src)
        super().rename(src, dst)

    def unlink(self, path: str) -> None:
        self._enter("unlink", path)
        super().unlink(path)

    def mkdir(self, path: str) -> None:
        self._enter("mkdir", path)
        super().mkdir(path)

    def rmtree(self, path: str) -> None:
        self._enter("rmtree", path)
        super().rmtree(path)


class CrashPointIO(StorageIO):
    """Stops at the ``after``-th hit (0: the first) of crash point ``point``."""

    def __init__(self, point: str, *, after: int = 0, action: str = "raise") -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {', '.join(CRASH_POINTS)}")
        if action not in ("raise", "exit"):
            raise ValueError("action is 'raise' or 'exit'")
        self.point = point
        self.after = after
        self.action = action
        self.hits: Counter[str] = Counter()
        self.crashed = False
        self._lock = threading.Lock()

    def crash_point(self, name: str) -> None:
        with self._lock:
            self.hits[name] += 1
            fire = not self.crashed and name == self.point and self.hits[name] > self.after
            if fire:
                self.crashed = True
        if not fire:
            return
        if self.action == "exit":
            os._exit(CRASH_EXIT_CODE)
        raise SimulatedCrash(name)
