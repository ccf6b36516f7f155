"""Magic 2: Kafka's RecordBatch v2, varint records under the shared header.

What every Kafka client since 0.11 produces and consumes. The broker stores
these batches byte for byte (patching base_offset and leader_epoch, outside
the CRC), so a Kafka consumer is served the stored bytes (sendfile).

Layout: the 61-byte header of header.py (magic = 2), then ``record_count``
records, compressed as a whole (everything after the header) when the
attributes say so::

    header field        magic-2 rules checked here
    attributes          bits 0-2 compression: 0 none, 1 gzip, 2 snappy (raw
                        or xerial-framed), 3 lz4 (frame), 4 zstd.
                        bit 3 timestamp type: 1 (log-append time) is set by a
                        broker, never by a producer: refused.
                        bit 4 transactional: refused with
                        UnsupportedForMessageFormatError (Kafka's code 43,
                        UNSUPPORTED_FOR_MESSAGE_FORMAT: what Kafka answers
                        when its log cannot hold transactional batches);
                        tailrace has no transactions.
                        bit 5 control: refused (InvalidRecordError, as Kafka
                        refuses control batches from clients).
                        bits 6-15: must be 0.
    last_offset_delta   = record_count - 1, and the records' offset deltas
                        are exactly 0, 1, ..., record_count - 1 (dense, as
                        every Kafka producer writes them). A batch the log
                        cleaner rewrote (stored data, checked with
                        allow_gaps) keeps its last_offset_delta and holds
                        fewer records (0 for an emptied batch) at strictly
                        increasing offset deltas: build_compacted.
    base/max_timestamp  max_timestamp = the largest record timestamp
                        (base_timestamp + timestamp_delta).
    producer_id/epoch/  all -1 (not idempotent), or producer_id >= 0 with
    base_sequence       epoch >= 0 and base_sequence >= 0.
    record_count        >= 1, and the number of records the (decompressed)
                        body holds, with no byte left over.

    Record (each; varints are zig-zag, as protobuf's sint):
    field            type     notes
    length           varint   bytes of the record after this field
    attributes       int8     unused (0)
    timestamp_delta  varlong  timestamp - base_timestamp, ms
    offset_delta     varint   offset - base_offset
    key_length       varint   -1 for a null key
    key              bytes
    value_length     varint   -1 for a null value
    value            bytes
    header_count     varint
    headers          [header_key_length varint, header_key utf-8,
                      header_value_length varint (-1: null), header_value]

Decompression is bounded (compression.py); the records are parsed by
aiokafka's Cython codec (``aiokafka.record._crecords``), imported on first
use: importing it imports the aiokafka package (asyncio among it, no event
loop, no thread) for 0.07-0.2 s, which a broker or client that never meets a
magic-2 batch does not pay. :func:`load_codec` imports it ahead of time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from operator import attrgetter, lt
from typing import Any

import crc32c

from ..errors import InvalidRecordError, UnsupportedForMessageFormatError
from .compression import CODEC_NAMES, CODEC_NONE, decompress
from .header import (
    ATTR_COMPRESSION_MASK,
    ATTR_CONTROL,
    ATTR_LOG_APPEND_TIME,
    ATTR_TRANSACTIONAL,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    BatchHeader,
    patch_base_offset,
)
from .nogc import no_collection

__all__ = [
    "MAGIC",
    "build",
    "build_compacted",
    "build_deltas",
    "check",
    "columns",
    "iter_records",
    "load_codec",
    "sparse_columns",
]

MAGIC = 2
_KNOWN_ATTRIBUTES = ATTR_COMPRESSION_MASK | ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL | ATTR_CONTROL
#: a builder never refuses a record for size (the caller bounds batches)
_NO_LIMIT = 2**31 - 1
_ATTRIBUTES = struct.Struct(">h")
_LENGTH = struct.Struct(">i")
_CRC = struct.Struct(">I")
_LAST_OFFSET_DELTA = struct.Struct(">i")

_offset = attrgetter("offset")
_timestamp = attrgetter("timestamp")
_key = attrgetter("key")
_value = attrgetter("value")
_headers = attrgetter("headers")

_crecords: Any = None
_corrupt_exc: tuple[type[BaseException], ...] = ()


def load_codec() -> None:
    """Import aiokafka's Cython record codec now rather than on first use."""
    global _crecords, _corrupt_exc
    if _crecords is None:
        from aiokafka.errors import KafkaError
        from aiokafka.record._crecords import default_records

        _corrupt_exc = (KafkaError, ValueError, IndexError, TypeError, OverflowError)
        _crecords = default_records


