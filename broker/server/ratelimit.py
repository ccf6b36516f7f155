"""Logging that a flood of bad clients cannot turn into a flood of lines."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..logs import log_event

__all__ = ["RateLimitedLogger"]


class RateLimitedLogger:
    """Logs at most ``per_second`` events per second on average (bursts up to
    ``burst``); the rest are counted, and the count is reported with the next
    line that gets through."""

    def __init__(self, logger: logging.Logger, *, per_second: float, burst: int = 20) -> None:
        self.logger = logger
        self.rate = per_second
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self.suppressed = 0

    def _allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed += 1
        return False

    def log(self, level: int, msg: str, **fields: Any) -> None:
        if not self.logger.isEnabledFor(level) or not self._allow():
            return
        if self.suppressed:
            fields["suppressed_since_last"] = self.suppressed
            self.suppressed = 0
        log_event(self.logger, level, msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self.log(logging.INFO, msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.log(logging.WARNING, msg, **fields)
