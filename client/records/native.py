"""Magic 1: tailrace's native format, msgpack records under the shared header.

A producer builds a batch, the broker checks it, writes the same bytes into
its log (patching only the base offset and leader epoch, which the CRC does
not cover), and serves the same bytes to consumers. The bytes on disk are the
bytes on the wire.

Layout: the 61-byte header of header.py, then the records::

    offset size field               notes
    0      61   header              header.py; magic = 1. attributes: bits 0-2
                                    compression (0 none, 1 gzip); bit 3
                                    (log-append time) is refused; bits 4-15
                                    must be 0. last_offset_delta is
                                    record_count - 1 (offsets are dense).
    61     ..   records             one msgpack array (gzip-compressed as a
                                    whole when attributes say so) holding,
                                    per record, the 4-array
                                    [timestamp_delta: int, key: bin|nil,
                                     value: bin|nil,
                                     headers: [[str, bin], ...]|nil]

A record's offset is base_offset + its index in the array; its timestamp is
base_timestamp + timestamp_delta. The broker checks a batch with one CRC call
and a look at the msgpack array header (the record count), never decoding the
records; a consumer decodes them with one msgpack call.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import crc32c
import msgpack

from ..errors import InvalidRecordError, RecordTooLargeError
from .header import (
    ATTR_COMPRESSION_MASK,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    BatchHeader,
)
from .nogc import no_collection

__all__ = [
    "COMPRESSION_GZIP",
    "COMPRESSION_NONE",
    "MAGIC",
    "build_batch",
    "check",
    "columns",
    "compress_gzip",
    "decompress_gzip",
    "encode_batch",
    "iter_records",
    "unpack_records",
]

_CRC = struct.Struct(">I")
_ARRAY16 = struct.Struct(">H")
_ARRAY32 = struct.Struct(">I")

MAGIC = 1
COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
_KNOWN_COMPRESSIONS = (COMPRESSION_NONE, COMPRESSION_GZIP)

#: gzip framing for zlib (16 + MAX_WBITS): header and trailer included.
_GZIP_WBITS = 31


def encode_batch(
    packed_records: bytes | bytearray | memoryview,
    record_count: int,
    base_timestamp: int,
    max_timestamp: int,
    *,
    compression: int = COMPRESSION_NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    base_offset: int = 0,
) -> bytes:
    """Wrap already-packed (and, if asked, already-compressed) records.

    This is the producer's fast path: ``packed_records`` is the msgpack array
    of 4-arrays described in the module docstring, compressed with gzip when
    ``compression`` is COMPRESSION_GZIP.
    """
    header = HEADER.pack(
        base_offset,
        HEADER_SIZE - 12 + len(packed_records),
        -1,
        MAGIC,
        0,
        compression,
        record_count - 1,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count,
    )
    crc = crc32c.crc32c(packed_records, crc32c.crc32c(header[CRC_START:]))
    return b"".join((header[:17], _CRC.pack(crc), header[CRC_START:], packed_records))


def build_batch(
    records: Sequence[tuple[int, bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None]],
    *,
    compression: int = COMPRESSION_NONE,
    compression_level: int = 6,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    base_offset: int = 0,
) -> bytes:
    """Build one batch from ``(timestamp_ms, key, value, headers)`` records.

    ``headers`` is None or a sequence of ``(str, bytes)`` pairs. Raises
    :class:`ValueError` for an empty record list or an unknown compression.
    """
    if not records:
        raise ValueError("a batch holds at least one record")
    if compression not in _KNOWN_COMPRESSIONS:
        raise ValueError(f"unknown compression {compression}")
    base_ts = records[0][0]
    max_ts = max(r[0] for r in records)
    body = msgpack.packb(
        [
            (ts - base_ts, key, value, None if headers is None else [list(h) for h in headers])
            for ts, key, value, headers in records
        ],
        use_bin_type=True,
    )
    if compression == COMPRESSION_GZIP:
        body = compress_gzip(body, compression_level)
    return encode_batch(
        body,
        len(records),
        base_ts,
        max_ts,
        compression=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        base_offset=base_offset,
    )


def compress_gzip(data: bytes, level: int = 6) -> bytes:
    """gzip-compress ``data`` (RFC 1952 framing, as Kafka's gzip codec)."""
    c = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    return c.compress(data) + c.flush()


def decompress_gzip(data: bytes | memoryview, max_bytes: int) -> bytes:
    """Inflate a gzip body, refusing to produce more than ``max_bytes``."""
    d = zlib.decompressobj(_GZIP_WBITS)
    try:
        out = d.decompress(data, max_bytes)
    except zlib.error as exc:
        raise InvalidRecordError(f"gzip body does not inflate: {exc}") from exc
    if d.unconsumed_tail:
        raise RecordTooLargeError(f"gzip body inflates past {max_bytes} bytes")
    if not d.eof:
        raise InvalidRecordError("gzip body is truncated")
    return out


def _array_length(prefix: bytes | memoryview) -> int:
    """Element count from the msgpack array header at the start of ``prefix``.

    Returns -1 when the bytes do not start with an array header.
    """
    if not prefix:
        return -1
    first = prefix[0]
    if 0x90 <= first <= 0x9F:  # fixarray
        return first & 0x0F
    if first == 0xDC and len(prefix) >= 3:  # array 16
        return _ARRAY16.unpack_from(prefix, 1)[0]
    if first == 0xDD and len(prefix) >= 5:  # array 32
        return _ARRAY32.unpack_from(prefix, 1)[0]
    return -1


def check(
    buf: bytes | bytearray | memoryview,
    pos: int,
    h: BatchHeader,
    *,
    max_decompressed_bytes: int,
    check_records: bool = True,
    allow_gaps: bool = False,
) -> None:
    """The magic-1 checks of a batch whose bounds and CRC already passed
    (records.validate_batch does those): the attributes; that
    ``last_offset_delta`` and the msgpack array header agree with
    ``record_count``; the timestamps. Raises :class:`InvalidRecordError`.
    """
    # only the array header is read; a native batch never has offset gaps
    # (the cleaner rewrites one that loses records as magic 2)
    del max_decompressed_bytes, check_records, allow_gaps
    if h.attributes & ~ATTR_COMPRESSION_MASK:
        # bit 3 (log-append time) is reserved; bits 4-15 are undefined.
        raise InvalidRecordError(f"unsupported attributes {h.attributes:#06x}")
    compression = h.attributes & ATTR_COMPRESSION_MASK
    if compression not in _KNOWN_COMPRESSIONS:
        raise InvalidRecordError(f"unknown compression codec {compression}")
    if h.record_count < 1 or h.last_offset_delta != h.record_count - 1:
        raise InvalidRecordError(
            f"record_count {h.record_count} disagrees with last_offset_delta {h.last_offset_delta}"
        )
    if h.max_timestamp < h.base_timestamp:
        raise InvalidRecordError("max_timestamp is below base_timestamp")
    body = memoryview(buf)[pos + HEADER_SIZE : pos + h.batch_length + 12]
    if compression == COMPRESSION_NONE:
        prefix = body[:5]
    else:
        try:
            prefix = zlib.decompressobj(_GZIP_WBITS).decompress(body, 5)
        except zlib.error as exc:
            raise InvalidRecordError(f"gzip body does not inflate: {exc}") from exc
    count = _array_length(prefix)
    if count != h.record_count:
        raise InvalidRecordError(
            f"records array holds {count} entries, header says {h.record_count}"
        )


def unpack_records(
    buf: bytes | bytearray | memoryview,
    header: BatchHeader,
    pos: int = 0,
    *,
    max_decompressed_bytes: int = 64 * 1024 * 1024,
    use_list: bool = True,
) -> Any:
    """Decode the records of a batch already checked by validate_batch.

    Returns the msgpack array as a list of ``[timestamp_delta, key, value,
    headers]`` lists (tuples all the way down with ``use_list=False``).
    Raises :class:`InvalidRecordError` when the records do not decode or
    their count disagrees with the header.
    """
    body: Any = memoryview(buf)[pos + HEADER_SIZE : pos + header.batch_length + 12]
    if header.attributes & ATTR_COMPRESSION_MASK == COMPRESSION_GZIP:
        body = decompress_gzip(body, max_decompressed_bytes)
    try:
        records = msgpack.unpackb(body, use_list=use_list)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidRecordError(
            f"records of batch at offset {header.base_offset} do not decode: {exc}"
        ) from exc
    if type(records) is not (list if use_list else tuple) or len(records) != header.record_count:
        raise InvalidRecordError(
            f"batch at offset {header.base_offset} decodes to the wrong number of records"
        )
    return records


def iter_records(
    buf: bytes | bytearray | memoryview,
    h: BatchHeader,
    pos: int = 0,
    *,
    max_decompressed_bytes: int = 64 * 1024 * 1024,
) -> Iterator[tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]] | None]]:
    """``(offset, timestamp, key, value, headers)`` per record of a checked
    batch; headers None or a list of ``(name, value)`` pairs."""
    base, ts0 = h.base_offset, h.base_timestamp
    for i, (delta, key, value, headers) in enumerate(
        unpack_records(buf, h, pos, max_decompressed_bytes=max_decompressed_bytes)
    ):
        yield (
            base + i,
            ts0 + delta,
            key,
            value,
            None if headers is None else [(n, v) for n, v in headers],
        )


