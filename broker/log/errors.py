"""Storage-engine errors that carry more detail than the wire code.

They subclass the wire errors of :mod:`tailrace.client.errors`, so the
broker reports them under a wire code while operators and tests get the file
and byte position. Corruption is both a CorruptRecordError (its wire code,
CORRUPT_MESSAGE, comes first) and a StorageError (the partition-level
failure the log and the manager catch): consumers retry a storage error (a
partition offline until a restart) but stop at corruption and name its
offsets to the user, as they do for a batch that fails its CRC on arrival.
"""

from __future__ import annotations

from tailrace.client.errors import CorruptRecordError, StorageError

__all__ = ["CorruptCheckpointError", "CorruptLogError"]


class CorruptLogError(CorruptRecordError, StorageError):
    """Data the log knows to be durable failed its checks: the partition is
    refused (on open) or the read fails (on a lazily loaded segment).

    ``path`` and ``position`` name the first bad byte; ``first_offset`` is the
    offset the bad batch should have started at and ``last_offset`` the last
    offset known durable there (or None when unknown).
    """

    def __init__(
        self,
        path: str,
        position: int,
        first_offset: int,
        last_offset: int | None,
        reason: str,
    ) -> None:
        rng = f"{first_offset}" if last_offset is None else f"{first_offset}..{last_offset}"
        super().__init__(f"corrupt log data in {path} at byte {position} (offsets {rng}): {reason}")
        self.path = path
        self.position = position
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.reason = reason


class CorruptCheckpointError(StorageError):
    """A partition's small durable file (the leader-epoch checkpoint) failed
    its checks: ``path`` names it and ``reason`` says what is wrong. The
    partition log rebuilds the epoch cache from its batch headers when this
    happens (docs/format.md)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"corrupt checkpoint {path}: {reason}")
        self.path = path
        self.reason = reason
