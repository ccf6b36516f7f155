"""The log's sync thread: runs one blocking sync round at a time, off the
trio thread, with a cheaper hand-off than ``trio.to_thread``.

A partition's group commit (``PartitionLog._sync``) runs ``fsync`` and
``fdatasync`` in a worker thread so the event loop never blocks on the
disk. With ``trio.to_thread.run_sync`` a round trip of a no-op took
318-336 µs p50 on the 2-core test VM (a quiet loop, 3 ms apart), against an
``fdatasync`` of about 250 µs: at a low rate the hand-off cost more than the
disk. This thread waits on a ``queue.SimpleQueue`` and signals the end of
each job by writing one byte to a pipe the loop waits on
(``wait_readable``): 113-115 µs p50 in the same measurement
(docs/benchmarks.md, "The sync thread").

One job at a time: while it is busy (another partition's sync round), a
caller falls back to ``trio.to_thread``, so partitions still sync in
parallel under load. Like ``to_thread`` (``abandon_on_cancel=False``), a
job once started is waited for even if the caller is cancelled: the files
it syncs stay pinned until it ends; the cancellation is delivered at the
caller's next checkpoint.

Owned by the :class:`~.manager.LogManager` that passes it to its partition
logs; started on the first job, stopped by :meth:`close`.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["SyncThread"]


class SyncThread:
    """See the module docstring. Trio-thread API except the job itself."""

    def __init__(self, name: str = "tailrace-sync") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._read_fd = -1
        self._write_fd = -1
        #: the finished job's (ok, result or exception), handed over with
        #: the pipe's byte
        self._outcome: tuple[bool, Any] | None = None
        self._busy = False
        self._closed = False
        #: jobs run here, and jobs that went to trio.to_thread (for tests)
        self.jobs_here = 0
        self.jobs_elsewhere = 0

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on this thread, or on a trio worker thread when this
        one is busy or closed; its result, or its exception raised here."""
        if self._busy or self._closed:
            self.jobs_elsewhere += 1
            return await trio.to_thread.run_sync(fn, *args)
        self._busy = True
        try:
            if self._thread is None:
                self._start()
            self._jobs.put((fn, args))
            # not cancellable half-way: the job runs to its end (see above)
            with trio.CancelScope(shield=True):
                await trio.lowlevel.wait_readable(self._read_fd)
            os.read(self._read_fd, 1)
            done, self._outcome = self._outcome, None
        finally:
            self._busy = False
        self.jobs_here += 1
        assert done is not None
        ok, value = done
        if not ok:
            raise value
        return value

    def _start(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        # daemon: a job stuck on a dead disk must not keep the process alive
        # after the broker gave up on it; close() stops it otherwise
        self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                self._outcome = (True, fn(*args))
            except BaseException as exc:  # raised on the trio thread by run_sync
                self._outcome = (False, exc)
            os.write(self._write_fd, b"\0")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; later jobs go to trio.to_thread. Waits (at most
        ``timeout`` seconds) for it to end when no job is under way; with
        one under way (a manager abandoned mid-sync) the thread ends after
        it, and the pipe stays open for the caller still waiting on it."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._jobs.put(None)
        if self._busy:
            return
        thread.join(timeout)
        self._thread = None
        os.close(self._read_fd)
        os.close(self._write_fd)
