"""One log segment: ``<base>.log`` plus its ``.index`` and ``.timeindex``.

A segment is either *active* (the partition's last segment, being appended
to) or *sealed* (trimmed to its data and read-only).

Active segment write path. The ``.log`` grows in steps (1 MiB, doubling up
to ``preallocate_bytes``) reserved with ``posix_fallocate`` (real blocks: a full
disk fails the fallocate with ENOSPC, instead of a later page fault dying of
SIGBUS as it would in a sparse ``ftruncate``-grown file). Each step is mapped
as its own mmap *window* whose file offset is aligned to
``mmap.ALLOCATIONGRANULARITY``; growth never remaps, and a window is unmapped
as soon as the write position has passed it. Unmapping a shared file mapping
loses nothing: its dirty pages stay in the page cache and ``fdatasync`` on the
fd writes them like any other dirty page. Within the current window, every
written MiB is released with MADV_DONTNEED (same guarantee). So an active
partition keeps one or two windows mapped and about 1 MiB of them resident,
and the broker's RSS does not grow with the data written (measured: +2 MiB
peak for 700 MiB appended, +16 MiB without the release). (A Python 3.11 mmap
dups its fd: each open window costs one fd.) A batch that spans two windows
is copied in two parts.

An append copies a whole produce records section with one slice assignment,
then patches each batch's base_offset and leader_epoch in place (both outside
the CRC), so bytes are never re-encoded. Index entries are pwritten into
index files that were fallocated together with the log step that could need
them, so an index write never meets a full disk.

Index files are not fsynced per ack: after an unclean stop every segment from
the one holding the recovery point onward is rescanned and its indexes are
rebuilt from the log, so only indexes of sealed segments below the recovery
point are ever trusted, and those were fsynced when the segment was sealed
(see partition.py). Untrusted-but-loaded indexes are still sanity-checked and
rebuilt when damaged.

Sealed segments hold no fd and no index arrays until first read; the
partition closes the least recently used ones again. Readers hold a reference
(``acquire``/``release``) so that retention or close never closes an fd that
a FileSlice is still sending from.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import struct
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tailrace.client.errors import StorageFullError
from tailrace.client.records import HEADER, HEADER_SIZE, BatchHeader

from .errors import CorruptLogError
from .files import INDEX_SUFFIX, LOG_SUFFIX, TIMEINDEX_SUFFIX, offset_file_name
from .index import OFFSET_ENTRY, TIME_ENTRY, IndexCorruptError, OffsetIndex, TimeIndex
from .recovery import NO_TIMESTAMP, ScanResult, scan_segment

if TYPE_CHECKING:
    from .config import LogConfig
    from .storage_io import StorageIO

__all__ = ["NO_TIMESTAMP", "Segment", "SegmentContext", "index_entry_bound"]

logger = logging.getLogger(__name__)

_GRAN = mmap.ALLOCATIONGRANULARITY
#: The first preallocation step of a segment (then doubling up to
#: preallocate_bytes); a multiple of mmap.ALLOCATIONGRANULARITY.
FIRST_STEP = 1024 * 1024
#: Written pages of the active segment's map are released every this many
#: bytes (see Segment._release_written).
RELEASE_BYTES = 1024 * 1024
#: Rewrites the first 16 header bytes: base_offset i64, batch_length i32
#: (written back unchanged), leader_epoch i32 (the log's leader epoch: 0 on
#: a single node).
_PATCH = struct.Struct(">qii")
_BASE_OFFSET = struct.Struct(">q")
_U32 = 0xFFFFFFFF
#: Batch positions an active segment remembers from its latest appends
#: (Segment.find_batch's shortcut for consumers at the end of the log).
_RECENT_BATCHES = 32
#: Header bytes read at once when walking batches with pread.
_WALK_CHUNK = 64 * 1024


def _round_up(n: int) -> int:
    return -(-n // _GRAN) * _GRAN


def index_entry_bound(log_bytes: int, interval: int) -> int:
    """Most offset-index entries a log of ``log_bytes`` can get: consecutive
    entries are more than ``interval`` and at least one batch apart."""
    return log_bytes // max(interval + 1, HEADER_SIZE) + 1


def index_capacity(config: LogConfig) -> tuple[int, int]:
    """(offset entries, time entries) that fit in ``segment_index_bytes``."""
    n = config.segment_index_bytes
    return n // OFFSET_ENTRY.size, n // TIME_ENTRY.size


class SegmentContext:
    """What all segments of one partition share: the config (replaced when
    it is altered at runtime), the index capacities it implies, the I/O seam."""

    __slots__ = ("_config", "gaps_below", "io", "max_index_entries", "max_time_entries")

    def __init__(self, config: LogConfig, io: StorageIO) -> None:
        self.io = io
        self.config = config
        #: Segments with a base offset below this were rewritten by the log
        #: cleaner (cleaner.py): their batches may hold fewer records than
        #: offsets, or none (validate_batch's allow_gaps); batches stay
        #: contiguous.
        self.gaps_below = 0

    @property
    def config(self) -> LogConfig:
        return self._config

    @config.setter
    def config(self, config: LogConfig) -> None:
        self._config = config
        self.max_index_entries, self.max_time_entries = index_capacity(config)


class Segment:
    """A segment's files, indexes and, when active, its mmap windows.

    ``size`` is the number of valid data bytes (the active segment's file may
    be longer: preallocated); ``next_offset`` the offset after its last batch.
    """

    __slots__ = (
        "_grow_at",
        "_index_alloc",
        "_last_index_pos",
        "_max_ts",
        "_offset_index",
        "_recent",
        "_recent_end",
        "_release_at",
        "_time_checked",
        "_time_damaged",
        "_time_index",
        "_timeindex_alloc",
        "_windows",
        "allocated",
        "base_offset",
        "close_pending",
        "ctx",
        "dir",
        "fd",
        "index_fd",
        "index_is_full",
        "next_offset",
        "refs",
        "roll_base_ts",
        "sealed",
        "size",
        "timeindex_fd",
    )

    def __init__(
        self,
        ctx: SegmentContext,
        directory: str,
        base_offset: int,
        *,
        size: int,
        next_offset: int,
        sealed: bool,
    ) -> None:
        self.ctx = ctx
        self.dir = directory
        self.base_offset = base_offset
        self.size = size
        self.next_offset = next_offset
        self.sealed = sealed
        #: Bytes of the .log file (size plus preallocation); known once open.
        self.allocated = size
        self.close_pending = False
        self.refs = 0
        self.fd = -1
        self.index_fd = -1
        self.timeindex_fd = -1
        self._offset_index: OffsetIndex | None = None
        self._time_index: TimeIndex | None = None
        self._max_ts: int | None = None
        #: The time index was built here or checked against the log.
        self._time_checked = False
        #: ... and found not to match (an active segment's: not used).
        self._time_damaged = False
        #: Max timestamp of the first batch: segment_ms is measured from it.
        self.roll_base_ts: int | None = None
        self._windows: list[tuple[int, int, mmap.mmap]] = []
        #: ensure_capacity has nothing to do for an end at or below this.
        self._grow_at = -1
        #: The next data end at which written pages are released.
        self._release_at = RELEASE_BYTES
        #: An index reached its capacity (segment_index_bytes): roll.
        self.index_is_full = False
        self._last_index_pos = 0
        #: base offset -> position of the batches the latest appends wrote
        #: (at most _RECENT_BATCHES), valid while the data still ends at
        #: ``_recent_end``: a caught-up consumer's fetch is at one of them,
        #: and find_batch then needs no index lookup and no header walk
        self._recent: dict[int, int] = {}
        self._recent_end = -1
        self._index_alloc = 0
        self._timeindex_alloc = 0

    # --- names ---------------------------------------------------------------

    def path(self, suffix: str) -> str:
        return os.path.join(self.dir, offset_file_name(self.base_offset, suffix))

    @property
    def log_path(self) -> str:
        return self.path(LOG_SUFFIX)

    @property
    def gapped(self) -> bool:
        """The cleaner may have left offset gaps here (see SegmentContext)."""
        return self.base_offset < self.ctx.gaps_below

    def __repr__(self) -> str:
        state = "sealed" if self.sealed else "active"
        return f"<Segment {self.log_path} {state} size={self.size} next={self.next_offset}>"

    # --- indexes ---------------------------------------------------------------

    @property
    def offset_index(self) -> OffsetIndex:
        if self._offset_index is None:
            self.load_indexes()
        return self._offset_index  # type: ignore[return-value]

    @property
    def time_index(self) -> TimeIndex:
        if self._time_index is None:
            self.load_indexes()
        return self._time_index  # type: ignore[return-value]

    @property
    def max_timestamp(self) -> int:
        """Largest record timestamp in the segment (NO_TIMESTAMP if none)."""
        if self._max_ts is None:
            self._max_ts = self.time_index.last_timestamp
        return self._max_ts

    def time_rel_below(self, timestamp: int) -> int:
        """Relative offset of the last time-index entry older than
        ``timestamp`` (every record at or below it is older), or -1.

        A time index loaded from its file is checked against the log the
        first time it is used (a walk of every batch header: once per
        segment and process, for timestamp lookups only): a timestamp
        damaged at rest would still look ordered and silently skip records.
        A damaged one is rebuilt (sealed) or not used (active)."""
        if not self._time_checked:
            if not self._time_index_matches_log():
                logger.warning(
                    "time index of %s does not match its log: %s",
                    self,
                    "rebuilding the indexes" if self.sealed else "reading from the segment start",
                )
                if self.sealed:
                    self.rebuild_indexes()
                else:
                    self._time_damaged = True
            self._time_checked = True
        if self._time_damaged:
            return -1
        return self.time_index.last_rel_below(timestamp)

    def _time_index_matches_log(self) -> bool:
        """Each entry names the last offset of a batch and the largest
        timestamp up to and including that batch."""
        ti = self.time_index
        rels, stamps = ti.rel_offsets, ti.timestamps
        n = len(rels)
        i = 0
        running = NO_TIMESTAMP
        for _p, h in self.walk(0, self.size):
            if i == n:
                break
            if h.max_timestamp > running:
                running = h.max_timestamp
            last_rel = h.base_offset + h.last_offset_delta - self.base_offset
            while i < n and rels[i] <= last_rel:
                if rels[i] != last_rel or stamps[i] != running:
                    return False
                i += 1
        return i == n

    def set_indexes(self, offset_index: OffsetIndex, time_index: TimeIndex, max_ts: int) -> None:
        """Adopt indexes loaded and checked by the caller (clean open)."""
        self._offset_index = offset_index
        self._time_index = time_index
        self._max_ts = max_ts
        self._last_index_pos = offset_index.last()[1]
        self._update_full()

    def _update_full(self) -> None:
        ctx = self.ctx
        oi, ti = self._offset_index, self._time_index
        self.index_is_full = (oi is not None and len(oi) >= ctx.max_index_entries) or (
            ti is not None and len(ti) >= ctx.max_time_entries - 1
        )

    def set_from_scan(self, result: ScanResult) -> None:
        """Adopt the indexes and bounds a scan rebuilt, with the final time
        entry a seal or a clean close writes (so that recovering a cleanly
        closed segment rebuilds exactly the bytes on disk: nothing to write)."""
        self.size = result.end
        self.next_offset = result.next_offset
        self._offset_index = result.offset_index
        self._time_index = result.time_index
        self._max_ts = result.max_timestamp
        self._time_checked = True
        self._time_damaged = False
        self._last_index_pos = result.offset_index.last()[1]
        self.roll_base_ts = result.first_max_timestamp
        if self.size:
            ti = result.time_index
            if not ti or result.max_timestamp > ti.last_timestamp:
                ti.append(result.max_timestamp, self.next_offset - 1 - self.base_offset)
        self._update_full()

    def read_index_files(self, next_rel: int) -> tuple[OffsetIndex, TimeIndex]:
        """Read and sanity-check both index files (IndexCorruptError, OSError)."""
        with open(self.path(INDEX_SUFFIX), "rb") as f:
            oi = OffsetIndex.from_bytes(f.read(), log_size=self.size, next_rel=next_rel)
        with open(self.path(TIMEINDEX_SUFFIX), "rb") as f:
            ti = TimeIndex.from_bytes(f.read(), next_rel=next_rel)
        if oi:
            rel, pos = oi.last()
            raw = self.pread(pos, 8)
            if len(raw) < 8 or _BASE_OFFSET.unpack(raw)[0] != self.base_offset + rel:
                raise IndexCorruptError(f"last entry ({rel}, {pos}) does not point at its batch")
        return oi, ti

    def load_indexes(self) -> None:
        """Load a sealed segment's indexes, checked; rebuild them from the log
        when either file is missing or damaged (a bad index is never trusted).
        """
        try:
            oi, ti = self.read_index_files(self.next_offset - self.base_offset)
            if self.size and not ti:
                raise IndexCorruptError("a sealed non-empty segment has an empty time index")
            if self.sealed:
                self._check_tail(oi, ti)
        except (OSError, IndexCorruptError, CorruptLogError) as exc:
            logger.warning("index of %s is unusable (%s): rebuilding it from the log", self, exc)
            self.rebuild_indexes()
            return
        self._offset_index = oi
        self._time_index = ti
        self._last_index_pos = oi.last()[1]
        if self._max_ts is None:
            self._max_ts = ti.last_timestamp
        self._update_full()

    def _check_tail(self, oi: OffsetIndex, ti: TimeIndex) -> None:
        """A sealed segment must end with a whole batch that reaches the next
        segment's base offset: walk the headers after the last index entry
        (at most one index interval). A file cut short or with damaged
        headers there fails, and the rebuild that follows names the damage.
        The time index's last entry is the segment's largest timestamp
        (retention and timestamp lookups skip segments by it): no batch
        walked may hold a larger one."""
        rel, pos = oi.last()
        expected = self.base_offset + rel
        end = pos
        last_ts = ti.last_timestamp
        for p, h in self.walk(pos, self.size):
            if h.base_offset != expected:
                raise IndexCorruptError(f"batch at {p} starts at offset {h.base_offset}")
            if h.max_timestamp > last_ts:
                raise IndexCorruptError(
                    f"batch at {p} holds timestamp {h.max_timestamp}, "
                    f"past the time index's last {last_ts}"
                )
            expected = h.next_offset
            end = p + h.size
        if end != self.size or expected != self.next_offset:
            raise IndexCorruptError(
                f"data ends at byte {end}, offset {expected}: the file has {self.size} bytes, "
                f"the next segment starts at {self.next_offset}"
            )

    def rebuild_indexes(self) -> None:
        """Rebuild both indexes of this durable segment by scanning it; any
        invalid batch is corruption of durable data (CorruptLogError)."""
        cfg = self.ctx.config
        gapped = self.gapped
        fd = os.open(self.log_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            result = scan_segment(
                fd,
                self.size,
                self.base_offset,
                index_interval=cfg.index_interval_bytes,
                max_index_entries=self.ctx.max_index_entries,
                max_time_entries=self.ctx.max_time_entries,
                allow_gaps=gapped,
            )
        finally:
            os.close(fd)
        next_offset = self.next_offset
        if result.error is not None or result.next_offset != next_offset:
            reason = result.error or f"data ends at offset {result.next_offset}"
            raise CorruptLogError(
                self.log_path, result.end, result.next_offset, next_offset - 1, reason
            )
        self.set_from_scan(result)
        self.next_offset = next_offset  # a sealed segment ends where the next begins
        self.write_index_files()

    def write_index_files(self) -> bool:
        """Rewrite both index files from the in-memory arrays and fsync them
        (skipped for a file that already holds exactly those bytes). Returns
        whether it wrote anything."""
        io = self.ctx.io
        oi, ti = self.offset_index, self.time_index
        wrote = False
        for suffix, data in ((INDEX_SUFFIX, oi.to_bytes()), (TIMEINDEX_SUFFIX, ti.to_bytes())):
            with contextlib.suppress(FileNotFoundError), open(self.path(suffix), "rb") as f:
                if f.read(len(data) + 1) == data:
                    continue
            wrote = True
            fd = io.open(self.path(suffix), os.O_WRONLY | os.O_CREAT)
            try:
                io.ftruncate(fd, 0)
                io.pwrite(fd, data, 0)
                io.fsync(fd)
            finally:
                os.close(fd)
        self._index_alloc = len(oi) * OFFSET_ENTRY.size
        self._timeindex_alloc = len(ti) * TIME_ENTRY.size
        return wrote

    # --- reading ---------------------------------------------------------------

    def acquire(self) -> None:
        """Take a reference, opening the log fd if needed."""
        if self.fd < 0:
            flags = os.O_RDONLY if self.sealed else os.O_RDWR
            self.fd = self.ctx.io.open(self.log_path, flags)
        self.refs += 1

    def release(self) -> None:
        self.refs -= 1
        if self.refs == 0 and self.close_pending:
            self._close_fds()

    def pread(self, pos: int, n: int) -> bytes:
        if self.fd >= 0:
            return os.pread(self.fd, n, pos)
        fd = os.open(self.log_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, n, pos)
        finally:
            os.close(fd)

    def walk(self, pos: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        """Yield (position, header) for the batches in [pos, end), reading
        headers with pread in 64 KiB chunks. Structural checks only, no CRC:
        for data validated on append or by recovery."""
        buf = b""
        buf_start = pos
        make = BatchHeader._make
        while pos < end:
            rel = pos - buf_start
            if rel + HEADER_SIZE > len(buf):
                buf = self.pread(pos, min(_WALK_CHUNK, max(end - pos, HEADER_SIZE)))
                buf_start = pos
                rel = 0
                if len(buf) < HEADER_SIZE:
                    raise CorruptLogError(
                        self.log_path, pos, -1, None, "batch header runs past the end of the file"
                    )
            h = make(HEADER.unpack_from(buf, rel))
            size = h.batch_length + 12
            if size < HEADER_SIZE or pos + size > end:
                # a sealed segment knows where its offsets end: name the range
                last = self.next_offset - 1 if self.sealed else None
                raise CorruptLogError(
                    self.log_path, pos, h.base_offset, last, f"batch of {size} bytes does not fit"
                )
            yield pos, h
            pos += size

    def find_batch(self, offset: int) -> tuple[int, int]:
        """(position, base_offset) of the batch holding ``offset`` (on a
        compacted topic it may hold no record at ``offset``: the reader skips
        to its next record): floor index entry (checked, see
        _checked_entry), then a forward scan of batch headers."""
        if self.size == self._recent_end:
            pos = self._recent.get(offset, -1)
            if pos >= 0:
                return pos, offset
        rel, pos = self.offset_index.floor(offset - self.base_offset)
        pos = self._checked_entry(rel, pos, lambda oi: oi.floor(offset - self.base_offset))
        # The base offset is outside the CRC: a flipped bit there would make
        # a batch claim offsets it does not hold. Each batch must start where
        # the one before ended (the first at the segment's base or at its
        # checked index entry); compacted segments too (the cleaner covers
        # the batches it dropped with empty ones).
        expected = self.base_offset if pos == 0 else None
        for p, h in self.walk(pos, self.size):
            if expected is not None and h.base_offset != expected:
                raise CorruptLogError(
                    self.log_path,
                    p,
                    expected,
                    expected + h.last_offset_delta,
                    f"batch claims base offset {h.base_offset}, expected {expected}",
                )
            expected = h.base_offset + h.last_offset_delta + 1
            if expected > offset:
                return p, h.base_offset
        raise CorruptLogError(self.log_path, self.size, offset, None, "offset not in its segment")

    def _checked_entry(self, rel: int, pos: int, lookup) -> int:  # type: ignore[no-untyped-def]
        """The position of an index entry once the batch there is seen to
        start at the entry's offset (one 8-byte pread). An index file damaged
        at rest can pass the load-time sanity checks with an entry pointing
        elsewhere; the first lookup that lands on it rebuilds a sealed
        segment's indexes from the log (and looks up again), or walks an
        active segment from its start: never a read from a wrong position."""
        if pos == 0:
            return 0
        raw = self.pread(pos, 8)
        if len(raw) == 8 and _BASE_OFFSET.unpack(raw)[0] == self.base_offset + rel:
            return pos
        logger.warning(
            "index entry (%d, %d) of %s does not point at its batch: %s",
            rel,
            pos,
            self,
            "rebuilding the indexes" if self.sealed else "reading from the segment start",
        )
        if not self.sealed:
            return 0
        self.rebuild_indexes()
        _rel, pos = lookup(self.offset_index)
        return pos

    def last_boundary(self, start: int, limit: int, end: int) -> tuple[int, int]:
        """(b, offset of the batch starting at b) for the last batch boundary
        with start < b <= limit (``limit`` < ``end``), or the end of the
        first batch when it alone passes ``limit``: a read always returns at
        least one whole batch. Walks at most one index interval of headers."""
        rel, pos = self.offset_index.floor_by_position(limit)
        if pos > start:
            pos = self._checked_entry(rel, pos, lambda oi: oi.floor_by_position(limit))
        if pos <= start:
            pos = start
        boundary = (pos, -1)
        for p, h in self.walk(pos, end):
            size = h.batch_length + 12
            if p + size > limit:
                return (p, h.base_offset) if p > start else (p + size, h.next_offset)
            boundary = (p + size, h.next_offset)
        return boundary

    # --- active-segment writing --------------------------------------------------

    def open_for_append(self) -> None:
        """Open the three files read-write (nothing preallocated yet) and load
        what the append path needs: indexes and the roll base timestamp."""
        io = self.ctx.io
        if self.fd < 0:
            self.fd = io.open(self.log_path, os.O_RDWR | os.O_CREAT)
        if self.index_fd < 0:
            self.index_fd = io.open(self.path(INDEX_SUFFIX), os.O_RDWR | os.O_CREAT)
        if self.timeindex_fd < 0:
            self.timeindex_fd = io.open(self.path(TIMEINDEX_SUFFIX), os.O_RDWR | os.O_CREAT)
        self.allocated = os.fstat(self.fd).st_size
        self._index_alloc = os.fstat(self.index_fd).st_size
        self._timeindex_alloc = os.fstat(self.timeindex_fd).st_size
        if self._offset_index is None:
            self.load_indexes()
        if self.roll_base_ts is None and self.size >= HEADER_SIZE:
            self.roll_base_ts = HEADER.unpack(self.pread(0, HEADER_SIZE))[8]

    @property
    def writable(self) -> bool:
        return self.index_fd >= 0

    def ensure_capacity(self, end: int) -> None:
        """Preallocate (log and indexes) and map so that [size, end) is writable.

        Growth policy: one step at the first append, then another step
        whenever the data passes the middle of the last one, so the writer
        stays at least half a step away from the end of the file (capped at
        the segment size). Steps start at FIRST_STEP (1 MiB) and double with
        the file, up to ``preallocate_bytes``, so lightly used partitions
        reserve little disk. Writing right behind a fresh
        fallocate near EOF measured about half as fast here (page-cache folios
        are cut short at EOF: more faults per MiB); tools/bench_storage.py.

        Raises StorageFullError, changing nothing visible, when a fallocate
        fails (ENOSPC, EDQUOT or any other OSError).
        """
        if end <= self._grow_at:
            return
        cfg = self.ctx.config
        io = self.ctx.io
        # Adaptive step: 1 MiB at first, then as much as the segment already
        # holds (doubling it), never more than preallocate_bytes. A partition
        # that gets a few KiB reserves 1 MiB, not a whole 16 MiB step.
        step = min(cfg.preallocate_bytes, max(FIRST_STEP, _round_up(self.allocated)))
        cap = _round_up(cfg.segment_bytes)
        new_alloc = self.allocated
        if end > self.allocated or (end > self.allocated - step // 2 and self.allocated < cap):
            new_alloc = _round_up(max(end, min(self.allocated + step, cap)))
        entries = index_entry_bound(new_alloc, cfg.index_interval_bytes) + 1
        try:
            want = entries * OFFSET_ENTRY.size
            if want > self._index_alloc:
                io.fallocate(self.index_fd, self._index_alloc, want - self._index_alloc)
                self._index_alloc = want
            want = (entries + 1) * TIME_ENTRY.size
            if want > self._timeindex_alloc:
                io.fallocate(self.timeindex_fd, self._timeindex_alloc, want - self._timeindex_alloc)
                self._timeindex_alloc = want
            if new_alloc > self.allocated:
                io.fallocate(self.fd, self.allocated, new_alloc - self.allocated)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            raise StorageFullError(
                f"cannot preallocate {self.log_path} to {new_alloc} bytes: {name} ({exc.strerror})"
            ) from exc
        self.allocated = new_alloc
        map_start = self._windows[-1][1] if self._windows else (self.size // _GRAN) * _GRAN
        if new_alloc > map_start:
            window = mmap.mmap(self.fd, new_alloc - map_start, offset=map_start)
            self._windows.append((map_start, new_alloc, window))
        # the next call with an end at or below this needs nothing
        self._grow_at = new_alloc if new_alloc >= cap else new_alloc - step // 2

    def append(
        self, data: memoryview, headers: list[BatchHeader], base_offset: int, leader_epoch: int = 0
    ) -> None:
        """Copy ``data`` (whole, validated batches) at ``size`` and patch
        their offsets and leader epoch. The caller checked capacity
        (ensure_capacity) and rolled if needed."""
        start = self.size
        end = start + len(data)
        w_start, w_end, window = self._windows[0]
        if end <= w_end:
            window[start - w_start : end - w_start] = data
        else:
            self._write_spanning(start, data)
            window = None
        ctx = self.ctx
        interval = ctx.config.index_interval_bytes
        max_index_entries = ctx.max_index_entries
        pos = start
        offset = base_offset
        base = self.base_offset
        max_ts = self._max_ts if self._max_ts is not None else NO_TIMESTAMP
        oi = self.offset_index
        recent = self._recent
        if start != self._recent_end or len(recent) >= _RECENT_BATCHES:
            # anything but appends changed the data (a truncation, a
            # recovery), or it is full: start again from this append
            recent.clear()
        for h in headers:
            recent[offset] = pos
            if window is not None:
                _PATCH.pack_into(window, pos - w_start, offset, h.batch_length, leader_epoch)
            else:
                self._write_spanning(pos, _PATCH.pack(offset, h.batch_length, leader_epoch))
            last = offset + h.last_offset_delta
            if h.max_timestamp > max_ts:
                max_ts = h.max_timestamp
            if pos - self._last_index_pos > interval and len(oi) < max_index_entries:
                self._add_index_entry(offset - base, pos, max_ts, last - base)
            if self.roll_base_ts is None:
                self.roll_base_ts = h.max_timestamp
            pos += h.batch_length + 12
            offset = last + 1
        self._max_ts = max_ts
        self.size = end
        self.next_offset = offset
        self._recent_end = end
        if end >= w_end or end >= self._release_at:
            self._release_written(end)

    def _add_index_entry(self, rel: int, pos: int, max_ts: int, rel_last: int) -> None:
        io = self.ctx.io
        oi = self._offset_index
        ti = self._time_index
        assert oi is not None
        assert ti is not None
        io.crash_point("index.append")
        io.pwrite(self.index_fd, OFFSET_ENTRY.pack(rel, pos), len(oi) * OFFSET_ENTRY.size)
        oi.append(rel, pos)
        self._last_index_pos = pos
        if max_ts > ti.last_timestamp and len(ti) < self.ctx.max_time_entries - 1:
            io.pwrite(
                self.timeindex_fd, TIME_ENTRY.pack(max_ts, rel_last), len(ti) * TIME_ENTRY.size
            )
            ti.append(max_ts, rel_last)
        self._update_full()

    def _write_spanning(self, pos: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for w_start, w_end, window in self._windows:
            if pos >= w_end:
                continue
            take = min(len(view), w_end - pos)
            window[pos - w_start : pos - w_start + take] = view[:take]
            view = view[take:]
            pos += take
            if not view:
                return
        raise AssertionError("write beyond the mapped windows")

    def _release_written(self, pos: int) -> None:
        """Give back the pages below ``pos`` that are written: unmap windows
        the writer has left and MADV_DONTNEED the written part of the current
        one, so the process's RSS stays bounded by RELEASE_BYTES per active
        segment however much it writes. Nothing is lost: the dirty pages stay
        in the page cache and the kernel (or an fdatasync) writes them back."""
        windows = self._windows
        while windows and windows[0][1] <= pos:
            windows.pop(0)[2].close()
        if windows:
            w_start, _w_end, window = windows[0]
            lo = max(self._release_at - RELEASE_BYTES, w_start) // _GRAN * _GRAN
            hi = pos // _GRAN * _GRAN
            if hi > lo:
                window.madvise(mmap.MADV_DONTNEED, lo - w_start, hi - lo)
        self._release_at = pos + RELEASE_BYTES

    def append_as_is(self, data: memoryview, headers: list[BatchHeader]) -> None:
        """A follower's append: copy ``data`` (whole, validated batches that
        start at this segment's next offset) at ``size`` keeping every byte,
        offsets and leader epochs included. The caller checked capacity and
        rolled if needed."""
        start = self.size
        end = start + len(data)
        w_start, w_end, window = self._windows[0]
        if end <= w_end:
            window[start - w_start : end - w_start] = data
        else:
            self._write_spanning(start, data)
        interval = self.ctx.config.index_interval_bytes
        max_index_entries = self.ctx.max_index_entries
        pos = start
        base = self.base_offset
        max_ts = self._max_ts if self._max_ts is not None else NO_TIMESTAMP
        oi = self.offset_index
        offset = self.next_offset
        for h in headers:
            offset = h.base_offset
            last = offset + h.last_offset_delta
            if h.max_timestamp > max_ts:
                max_ts = h.max_timestamp
            if pos - self._last_index_pos > interval and len(oi) < max_index_entries:
                self._add_index_entry(offset - base, pos, max_ts, last - base)
            if self.roll_base_ts is None:
                self.roll_base_ts = h.max_timestamp
            pos += h.batch_length + 12
            offset = last + 1
        self._max_ts = max_ts
        self.size = end
        self.next_offset = offset
        if end >= w_end or end >= self._release_at:
            self._release_written(end)

    def truncated(self, position: int, next_offset: int) -> Segment:
        """A new, active Segment object for this segment's files cut at byte
        ``position`` (where the batch at ``next_offset`` starts): index
        entries at or past the cut dropped, the largest timestamp
        recomputed from the index and the headers after its last kept entry
        (at most one index interval). Reads the files (below the cut: they
        are not changed); changes nothing on disk or in this object: the
        caller cuts the files (truncation.cut_files) and closes this one."""
        oi_old, ti_old = self.offset_index, self.time_index
        k = bisect_left(oi_old.positions, position)
        oi = OffsetIndex()
        oi.rel_offsets = oi_old.rel_offsets[:k]
        oi.positions = oi_old.positions[:k]
        rel_end = next_offset - self.base_offset
        k = bisect_left(ti_old.rel_offsets, rel_end)
        ti = TimeIndex()
        ti.timestamps = ti_old.timestamps[:k]
        ti.rel_offsets = ti_old.rel_offsets[:k]
        max_ts = ti.last_timestamp if ti else NO_TIMESTAMP
        for _p, h in self.walk(oi.last()[1], position):
            if h.max_timestamp > max_ts:
                max_ts = h.max_timestamp
        new = Segment(
            self.ctx,
            self.dir,
            self.base_offset,
            size=position,
            next_offset=next_offset,
            sealed=False,
        )
        new.set_indexes(oi, ti, max_ts)
        return new

    @property
    def index_file_bytes(self) -> tuple[int, int]:
        """Bytes the in-memory offset and time indexes take in their files."""
        return len(self.offset_index) * OFFSET_ENTRY.size, len(self.time_index) * TIME_ENTRY.size

    def trim(self) -> None:
        """Unmap, write the final time-index entry and cut the files down to
        their real size (removes preallocation; creates no sparse region)."""
        self._unmap_all()
        if not self.writable:
            return
        io = self.ctx.io
        ti = self.time_index
        max_ts = self.max_timestamp
        if self.size and (not ti or max_ts > ti.last_timestamp):
            rel_last = self.next_offset - 1 - self.base_offset
            io.pwrite(
                self.timeindex_fd, TIME_ENTRY.pack(max_ts, rel_last), len(ti) * TIME_ENTRY.size
            )
            ti.append(max_ts, rel_last)
        if self.allocated != self.size:
            io.ftruncate(self.fd, self.size)
            self.allocated = self.size
        n = len(self.offset_index) * OFFSET_ENTRY.size
        if self._index_alloc != n:
            io.ftruncate(self.index_fd, n)
            self._index_alloc = n
        n = len(ti) * TIME_ENTRY.size
        if self._timeindex_alloc != n:
            io.ftruncate(self.timeindex_fd, n)
            self._timeindex_alloc = n

    def seal(self) -> None:
        """Make the active segment sealed: files trimmed. Their fsync is the
        partition's job, off the trio thread; index fds stay open until then."""
        self.trim()
        self.sealed = True

    def sync_files(self) -> None:
        """fsync the log and (if open) index files: the seal sync. Runs in a
        worker thread; the caller holds a reference so no fd closes under it."""
        io = self.ctx.io
        io.fsync(self.fd)
        if self.index_fd >= 0:
            io.fsync(self.index_fd)
        if self.timeindex_fd >= 0:
            io.fsync(self.timeindex_fd)

    def close_index_fds(self) -> None:
        if self.index_fd >= 0:
            os.close(self.index_fd)
            self.index_fd = -1
        if self.timeindex_fd >= 0:
            os.close(self.timeindex_fd)
            self.timeindex_fd = -1

    def _unmap_all(self) -> None:
        for _s, _e, window in self._windows:
            window.close()
        self._windows.clear()
        self._grow_at = -1

    def close(self) -> None:
        """Unmap now; close the fds now, or when the last holder (a reader's
        FileSlice, a sync running in a worker thread) releases."""
        self._unmap_all()
        if self.refs:
            self.close_pending = True
        else:
            self._close_fds()

    def close_if_idle(self) -> bool:
        """LRU eviction of a sealed segment: close its fd and drop its index
        arrays unless a reader or a pending sync holds it."""
        if self.refs or not self.sealed or self.index_fd >= 0 or self._windows:
            return False
        self._close_fds()
        self._offset_index = None
        self._time_index = None
        return True

    def _close_fds(self) -> None:
        self.close_pending = False
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.close_index_fds()
