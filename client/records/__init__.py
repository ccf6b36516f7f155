"""The record-batch format, shared by producers, the broker and consumers.

Sans-I/O: functions over bytes, no sockets, no files. See batch.py for the
byte layout and docs/format.md for the same, with examples.
"""

from .batch import (
    COMPRESSION_GZIP,
    COMPRESSION_NONE,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    LENGTH_PREFIX,
    MAGIC,
    BatchHeader,
    build_batch,
    compress_gzip,
    decompress_gzip,
    encode_batch,
    iter_headers,
    patch_base_offset,
    read_header,
    unpack_records,
    validate_batch,
)

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
    "compress_gzip",
    "decompress_gzip",
    "encode_batch",
    "iter_headers",
    "patch_base_offset",
    "read_header",
    "unpack_records",
    "validate_batch",
]
