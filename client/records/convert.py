"""Stored batches for Kafka readers: which magics a run holds, and
down-conversion of native batches to Kafka's format.

A Kafka fetch can send a run of stored batches straight from the file
(sendfile) only when every batch in it is magic 2; :func:`batch_magics`
answers that from the headers alone. Otherwise :func:`down_convert` copies
the run with each native (magic 1) batch rebuilt as a magic-2 batch and each
magic-2 batch copied through unchanged.
"""

from __future__ import annotations

from .batch import DEFAULT_MAX_DECOMPRESSED, validate_batch
from .header import HEADER_SIZE, LENGTH_PREFIX, MAGIC_OFFSET
from .kafka import MAGIC as KAFKA_MAGIC
from .kafka import build_deltas
from .native import unpack_records

__all__ = ["batch_magics", "down_convert"]

#: validate_batch's size bound here: the batch is already stored, any size
_ANY_SIZE = 2**31 + 11


def batch_magics(
    buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None
) -> set[int]:
    """The magic bytes of the batches in ``buf[pos:end]``: the length prefix
    and magic byte of each, nothing else read (no CRC). A batch cut short at
    the end still counts when its magic byte is present; the walk stops at a
    length that cannot be a batch. ``{2}`` (or empty) means a Kafka reader
    can be sent the bytes as they are.
    """
    if end is None:
        end = len(buf)
    found: set[int] = set()
    unpack = LENGTH_PREFIX.unpack_from
    while end - pos > MAGIC_OFFSET:
        _base, length = unpack(buf, pos)
        found.add(buf[pos + MAGIC_OFFSET])
        if length + 12 < HEADER_SIZE:
            break
        pos += length + 12
    return found


def down_convert(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    end: int | None = None,
    *,
    max_bytes: int | None = None,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED,
) -> bytes:
    """The whole batches of ``buf[pos:end]`` as Kafka v2 (magic-2) batches.

    Magic-2 batches are copied through unchanged. A native batch is checked
    (validate_batch: its CRC among the rest, so corruption on disk is
    refused rather than served under a fresh CRC) and rebuilt with the same
    base offset, leader epoch, offset deltas (0..n-1), timestamps (base and
    max), keys, values, headers and producer id, epoch and base sequence;
    the rebuilt batch is uncompressed (a gzip native batch too): readers
    inflate nothing, the network carries more.

    A batch cut short at the end of the run is left out. With ``max_bytes``
    the output stops before the first batch that would take it past
    ``max_bytes``, but always holds the first batch (Kafka's KIP-74 rule), so
    a fetch's byte limit counts converted bytes. Raises CorruptRecordError or
    InvalidRecordError for a native batch that fails its checks.
    """
    if end is None:
        end = len(buf)
    view = memoryview(buf)
    out: list[bytes | bytearray | memoryview] = []
    total = 0
    unpack = LENGTH_PREFIX.unpack_from
    while end - pos >= HEADER_SIZE:
        _base, length = unpack(view, pos)
        size = length + 12
        if size < HEADER_SIZE or size > end - pos:
            break
        if view[pos + MAGIC_OFFSET] == KAFKA_MAGIC:
            batch: bytes | bytearray | memoryview = view[pos : pos + size]
        else:
            h = validate_batch(
                view,
                pos,
                max_batch_bytes=_ANY_SIZE,
                end=pos + size,
                max_decompressed_bytes=max_decompressed_bytes,
            )
            batch = build_deltas(
                h.base_timestamp,
                unpack_records(
                    view, h, pos, max_decompressed_bytes=max_decompressed_bytes, use_list=False
                ),
                producer_id=h.producer_id,
                producer_epoch=h.producer_epoch,
                base_sequence=h.base_sequence,
                base_offset=h.base_offset,
                leader_epoch=h.leader_epoch,
            )
        if max_bytes is not None and out and total + len(batch) > max_bytes:
            break
        out.append(batch)
        total += len(batch)
        pos += size
    return b"".join(out)
