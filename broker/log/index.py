"""The sparse offset index and time index of one segment.

Both live in memory as ``array`` columns (lookups are ``bisect`` on them) and
on disk as fixed-size big-endian entries appended with pwrite. They are never
mmapped: an idle sealed segment then costs no mapping and no RSS, and the
arrays of a sealed segment are loaded only when it is first read.

``.index`` entry (8 bytes)::

    offset size field            type
    0      4    relative_offset  u32  batch base offset - segment base offset
    4      4    position         u32  byte position of that batch in the .log

One entry is added for a batch that starts more than ``index_interval_bytes``
after the previous entry's batch (Kafka's rule; the segment start is the
implicit first entry, so no entry ever has position 0). Unlike Kafka, whose
entries carry the batch's *last* offset, ours carry its *base* offset: the
floor lookup then lands exactly on the batch holding the wanted offset, and a
sanity check can read the header at ``position`` and compare base offsets.

``.timeindex`` entry (12 bytes)::

    offset size field            type
    0      8    timestamp        i64  largest record timestamp in the segment
                                      up to and including that batch, ms
    8      4    relative_offset  u32  last offset of that batch - base offset

A time entry is written together with an offset entry when the segment's max
timestamp grew since the last time entry, and once more when the segment is
sealed or closed (so its last entry is the segment's max timestamp, which
retention reads). Invariant used by lookups: every record at an offset <=
``base + relative_offset`` has a timestamp <= ``timestamp``. Timestamps are
strictly increasing, relative offsets non-decreasing.
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right

__all__ = [
    "OFFSET_ENTRY",
    "TIME_ENTRY",
    "IndexCorruptError",
    "OffsetIndex",
    "TimeIndex",
]

#: relative_offset u32, position u32 (big-endian).
OFFSET_ENTRY = struct.Struct(">II")
#: timestamp i64, relative_offset u32 (big-endian).
TIME_ENTRY = struct.Struct(">qI")

_SWAP = sys.byteorder == "little"


class IndexCorruptError(ValueError):
    """An index file failed its sanity check; the caller rebuilds it."""


def _strictly_increasing(a: array) -> bool:
    return all(map(operator.lt, a, a[1:]))


def _non_decreasing(a: array) -> bool:
    return all(map(operator.le, a, a[1:]))


class OffsetIndex:
    """(relative offset, position) pairs, both strictly increasing."""

    __slots__ = ("positions", "rel_offsets")

    def __init__(self) -> None:
        self.rel_offsets = array("I")
        self.positions = array("I")

    def __len__(self) -> int:
        return len(self.rel_offsets)

    def append(self, rel_offset: int, position: int) -> None:
        self.rel_offsets.append(rel_offset)
        self.positions.append(position)

    def floor(self, rel_offset: int) -> tuple[int, int]:
        """The last entry with relative offset <= ``rel_offset``, else (0, 0)."""
        i = bisect_right(self.rel_offsets, rel_offset) - 1
        if i < 0:
            return 0, 0
        return self.rel_offsets[i], self.positions[i]

    def floor_by_position(self, position: int) -> tuple[int, int]:
        """The last entry with position <= ``position``, else (0, 0)."""
        i = bisect_right(self.positions, position) - 1
        if i < 0:
            return 0, 0
        return self.rel_offsets[i], self.positions[i]

    def last(self) -> tuple[int, int]:
        if not self.rel_offsets:
            return 0, 0
        return self.rel_offsets[-1], self.positions[-1]

    def to_bytes(self) -> bytes:
        inter = array("I", bytes(8 * len(self)))
        inter[0::2] = self.rel_offsets
        inter[1::2] = self.positions
        if _SWAP:
            inter.byteswap()
        return inter.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, *, log_size: int, next_rel: int) -> OffsetIndex:
        """Parse and sanity-check an index file's bytes.

        ``log_size`` is the segment's data size and ``next_rel`` its next
        offset minus its base. Raises IndexCorruptError when the size is not
        a whole number of entries, an entry is zero, out of the file or out of
        the segment's offsets, or entries are not strictly increasing.
        """
        if len(data) % OFFSET_ENTRY.size:
            raise IndexCorruptError(f"size {len(data)} is not a multiple of {OFFSET_ENTRY.size}")
        inter = array("I")
        inter.frombytes(data)
        if _SWAP:
            inter.byteswap()
        index = cls()
        index.rel_offsets = inter[0::2]
        index.positions = inter[1::2]
        if index.rel_offsets:
            if index.positions[0] == 0 or index.rel_offsets[0] == 0:
                raise IndexCorruptError("an entry points at the segment start")
            if index.positions[-1] >= log_size or index.rel_offsets[-1] >= next_rel:
                raise IndexCorruptError(
                    f"last entry ({index.rel_offsets[-1]}, {index.positions[-1]}) is past the "
                    f"segment end ({next_rel}, {log_size})"
                )
            if not (
                _strictly_increasing(index.rel_offsets) and _strictly_increasing(index.positions)
            ):
                raise IndexCorruptError("entries are not strictly increasing")
        return index


class TimeIndex:
    """(max timestamp so far, relative last offset) pairs."""

    __slots__ = ("rel_offsets", "timestamps")

    def __init__(self) -> None:
        self.timestamps = array("q")
        self.rel_offsets = array("I")

    def __len__(self) -> int:
        return len(self.timestamps)

    def append(self, timestamp: int, rel_offset: int) -> None:
        self.timestamps.append(timestamp)
        self.rel_offsets.append(rel_offset)

    @property
    def last_timestamp(self) -> int:
        """The largest timestamp recorded, or -1 for an empty index."""
        return self.timestamps[-1] if self.timestamps else -1

    def last_rel_below(self, timestamp: int) -> int:
        """Relative offset of the last entry with a timestamp < ``timestamp``,
        or -1: every record at or below the returned offset is older."""
        i = bisect_left(self.timestamps, timestamp) - 1
        return self.rel_offsets[i] if i >= 0 else -1

    def to_bytes(self) -> bytes:
        return b"".join(
            TIME_ENTRY.pack(ts, rel)
            for ts, rel in zip(self.timestamps, self.rel_offsets, strict=True)
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, next_rel: int) -> TimeIndex:
        """Parse and sanity-check a time index file's bytes (see OffsetIndex)."""
        if len(data) % TIME_ENTRY.size:
            raise IndexCorruptError(f"size {len(data)} is not a multiple of {TIME_ENTRY.size}")
        index = cls()
        for ts, rel in TIME_ENTRY.iter_unpack(data):
            index.timestamps.append(ts)
            index.rel_offsets.append(rel)
        if index.timestamps:
            if index.rel_offsets[-1] >= next_rel:
                raise IndexCorruptError(
                    f"last entry offset {index.rel_offsets[-1]} is past the segment end {next_rel}"
                )
            if not (_strictly_increasing(index.timestamps) and _non_decreasing(index.rel_offsets)):
                raise IndexCorruptError("entries are not monotonic")
        return index