def _parse(buf: bytes | bytearray | memoryview, pos: int, h: BatchHeader, limit: int) -> list[Any]:
    """Every record of the batch at ``pos`` (CRC already checked), counted,
    with dense offset deltas; the Cython codec's records."""
    if h.record_count == 0:  # an emptied batch (compaction): a header only
        if h.batch_length + 12 != HEADER_SIZE:
            raise InvalidRecordError(f"empty batch at offset {h.base_offset} carries bytes")
        return []
    if _crecords is None:
        load_codec()
    end = pos + h.batch_length + 12
    view = memoryview(buf)
    codec = h.attributes & ATTR_COMPRESSION_MASK
    if codec == CODEC_NONE:
        raw: Any = view[pos:end]
    else:
        body = decompress(codec, view[pos + HEADER_SIZE : end], limit)
        # the codec inflates without a bound: hand it the inflated records
        # under a copy of the header that says "uncompressed"
        head = bytearray(view[pos : pos + HEADER_SIZE])
        _ATTRIBUTES.pack_into(head, 21, h.attributes & ~ATTR_COMPRESSION_MASK)
        _LENGTH.pack_into(head, 8, HEADER_SIZE - 12 + len(body))
        raw = head + body
    # one object per record, all freed by reference counting once the caller
    # has what it needs: no cycles for the collector to find, but thousands
    # of tracked allocations that would trigger collections of the whole
    # heap (measured: 0.5 -> 2.7 us/record in a process holding many
    # objects). The caller turns collection off around parse and use.
    try:
        records = list(_crecords.DefaultRecordBatch(raw))
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(
            f"batch at offset {h.base_offset}: a header name is not UTF-8"
        ) from exc
    except _corrupt_exc as exc:
        raise InvalidRecordError(
            f"batch at offset {h.base_offset}: records do not parse: {exc}"
        ) from exc
    n = len(records)
    if n != h.record_count:  # the codec stops at record_count; fewer is a parse error
        raise InvalidRecordError(f"batch holds {n} records, header says {h.record_count}")
    base = h.base_offset
    if n == h.last_offset_delta + 1:  # dense: what producers write
        if records[-1].offset != base + n - 1 or list(map(_offset, records)) != list(
            range(base, base + n)
        ):
            raise InvalidRecordError(
                f"batch at offset {base}: record offset deltas are not 0..{n - 1} in order"
            )
        return records
    # compacted (check() allowed it): a strictly increasing subset of the
    # batch's offsets
    offsets = list(map(_offset, records))
    if (
        offsets[0] < base
        or offsets[-1] > base + h.last_offset_delta
        or not all(map(lt, offsets, offsets[1:]))
    ):
        raise InvalidRecordError(
            f"batch at offset {base}: record offset deltas are not increasing within "
            f"0..{h.last_offset_delta}"
        )
    return records


