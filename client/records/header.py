"""The 61-byte batch header every stored format shares (Kafka's v2 header).

Both formats (magic 1, tailrace's msgpack records; magic 2, Kafka's varint
records) start with the same header, so the log can find batch boundaries,
offsets, timestamps and producer fields without knowing which format a batch
holds, and patch the two broker-owned fields in place. What follows the
header is the format's business (see native.py and kafka.py).

Layout (all integers big-endian; byte for byte Kafka's RecordBatch v2)::

    offset size field               type  notes
    0      8    base_offset         i64   offset of the first record; set by the
                                          broker on append. Outside the CRC.
    8      4    batch_length        i32   bytes that follow this field, i.e.
                                          total batch size - 12. Outside the CRC.
    12     4    leader_epoch        i32   set by the broker (0 on one node);
                                          -1 from producers. Outside the CRC.
    16     1    magic               i8    format: 1 native (msgpack records),
                                          2 Kafka (varint records). Outside
                                          the CRC.
    17     4    crc                 u32   CRC-32C (Castagnoli) of bytes
                                          [21, 12 + batch_length): attributes
                                          to the end of the records.
    21     2    attributes          i16   bits 0-2 compression; bit 3 timestamp
                                          type; bit 4 transactional; bit 5
                                          control; the rest 0. Which values a
                                          format accepts: its module.
    23     4    last_offset_delta   i32   offset of the last record - base_offset.
    27     8    base_timestamp      i64   timestamp of the first record, ms
                                          since the Unix epoch.
    35     8    max_timestamp       i64   largest record timestamp, ms.
    43     8    producer_id         i64   idempotent producer id; -1 if none.
    51     2    producer_epoch      i16   producer epoch; -1 if none.
    53     4    base_sequence       i32   sequence of the first record; -1 if
                                          none.
    57     4    record_count        i32   number of records, >= 1.
    61     ..   records             bytes format-specific (magic).

Sans-I/O: functions over bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "ATTR_COMPRESSION_MASK",
    "ATTR_CONTROL",
    "ATTR_LOG_APPEND_TIME",
    "ATTR_TRANSACTIONAL",
    "CRC_START",
    "HEADER",
    "HEADER_SIZE",
    "LENGTH_PREFIX",
    "MAGIC_OFFSET",
    "BatchHeader",
    "iter_headers",
    "patch_base_offset",
    "read_header",
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
#: Where the magic byte sits (the same in every format, as in Kafka's).
MAGIC_OFFSET = 16
#: First byte covered by the CRC (the attributes field).
CRC_START = 21

#: Attribute bits (Kafka's names: TIMESTAMP_TYPE_MASK, TRANSACTIONAL_MASK,
#: CONTROL_MASK).
ATTR_COMPRESSION_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

#: The two fields the broker rewrites on append, outside the CRC. (Two
#: structs: a pad byte in one would overwrite batch_length with zeros.)
_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH = struct.Struct(">i")


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
        return self.attributes & ATTR_COMPRESSION_MASK


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Decode the header at ``pos`` without any check (see validate_batch)."""
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def patch_base_offset(
    buf: bytearray | memoryview, pos: int, base_offset: int, leader_epoch: int = 0
) -> None:
    """Set the two broker-owned fields of the batch at ``pos`` in place.

    Neither field is covered by the CRC, so the batch stays valid, whatever
    its magic.
    """
    _BASE_OFFSET.pack_into(buf, pos, base_offset)
    _LEADER_EPOCH.pack_into(buf, pos + 12, leader_epoch)


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
