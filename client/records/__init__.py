"""Record batches, shared by producers, the broker and consumers.

Sans-I/O: functions over bytes, no sockets, no files. One 61-byte header
(header.py, Kafka's v2 header) and one format per magic byte: native.py
(magic 1, msgpack records) and kafka.py (magic 2, Kafka's varint records),
behind the facade in batch.py (validate_batch, iter_records) and
convert.py (batch_magics, down_convert). docs/format.md has the layouts with
examples.
"""

from .batch import (
    DEFAULT_MAX_DECOMPRESSED,
    FORMATS,
    BatchFormat,
    iter_records,
    validate_batch,
)
from .compression import (
    CODEC_GZIP,
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_SNAPPY,
    CODEC_ZSTD,
)
from .convert import batch_magics, down_convert
from .header import (
    CRC_START,
    HEADER,
    HEADER_SIZE,
    LENGTH_PREFIX,
    MAGIC_OFFSET,
    BatchHeader,
    iter_headers,
    patch_base_offset,
    read_header,
)
from .kafka import MAGIC as MAGIC_KAFKA
from .kafka import build as build_kafka_batch
from .kafka import load_codec
from .native import (
    COMPRESSION_GZIP,
    COMPRESSION_NONE,
    MAGIC,
    build_batch,
    compress_gzip,
    decompress_gzip,
    encode_batch,
    unpack_records,
)

#: The native format's magic (MAGIC keeps its old name).
MAGIC_NATIVE = MAGIC

__all__ = [
    "CODEC_GZIP",
    "CODEC_LZ4",
    "CODEC_NONE",
    "CODEC_SNAPPY",
    "CODEC_ZSTD",
    "COMPRESSION_GZIP",
    "COMPRESSION_NONE",
    "CRC_START",
    "DEFAULT_MAX_DECOMPRESSED",
    "FORMATS",
    "HEADER",
    "HEADER_SIZE",
    "LENGTH_PREFIX",
    "MAGIC",
    "MAGIC_KAFKA",
    "MAGIC_NATIVE",
    "MAGIC_OFFSET",
    "BatchFormat",
    "BatchHeader",
    "batch_magics",
    "build_batch",
    "build_kafka_batch",
    "compress_gzip",
    "decompress_gzip",
    "down_convert",
    "encode_batch",
    "iter_headers",
    "iter_records",
    "load_codec",
    "patch_base_offset",
    "read_header",
    "unpack_records",
    "validate_batch",
]
