"""Kafka's compression codecs, decompressed with a bound (magic-2 batches).

Codec ids are Kafka's (attributes bits 0-2): 0 none, 1 gzip, 2 snappy, 3 lz4,
4 zstd. Every codec comes from a maintained library: gzip from the standard
library's zlib, snappy, lz4 and zstd from cramjam (Rust bindings). Nothing
here is a hand-written codec; the only framing read here is snappy's xerial
block framing, which is a 16-byte header and length-prefixed raw blocks.

Every decompression is bounded: :func:`decompress` never returns, nor
allocates, more than ``limit`` bytes of output (plus the library's own
working buffers), so a small batch that inflates to gigabytes (a
decompression bomb) fails with :class:`RecordTooLargeError` before its output
exists. Bytes that do not decompress fail with :class:`InvalidRecordError`.

The traps, each tested:

* snappy: Kafka's Java client and librdkafka write xerial-framed snappy
  (``\\x82SNAPPY\\x00``, version, compat, then [i32 length, raw block]...),
  other clients raw snappy; both are read. Raw snappy states its
  decompressed length up front (checked before decompressing).
* lz4: the LZ4 *frame* format (KIP-57), not raw blocks.
* zstd: a zstd frame; its declared content size is not trusted, the output
  buffer is.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import cramjam

from ..errors import InvalidRecordError, RecordTooLargeError

__all__ = [
    "CODEC_GZIP",
    "CODEC_LZ4",
    "CODEC_NAMES",
    "CODEC_NONE",
    "CODEC_SNAPPY",
    "CODEC_ZSTD",
    "compress",
    "decompress",
]

CODEC_NONE = 0
CODEC_GZIP = 1
CODEC_SNAPPY = 2
CODEC_LZ4 = 3
CODEC_ZSTD = 4
CODEC_NAMES = {
    CODEC_NONE: "none",
    CODEC_GZIP: "gzip",
    CODEC_SNAPPY: "snappy",
    CODEC_LZ4: "lz4",
    CODEC_ZSTD: "zstd",
}

_GZIP_WBITS = 31  # gzip header and trailer (RFC 1952)
#: xerial snappy: marker, "SNAPPY", NUL, then version and compat (i32 each).
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16
_I32 = struct.Struct(">i")
#: first output buffer for lz4/zstd: a multiple of the input, grown by
#: doubling up to the limit (at most twice the work of one exact guess)
_FIRST_GUESS_RATIO = 4
_MIN_GUESS = 64 * 1024


def decompress(codec: int, data: Any, limit: int) -> bytes | memoryview:
    """The decompressed bytes of ``data``, at most ``limit`` of them.

    Raises RecordTooLargeError past ``limit``, InvalidRecordError for bytes
    that are not a stream of ``codec`` or an unknown codec.
    """
    if codec == CODEC_GZIP:
        return _gzip(data, limit)
    if codec == CODEC_SNAPPY:
        return _snappy(data, limit)
    if codec in (CODEC_LZ4, CODEC_ZSTD):
        return _grow_into(codec, data, limit)
    raise InvalidRecordError(f"unknown compression codec {codec}")


def compress(codec: int, data: Any, *, xerial: bool = True) -> bytes:
    """Compress ``data`` as Kafka producers do (snappy xerial-framed unless
    ``xerial`` is false; lz4 frame; zstd level 3; gzip level 6). For
    building batches in tools and tests; the broker never compresses."""
    if codec == CODEC_GZIP:
        c = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS)
        return c.compress(data) + c.flush()
    if codec == CODEC_SNAPPY:
        if not xerial:
            return bytes(cramjam.snappy.compress_raw(data))
        view = memoryview(data)
        parts = [_XERIAL_MAGIC, _I32.pack(1), _I32.pack(1)]
        for i in range(0, len(view), 32 * 1024):
            block = bytes(cramjam.snappy.compress_raw(view[i : i + 32 * 1024]))
            parts += [_I32.pack(len(block)), block]
        return b"".join(parts)
    if codec == CODEC_LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == CODEC_ZSTD:
        return bytes(cramjam.zstd.compress(data, level=3))
    raise ValueError(f"unknown compression codec {codec}")


def _gzip(data: Any, limit: int) -> bytes:
    d = zlib.decompressobj(_GZIP_WBITS)
    try:
        out = d.decompress(data, limit)
    except zlib.error as exc:
        raise InvalidRecordError(f"gzip body does not inflate: {exc}") from exc
    if d.unconsumed_tail:
        raise RecordTooLargeError(f"gzip body inflates past {limit} bytes")
    if not d.eof:
        raise InvalidRecordError("gzip body is truncated")
    return out


def _snappy(data: Any, limit: int) -> bytes | memoryview:
    view = memoryview(data)
    if view[: len(_XERIAL_MAGIC)] != _XERIAL_MAGIC:
        return _snappy_raw(view, limit, limit)
    # xerial framing: a header, then [i32 length, raw snappy block]...; each
    # block's own declared length is checked against what is left of the limit
    pos = _XERIAL_HEADER
    n = len(view)
    parts = []
    left = limit
    while pos < n:
        if n - pos < 4:
            raise InvalidRecordError("xerial snappy block length is truncated")
        (size,) = _I32.unpack_from(view, pos)
        pos += 4
        if size < 0 or size > n - pos:
            raise InvalidRecordError(f"xerial snappy block of {size} bytes overruns the body")
        block = _snappy_raw(view[pos : pos + size], left, limit)
        left -= len(block)
        parts.append(block)
        pos += size
    if pos < _XERIAL_HEADER:
        raise InvalidRecordError("xerial snappy header is truncated")
    return b"".join(parts)


def _snappy_raw(view: memoryview, left: int, limit: int) -> bytes | memoryview:
    try:
        size = cramjam.snappy.decompress_raw_len(view)
    except cramjam.DecompressionError as exc:
        raise InvalidRecordError(f"snappy body does not decompress: {exc}") from exc
    if size > left:
        raise RecordTooLargeError(f"snappy body inflates past {limit} bytes")
    out = bytearray(size)
    try:
        got = cramjam.snappy.decompress_raw_into(view, out)
    except cramjam.DecompressionError as exc:
        raise InvalidRecordError(f"snappy body does not decompress: {exc}") from exc
    if got != size:
        raise InvalidRecordError(f"snappy body gave {got} bytes, declared {size}")
    return memoryview(out)


def _grow_into(codec: int, data: Any, limit: int) -> memoryview:
    """lz4 frame or zstd into a bounded buffer, doubled while too small.

    cramjam's ``decompress_into`` streams into the buffer and fails when it
    is full; the output never outgrows ``limit``.
    """
    fn = cramjam.lz4.decompress_into if codec == CODEC_LZ4 else cramjam.zstd.decompress_into
    name = CODEC_NAMES[codec]
    size = min(limit, max(_MIN_GUESS, _FIRST_GUESS_RATIO * len(data)))
    while True:
        out = bytearray(size + 1)  # one spare byte: a full buffer means "more"
        try:
            got = fn(data, out)
        except cramjam.DecompressionError as exc:
            if not _is_full(exc):
                raise InvalidRecordError(f"{name} body does not decompress: {exc}") from exc
            got = size + 1
        except OSError as exc:
            raise InvalidRecordError(f"{name} body does not decompress: {exc}") from exc
        if got <= size:
            return memoryview(out)[:got]
        if size >= limit:
            raise RecordTooLargeError(f"{name} body inflates past {limit} bytes")
        size = min(limit, size * 2)


def _is_full(exc: Exception) -> bool:
    """cramjam's words for "the output buffer is full" (std::io::WriteZero)."""
    text = str(exc)
    return "whole buffer" in text or "smaller than required" in text