def check(
    buf: bytes | bytearray | memoryview,
    pos: int,
    h: BatchHeader,
    *,
    max_decompressed_bytes: int,
    check_records: bool = True,
    allow_gaps: bool = False,
) -> None:
    """The magic-2 checks of a batch whose bounds and CRC already passed
    (records.validate_batch does those): attributes, producer fields, record
    count after decompression, offset deltas, timestamps (see the module
    docstring). Raises InvalidRecordError, RecordTooLargeError (inflates past
    ``max_decompressed_bytes``) or UnsupportedForMessageFormatError
    (transactional). ``check_records=False``: the header checks only (the
    caller parses the records next, with :func:`columns`). ``allow_gaps``:
    a batch the log cleaner rewrote (stored data only): ``record_count``
    from 0 to ``last_offset_delta + 1``, offsets a strictly increasing
    subset of the batch's range.
    """
    attrs = h.attributes
    if attrs & ~_KNOWN_ATTRIBUTES:
        raise InvalidRecordError(f"unsupported attributes {attrs:#06x}")
    if attrs & ATTR_CONTROL:
        raise InvalidRecordError("clients may not write control batches")
    if attrs & ATTR_TRANSACTIONAL:
        raise UnsupportedForMessageFormatError(
            "transactional batches are not supported: tailrace has no transactions"
        )
    if attrs & ATTR_LOG_APPEND_TIME:
        raise InvalidRecordError("log-append time is set by a broker, not by producers")
    codec = attrs & ATTR_COMPRESSION_MASK
    if codec not in CODEC_NAMES:
        raise InvalidRecordError(f"unknown compression codec {codec}")
    if allow_gaps:
        if h.last_offset_delta < 0 or not 0 <= h.record_count <= h.last_offset_delta + 1:
            raise InvalidRecordError(
                f"record_count {h.record_count} does not fit last_offset_delta "
                f"{h.last_offset_delta}"
            )
    elif h.record_count < 1 or h.last_offset_delta != h.record_count - 1:
        raise InvalidRecordError(
            f"record_count {h.record_count} disagrees with last_offset_delta {h.last_offset_delta}"
        )
    if h.producer_id == -1:
        if h.producer_epoch != -1 or h.base_sequence != -1:
            raise InvalidRecordError(
                "producer epoch and base sequence must be -1 without a producer id"
            )
    elif h.producer_id < 0 or h.producer_epoch < 0 or h.base_sequence < 0:
        raise InvalidRecordError(
            f"producer id {h.producer_id}, epoch {h.producer_epoch}, "
            f"base sequence {h.base_sequence}: ids and epochs are >= 0 (or all -1)"
        )
    if not check_records:
        return
    if h.record_count == 0:
        _parse(buf, pos, h, max_decompressed_bytes)  # checks that no body follows
        return
    with no_collection():
        records = _parse(buf, pos, h, max_decompressed_bytes)
        biggest = max(map(_timestamp, records))
        del records
    if biggest != h.max_timestamp:
        raise InvalidRecordError(
            f"max_timestamp {h.max_timestamp} is not the largest record timestamp {biggest}"
        )


def iter_records(
    buf: bytes | bytearray | memoryview,
    h: BatchHeader,
    pos: int = 0,
    *,
    max_decompressed_bytes: int = 64 * 1024 * 1024,
) -> Iterator[tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]] | None]]:
    """``(offset, timestamp, key, value, headers)`` per record of a checked
    batch, offsets from each record's offset delta; headers None (no
    headers) or a list of ``(name, value)`` pairs (value None for null)."""
    for r in _parse(buf, pos, h, max_decompressed_bytes):
        yield r.offset, r.timestamp, r.key, r.value, (r.headers or None)


def _header_tuple(headers: list[tuple[str, bytes | None]]) -> tuple[Any, ...] | None:
    return tuple(headers) if headers else None


