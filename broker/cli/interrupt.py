"""Ctrl-C as a request to stop, not an exception in the middle of a write.

``consume`` follows a log until interrupted: Ctrl-C (SIGINT) or SIGTERM is
its normal end. A KeyboardInterrupt raised at an arbitrary point could land
between fetching records and printing them (records lost from the output,
and later, with consumer groups, a commit that does not match what was
printed) or in the middle of a line. Inside :class:`StopOnSignal` the
signal only sets a flag that the loop checks between polls; the loop then
finishes the line it is on, prints its summary and exits 0. A second
Ctrl-C raises KeyboardInterrupt as usual, for a loop that is stuck.

The blocking clients run trio on threads of their own. The kernel gives a
process signal to any thread that does not block it, and only the main
thread's blocking calls are interrupted by it: a Ctrl-C that lands on a
client thread leaves ``produce`` blocked in its read of stdin until the next
line comes. Clients are therefore created inside
:func:`threads_without_signals`, so their threads (and the threads those
start) block SIGINT and SIGTERM and the main thread receives them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["StopOnSignal", "threads_without_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def threads_without_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Threads started inside the block never receive ``signals``: a new
    thread inherits the signal mask of the thread that starts it, so the mask
    is set here for the duration and restored after (a signal arriving in
    between stays pending and is delivered then)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class StopOnSignal:
    """``with StopOnSignal() as stop: while not stop.requested: ...``"""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self.requested: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum)

    def __enter__(self) -> StopOnSignal:
        # signal handlers can only be installed from the main thread; called
        # from another one (an embedding test), Ctrl-C keeps its default.
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
