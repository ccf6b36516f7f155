"""The storage fault seam: every durability-relevant syscall of the log.

The log never calls ``os.posix_fallocate``, ``os.fdatasync``, ``os.fsync``,
``os.ftruncate``, ``os.rename`` or ``os.unlink`` directly; it calls the same
method on a :class:`StorageIO`. Tests substitute a subclass that raises
``ENOSPC`` or ``EIO`` (a full disk, fsyncgate), count syncs (group commit), or
records per file the length last made durable to model a power cut.

What goes through the seam and why:

* ``open``: so a simulator can map fds back to paths.
* ``fallocate``: the only call that can report a full disk before bytes are
  written; failures become StorageFullError.
* ``pwrite``: index entries and small metadata files.
* ``fdatasync`` / ``fsync`` / ``fsync_dir``: the durability points. A
  power-cut simulator hooks these to learn what would survive.
* ``ftruncate``, ``rename``, ``unlink``, ``mkdir``, ``rmtree``: metadata
  changes whose order matters after a crash.
* ``crash_point(name)``: a no-op hook called at named places (see
  ``CRASH_POINTS``); a test subclass raises or calls ``os._exit`` there.

Bytes copied into the mmap of the active segment do not go through the seam
(a store into a map is not a syscall); a simulator learns the durable prefix
of a log file from ``fdatasync``/``fsync`` on its fd.

Methods may be called from worker threads (fsyncs run off the trio thread),
so a subclass that keeps state must lock it.
"""

from __future__ import annotations

import os
import shutil

__all__ = ["CRASH_POINTS", "StorageIO"]

#: The named places where ``crash_point`` is called, for fault-injection tests.
CRASH_POINTS = (
    "segment.roll",  # old segment sealed (trimmed), new segment files not yet created
    "segment.created",  # new segment files created, directory not yet synced
    "index.append",  # an offset-index entry is about to be written
    "retention.renamed",  # segment files renamed to .deleted, not yet unlinked
    "topic.create.staged",  # topic built in the staging directory, not yet renamed
    "topic.delete.renamed",  # topic directory renamed away, not yet removed
    "checkpoint.written",  # checkpoint temp file synced, not yet renamed
    "cleaner.cleaned",  # cleaned segment files written and synced, no manifest yet
    "cleaner.committing",  # swap manifest temp file synced, not yet renamed
    "cleaner.committed",  # swap manifest in place, no segment renamed yet
    "cleaner.swapping",  # the first cleaned segment renamed over the old one, others not
    "cleaner.swapped",  # every segment renamed, checkpoint written, manifest not yet removed
    "truncation.marked",  # truncation marker durable, no file changed yet
    "truncation.deleted",  # segments after the cut deleted, the cut segment not cut yet
    "truncation.cut",  # segment files cut, snapshots / epoch checkpoint / done marker not yet
    "follower.epoch",  # a follower append's new epoch checkpointed, its batches not appended
)


class StorageIO:
    """Plain pass-through to the OS. Subclass to inject faults or record syncs."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        """Reserve real blocks for [offset, offset+length): never a sparse hole."""
        os.posix_fallocate(fd, offset, length)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path)

    def crash_point(self, name: str) -> None:
        """Called at each place named in CRASH_POINTS; a no-op here."""
