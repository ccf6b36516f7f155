"""File names of a partition directory and the atomic small-file write.

A partition directory holds, per segment, ``<base>.log``, ``<base>.index``
and ``<base>.timeindex`` where ``<base>`` is the segment's first offset
zero-padded to 20 digits (so names sort as offsets do), plus producer-state
snapshots ``<offset>.snapshot``. A ``.deleted`` suffix marks a file that
retention is removing; ``.tmp`` a file being written atomically. Both are
removed when the partition is opened.
"""

from __future__ import annotations

import os

from .storage_io import StorageIO

__all__ = [
    "DELETED_SUFFIX",
    "INDEX_SUFFIX",
    "LOG_SUFFIX",
    "SNAPSHOT_SUFFIX",
    "TIMEINDEX_SUFFIX",
    "TMP_SUFFIX",
    "atomic_write",
    "offset_file_name",
    "parse_offset_file_name",
]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
SNAPSHOT_SUFFIX = ".snapshot"
DELETED_SUFFIX = ".deleted"
TMP_SUFFIX = ".tmp"
OFFSET_DIGITS = 20


def offset_file_name(offset: int, suffix: str) -> str:
    """``00000000000000000042.log`` for (42, ".log")."""
    return f"{offset:0{OFFSET_DIGITS}d}{suffix}"


def parse_offset_file_name(name: str) -> tuple[int, str] | None:
    """(offset, suffix) for a name made by offset_file_name, else None."""
    stem, dot, rest = name.partition(".")
    if len(stem) != OFFSET_DIGITS or not dot or not stem.isdigit() or not stem.isascii():
        return None
    return int(stem), "." + rest


def atomic_write(io: StorageIO, path: str, data: bytes, *, crash_point: str | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new
    file, never a torn one: write a temp file, fsync it, rename it over the
    target, fsync the directory. ``crash_point`` names the seam's hook between
    the written temp file and the rename."""
    tmp = path + TMP_SUFFIX
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        io.pwrite(fd, data, 0)
        io.fsync(fd)
    finally:
        os.close(fd)
    if crash_point is not None:
        io.crash_point(crash_point)
    io.rename(tmp, path)
    io.fsync_dir(os.path.dirname(path) or ".")
