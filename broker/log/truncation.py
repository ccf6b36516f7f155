"""Crash-safe truncation of a partition log (a follower cutting its tail).

A follower whose log diverged from its leader's removes everything at and
above an offset (:meth:`PartitionLog.truncate_to`), or starts over empty at
an offset (:meth:`PartitionLog.truncate_fully_and_start_at`). Both touch
several files (later segments deleted, the cut segment's log and indexes
cut, producer snapshots above the cut deleted, the leader-epoch checkpoint
rewritten), and a crash between two of those steps must not leave a log
that is neither the old one nor the truncated one: a recovered log that
still holds some of the cut records (say the cut segment, whose later
segments are gone) would serve records its leader never had.

So the truncation is made atomic with a marker, ``<partition>/truncation``
(docs/format.md, "Truncation marker"), written with :func:`atomic_write`
(temp file, fsync, rename, directory fsync) *before* any file is touched::

    pending cut <offset> <segment base> <position>\\n
    pending reset <offset>\\n

A crash before the marker is durable leaves the old log, untouched. Once it
is, the next open completes the truncation from the marker alone
(:func:`complete`: idempotent, it tolerates any subset of the steps having
happened) before anything else reads the directory; so the log recovers
truncated. When the work is done the marker is rewritten as ``done ...``.

The ``done`` marker stays for one more reason: the log manager's recovery
point checkpoint (``~recovery-points``) may still hold a recovery point
taken before the cut, above the new log end, and recovery refuses a log
that ends below its recovery point ("data below the recovery point is
missing"). While a marker names ``offset``, open clamps the recovery point
to it, so everything appended since the cut is rescanned. The manager
removes the marker (:meth:`PartitionLog.recovery_point_saved`) once it has
checkpointed a recovery point taken after the cut.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import NamedTuple

from .epoch_checkpoint import EPOCH_CHECKPOINT_NAME, write_epoch_checkpoint
from .files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SNAPSHOT_SUFFIX,
    TIMEINDEX_SUFFIX,
    atomic_write,
    offset_file_name,
    parse_offset_file_name,
)
from .storage_io import StorageIO

__all__ = [
    "TRUNCATION_FILE",
    "TruncationMarker",
    "complete",
    "read_marker",
    "remove_marker",
    "write_marker",
]

logger = logging.getLogger(__name__)

TRUNCATION_FILE = "truncation"
_SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX)


class TruncationMarker(NamedTuple):
    """A truncation: ``cut`` keeps segments up to ``segment_base``, cut at
    byte ``position`` (where ``offset`` starts); ``reset`` keeps one empty
    segment at ``offset``. ``done``: every file was already changed."""

    kind: str  # "cut" or "reset"
    offset: int
    segment_base: int = 0
    position: int = 0
    done: bool = False

    def to_bytes(self) -> bytes:
        state = "done" if self.done else "pending"
        if self.kind == "cut":
            return f"{state} cut {self.offset} {self.segment_base} {self.position}\n".encode()
        return f"{state} reset {self.offset}\n".encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TruncationMarker:
        """Parse a marker (ValueError when it does not parse)."""
        fields = data.decode("ascii").split()
        if len(fields) < 3 or fields[0] not in ("pending", "done"):
            raise ValueError(f"not a truncation marker: {data[:80]!r}")
        done = fields[0] == "done"
        if fields[1] == "cut" and len(fields) == 5:
            offset, base, pos = (int(f) for f in fields[2:])
            if min(offset, base, pos) < 0 or base > offset or (pos == 0) != (base == offset):
                raise ValueError(f"inconsistent truncation marker: {data[:80]!r}")
            return cls("cut", offset, base, pos, done)
        if fields[1] == "reset" and len(fields) == 3:
            offset = int(fields[2])
            if offset < 0:
                raise ValueError(f"negative offset in truncation marker: {data[:80]!r}")
            return cls("reset", offset, offset, 0, done)
        raise ValueError(f"not a truncation marker: {data[:80]!r}")


def read_marker(directory: str) -> TruncationMarker | None:
    """The partition's marker, or None. A marker that does not parse (it
    is written atomically: damaged at rest) raises ValueError: the caller
    cannot know whether a truncation was under way."""
    try:
        with open(os.path.join(directory, TRUNCATION_FILE), "rb") as f:
            data = f.read(256)
    except FileNotFoundError:
        return None
    return TruncationMarker.from_bytes(data)


def write_marker(io: StorageIO, directory: str, marker: TruncationMarker) -> None:
    """Replace the marker durably (worker thread)."""
    atomic_write(io, os.path.join(directory, TRUNCATION_FILE), marker.to_bytes())


def remove_marker(io: StorageIO, directory: str) -> None:
    """Remove the marker. Not synced: a marker that comes back after a crash
    only makes the next open rescan from its offset."""
    with contextlib.suppress(FileNotFoundError):
        io.unlink(os.path.join(directory, TRUNCATION_FILE))


def _segment_files(directory: str) -> list[tuple[int, str]]:
    out = []
    for name in os.listdir(directory):
        parsed = parse_offset_file_name(name)
        if parsed is not None and parsed[1] in _SEGMENT_SUFFIXES:
            out.append((parsed[0], name))
    return out


def _snapshot_offsets(directory: str) -> list[int]:
    out = []
    for name in os.listdir(directory):
        parsed = parse_offset_file_name(name)
        if parsed is not None and parsed[1] == SNAPSHOT_SUFFIX:
            out.append(parsed[0])
    return out


def _cut_file(io: StorageIO, path: str, size: int, *, sync: bool) -> None:
    """Cut ``path`` down to ``size`` bytes if it is longer (then fsync)."""
    try:
        current = os.stat(path).st_size
    except FileNotFoundError:
        return
    if current <= size:
        return
    fd = io.open(path, os.O_RDWR)
    try:
        io.ftruncate(fd, size)
        if sync:
            io.fsync(fd)
    finally:
        os.close(fd)


def cut_files(
    io: StorageIO,
    directory: str,
    marker: TruncationMarker,
    index_bytes: int | None = None,
    timeindex_bytes: int | None = None,
) -> None:
    """Make the directory match ``marker`` (worker thread, or open). Each
    step is idempotent; the order is the one a reader of a half-done
    directory finds least surprising: later segments go first (newest
    first), then the cut segment's indexes and log (fsynced), snapshots
    above the cut, and the directory is fsynced (a reset also empties the
    leader-epoch checkpoint; a cut's is cut by the caller, or at open by
    the load that fits it to the log). ``index_bytes`` /
    ``timeindex_bytes``: the cut segment's kept index sizes (None at open:
    recovery rebuilds the indexes of the segments it scans)."""
    keep = marker.segment_base
    doomed = sorted(
        (
            (off, name)
            for off, name in _segment_files(directory)
            if off != keep and (marker.kind == "reset" or off > keep)
        ),
        reverse=True,
    )
    for _off, name in doomed:
        with contextlib.suppress(FileNotFoundError):
            io.unlink(os.path.join(directory, name))
    if doomed:
        io.fsync_dir(directory)
    io.crash_point("truncation.deleted")
    base = os.path.join(directory, offset_file_name(keep, ""))
    if marker.kind == "reset":
        created = False
        for suffix in _SEGMENT_SUFFIXES:
            if not os.path.exists(base + suffix):
                os.close(io.open(base + suffix, os.O_RDWR | os.O_CREAT))
                created = True
            _cut_file(io, base + suffix, 0, sync=suffix == LOG_SUFFIX)
        if created:
            io.fsync_dir(directory)
    else:
        if index_bytes is not None:
            _cut_file(io, base + INDEX_SUFFIX, index_bytes, sync=False)
        if timeindex_bytes is not None:
            _cut_file(io, base + TIMEINDEX_SUFFIX, timeindex_bytes, sync=False)
        _cut_file(io, base + LOG_SUFFIX, marker.position, sync=True)
    io.crash_point("truncation.cut")
    if marker.kind == "reset" and os.path.exists(os.path.join(directory, EPOCH_CHECKPOINT_NAME)):
        # an empty log has no epochs: the leader's batches assign them anew
        write_epoch_checkpoint(io, directory, [])
    stale = [s for s in _snapshot_offsets(directory) if marker.kind == "reset" or s > marker.offset]
    for s in stale:
        with contextlib.suppress(FileNotFoundError):
            io.unlink(os.path.join(directory, offset_file_name(s, SNAPSHOT_SUFFIX)))
    if stale:
        io.fsync_dir(directory)


def complete(io: StorageIO, directory: str, name: str) -> TruncationMarker | None:
    """At open, before the directory is listed: finish a truncation a crash
    interrupted (then mark it done) and return the marker (pending or done),
    or None when there is none."""
    marker = read_marker(directory)
    if marker is None or marker.done:
        return marker
    logger.warning(
        "%s: completing an interrupted truncation (%s to offset %d)",
        name,
        marker.kind,
        marker.offset,
    )
    cut_files(io, directory, marker)
    done = marker._replace(done=True)
    write_marker(io, directory, done)
    return done
