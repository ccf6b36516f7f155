"""Scanning a segment: validate every batch and rebuild its indexes.

This is the inner loop of recovery after an unclean stop (and of an index
rebuild). It maps the ``.log`` read-only and walks it batch by batch with
:func:`tailrace.client.records.validate_batch` (bounds, magic, CRC-32C,
record count), also checking that offsets are dense: each batch's base
offset, which the CRC does not cover, must follow the previous batch's last
offset. It stops at the first batch that fails and reports where and why;
deciding whether that is a torn tail or corruption is the caller's job
(partition.py), because only the caller knows the recovery point.

The offset and time index entries are rebuilt with exactly the rule the
append path uses (segment.py), so a rebuilt index equals the one written.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import TYPE_CHECKING

from tailrace.client.errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError
from tailrace.client.records import validate_batch

from .index import OffsetIndex, TimeIndex

if TYPE_CHECKING:
    from tailrace.client.records import BatchHeader

__all__ = ["ScanResult", "scan_segment", "zero_tail"]

NO_TIMESTAMP = -1
_U32 = 0xFFFFFFFF
#: Recovery accepts any batch that fits in the file; max_batch_bytes is an
#: append-time limit that may have been lowered since the data was written.
_ANY_SIZE = 2**31 - 1
_ZEROS = bytes(1 << 20)
_BAD_BATCH = (InvalidRecordError, CorruptRecordError, RecordTooLargeError)


class ScanResult:
    """What a scan found: ``end``/``next_offset`` after the last valid batch,
    the rebuilt indexes, and ``error`` (why it stopped early, or None)."""

    __slots__ = (
        "batches",
        "end",
        "error",
        "first_max_timestamp",
        "max_timestamp",
        "next_offset",
        "offset_index",
        "tail_is_zero",
        "time_index",
    )

    def __init__(self) -> None:
        self.end = 0
        self.next_offset = 0
        self.batches = 0
        self.max_timestamp = NO_TIMESTAMP
        self.first_max_timestamp: int | None = None
        self.offset_index = OffsetIndex()
        self.time_index = TimeIndex()
        self.error: str | None = None
        #: True when every byte from ``end`` to the file end is zero (an
        #: untrimmed preallocated tail), also True when there are none.
        self.tail_is_zero = True


def zero_tail(buf: bytes | mmap.mmap, start: int, end: int) -> bool:
    """Whether buf[start:end] is all zero bytes (checked 1 MiB at a time)."""
    pos = start
    while pos < end:
        n = min(len(_ZEROS), end - pos)
        if buf[pos : pos + n] != _ZEROS[:n]:
            return False
        pos += n
    return True


def scan_segment(
    fd: int,
    size: int,
    base_offset: int,
    *,
    index_interval: int,
    max_index_entries: int = _U32,
    max_time_entries: int = _U32,
    on_producer_batch: Callable[[BatchHeader, int], None] | None = None,
    allow_gaps: bool = False,
) -> ScanResult:
    """Validate the first ``size`` bytes of the segment file open as ``fd``.

    ``on_producer_batch(header, base_offset)`` is called for each valid batch
    with a producer id (to rebuild idempotent-producer state).

    ``allow_gaps``: a segment the log cleaner rewrote (below the partition's
    ``gaps_below``, cleaner.py): batches may hold fewer records than
    offsets, or none (validate_batch's ``allow_gaps``); they are still
    contiguous (the cleaner covers what it dropped with empty batches).
    """
    result = ScanResult()
    result.next_offset = base_offset
    if size <= 0:
        return result
    mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        mm.madvise(mmap.MADV_SEQUENTIAL)
        oi = result.offset_index
        ti = result.time_index
        oi_append = oi.append
        ti_append = ti.append
        pos = 0
        expected = base_offset
        last_index_pos = 0
        max_ts = NO_TIMESTAMP
        ti_last = NO_TIMESTAMP
        n_oi = 0
        n_ti = 0
        max_ti = max_time_entries - 1
        first_max_ts = None
        count = 0
        error = None
        while pos < size:
            try:
                h = validate_batch(
                    mm, pos, max_batch_bytes=_ANY_SIZE, end=size, allow_gaps=allow_gaps
                )
            except _BAD_BATCH as exc:
                error = str(exc)
                break
            if h.base_offset != expected:
                error = f"base offset {h.base_offset}, expected {expected}"
                break
            expected = h.base_offset
            last = expected + h.last_offset_delta
            if last - base_offset > _U32:
                error = f"offset {last} overflows the segment's relative offsets"
                break
            mts = h.max_timestamp
            if mts > max_ts:
                max_ts = mts
            if first_max_ts is None:
                first_max_ts = mts
            if pos - last_index_pos > index_interval and n_oi < max_index_entries:
                oi_append(expected - base_offset, pos)
                n_oi += 1
                last_index_pos = pos
                if max_ts > ti_last and n_ti < max_ti:
                    ti_append(max_ts, last - base_offset)
                    n_ti += 1
                    ti_last = max_ts
            if on_producer_batch is not None and h.producer_id >= 0:
                on_producer_batch(h, expected)
            pos += h.batch_length + 12
            expected = last + 1
            count += 1
        result.end = pos
        result.next_offset = expected
        result.batches = count
        result.max_timestamp = max_ts
        result.first_max_timestamp = first_max_ts
        result.error = error
        if error is not None:
            result.tail_is_zero = zero_tail(mm, pos, size)
    finally:
        mm.close()
    return result
