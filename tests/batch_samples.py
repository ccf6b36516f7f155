"""Magic-2 batches for the record tests, built by independent builders."""

from __future__ import annotations

import struct
import warnings

import crc32c
from aiokafka.record._crecords import DefaultRecordBatchBuilder as CythonBuilder
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy as AiokafkaPyBuilder

with warnings.catch_warnings():
    # kafka-python 3.0's package import reads its schemas through the
    # deprecated importlib.resources.read_text
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatchBuilder as KafkaPythonBuilder

from tailrace.client.records import CRC_START, HEADER_SIZE
from tailrace.client.records.compression import compress

BUILDERS = {
    "aiokafka-cython": CythonBuilder,
    "aiokafka-python": AiokafkaPyBuilder,
    "kafka-python-3": KafkaPythonBuilder,
}

#: (timestamp, key, value, headers) with null keys, a null header value,
#: empty and non-ASCII values
RECORDS = [
    (1_700_000_000_000, b"key-0", b"value-0", [("trace", b"\x00\xff"), ("empty", None)]),
    (1_700_000_000_007, None, b"", []),
    (1_699_999_999_990, b"k", None, [("h\u00e9", b"v")]),
    (1_700_000_000_003, b"\xff" * 40, b"x" * 300, []),
]


def build_with(builder: str, records=RECORDS, *, compression=0, producer=(-1, -1, -1)) -> bytes:
    pid, epoch, seq = producer
    b = BUILDERS[builder](2, compression, 0, pid, epoch, seq, 1 << 24)
    for i, (ts, key, value, headers) in enumerate(records):
        b.append(i, ts, key, value, list(headers))
    return bytes(b.build())


def recrc(buf: bytearray | bytes) -> bytearray:
    """``buf`` with its length and CRC fields made to match its bytes."""
    out = bytearray(buf)
    struct.pack_into(">i", out, 8, len(out) - 12)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[CRC_START:])))
    return out


def with_body(batch: bytes, body: bytes, *, codec: int | None = None) -> bytearray:
    """``batch``'s header over another records section (CRC fixed)."""
    out = bytearray(batch[:HEADER_SIZE]) + body
    if codec is not None:
        (attrs,) = struct.unpack_from(">h", out, 21)
        struct.pack_into(">h", out, 21, (attrs & ~0x07) | codec)
    return recrc(out)


def set_header(batch: bytes, fmt: str, offset: int, value: int) -> bytearray:
    out = bytearray(batch)
    struct.pack_into(fmt, out, offset, value)
    return recrc(out)


def compressed_records_batch(codec: int, *, xerial: bool = True) -> bytes:
    """RECORDS in one batch compressed with our own codec call (for raw
    snappy, which no builder here writes)."""
    plain = build_with("aiokafka-cython")
    return bytes(with_body(plain, compress(codec, plain[HEADER_SIZE:], xerial=xerial), codec=codec))
