"""The durable leader-epoch checkpoint: ``<partition dir>/leader-epoch-checkpoint``.

It holds the partition's leader-epoch cache (epoch -> start offset; see
:mod:`tailrace.broker.replication.epochs`) so that a restarted replica can
answer and ask OffsetForLeaderEpoch without re-reading its log. A single-node
broker never writes one (every batch carries epoch 0 and no cache is kept);
the file appears once the partition is given a leader epoch (cluster mode).

Layout (big-endian; docs/format.md "Leader-epoch checkpoint")::

    offset      size  field
    0           4     magic  b"TREP"
    4           2     version u16 = 1
    6           4     count u32: number of entries, at most MAX_ENTRIES
    10          12*n  entries: epoch i32, start_offset i64, in order
    10 + 12*n   4     crc u32: CRC-32C of every byte before it

The file is exactly ``14 + 12 * count`` bytes. Epochs and start offsets
are both strictly increasing, none negative.

Writing: the whole file is written to ``leader-epoch-checkpoint.tmp``,
fsynced, renamed over the checkpoint, and the directory is fsynced
(:func:`~tailrace.broker.log.files.atomic_write`), so a crash leaves the
old or the new checkpoint, never a mix; a leftover ``.tmp`` is removed when
the partition opens.

Reading: a missing file is an empty cache. Any other deviation -- short,
long, wrong magic, unknown version, count above the bound, CRC mismatch,
entries out of order -- raises :class:`CorruptCheckpointError` naming the
file and what is wrong. The size is checked against the bound before the
file is read. What the log does then (rebuild from the batch headers) is
the log's decision (partition.py).
"""

from __future__ import annotations

import os
import struct

import crc32c

from ..replication.epochs import EpochEntry, LeaderEpochCache
from .errors import CorruptCheckpointError
from .files import atomic_write
from .storage_io import StorageIO

__all__ = [
    "EPOCH_CHECKPOINT_NAME",
    "MAX_ENTRIES",
    "decode_epoch_checkpoint",
    "encode_epoch_checkpoint",
    "read_epoch_checkpoint",
    "write_epoch_checkpoint",
]

EPOCH_CHECKPOINT_NAME = "leader-epoch-checkpoint"
MAGIC = b"TREP"
VERSION = 1
#: Entries a checkpoint may hold (one per leader epoch still in the log; a
#: file at the bound is 12 MiB).
MAX_ENTRIES = 1 << 20
_HEAD = struct.Struct(">4sHI")
_ENTRY = struct.Struct(">iq")
_CRC = struct.Struct(">I")
_MAX_SIZE = _HEAD.size + MAX_ENTRIES * _ENTRY.size + _CRC.size


def encode_epoch_checkpoint(entries: list[EpochEntry]) -> bytes:
    if len(entries) > MAX_ENTRIES:
        raise ValueError(f"{len(entries)} epoch entries, at most {MAX_ENTRIES}")
    LeaderEpochCache(entries)  # refuse what decode would refuse
    body = bytearray(_HEAD.pack(MAGIC, VERSION, len(entries)))
    for epoch, start in entries:
        body += _ENTRY.pack(epoch, start)
    body += _CRC.pack(crc32c.crc32c(body))
    return bytes(body)


def decode_epoch_checkpoint(data: bytes, path: str = "<bytes>") -> list[EpochEntry]:
    def bad(reason: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(path, reason)

    n = len(data)
    if n < _HEAD.size + _CRC.size:
        raise bad(f"{n} bytes, shorter than an empty checkpoint")
    magic, version, count = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise bad(f"magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise bad(f"version {version}, this broker reads version {VERSION}")
    if count > MAX_ENTRIES:
        raise bad(f"{count} entries, at most {MAX_ENTRIES}")
    want = _HEAD.size + count * _ENTRY.size + _CRC.size
    if n != want:
        raise bad(f"{n} bytes, {count} entries need {want}")
    (crc,) = _CRC.unpack_from(data, n - _CRC.size)
    actual = crc32c.crc32c(memoryview(data)[: n - _CRC.size])
    if crc != actual:
        raise bad(f"CRC-32C {actual:#010x}, stored {crc:#010x}")
    entries = [
        EpochEntry(*_ENTRY.unpack_from(data, _HEAD.size + i * _ENTRY.size)) for i in range(count)
    ]
    try:
        LeaderEpochCache(entries)
    except ValueError as exc:
        raise bad(str(exc)) from None
    return entries


def read_epoch_checkpoint(directory: str) -> list[EpochEntry] | None:
    """The checkpoint's entries, or None when the partition has none."""
    path = os.path.join(directory, EPOCH_CHECKPOINT_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > _MAX_SIZE:
            raise CorruptCheckpointError(path, f"{size} bytes, larger than any checkpoint")
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    return decode_epoch_checkpoint(data, path)


def write_epoch_checkpoint(io: StorageIO, directory: str, entries: list[EpochEntry]) -> None:
    """Replace the checkpoint durably (temp file, fsync, rename, dir fsync)."""
    atomic_write(
        io, os.path.join(directory, EPOCH_CHECKPOINT_NAME), encode_epoch_checkpoint(entries)
    )
