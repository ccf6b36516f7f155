"""The record batch as a versioned facade: one header, one format per magic.

Every stored batch starts with the same 61-byte header (header.py: Kafka's
v2 header), so walking batches, offsets, timestamps, the producer fields and
the broker's in-place patch never depend on the format. What follows the
header depends on the magic byte, read at the same place in every format
(byte 16), as kafka-python's memory_records dispatches on it:

    magic  module     records
    1      native.py  one msgpack array (tailrace's native format)
    2      kafka.py   Kafka's varint records (what Kafka clients send)

:func:`validate_batch` checks what both share (bounds, the magic, the
CRC-32C over the same byte range) and hands the rest to the format;
:func:`iter_records` decodes any batch to ``(offset, timestamp, key, value,
headers)``. A new format is a module with ``check``, ``iter_records`` and
``columns`` and one line in FORMATS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import crc32c

from ..errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError
from . import kafka, native
from .header import CRC_START, HEADER, HEADER_SIZE, BatchHeader

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED",
    "FORMATS",
    "BatchFormat",
    "iter_records",
    "validate_batch",
]

#: Largest decompressed records section a batch may inflate to.
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024


class BatchFormat(NamedTuple):
    """What one magic contributes: its checks and its decoders."""

    magic: int
    name: str
    #: check(buf, pos, header, *, max_decompressed_bytes, check_records,
    #: allow_gaps) -> None; raises
    check: Callable[..., None]
    #: iter_records(buf, header, pos, *, max_decompressed_bytes) ->
    #: Iterator[(offset, timestamp, key, value, headers)]
    iter_records: Callable[..., Iterator[tuple[Any, ...]]]
    #: columns(buf, header, pos, skip, limit, *, max_decompressed_bytes) ->
    #: (ts0, deltas, keys, values, headers): the consumer's decode
    columns: Callable[..., tuple[Any, ...]]


FORMATS: dict[int, BatchFormat] = {
    native.MAGIC: BatchFormat(
        native.MAGIC, "native", native.check, native.iter_records, native.columns
    ),
    kafka.MAGIC: BatchFormat(kafka.MAGIC, "kafka", kafka.check, kafka.iter_records, kafka.columns),
}


def validate_batch(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    max_batch_bytes: int,
    end: int | None = None,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED,
    check_records: bool = True,
    allow_gaps: bool = False,
) -> BatchHeader:
    """Check the batch starting at ``buf[pos]`` and return its header.

    Checks, in order: that a whole header and the declared length fit before
    ``end`` (default ``len(buf)``); the length bounds; the magic byte (1 or
    2); the CRC-32C; then the format's own checks (native.check,
    kafka.check: attributes, record count, timestamps, and for magic 2 the
    records themselves, decompressed to at most ``max_decompressed_bytes``).
    Raises :class:`InvalidRecordError`, :class:`RecordTooLargeError`,
    :class:`CorruptRecordError` or (magic 2, transactional)
    :class:`UnsupportedForMessageFormatError`; returns only for a batch that
    passed every check.

    ``check_records=False`` leaves out the checks that need the records
    decoded (magic 2: count, offset deltas, timestamps), for a reader that
    decodes them next anyway (the consumer: its decode makes the same count
    and offset checks); the native format's checks are all kept.

    ``allow_gaps=True`` accepts what the log cleaner writes (readers of
    stored data: recovery, consumers): a magic-2 batch whose records are a
    strictly increasing subset of ``base_offset .. base_offset +
    last_offset_delta``, possibly none (an emptied batch kept for its
    producer's sequence). Appends never allow gaps; native batches never
    have them (the cleaner rewrites a native batch that loses records as a
    magic-2 batch: docs/format.md, "Compacted batches").
    """
    if end is None:
        end = len(buf)
    avail = end - pos
    if avail < HEADER_SIZE:
        raise InvalidRecordError(f"truncated batch: {avail} bytes, a header needs {HEADER_SIZE}")
    h = BatchHeader._make(HEADER.unpack_from(buf, pos))
    size = h.batch_length + 12
    if size < HEADER_SIZE + (not allow_gaps):  # an emptied batch is a header only
        raise InvalidRecordError(f"batch_length {h.batch_length} is below the minimum")
    if size > max_batch_bytes:
        raise RecordTooLargeError(
            f"batch of {size} bytes exceeds max_batch_bytes {max_batch_bytes}"
        )
    if size > avail:
        raise InvalidRecordError(f"truncated batch: declares {size} bytes, {avail} present")
    fmt = FORMATS.get(h.magic)
    if fmt is None:
        raise InvalidRecordError(f"unknown magic {h.magic} (expected one of {sorted(FORMATS)})")
    actual = crc32c.crc32c(memoryview(buf)[pos + CRC_START : pos + size])
    if actual != h.crc:
        raise CorruptRecordError(f"CRC-32C mismatch: stored {h.crc:#010x}, computed {actual:#010x}")
    fmt.check(
        buf,
        pos,
        h,
        max_decompressed_bytes=max_decompressed_bytes,
        check_records=check_records,
        allow_gaps=allow_gaps,
    )
    return h


def iter_records(
    buf: bytes | bytearray | memoryview,
    header: BatchHeader,
    pos: int = 0,
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED,
) -> Iterator[tuple[int, int, bytes | None, bytes | None, list[tuple[str, Any]] | None]]:
    """``(offset, timestamp, key, value, headers)`` for each record of a
    batch already checked by validate_batch, whatever its magic. Offsets come
    from the format (magic 2: each record's offset delta), not from the
    record's index; headers are None or a list of ``(name, value)``."""
    fmt = FORMATS.get(header.magic)
    if fmt is None:
        raise InvalidRecordError(f"unknown magic {header.magic}")
    return fmt.iter_records(buf, header, pos, max_decompressed_bytes=max_decompressed_bytes)
