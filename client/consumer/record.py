"""Consumed records, and turning fetched batches into them.

The decode path is the consumer's hot path. Per native (magic 1) batch: one
CRC-32C call, one msgpack call and one transposition into columns (all C);
per record, when it is read: one tuple built by C-level iteration. No Python
code runs per record. A Kafka (magic 2) batch is parsed by aiokafka's Cython
codec and turned into the same columns (records.kafka.columns), so both
formats give identical Records.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import chain, count, repeat
from operator import add
from typing import Any, NamedTuple

from ..errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError, TailraceError
from ..records import FORMATS, HEADER_SIZE, validate_batch
from ..records.kafka import sparse_columns as kafka_sparse_columns

__all__ = ["Record", "RecordList", "TopicPartition", "decode_batches"]

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


class RecordList(Sequence[Record]):
    """What ``poll`` returns: a read-only sequence of :class:`Record`.

    It holds each batch's decoded columns and builds Record objects as they
    are read (iteration and indexing), with C-level iteration only. Records
    that are looked at and dropped die young, so consuming millions of
    records does not make the cyclic garbage collector rescan the heap again
    and again (with a list of millions of tuple objects it would: those are
    tracked objects that survive into the old generation). ``list(records)``
    gives an ordinary list when one is wanted.
    """

    __slots__ = ("_ends", "_len", "_parts")

    def __init__(self, parts: list[tuple] | None = None) -> None:
        # each part: (topic, partition, first_offset, base_timestamp,
        #             deltas, keys, values, headers) as parallel tuples
        self._parts = parts if parts is not None else []
        ends = []
        total = 0
        for part in self._parts:
            total += len(part[4])
            ends.append(total)
        self._ends = ends
        self._len = total

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[Record]:
        return chain.from_iterable(map(_part_records, self._parts))

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        n = self._len
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("record index out of range")
        i = bisect_right(self._ends, index)
        topic, partition, first, ts0, deltas, keys, values, headers = self._parts[i]
        j = index - (self._ends[i - 1] if i else 0)
        offset = first + j if type(first) is int else first[j]
        return _tuple_new(
            Record, (topic, partition, offset, ts0 + deltas[j], keys[j], values[j], headers[j])
        )

    def values(self) -> list[bytes | None]:
        """Every record's value, in order, without building a Record per
        record (the batches' value columns joined in C): for a consumer that
        needs only the values, several times cheaper per record than
        iterating."""
        return list(chain.from_iterable([part[6] for part in self._parts]))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RecordList, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RecordList of {self._len} records>"


def _part_records(part: tuple) -> Iterator[Record]:
    # first: the first offset of dense records, or (a batch the log cleaner
    # compacted) the tuple of the records' offsets
    topic, partition, first, ts0, deltas, keys, values, headers = part
    return map(
        _tuple_new,
        repeat(Record),
        zip(
            repeat(topic),
            repeat(partition),
            count(first) if type(first) is int else first,
            map(add, repeat(ts0), deltas),
            keys,
            values,
            headers,
        ),
    )


def decode_batches(
    topic: str,
    partition: int,
    data: memoryview,
    start_offset: int,
    out: list[tuple],
    max_records: int,
    max_batch_bytes: int = 1 << 31,
) -> tuple[int, int, int]:
    """Decode whole batches from ``data`` into RecordList parts appended to
    ``out``, skipping offsets below ``start_offset``, stopping after
    ``max_records`` records or at the end of the whole batches.

    Returns ``(bytes_consumed, next_offset, records)``: where in ``data``
    decoding stopped (a batch boundary), the offset after the last record
    decoded, and how many records were decoded. A batch that fails its CRC
    or structure raises CorruptRecordError naming its offset range; nothing
    of it is returned.

    Offsets may have gaps (a compacted topic: docs/format.md, "Compacted
    batches"): a batch with fewer records than offsets, or none, is decoded
    by the offsets its records carry (inside the CRC, strictly increasing)
    and moves ``next_offset`` past its last offset. Batches themselves stay
    contiguous, and that is the check on ``base_offset`` (outside the CRC):
    each starts right after the previous one, the first holds
    ``start_offset``.
    """
    pos = 0
    end = len(data)
    next_offset = start_offset
    taken = 0
    expected: int | None = None
    while end - pos >= HEADER_SIZE and taken < max_records:
        try:
            # the records' own checks happen in the decode below
            h = validate_batch(
                data,
                pos,
                max_batch_bytes=max_batch_bytes,
                end=end,
                check_records=False,
                allow_gaps=True,
            )
        except (CorruptRecordError, InvalidRecordError, RecordTooLargeError) as exc:
            if isinstance(exc, InvalidRecordError) and str(exc).startswith("truncated"):
                break  # a partial batch at the end of a response: fetch again
            if taken:
                break  # hand out the good records first; the next call raises
            raise _corrupt(topic, partition, data, pos, exc) from exc
        size = h.batch_length + 12
        base = h.base_offset
        last = base + h.last_offset_delta
        # base_offset is outside the CRC (the broker patches it): check that
        # batches are contiguous, so a flipped bit there cannot go unnoticed.
        # (Compaction keeps them so: it removes records, not offsets from the
        # batch sequence, docs/format.md.)
        if (expected is not None and base != expected) or (
            expected is None and not (base <= start_offset <= last)
        ):
            if taken:
                break
            raise CorruptRecordError(
                f"{topic}/{partition}: batch at byte {pos} claims offsets {base}..{last}, "
                f"expected {start_offset if expected is None else expected}"
            )
        expected = last + 1
        if last < next_offset:
            pos += size
            continue
        if h.record_count != h.last_offset_delta + 1:
            # compacted: offsets come from the records (validate_batch let
            # only magic 2 through with a record count below its offsets)
            try:
                offsets, stamps, keys, values, headers = kafka_sparse_columns(
                    data, h, pos, next_offset, max_records - taken
                )
            except (ValueError, TypeError, IndexError, TailraceError) as exc:
                if taken:
                    break
                raise CorruptRecordError(
                    f"{topic}/{partition}: batch at offsets {base}..{last} does not decode: {exc}"
                ) from exc
            if offsets:
                out.append((topic, partition, offsets, 0, stamps, keys, values, headers))
                taken += len(offsets)
                if taken >= max_records and offsets[-1] < last:
                    return pos, offsets[-1] + 1, taken
            next_offset = last + 1
            pos += size
            continue
        skip = next_offset - base if next_offset > base else 0
        try:
            # validate_batch checked the magic: FORMATS has it
            ts0, deltas, keys, values, headers = FORMATS[h.magic].columns(
                data, h, pos, skip, max_records - taken
            )
        except (ValueError, TypeError, IndexError, TailraceError) as exc:
            if taken:
                break
            raise CorruptRecordError(
                f"{topic}/{partition}: batch at offsets {base}..{last} does not decode: {exc}"
            ) from exc
        first = base + skip
        out.append((topic, partition, first, ts0, deltas, keys, values, headers))
        taken += len(deltas)
        next_offset = first + len(deltas)
        if next_offset <= last:
            # stopped inside the batch (max_records): resume in it next time
            return pos, next_offset, taken
        pos += size
    return pos, next_offset, taken


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