def columns(
    buf: bytes | bytearray | memoryview,
    h: BatchHeader,
    pos: int,
    skip: int,
    limit: int,
    *,
    max_decompressed_bytes: int = 64 * 1024 * 1024,
) -> tuple[int, tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """The records ``skip`` to ``skip + limit`` of a checked batch as columns
    ``(ts0, deltas, keys, values, headers)`` (timestamp = ts0 + delta; headers
    None or a tuple of ``(name, value)`` tuples): the consumer's decode, one
    msgpack call and one C-level transposition.

    Raises InvalidRecordError, RecordTooLargeError, or ValueError/TypeError
    for records that are not 4-arrays.
    """
    body: Any = memoryview(buf)[pos + HEADER_SIZE : pos + h.batch_length + 12]
    if h.attributes & ATTR_COMPRESSION_MASK == COMPRESSION_GZIP:
        body = decompress_gzip(body, max_decompressed_bytes)
    with no_collection():  # a tuple per record, twice (see nogc.py)
        records = _unpackb(body, use_list=False)
        if type(records) is not tuple or len(records) != h.record_count:
            raise InvalidRecordError("record count does not match the header")
        if skip or len(records) - skip > limit:
            records = records[skip : skip + limit]
        deltas, keys, values, headers = zip(*records, strict=True)
    return h.base_timestamp, deltas, keys, values, headers


_unpackb = msgpack.unpackb
