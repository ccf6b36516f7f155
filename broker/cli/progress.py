"""A one-line progress bar with rate, on stderr, only for a person watching.

Long operations (produce from a large file, consume into a file) call
:meth:`Progress.update` as they go. When the stream is not a terminal (a
script, a CI log, a pipe) nothing is drawn at all, so the output of a
scripted run never contains carriage returns. Redraws are limited to five a
second; an update costs one clock read otherwise.

Hand-written on purpose: one line with a carriage return is all that is
needed, and a dependency (rich, tqdm) would be the biggest part of the CLI.
"""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]

_REDRAW_S = 0.2
_BAR = 24


class Progress:
    """``Progress(sys.stderr, unit="records", total_bytes=size)``; ``update``
    with the running count (and bytes done, when the total is known);
    ``close`` erases the line."""

    def __init__(
        self,
        stream: TextIO,
        *,
        unit: str = "records",
        total_bytes: int | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream
        self.unit = unit
        self.total_bytes = total_bytes if total_bytes and total_bytes > 0 else None
        if enabled is None:
            isatty = getattr(stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._start = time.monotonic()
        self._next_draw = self._start + _REDRAW_S
        self._drawn = False

    def update(self, count: int, done_bytes: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next_draw:
            return
        self._next_draw = now + _REDRAW_S
        self.stream.write("\r" + self.render(count, done_bytes, now - self._start) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def render(self, count: int, done_bytes: int | None, elapsed: float) -> str:
        rate = count / elapsed if elapsed > 0 else 0.0
        text = f"{count:,} {self.unit}  {rate:,.0f} {self.unit}/s"
        if self.total_bytes is not None and done_bytes is not None:
            frac = min(max(done_bytes / self.total_bytes, 0.0), 1.0)
            filled = int(frac * _BAR)
            text = f"[{'#' * filled}{'.' * (_BAR - filled)}] {frac:4.0%}  " + text
        return text

    def close(self) -> None:
        """Erase the bar so the summary line that follows starts clean."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