def columns(
    buf: bytes | bytearray | memoryview,
    h: BatchHeader,
    pos: int,
    skip: int,
    limit: int,
    *,
    max_decompressed_bytes: int = 64 * 1024 * 1024,
) -> tuple[int, tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """Records ``skip`` to ``skip + limit`` as the consumer's columns
    ``(0, timestamps, keys, values, headers)`` (native.columns' shape with
    ts0 = 0: the deltas are absolute timestamps); headers None or a tuple of
    ``(name, value)`` tuples, as the native format decodes them."""
    with no_collection():
        records = _parse(buf, pos, h, max_decompressed_bytes)
        if skip or len(records) - skip > limit:
            records = records[skip : skip + limit]
        return (
            0,
            tuple(map(_timestamp, records)),
            tuple(map(_key, records)),
            tuple(map(_value, records)),
            tuple(map(_header_tuple, map(_headers, records))),
        )


def sparse_columns(
    buf: bytes | bytearray | memoryview,
    h: BatchHeader,
    pos: int,
    from_offset: int,
    limit: int,
    *,
    max_decompressed_bytes: int = 64 * 1024 * 1024,
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """A compacted batch's records at or above ``from_offset`` (at most
    ``limit``) as ``(offsets, timestamps, keys, values, headers)``: the
    consumer's decode of a batch with offset gaps, where a record's offset
    is not its index."""
    with no_collection():
        records = _parse(buf, pos, h, max_decompressed_bytes)
        if records and records[0].offset < from_offset:
            records = [r for r in records if r.offset >= from_offset]
        if len(records) > limit:
            records = records[:limit]
        return (
            tuple(map(_offset, records)),
            tuple(map(_timestamp, records)),
            tuple(map(_key, records)),
            tuple(map(_value, records)),
            tuple(map(_header_tuple, map(_headers, records))),
        )


def build_compacted(
    h: BatchHeader,
    records: Sequence[tuple[int, int, bytes | None, bytes | None, Sequence[Any] | None]],
    codec: int,
) -> bytes:
    """The batch ``h`` as the log cleaner keeps it: only ``records``
    (``(offset, timestamp, key, value, headers)``, a subset of its records in
    order), each at its own offset, as a magic-2 batch with ``h``'s base
    offset, ``last_offset_delta``, leader epoch and producer id, epoch and
    base sequence, compressed with ``codec`` (the codec ``h`` used). No
    records: an empty batch (a header, uncompressed, max_timestamp kept),
    which keeps the producer's last sequence in the log as Kafka's does."""
    base = h.base_offset
    if not records:
        out = bytearray(
            HEADER.pack(
                base,
                HEADER_SIZE - 12,
                h.leader_epoch,
                MAGIC,
                0,
                0,
                h.last_offset_delta,
                h.max_timestamp,
                h.max_timestamp,
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                0,
            )
        )
    else:
        if codec not in CODEC_NAMES:
            raise ValueError(f"unknown compression {codec}")
        if _crecords is None:
            load_codec()
        b = _crecords.DefaultRecordBatchBuilder(
            MAGIC, codec, 0, h.producer_id, h.producer_epoch, h.base_sequence, _NO_LIMIT
        )
        append = b.append
        with no_collection():
            for offset, ts, key, value, headers in records:
                if not headers:
                    headers = []
                elif type(headers) is not list or type(headers[0]) is not tuple:
                    headers = [tuple(pair) for pair in headers]
                append(offset - base, ts, key, value, headers)
            out = b.build()
        # the builder ends the batch at its last record: keep the original
        # last offset delta (inside the CRC)
        _LAST_OFFSET_DELTA.pack_into(out, 23, h.last_offset_delta)
    _CRC.pack_into(out, 17, crc32c.crc32c(memoryview(out)[CRC_START:]))
    patch_base_offset(out, 0, base, h.leader_epoch)
    return bytes(out)


def build(
    records: Sequence[tuple[int, bytes | None, bytes | None, Sequence[Any] | None]],
    *,
    compression: int = CODEC_NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    base_offset: int = 0,
    leader_epoch: int = -1,
) -> bytearray:
    """One magic-2 batch from ``(timestamp_ms, key, value, headers)`` records
    (record i gets offset delta i; headers None or ``(name, value)`` pairs),
    built by aiokafka's Cython builder (compression through cramjam; snappy
    is xerial-framed). Raises ValueError for an empty record list or an
    unknown compression."""
    if not records:
        raise ValueError("a batch holds at least one record")
    return build_deltas(
        records[0][0],
        [(ts - records[0][0], key, value, headers) for ts, key, value, headers in records],
        compression=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        base_offset=base_offset,
        leader_epoch=leader_epoch,
    )


def build_deltas(
    base_timestamp: int,
    records: Sequence[tuple[int, bytes | None, bytes | None, Sequence[Any] | None]],
    *,
    compression: int = CODEC_NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    base_offset: int = 0,
    leader_epoch: int = -1,
) -> bytearray:
    """:func:`build` from ``(timestamp_delta, key, value, headers)`` records
    and their base timestamp: the native producer's record form, so it can
    build either format from the records it holds."""
    if not records:
        raise ValueError("a batch holds at least one record")
    if compression not in CODEC_NAMES:
        raise ValueError(f"unknown compression {compression}")
    if _crecords is None:
        load_codec()
    builder = _crecords.DefaultRecordBatchBuilder
    if base_timestamp + records[0][0] == -1:
        # The Cython builder keeps its first timestamp in -1 while unset, so
        # a first record stamped -1 is re-based on the next record's
        # timestamp and read back with it; aiokafka's pure-Python builder
        # (same bytes otherwise) does not. Found by
        # tests/records/test_convert.py's property test.
        from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy as builder
    b = builder(MAGIC, compression, 0, producer_id, producer_epoch, base_sequence, _NO_LIMIT)
    append = b.append
    # append returns an object per record (dropped at once): keep those
    # allocations from triggering collections, as in _parse
    with no_collection():
        for i, (delta, key, value, headers) in enumerate(records):
            if not headers:
                headers = []
            elif type(headers) is not list:
                headers = list(headers)
            if headers and type(headers[0]) is not tuple:
                # the codec takes a list of tuples only
                headers = [tuple(pair) for pair in headers]
            append(i, base_timestamp + delta, key, value, headers)
        out = b.build()
    patch_base_offset(out, 0, base_offset, leader_epoch)
    return out
