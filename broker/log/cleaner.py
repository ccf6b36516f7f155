"""The log cleaner: keep the latest record of every key on compacted topics.

A partition with ``cleanup_policy`` ``compact`` (or ``compact,delete``) has
a *clean* part (segments below ``clean_to``, already compacted against
everything below it) and a *dirty* part (sealed segments from ``clean_to``
on). When the dirty part is at least ``min_cleanable_dirty_ratio`` of the
cleanable bytes (or its oldest record is ``max_compaction_lag_ms`` old), a
cleaning:

1. **plans** on the trio thread (:func:`plan`, no I/O): the sealed segments
   below the first uncleanable offset (never the active segment, never data
   at or above the high watermark, never a segment not yet fsynced, never a
   segment whose newest record is younger than ``min_compaction_lag_ms``);
   it pins them (fd open, indexes loaded) so readers keep a valid view;
2. **builds the key map** in a worker thread: key -> offset of its latest
   record, over the dirty segments in order, bounded by
   ``cleaner.key_map_bytes`` (the map stops at a segment boundary, or at a
   batch boundary when one segment alone does not fit; the next cleaning
   goes on from there: several passes);
3. **rewrites** every planned segment below the map's end into
   ``<base>.log.cleaned`` (and its two indexes, rebuilt by scanning the new
   file, which also re-checks every CRC): a record stays when no later
   record has its key (in the map); a tombstone also goes once it is
   ``delete_retention_ms`` old and below the map's end. A batch that keeps
   all its records is copied byte for byte; one that loses some is
   rewritten as a magic-2 batch with the same codec, base offset and last
   offset delta (records.kafka.build_compacted); one that loses all is
   dropped, unless the producer-state table still holds it for its
   producer (an empty batch keeps the producer's sequence). A segment keeps
   its base offset (its name) even when it ends up empty;
4. **swaps** the files, crash-safely (below), in the same worker call;
5. adopts the new segments on the trio thread: a reader holding an old
   segment (a FileSlice) keeps its fd on the old file and reads it to the
   end; later reads open the new files.

Crash safety. The order, with the named crash points of storage_io.py::

    write X.log.cleaned, X.index.cleaned, X.timeindex.cleaned for each X;
    fsync each; fsync the directory                     (cleaner.cleaned)
    write cleaner-swap (the manifest: every X, clean_to, gaps_below)
    atomically: temp, fsync, rename, fsync dir          (cleaner.committing
                                                         before the rename,
                                                         cleaner.committed after)
    rename each X.*.cleaned over X.*                    (cleaner.swapping after
                                                         the first segment)
    fsync the directory; write cleaner-checkpoint atomically;
                                                        (cleaner.swapped)
    unlink cleaner-swap; fsync the directory

Recovery (:func:`recover_swap`, before a partition lists its segments): a
manifest means the cleaning was committed: every ``.cleaned`` file it names
still present is renamed over its segment, the checkpoint is written and
the manifest removed; without a manifest, ``.cleaned`` files are leftovers
and are deleted. So after a crash at any point the partition holds either
every old segment or every new one, never a mix, and nothing the cleaner
had to keep is lost.

Offsets. Segments below ``gaps_below`` (the end of the last rewritten
segment, in the manifest and the checkpoint, so it is in force before the
new files can be seen) may have offset gaps; their checks (find_batch,
recovery, the index checks) are "offsets increase, batches do not overlap".
Segments above it keep the strict dense check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tailrace.client.records import BatchHeader, iter_headers, iter_records, validate_batch
from tailrace.client.records.kafka import build_compacted

from .errors import CorruptLogError
from .files import INDEX_SUFFIX, LOG_SUFFIX, TIMEINDEX_SUFFIX, atomic_write, offset_file_name
from .index import OffsetIndex, TimeIndex
from .recovery import NO_TIMESTAMP, scan_segment

if TYPE_CHECKING:
    from .segment import Segment
    from .storage_io import StorageIO

__all__ = [
    "CHECKPOINT_FILE",
    "CLEANED_SUFFIX",
    "MANIFEST_FILE",
    "CleanJob",
    "CleanResult",
    "CleanerCheckpoint",
    "CleanerSettings",
    "CleanerStopped",
    "Throttle",
    "plan",
    "read_checkpoint",
    "recover_swap",
    "run_job",
]

logger = logging.getLogger(__name__)

CLEANED_SUFFIX = ".cleaned"
MANIFEST_FILE = "cleaner-swap"
CHECKPOINT_FILE = "cleaner-checkpoint"
_SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX)
#: Estimated bytes of one key-map entry beyond the key itself: a dict slot,
#: the bytes object's header, the offset int (measured with tracemalloc:
#: about 100 bytes per entry for 16-byte keys; docs/benchmarks.md).
ENTRY_OVERHEAD = 90
#: Bytes written to a .cleaned file at once.
_WRITE_CHUNK = 1 << 20
#: validate_batch's size bound for stored batches (any size that fits)
_ANY_SIZE = 2**31 - 1


class CleanerStopped(Exception):
    """The broker is stopping: a cleaning gave up before committing."""


@dataclass(frozen=True, slots=True)
class CleanerSettings:
    """The broker's [cleaner] settings (broker/config.py)."""

    threads: int = 1
    key_map_bytes: int = 128 * 1024 * 1024
    io_max_bytes_per_s: int = 0
    check_interval_ms: int = 15_000


