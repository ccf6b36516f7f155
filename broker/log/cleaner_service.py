"""The broker's cleaner loop: which compacted partition to clean, and when.

Every ``check_interval_ms`` the loop takes the compacted partitions that are
due (PartitionLog.clean decides: dirty ratio, lags), dirtiest first, and
cleans up to ``threads`` of them at once, each cleaning's file work in a
worker thread bounded by one CapacityLimiter; a cleaning whose key map
filled up is followed at once by the next pass. The I/O rate limit is one
Throttle shared by every thread. ``stop()`` makes running cleanings give up
before they commit (a committed swap is always finished), so a broker that
shuts down never waits for a whole cleaning.

The loop runs in the broker's background nursery (broker/app.py); the file
work and its crash safety are in cleaner.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import StorageError

from .cleaner import CleanerSettings, CleanerStopped, Throttle

if TYPE_CHECKING:
    from .manager import LogManager
    from .partition import PartitionLog

__all__ = ["LogCleaner"]

logger = logging.getLogger(__name__)


class LogCleaner:
    """Runs cleanings of a LogManager's compacted partitions."""

    def __init__(self, manager: LogManager, settings: CleanerSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.throttle = Throttle(settings.io_max_bytes_per_s)
        self._limiter = trio.CapacityLimiter(max(1, settings.threads))

    def stop(self) -> None:
        """Make running cleanings give up (before they commit)."""
        self.throttle.stop()

    def due(self) -> list[tuple[tuple[str, int], PartitionLog]]:
        """Compacted, usable partitions with a dirty part, dirtiest first."""
        logs = [
            (key, log)
            for key, log in self.manager.logs()
            if log.config.compact and not log.offline and log.dirty_bytes[0]
        ]
        logs.sort(key=lambda item: item[1].dirty_ratio, reverse=True)
        return logs

    async def clean_once(self) -> int:
        """One round over the due partitions (at most ``threads`` at once);
        returns the cleanings done. A cleaning whose key map filled up goes
        again at once (several passes)."""
        done = 0
        again: list[tuple[tuple[str, int], PartitionLog]] = []
        slots = trio.Semaphore(max(1, self.settings.threads))

        async def one(key: tuple[str, int], log: PartitionLog) -> None:
            nonlocal done
            async with slots:
                try:
                    result = await log.clean(self.settings, self.throttle, limiter=self._limiter)
                except CleanerStopped:
                    return
                except StorageError as exc:
                    logger.error("cleaning %s-%d failed: %s", key[0], key[1], exc)
                    return
            if result is not None:
                done += 1
                if result.map_full:
                    again.append((key, log))

        pending = self.due()
        while pending and not self.throttle.stopped:
            async with trio.open_nursery() as nursery:
                for key, log in pending:
                    nursery.start_soon(one, key, log)
            pending, again = again, []
        return done

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The loop (returns at once when ``threads`` is 0)."""
        task_status.started()
        if self.settings.threads <= 0:
            return
        interval = self.settings.check_interval_ms / 1000
        while not self.throttle.stopped:
            await trio.sleep(interval)
            await self.clean_once()
