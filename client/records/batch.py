"""The record batch: tailrace's unit of storage and transfer.

A producer builds a batch, the broker checks it, writes the same bytes into
its log (patching only the base offset and leader epoch, which the CRC does
not cover), and serves the same bytes to consumers. The bytes on disk are the
bytes on the wire.

Layout (all integers big-endian; modelled on Kafka's RecordBatch v2)::

    offset size field               type  notes
    0      8    base_offset         i64   offset of the first record; set by the
                                          broker on append. Outside the CRC.
    8      4    batch_length        i32   bytes that follow this field, i.e.
                                          total batch size - 12. Outside the CRC.
    12     4    leader_epoch        i32   set by the broker (0 on one node);
                                          -1 from producers. Outside the CRC.
    16     1    magic               i8    format version, MAGIC (1). Outside
                                          the CRC.
    17     4    crc                 u32   CRC-32C (Castagnoli) of bytes
                                          [21, 12 + batch_length): attributes
                                          to the end of the records.
    21     2    attributes          i16   bits 0-2 compression (0 none, 1 gzip);
                                          bit 3 timestamp type (0 create time;
                                          1, log-append time, is reserved and
                                          refused); bits 4-15 must be 0.
    23     4    last_offset_delta   i32   record_count - 1.
    27     8    base_timestamp      i64   timestamp of the first record, ms
                                          since the Unix epoch.
    35     8    max_timestamp       i64   largest record timestamp, ms.
    43     8    producer_id         i64   idempotent producer id; -1 if none.
    51     2    producer_epoch      i16   producer epoch; -1 if none.
    53     4    base_sequence       i32   sequence of the first record; -1 if
                                          none.
    57     4    record_count        i32   number of records, >= 1.
    61     ..   records             bytes one msgpack array (gzip-compressed as a
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
from typing import NamedTuple

import crc32c
import msgpack

from ..errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError

__all__ = [
    "COMPRESSION_GZIP",
    "COMPRESSION_NONE",
    "CRC_START",
    "HEADER",
    "HEADER_SIZE",
    "LENGTH_PREFIX",
    "MAGIC",
    "BatchHeader",
    "build_batch",
    "encode_batch",
    "iter_headers",
    "patch_base_offset",
    "read_header",
    "unpack_records",
    "validate_batch",
]

#: The whole 61-byte header, one field per format character (see above).
HEADER = struct.Struct(
    ">"
    "q"  # base_offset
    "i"  # batch_length
    "i"  # leader_epoch
    "b"  # magic
    "I"  # crc
    "h"  # attributes
    "i"  # last_offset_delta
    "q"  # base_timestamp
    "q"  # max_timestamp
    "q"  # producer_id
    "h"  # producer_epoch
    "i"  # base_sequence
    "i"  # record_count
)
HEADER_SIZE = HEADER.size  # 61
#: base_offset and batch_length: enough to find the end of a batch.
LENGTH_PREFIX = struct.Struct(">qi")
#: First byte covered by the CRC (the attributes field).
CRC_START = 21
#: The two fields the broker rewrites on append, outside the CRC. (Two
#: structs: a pad byte in one would overwrite batch_length with zeros.)
_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH = struct.Struct(">i")
_CRC = struct.Struct(">I")
_ARRAY16 = struct.Struct(">H")
_ARRAY32 = struct.Struct(">I")

MAGIC = 1
COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
_COMPRESSION_MASK = 0x07
_KNOWN_COMPRESSIONS = (COMPRESSION_NONE, COMPRESSION_GZIP)

#: gzip framing for zlib (16 + MAX_WBITS): header and trailer included.
_GZIP_WBITS = 31


class BatchHeader(NamedTuple):
    """The decoded 61-byte header of one batch."""

    base_offset: int
    batch_length: int
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Total bytes of the batch, header included."""
        return self.batch_length + 12

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & _COMPRESSION_MASK


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Decode the header at ``pos`` without any check (see validate_batch)."""
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


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


def validate_batch(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    max_batch_bytes: int,
    end: int | None = None,
) -> BatchHeader:
    """Check the batch starting at ``buf[pos]`` and return its header.

    Checks, in order: that a whole header and the declared length fit before
    ``end`` (default ``len(buf)``); the length bounds; the magic byte; the
    CRC-32C; the attributes; that ``last_offset_delta`` and the msgpack array
    header agree with ``record_count``. Raises :class:`InvalidRecordError`,
    :class:`RecordTooLargeError` or :class:`CorruptRecordError`; returns only
    for a batch that passed every check.
    """
    if end is None:
        end = len(buf)
    avail = end - pos
    if avail < HEADER_SIZE:
        raise InvalidRecordError(f"truncated batch: {avail} bytes, a header needs {HEADER_SIZE}")
    h = BatchHeader._make(HEADER.unpack_from(buf, pos))
    size = h.batch_length + 12
    if size < HEADER_SIZE + 1:
        raise InvalidRecordError(f"batch_length {h.batch_length} is below the minimum")
    if size > max_batch_bytes:
        raise RecordTooLargeError(
            f"batch of {size} bytes exceeds max_batch_bytes {max_batch_bytes}"
        )
    if size > avail:
        raise InvalidRecordError(f"truncated batch: declares {size} bytes, {avail} present")
    if h.magic != MAGIC:
        raise InvalidRecordError(f"unknown magic {h.magic} (expected {MAGIC})")
    view = memoryview(buf)[pos + CRC_START : pos + size]
    actual = crc32c.crc32c(view)
    if actual != h.crc:
        raise CorruptRecordError(f"CRC-32C mismatch: stored {h.crc:#010x}, computed {actual:#010x}")
    if h.attributes & ~_COMPRESSION_MASK:
        # bit 3 (log-append time) is reserved; bits 4-15 are undefined.
        raise InvalidRecordError(f"unsupported attributes {h.attributes:#06x}")
    compression = h.attributes & _COMPRESSION_MASK
    if compression not in _KNOWN_COMPRESSIONS:
        raise InvalidRecordError(f"unknown compression codec {compression}")
    if h.record_count < 1 or h.last_offset_delta != h.record_count - 1:
        raise InvalidRecordError(
            f"record_count {h.record_count} disagrees with last_offset_delta {h.last_offset_delta}"
        )
    if h.max_timestamp < h.base_timestamp:
        raise InvalidRecordError("max_timestamp is below base_timestamp")
    body = view[HEADER_SIZE - CRC_START :]
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
    return h


def patch_base_offset(
    buf: bytearray | memoryview, pos: int, base_offset: int, leader_epoch: int = 0
) -> None:
    """Set the two broker-owned fields of the batch at ``pos`` in place.

    Neither field is covered by the CRC, so the batch stays valid.
    """
    _BASE_OFFSET.pack_into(buf, pos, base_offset)
    _LEADER_EPOCH.pack_into(buf, pos + 12, leader_epoch)


def unpack_records(
    buf: bytes | bytearray | memoryview,
    header: BatchHeader,
    pos: int = 0,
    *,
    max_decompressed_bytes: int = 64 * 1024 * 1024,
) -> list:
    """Decode the records of a batch already checked by validate_batch.

    Returns the msgpack array as a list of ``[timestamp_delta, key, value,
    headers]`` lists. Raises :class:`InvalidRecordError` when the records do
    not decode or their count disagrees with the header.
    """
    body = memoryview(buf)[pos + HEADER_SIZE : pos + header.batch_length + 12]
    if header.attributes & _COMPRESSION_MASK == COMPRESSION_GZIP:
        body = decompress_gzip(body, max_decompressed_bytes)
    try:
        records = msgpack.unpackb(body)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidRecordError(
            f"records of batch at offset {header.base_offset} do not decode: {exc}"
        ) from exc
    if type(records) is not list or len(records) != header.record_count:
        raise InvalidRecordError(
            f"batch at offset {header.base_offset} decodes to the wrong number of records"
        )
    return records


def iter_headers(
    buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each whole batch in ``buf[pos:end]``.

    Structural walk only (no CRC): stops before a batch that does not fit.
    """
    if end is None:
        end = len(buf)
    while end - pos >= HEADER_SIZE:
        h = BatchHeader._make(HEADER.unpack_from(buf, pos))
        size = h.batch_length + 12
        if size < HEADER_SIZE or pos + size > end:
            return
        yield pos, h
        pos += size