class Throttle:
    """Caps the bytes per second all cleaner threads read and write
    together (0: no cap). ``take(n)`` sleeps in the calling worker thread;
    ``stop`` wakes sleepers and makes every later take raise
    CleanerStopped."""

    def __init__(self, bytes_per_s: int) -> None:
        self.rate = bytes_per_s
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def check(self) -> None:
        if self._stopped.is_set():
            raise CleanerStopped("the cleaner is stopping")

    def take(self, n: int) -> None:
        """Account ``n`` bytes about to be read or written (one batch, one
        write), sleeping as the rate asks. Also hands the GIL over at every
        call (``time.sleep(0)``): the cleaner's Python work per batch is
        about a millisecond, and without a voluntary switch the broker's
        event loop, which gives the GIL up at every socket and file call,
        would wait up to the interpreter's 5 ms switch interval to get it
        back each time (produce p99 tripled while a cleaning ran, before
        this: docs/benchmarks.md)."""
        self.check()
        time.sleep(0)
        if self.rate <= 0 or n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + n / self.rate
            wait = start - now
        if wait > 0 and self._stopped.wait(wait):
            raise CleanerStopped("the cleaner is stopping")


@dataclass(slots=True)
class CleanerCheckpoint:
    """``cleaner-checkpoint``: below ``clean_to`` the log is compacted against
    everything below it; below ``gaps_below`` segments may have gaps."""

    clean_to: int = 0
    gaps_below: int = 0

    def to_bytes(self) -> bytes:
        doc = {"format": 1, "clean_to": self.clean_to, "gaps_below": self.gaps_below}
        return (json.dumps(doc, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CleanerCheckpoint:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != 1:
            raise ValueError("not a cleaner checkpoint of format 1")
        clean_to, gaps_below = doc["clean_to"], doc["gaps_below"]
        if type(clean_to) is not int or type(gaps_below) is not int:
            raise ValueError("clean_to and gaps_below must be integers")
        return cls(clean_to, gaps_below)


def read_checkpoint(directory: str) -> CleanerCheckpoint:
    """The partition's cleaner checkpoint (zeros when absent). One that
    does not parse is ignored with a warning: everything counts as dirty
    again (the next cleaning rereads more), and gaps are allowed
    everywhere, so no valid segment is refused."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    try:
        with open(path, "rb") as f:
            return CleanerCheckpoint.from_bytes(f.read(4096))
    except FileNotFoundError:
        return CleanerCheckpoint()
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("%s unusable (%s): cleaning the partition from its start", path, exc)
        return CleanerCheckpoint(0, 2**63 - 1)


def _cleaned(path: str) -> str:
    return path + CLEANED_SUFFIX


def recover_swap(directory: str, io: StorageIO) -> CleanerCheckpoint:
    """Finish or discard an interrupted cleaning (see the module docstring)
    and return the checkpoint. Called when a partition is opened, before
    its segments are listed."""
    manifest = os.path.join(directory, MANIFEST_FILE)
    try:
        with open(manifest, "rb") as f:
            doc = json.loads(f.read(1 << 20))
        bases = [int(b) for b in doc["bases"]]
        checkpoint = CleanerCheckpoint(int(doc["clean_to"]), int(doc["gaps_below"]))
    except FileNotFoundError:
        doc = None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # written atomically: a manifest that does not parse was damaged at
        # rest; the .cleaned files may or may not be complete: keep the old
        # segments (complete by construction) and drop the rest
        logger.warning("%s unusable (%s): discarding the cleaning", manifest, exc)
        doc = None
        io.unlink(manifest)
    removed = False
    if doc is not None:
        logger.info("%s: completing a cleaning of %d segment(s)", directory, len(bases))
        for base in bases:
            for suffix in _SEGMENT_SUFFIXES:
                target = os.path.join(directory, offset_file_name(base, suffix))
                with contextlib.suppress(FileNotFoundError):
                    io.rename(_cleaned(target), target)
        io.fsync_dir(directory)
        atomic_write(io, os.path.join(directory, CHECKPOINT_FILE), checkpoint.to_bytes())
        io.unlink(manifest)
        removed = True
    for name in os.listdir(directory):
        if name.endswith(CLEANED_SUFFIX):
            logger.info("%s: removing an uncommitted cleaning's %s", directory, name)
            io.unlink(os.path.join(directory, name))
            removed = True
    if removed:
        io.fsync_dir(directory)
    return read_checkpoint(directory)


# --- planning (trio thread, no I/O) -----------------------------------------------


@dataclass(slots=True)
class SourceSegment:
    """A pinned segment to clean: its fd stays open until the job is done."""

    segment: Segment
    base_offset: int
    next_offset: int
    size: int
    fd: int
    path: str


@dataclass(slots=True)
class CleanJob:
    """What one cleaning does; built by :func:`plan`, run by :func:`run_job`."""

    directory: str
    io: StorageIO
    sources: list[SourceSegment]
    #: first offset of the dirty part: the key map starts here
    dirty_start: int
    now_ms: int
    delete_retention_ms: int
    max_map_bytes: int
    index_interval: int
    max_index_entries: int
    max_time_entries: int
    #: (producer_id, base_offset) of batches producer state still needs
    keep_empty: set[tuple[int, int]]
    gaps_below: int
    throttle: Throttle
    #: set by run_job once the swap manifest is in place
    committed: bool = False


@dataclass(slots=True)
class NewSegment:
    base_offset: int
    next_offset: int
    size: int
    offset_index: OffsetIndex
    time_index: TimeIndex
    max_timestamp: int


@dataclass(slots=True)
class CleanResult:
    """What a cleaning did; ``segments`` are the files now in place."""

    segments: list[NewSegment] = field(default_factory=list)
    clean_to: int = 0
    gaps_below: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    records_kept: int = 0
    records_removed: int = 0
    #: the map filled up before the dirty part's end: clean again soon
    map_full: bool = False
    seconds: float = 0.0


def dirty_bytes(segments: Iterable[Segment], clean_to: int) -> tuple[int, int]:
    """(dirty, cleanable) bytes of the sealed segments: the cleanable part
    is every sealed segment, the dirty part those at or above clean_to."""
    dirty = total = 0
    for seg in segments:
        if not seg.sealed:
            break
        total += seg.size
        if seg.base_offset >= clean_to:
            dirty += seg.size
    return dirty, total


def plan(
    segments: list[Segment],
    *,
    clean_to: int,
    high_watermark: int,
    unsynced: Iterable[Segment],
    now_ms: int,
    min_ratio: float,
    min_lag_ms: int,
    max_lag_ms: int,
    force: bool = False,
) -> tuple[list[Segment], int] | None:
    """The segments to clean and the dirty start, or None when the log is
    not due. Pure: reads only what the segments hold in memory (a sealed
    segment's max timestamp may load its time index)."""
    skip = set(map(id, unsynced))
    chosen: list[Segment] = []
    for seg in segments:
        if not seg.sealed or seg.next_offset > high_watermark or id(seg) in skip:
            break
        if min_lag_ms and seg.size and now_ms - seg.max_timestamp < min_lag_ms:
            break
        chosen.append(seg)
    dirty = [s for s in chosen if s.base_offset >= clean_to and s.size]
    if not dirty:
        return None
    dirty_size = sum(s.size for s in dirty)
    total = sum(s.size for s in chosen)
    due = force or (total and dirty_size / total >= min_ratio)
    if not due and max_lag_ms < 2**63 - 1:
        # the oldest dirty record: the first dirty segment's first batch is
        # at most as old as its roll base (the first batch's max timestamp)
        oldest = dirty[0].roll_base_ts
        if oldest is None:
            oldest = dirty[0].max_timestamp
        due = now_ms - oldest >= max_lag_ms
    if not due:
        return None
    return chosen, max(clean_to, chosen[0].base_offset)


# --- the worker-thread half ----------------------------------------------------


class _Source:
    """One source segment mapped read-only for the worker."""

    def __init__(self, src: SourceSegment) -> None:
        self.src = src
        self.mm = mmap.mmap(src.fd, src.size, access=mmap.ACCESS_READ) if src.size else None

    def batches(self) -> Iterator[tuple[int, BatchHeader]]:
        """Every batch, each checked first (CRC and structure, gaps
        allowed): a batch damaged at rest must fail the cleaning, not come
        out rewritten under a fresh CRC (raises CorruptRecordError or
        InvalidRecordError)."""
        mm, size = self.mm, self.src.size
        if mm is None:
            return
        for pos, _h in iter_headers(mm, 0, size):
            yield (
                pos,
                validate_batch(
                    mm,
                    pos,
                    max_batch_bytes=_ANY_SIZE,
                    end=size,
                    check_records=False,  # iter_records parses and counts them next
                    allow_gaps=True,
                ),
            )

    def release(self) -> None:
        """Drop the pages read so far from this process (they stay in the
        page cache): the cleaner's RSS does not grow with the log it reads."""
        if self.mm is not None:
            self.mm.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()


def _build_map(job: CleanJob, sources: list[_Source], result: CleanResult) -> tuple[dict, int]:
    """key -> latest offset over the dirty part, within max_map_bytes;
    returns the map and the offset it covers up to."""
    key_map: dict[bytes, int] = {}
    used = 0
    limit = job.max_map_bytes
    mapped_to = job.dirty_start
    for s in sources:
        if s.src.next_offset <= job.dirty_start or s.mm is None:
            mapped_to = max(mapped_to, s.src.next_offset)
            continue
        for pos, h in s.batches():
            job.throttle.take(h.size)
            result.bytes_read += h.size
            if h.next_offset <= job.dirty_start:
                continue
            records = list(iter_records(s.mm, h, pos))
            new = [k for _o, _t, k, _v, _h in records if k is not None and k not in key_map]
            extra = sum(len(k) + ENTRY_OVERHEAD for k in new)
            if used + extra > limit and key_map:
                result.map_full = True
                return key_map, mapped_to
            for offset, _ts, key, _value, _headers in records:
                if key is not None and offset >= job.dirty_start:
                    key_map[key] = offset
            used += extra
            mapped_to = h.next_offset
        s.release()
        mapped_to = max(mapped_to, s.src.next_offset)
    return key_map, mapped_to


def _rewrite(
    job: CleanJob, s: _Source, key_map: dict, mapped_to: int, result: CleanResult
) -> NewSegment:
    """Write ``<base>.log.cleaned`` and its indexes; fsync them."""
    src = s.src
    io = job.io
    log_path = _cleaned(src.path)
    fd = io.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    written = 0
    try:
        pending: list[bytes | memoryview] = []
        pending_bytes = 0
        horizon = job.now_ms - job.delete_retention_ms
        mm = s.mm
        # batches dropped whole since the last one written: one filler
        # batch covers their offsets (see _filler)
        gap: list[int] = []  # [first offset, max timestamp, leader epoch]
        for pos, h in s.batches():
            job.throttle.take(h.size)
            result.bytes_read += h.size
            assert mm is not None
            records = list(iter_records(mm, h, pos))
            kept = []
            for rec in records:
                offset, ts, key, value, _headers = rec
                latest = key_map.get(key, -1) if key is not None else -1
                if offset < latest:
                    continue  # superseded by a later record of its key
                if value is None and offset < mapped_to and ts <= horizon:
                    continue  # a tombstone past delete_retention_ms
                kept.append(rec)
            result.records_kept += len(kept)
            result.records_removed += len(records) - len(kept)
            if len(kept) == len(records):
                out: bytes | memoryview = memoryview(mm)[pos : pos + h.size]
            elif kept or (h.producer_id, h.base_offset) in job.keep_empty:
                out = build_compacted(h, kept, h.compression)
            else:
                if gap:
                    gap[1] = max(gap[1], h.max_timestamp)
                else:
                    gap = [h.base_offset, h.max_timestamp, h.leader_epoch]
                continue
            if gap:
                filler = _filler(gap, h.base_offset)
                pending.append(filler)
                pending_bytes += len(filler)
                gap = []
            pending.append(out)
            pending_bytes += len(out)
            if pending_bytes >= _WRITE_CHUNK:
                job.throttle.take(pending_bytes)
                io.pwrite(fd, b"".join(pending), written)
                written += pending_bytes
                pending, pending_bytes = [], 0
        if gap:  # up to the segment's end: the next one starts right after
            filler = _filler(gap, src.next_offset)
            pending.append(filler)
            pending_bytes += len(filler)
        if pending:
            job.throttle.take(pending_bytes)
            io.pwrite(fd, b"".join(pending), written)
            written += pending_bytes
        del pending
        s.release()
        io.fsync(fd)
        # the indexes, from a scan of the new file (which re-checks it)
        scan = scan_segment(
            fd,
            written,
            src.base_offset,
            index_interval=job.index_interval,
            max_index_entries=job.max_index_entries,
            max_time_entries=job.max_time_entries,
            allow_gaps=True,
        )
    finally:
        os.close(fd)
    if scan.error is not None or scan.end != written or scan.next_offset != src.next_offset:
        # what was just written and fsynced does not read back: the disk
        raise CorruptLogError(
            log_path,
            scan.end,
            scan.next_offset,
            src.next_offset - 1,
            f"the cleaned segment does not read back: {scan.error or 'wrong length'}",
        )
    ti = scan.time_index
    if written and (not ti or scan.max_timestamp > ti.last_timestamp):
        ti.append(scan.max_timestamp, scan.next_offset - 1 - src.base_offset)
    for suffix, data in (
        (INDEX_SUFFIX, scan.offset_index.to_bytes()),
        (TIMEINDEX_SUFFIX, ti.to_bytes()),
    ):
        path = _cleaned(os.path.join(job.directory, offset_file_name(src.base_offset, suffix)))
        ifd = io.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            io.pwrite(ifd, data, 0)
            io.fsync(ifd)
        finally:
            os.close(ifd)
    result.bytes_written += written
    return NewSegment(
        src.base_offset,
        src.next_offset,
        written,
        scan.offset_index,
        ti,
        scan.max_timestamp if written else NO_TIMESTAMP,
    )


def _filler(gap: list[int], end: int) -> bytes:
    """An empty magic-2 batch covering offsets ``gap[0]`` to ``end - 1``,
    whose batches the cleaning dropped whole: batches stay contiguous (each
    starts right after the previous one's last offset, segments end where
    the next one starts), so the dense check of base offsets between
    batches, which catches a base offset damaged at rest (outside the CRC),
    holds on compacted data too. Its timestamps are the largest of the
    batches it stands for (the time index and retention keep seeing it); no
    producer. A run wider than an i32 offset delta (never, within a u32
    segment, but cheap to honour) is covered by several."""
    start, max_ts, epoch = gap
    out = []
    while start < end:
        last = min(end - 1, start + 2**31 - 1)
        header = BatchHeader(start, 49, epoch, 2, 0, 0, last - start, max_ts, max_ts, -1, -1, -1, 0)
        out.append(build_compacted(header, [], 0))
        start = last + 1
    return b"".join(out)


def _remove_cleaned(job: CleanJob) -> None:
    for src in job.sources:
        for suffix in _SEGMENT_SUFFIXES:
            path = _cleaned(os.path.join(job.directory, offset_file_name(src.base_offset, suffix)))
            with contextlib.suppress(FileNotFoundError):
                job.io.unlink(path)


def run_job(job: CleanJob) -> CleanResult | None:
    """Build the map, rewrite, swap (worker thread; files only, no shared
    Python state). None when nothing was worth rewriting. Raises
    CleanerStopped (nothing committed, .cleaned files removed) or OSError
    (the same, as far as the disk allows)."""
    started = time.perf_counter()
    result = CleanResult()
    sources = [_Source(src) for src in job.sources]
    io = job.io
    committed = False
    try:
        key_map, mapped_to = _build_map(job, sources, result)
        if mapped_to <= job.dirty_start:
            return None
        targets = [s for s in sources if s.src.base_offset < mapped_to]
        for s in targets:
            result.segments.append(_rewrite(job, s, key_map, mapped_to, result))
        del key_map
        job.throttle.check()
        io.fsync_dir(job.directory)
        io.crash_point("cleaner.cleaned")
        result.clean_to = mapped_to
        result.gaps_below = max(job.gaps_below, targets[-1].src.next_offset)
        checkpoint = CleanerCheckpoint(result.clean_to, result.gaps_below)
        manifest = {
            "format": 1,
            "bases": [s.src.base_offset for s in targets],
            "clean_to": checkpoint.clean_to,
            "gaps_below": checkpoint.gaps_below,
        }
        manifest_path = os.path.join(job.directory, MANIFEST_FILE)
        atomic_write(
            io,
            manifest_path,
            (json.dumps(manifest, sort_keys=True) + "\n").encode(),
            crash_point="cleaner.committing",
        )
        committed = job.committed = True
        io.crash_point("cleaner.committed")
        for i, s in enumerate(targets):
            for suffix in _SEGMENT_SUFFIXES:
                target = os.path.join(job.directory, offset_file_name(s.src.base_offset, suffix))
                io.rename(_cleaned(target), target)
            if i == 0:
                io.crash_point("cleaner.swapping")
        io.fsync_dir(job.directory)
        atomic_write(io, os.path.join(job.directory, CHECKPOINT_FILE), checkpoint.to_bytes())
        io.crash_point("cleaner.swapped")
        io.unlink(manifest_path)
        io.fsync_dir(job.directory)
    except BaseException:
        if not committed:
            with contextlib.suppress(OSError):
                _remove_cleaned(job)
        raise
    finally:
        for s in sources:
            s.close()
    result.seconds = time.perf_counter() - started
    return result
