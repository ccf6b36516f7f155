"""Consumed records, and turning fetched batches into them.

The decode path is the consumer's hot path. Per batch: one CRC-32C call and
one msgpack call (both C); per record: one tuple built. Nothing else.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import msgpack

from ..errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError, TailraceError
from ..records import COMPRESSION_GZIP, HEADER_SIZE, decompress_gzip, validate_batch

__all__ = ["Record", "TopicPartition", "decode_batches"]

_unpackb = msgpack.unpackb
_tuple_new = tuple.__new__


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed record. ``headers`` is None or a tuple of (name, value)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Any


def decode_batches(
    topic: str,
    partition: int,
    data: memoryview,
    start_offset: int,
    out: list[Record],
    max_records: int,
    max_batch_bytes: int = 1 << 31,
) -> tuple[int, int]:
    """Decode whole batches from ``data`` into ``out``, skipping offsets below
    ``start_offset``, stopping once ``out`` holds ``max_records`` records or at
    the end of the whole batches.

    Returns ``(bytes_consumed, next_offset)``: where in ``data`` decoding
    stopped (always a batch boundary) and the offset after the last record
    returned. A batch that fails its CRC or structure raises
    CorruptRecordError naming its offset range; nothing of it is returned.
    """
    pos = 0
    end = len(data)
    next_offset = start_offset
    new = _tuple_new
    cls = Record
    expected: int | None = None
    while end - pos >= HEADER_SIZE and len(out) < max_records:
        try:
            h = validate_batch(data, pos, max_batch_bytes=max_batch_bytes, end=end)
        except (CorruptRecordError, InvalidRecordError, RecordTooLargeError) as exc:
            if isinstance(exc, InvalidRecordError) and str(exc).startswith("truncated"):
                break  # a partial batch at the end of a response: fetch again
            raise _corrupt(topic, partition, data, pos, exc) from exc
        size = h.batch_length + 12
        base = h.base_offset
        last = base + h.last_offset_delta
        # base_offset is outside the CRC (the broker patches it): check that
        # offsets are dense, so a flipped bit there cannot go unnoticed.
        if (expected is not None and base != expected) or (
            expected is None and not (base <= start_offset <= last)
        ):
            raise CorruptRecordError(
                f"{topic}/{partition}: batch at byte {pos} claims offsets {base}..{last}, "
                f"expected {start_offset if expected is None else expected}"
            )
        expected = last + 1
        if last < next_offset:
            pos += size
            continue
        body = data[pos + HEADER_SIZE : pos + size]
        try:
            if h.attributes & 0x07 == COMPRESSION_GZIP:
                body = decompress_gzip(body, 64 * 1024 * 1024)
            records = _unpackb(body, use_list=False)
            if type(records) is not tuple or len(records) != h.record_count:
                raise InvalidRecordError("record count does not match the header")
            ts0 = h.base_timestamp
            skip = next_offset - base if next_offset > base else 0
            room = max_records - len(out)
            if skip or len(records) - skip > room:
                records = records[skip : skip + room]
            first = base + skip
            out.extend(
                [
                    new(cls, (topic, partition, first + i, ts0 + r[0], r[1], r[2], r[3]))
                    for i, r in enumerate(records)
                ]
            )
        except (ValueError, TypeError, IndexError, TailraceError) as exc:
            raise CorruptRecordError(
                f"{topic}/{partition}: batch at offsets {base}..{last} does not decode: {exc}"
            ) from exc
        next_offset = first + len(records)
        if next_offset <= last:
            # stopped inside the batch (max_records): resume in it next time
            return pos, next_offset
        pos += size
    return pos, next_offset


def _corrupt(
    topic: str, partition: int, data: memoryview, pos: int, exc: Exception
) -> CorruptRecordError:
    try:
        base, _length = struct.unpack_from(">qi", data, pos)
        (delta,) = struct.unpack_from(">i", data, pos + 23)
        where = f"offsets {base}..{base + delta}"
    except struct.error:
        where = "an unreadable header"
    return CorruptRecordError(f"{topic}/{partition}: batch at {where} failed its check: {exc}")
