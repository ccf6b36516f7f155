"""Running a client's async core on a background trio thread.

The blocking ``Producer``, ``Consumer`` and ``Admin`` are the async ones
driven from ordinary code: each starts one daemon thread running
``trio.run``, hands async work to it with ``trio.from_thread.run`` and cheap
wake-ups with ``run_sync_soon``. There is one implementation of every
behaviour; the blocking classes only cross the thread boundary.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import trio

from .errors import ClientClosedError

__all__ = ["BackgroundTrio"]

T = TypeVar("T")


class BackgroundTrio:
    """A trio loop on its own thread, running one long-lived ``main``.

    ``main(task_status)`` is started with ``nursery.start`` semantics: the
    constructor returns once it called ``task_status.started()``, or raises
    what it raised before that.
    """

    def __init__(
        self,
        name: str,
        main: Callable[..., Awaitable[Any]],
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        #: called on the loop's thread once the loop has ended, however it
        #: ended (wakes callers that wait for the loop on their own thread)
        self._on_exit = on_exit
        self._hosted_stop: trio.Event | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self.thread_id: int | None = None
        self._thread = threading.Thread(target=self._run, args=(main,), name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self, main: Callable[..., Awaitable[Any]]) -> None:
        self.thread_id = threading.get_ident()
        # Ctrl-C and SIGTERM belong to the application's main thread: were
        # the kernel to deliver them here, a main thread blocked in a read
        # would never see them.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

        async def wrapper() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(main)
                self._ready.set()

        try:
            trio.run(wrapper)
        except BaseException as exc:  # reported to the caller, never lost
            self._error = exc
        finally:
            self._ready.set()
            self._finished.set()
            if self._on_exit is not None:
                self._on_exit()

    @property
    def alive(self) -> bool:
        return not self._finished.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread_id

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the loop and return its result."""
        if not self.alive:
            raise ClientClosedError("the client's background loop has stopped") from self._error
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise ClientClosedError("the client's background loop has stopped") from self._error

    def run_sync_soon(self, fn: Callable[[], Any]) -> None:
        """Schedule ``fn()`` on the loop without waiting (thread-safe)."""
        if self._token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):  # the loop is gone: nothing to wake
            self._token.run_sync_soon(fn)

    @classmethod
    def hosting(
        cls,
        name: str,
        resource: AbstractAsyncContextManager[Any],
        on_exit: Callable[[], None] | None = None,
    ) -> BackgroundTrio:
        """A loop that holds ``async with resource`` open until :meth:`stop`
        (the shape of every blocking client: Consumer, Admin)."""
        holder: dict[str, trio.Event] = {}  # the Event is made on the loop

        async def main(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with resource:
                holder["stop"] = trio.Event()
                task_status.started()
                await holder["stop"].wait()

        loop = cls(name, main, on_exit)
        loop._hosted_stop = holder["stop"]
        return loop

    def stop(self) -> None:
        """Leave the hosted resource's ``async with`` and wait for the thread."""
        stop = self._hosted_stop
        if self.alive and stop is not None:
            self.run_sync_soon(stop.set)
        self.join()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()
