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

from tailrace.client.errors import (
    CorruptRecordError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    StorageError,
)

__all__ = [
    "CorruptCheckpointError",
    "CorruptLogError",
    "FollowerAppendError",
    "TruncationOffsetError",
]


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


class TruncationOffsetError(OffsetOutOfRangeError):
    """:meth:`PartitionLog.truncate_to` was given an offset the log cannot
    end at: below the log start, above the log end, or inside a batch
    (``batch`` is then that batch's (first, last) offsets). Nothing was
    changed."""

    def __init__(self, message: str, offset: int, batch: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.batch = batch


class FollowerAppendError(InvalidRecordError):
    """:meth:`PartitionLog.append_as_follower` was given data that does not
    continue this log: its first batch does not start at the log end, or a
    batch does not start where the one before it ended. ``expected`` is the
    offset the batch should have started at, ``actual`` its base offset.
    Nothing was written. (Structural damage and a bad CRC raise the errors
    :func:`validate_batch` raises, as :meth:`PartitionLog.append` does.)"""

    def __init__(self, message: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
