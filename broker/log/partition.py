"""The partition log: the API the broker's request handlers call.

How to use
----------
Open (synchronous: loads or recovers the directory; a broker opens many logs
through :class:`~tailrace.broker.log.manager.LogManager`)::

    log = PartitionLog.open(path, LogConfig(), recovery_point=rp, clean=False)

Produce (append is synchronous and fast: call it on the trio thread, then
wait for the durability the topic's flush mode promises)::

    result = log.append(records_section)     # one or more whole batches
    await log.wait_durable(result)           # returns at once unless flush=sync
    # result.base_offset, result.last_offset, result.log_append_time,
    # result.duplicate (an idempotent retry: nothing was appended)

Fetch (zero-copy: the slice pins its segment until released)::

    slice_ = log.read(offset, max_bytes)     # None when offset == high watermark
    if slice_ is not None:
        with slice_:
            os.sendfile(sock, slice_.fd, slice_.position, slice_.length)  # loop
    # long poll: await log.wait_for_high_watermark(offset), or wait on
    # log.hw_event, or log.watch_hw(callable) / unwatch_hw (any of many
    # partitions, no task per partition); log.available_bytes(
    # slice_.next_position) is cheap.

Housekeeping (the broker owns the loops; LogManager has one that calls these):
``await log.maybe_flush(now_ms)``, ``await log.enforce_retention(now_ms)``,
``await log.write_producer_snapshot()``, ``log.update_config(cfg)`` and
finally ``await log.aclose()``. Compacted topics: ``await log.clean(...)``
(cleaner.py; the broker's loop is cleaner_service.py), ``log.dirty_ratio``.

Offsets have gaps on a compacted topic once it was cleaned: records keep
their offsets, so a batch may hold fewer records than offsets, or none (the
cleaner covers batches it dropped with empty ones, so batches stay
contiguous and the dense check of base offsets still holds); segments below
the partition's ``gaps_below`` are validated with ``allow_gaps``.

Offsets and marks
-----------------
``log_start_offset`` <= ``recovery_point`` <= ``log_end_offset`` and
``high_watermark`` <= ``log_end_offset``. Consumers never see past the high
watermark (HW). What the HW covers depends on the topic's ``flush`` mode:

* ``sync``: the HW is the offset up to which data has been fdatasynced. An
  append's ack waits in :meth:`wait_durable`; appends that arrive while an
  fdatasync runs share the next one (group commit: the first waiter becomes
  the leader, runs the sync off the trio thread, on the log manager's sync
  thread (syncer.py) or else via ``trio.to_thread``, and wakes the others).
  Survives power loss.
* ``interval``: the HW advances at append (the page cache survives ``kill -9``);
  :meth:`maybe_flush` fdatasyncs every ``flush_ms``, so a power cut loses at
  most that window of acknowledged data.
* ``none``: the HW advances at append; only roll and close fsync. A power cut
  loses whatever the kernel had not written back.

Replicas (cluster mode) switch the log to the replicated mode
(``set_replicated(True)``): the HW is then set by the replication logic
through ``set_replicated_high_watermark`` (capped at ``durable_offset``, what
the flush mode promises: the fdatasynced end with ``sync``, the log end
otherwise), and only ``truncate_to`` lowers it. A follower stores its
leader's batches as they are (``await log.append_as_follower(data)``, then
``await log.wait_durable(result)``), cuts a diverged tail with ``await
log.truncate_to(offset)`` (crash-safe: truncation.py) and a leader serves
it past the HW with ``log.read(offset, max_bytes, up_to=log.log_end_offset)``;
``watch_end`` wakes what waits on the log end or the durable offset.

``recovery_point`` is the offset below which the log is durable *and* every
sealed segment's indexes were fsynced; after an unclean stop, recovery
rescans from the segment holding it. Index files are never fsynced per ack:
recovery rebuilds every index at or above the recovery point's segment.

A failed fsync/fdatasync (any OSError) takes the partition offline at once
(fsyncgate: Linux may have dropped the dirty pages, so retrying could ack
lost data): every waiter and every later append or read gets StorageError
naming the cause, until the broker restarts and recovery runs. A failed
preallocation (disk full) raises StorageFullError, writes nothing, and the
partition stays usable.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import trio

from tailrace.client.errors import (
    BrokerError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    StorageError,
)
from tailrace.client.records import BatchHeader, iter_records, validate_batch

from ..logs import log_event
from ..metrics import definitions as metrics
from ..replication.epochs import EpochEndOffset, LeaderEpochCache
from . import cleaner, truncation
from .config import LogConfig
from .epoch_checkpoint import (
    EPOCH_CHECKPOINT_NAME,
    read_epoch_checkpoint,
    write_epoch_checkpoint,
)
from .errors import (
    CorruptCheckpointError,
    CorruptLogError,
    FollowerAppendError,
    TruncationOffsetError,
)
from .files import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SNAPSHOT_SUFFIX,
    TIMEINDEX_SUFFIX,
    TMP_SUFFIX,
    atomic_write,
    offset_file_name,
    parse_offset_file_name,
)
from .index import IndexCorruptError, OffsetIndex, TimeIndex
from .producer_state import ProducerStateManager
from .recovery import scan_segment
from .segment import NO_TIMESTAMP, Segment, SegmentContext
from .storage_io import StorageIO
from .syncer import SyncThread
from .truncation import (
    TRUNCATION_FILE,
    TruncationMarker,
    cut_files,
    remove_marker,
    write_marker,
)

__all__ = [
    "AppendResult",
    "FileSlice",
    "LogPosition",
    "PartitionLog",
    "TimestampOffset",
    "init_partition_dir",
]

logger = logging.getLogger(__name__)

_U32 = 0xFFFFFFFF
#: no size limit on a follower's batches: the leader accepted them
_I32_MAX = 2**31 - 1
#: Sealed segments kept open (fd and index arrays) per partition.
MAX_OPEN_SEALED = 8
#: Producer snapshots kept (the newest, plus one fallback).
SNAPSHOTS_KEPT = 2
_SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX)


def _default_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AppendResult(NamedTuple):
    """What an append did. Pass it to :meth:`PartitionLog.wait_durable`."""

    base_offset: int
    last_offset: int
    #: Broker wall-clock time of the append, ms.
    log_append_time: int
    log_start_offset: int
    #: True when the append was an idempotent retry: nothing was written and
    #: the offsets are those of the original batches.
    duplicate: bool = False

    @property
    def end_offset(self) -> int:
        return self.last_offset + 1


class LogPosition(NamedTuple):
    """An offset and where its batch starts: lets available_bytes skip lookups."""

    offset: int
    segment_base: int
    position: int


class TimestampOffset(NamedTuple):
    offset: int
    timestamp: int


class FileSlice:
    """Whole batches of one segment, ready for ``os.sendfile``.

    Holds a reference on its segment so that the fd stays open (retention,
    topic deletion and close defer closing it) until :meth:`release`.
    """

    __slots__ = ("_segment", "fd", "first_offset", "last_offset", "length", "position")

    def __init__(
        self, segment: Segment, position: int, length: int, first_offset: int, last_offset: int
    ) -> None:
        """Takes over a reference the caller acquired on ``segment``."""
        self._segment: Segment | None = segment
        self.fd = segment.fd
        self.position = position
        self.length = length
        #: Base offset of the first batch (may be below the offset asked for).
        self.first_offset = first_offset
        #: Last offset of the last batch.
        self.last_offset = last_offset

    @property
    def next_position(self) -> LogPosition:
        assert self._segment is not None, "released"
        return LogPosition(
            self.last_offset + 1, self._segment.base_offset, self.position + self.length
        )

    def magics(self) -> set[int]:
        """The magic bytes of the slice's batches, from their headers only
        (pread in 64 KiB chunks, no CRC): ``{2}`` means a Kafka reader can
        be sent the slice as it is (sendfile); otherwise read_bytes() and
        records.down_convert()."""
        assert self._segment is not None, "released"
        walk = self._segment.walk(self.position, self.position + self.length)
        return {h.magic for _pos, h in walk}

    def read_bytes(self, limit: int | None = None) -> bytes:
        """The slice's bytes via os.pread (the non-zero-copy path). With
        ``limit``: only the whole batches at its start that fit in ``limit``
        bytes, and always the first one (so a reader still progresses)."""
        assert self._segment is not None, "released"
        parts = []
        pos, left = self.position, self.length
        if limit is not None and limit < left:
            left = self._whole_batches(limit)
        while left:
            chunk = os.pread(self.fd, left, pos)
            if not chunk:
                raise CorruptLogError(
                    self._segment.log_path, pos, self.first_offset, self.last_offset, "short read"
                )
            parts.append(chunk)
            pos += len(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _whole_batches(self, limit: int) -> int:
        """Bytes of the slice's leading whole batches within ``limit`` (at
        least the first batch), from the batch headers."""
        assert self._segment is not None, "released"
        start = end = self.position
        for pos, h in self._segment.walk(start, start + self.length):
            batch_end = pos + h.batch_length + 12
            if end > start and batch_end - start > limit:
                break
            end = batch_end
        return end - start

    def release(self) -> None:
        """Drop the segment reference (idempotent)."""
        seg, self._segment = self._segment, None
        if seg is not None:
            seg.release()

    def __enter__(self) -> FileSlice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"<FileSlice fd={self.fd} pos={self.position} len={self.length} "
            f"offsets={self.first_offset}..{self.last_offset}>"
        )


def init_partition_dir(path: str, io: StorageIO) -> None:
    """Create an empty partition directory holding an empty segment at offset 0.

    Empty files cost inodes, not blocks: nothing is preallocated until the
    first append. The caller fsyncs the parent directory.
    """
    io.mkdir(path)
    for suffix in _SEGMENT_SUFFIXES:
        fd = io.open(os.path.join(path, offset_file_name(0, suffix)), os.O_RDWR | os.O_CREAT)
        os.close(fd)
    io.fsync_dir(path)


#: the partition file DeleteRecords checkpoints the log start offset in
LOG_START_FILE = "log-start-offset"
#: partition files that are not segments nor snapshots (see _scan_directory)
_KNOWN_FILES = (LOG_START_FILE, TRUNCATION_FILE, cleaner.CHECKPOINT_FILE, cleaner.MANIFEST_FILE)
#: DeleteRecords' offset for "up to the high watermark"
DELETE_TO_HIGH_WATERMARK = -1


class PartitionLog:
    """One partition's segmented log. See the module docstring."""

    # ------------------------------------------------------------------ open

    def __init__(
        self,
        path: str,
        config: LogConfig,
        io: StorageIO,
        clock_ms: Callable[[], int],
        syncer: SyncThread | None = None,
    ) -> None:
        """Use :meth:`open`."""
        self._dir = path
        #: runs the sync rounds' blocking part; None: trio.to_thread
        self._run_sync = trio.to_thread.run_sync if syncer is None else syncer.run_sync
        self._name = f"{os.path.basename(os.path.dirname(path))}-{os.path.basename(path)}"
        self._ctx = SegmentContext(config, io)
        self._io = io
        self._clock_ms = clock_ms
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._leo = 0
        self._log_start = 0
        self._hw = 0
        self._hw_seg: Segment | None = None
        self._hw_pos = 0
        self._flushed = 0
        self._unsynced: list[Segment] = []
        self._dir_gen = 0
        self._dir_synced_gen = 0
        self._syncing = False
        self._sync_done: trio.Event | None = None
        self._retention_running = False
        #: one DeleteRecords at a time (its checkpoint write awaits)
        self._start_lock = trio.Lock()
        self._hw_event: trio.Event | None = None
        #: callables run at every high-watermark advance (see watch_hw)
        self._hw_watchers: set[Callable[[], object]] = set()
        self._offline: str | None = None
        self._closed = False
        self._last_flush_ms = clock_ms()
        self._lru: OrderedDict[int, Segment] = OrderedDict()
        self._producers = ProducerStateManager(config.producer_id_expiration_ms)
        self._snapshot_version = -1
        self._snapshots: list[int] = []
        #: Recovery created, removed or rewrote files: the directory needs a sync.
        self._dir_changed = False
        #: Set when an aclose() that was under way has finished.
        self._close_done: trio.Event | None = None
        #: The leader-epoch cache (empty on a single node: no checkpoint file)
        #: and the epoch stamped into appended batches (see become_leader).
        self._epochs = LeaderEpochCache()
        self._leader_epoch = 0
        #: Replicated mode (set_replicated): the high watermark is set by the
        #: replica manager, not by appends and syncs.
        self._replicated = False
        #: callables run when the log end or the durable offset advances
        self._end_watchers: set[Callable[[], object]] = set()
        #: a truncate_to / truncate_fully_and_start_at is under way
        self._truncating = False
        self._truncate_done: trio.Event | None = None
        #: set (and replaced) when a sync, retention or cleaning finishes
        self._idle_event: trio.Event | None = None
        #: the truncation marker's offset while one is on disk (see
        #: truncation.py), and a count of truncations (recovery_point_saved)
        self._truncation_marker: int | None = None
        self._truncations = 0
        #: Compaction (cleaner.py): below this offset the log is cleaned.
        self._clean_to = 0
        self._cleaning = False
        #: The last cleaning: (wall-clock ms when it ended, its result).
        self.last_clean: tuple[int, cleaner.CleanResult] | None = None

    @classmethod
    def open(
        cls,
        path: str,
        config: LogConfig,
        *,
        recovery_point: int | None = None,
        clean: bool = False,
        io: StorageIO | None = None,
        clock_ms: Callable[[], int] | None = None,
        syncer: SyncThread | None = None,
    ) -> PartitionLog:
        """Load the partition at ``path`` (created empty if missing).

        ``clean`` says the broker shut down cleanly (its marker file was
        present): recovery is skipped, indexes are only sanity-checked.
        Otherwise every segment from the one holding ``recovery_point``
        (None: from the first) is scanned: a torn tail is truncated (logged),
        corrupt data below the recovery point raises CorruptLogError.
        """
        io = io or StorageIO()
        log = cls(path, config, io, clock_ms or _default_clock_ms, syncer)
        if not os.path.isdir(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            init_partition_dir(path, io)
            io.fsync_dir(os.path.dirname(path) or ".")
        try:
            log._load(recovery_point, clean)
        except BaseException:
            log.abandon()
            raise
        return log

    def _load(self, recovery_point: int | None, clean: bool) -> None:
        # an interrupted cleaning first: finish it or discard it
        checkpoint = cleaner.recover_swap(self._dir, self._io)
        self._clean_to = checkpoint.clean_to
        self._ctx.gaps_below = checkpoint.gaps_below
        recovery_point, clean = self._complete_truncation(recovery_point, clean)
        bases = self._scan_directory()
        if not bases:
            if recovery_point:
                raise CorruptLogError(
                    self._dir, 0, 0, recovery_point - 1, "no segment files, data is missing"
                )
            init_files = [
                os.path.join(self._dir, offset_file_name(0, s)) for s in _SEGMENT_SUFFIXES
            ]
            for p in init_files:
                os.close(self._io.open(p, os.O_RDWR | os.O_CREAT))
            self._io.fsync_dir(self._dir)
            bases = [0]
        for i, base in enumerate(bases):
            size = os.stat(os.path.join(self._dir, offset_file_name(base, LOG_SUFFIX))).st_size
            last = i == len(bases) - 1
            seg = Segment(
                self._ctx,
                self._dir,
                base,
                size=size,
                next_offset=-1 if last else bases[i + 1],
                sealed=not last,
            )
            self._segments.append(seg)
        self._bases = list(bases)
        if clean and self._load_clean_tail():
            self._producers = self._producer_state_at(self._active.next_offset)
        else:
            self._recover(recovery_point)
        active = self._active
        self._leo = active.next_offset
        self._log_start = min(
            max(self._segments[0].base_offset, self._stored_log_start()), self._leo
        )
        self._flushed = self._leo
        self._clean_to = min(self._clean_to, self._leo)
        self._set_hw(self._leo, active, active.size)
        self._producers.expire(self._clock_ms())
        self._snapshot_version = self._producers.version
        self._prune_snapshots()
        self._load_epochs()

    def _complete_truncation(
        self, recovery_point: int | None, clean: bool
    ) -> tuple[int | None, bool]:
        """Finish a truncation a crash interrupted (truncation.py); while a
        truncation marker names an offset, the recovery point checkpointed
        before the cut may lie above the log end: recover from the cut."""
        try:
            was = truncation.read_marker(self._dir)
            marker = truncation.complete(self._io, self._dir, self._name)
        except ValueError as exc:
            # written atomically, so damaged at rest: whether a truncation
            # was under way is unknown; rescan everything
            logger.warning(
                "%s: ignoring an unreadable truncation marker (%s); recovering from the start",
                self._name,
                exc,
            )
            remove_marker(self._io, self._dir)
            return None, False
        if marker is None:
            return recovery_point, clean
        self._truncation_marker = marker.offset
        if was is not None and not was.done:
            clean = False
        if recovery_point is not None:
            recovery_point = min(recovery_point, marker.offset)
        return recovery_point, clean

    def _stored_log_start(self) -> int:
        """The log start offset DeleteRecords last moved (0 if never)."""
        try:
            with open(os.path.join(self._dir, LOG_START_FILE), "rb") as f:
                text = f.read(32)
        except FileNotFoundError:
            return 0
        try:
            return max(int(text.decode("ascii")), 0)
        except (UnicodeDecodeError, ValueError):
            logger.warning("%s: ignoring a malformed %s", self._name, LOG_START_FILE)
            return 0

    def _scan_directory(self) -> list[int]:
        """List segment bases; remove .deleted/.tmp leftovers and orphan indexes."""
        logs: set[int] = set()
        indexes: list[tuple[int, str]] = []
        removed = False
        for name in os.listdir(self._dir):
            full = os.path.join(self._dir, name)
            if name == EPOCH_CHECKPOINT_NAME:
                continue
            if name.endswith((DELETED_SUFFIX, TMP_SUFFIX)):
                logger.info("%s: removing leftover %s", self._name, name)
                self._io.unlink(full)
                removed = True
                continue
            if name in (
                LOG_START_FILE,
                TRUNCATION_FILE,
                cleaner.CHECKPOINT_FILE,
                cleaner.MANIFEST_FILE,
            ):
                continue
            parsed = parse_offset_file_name(name)
            if parsed is None:
                logger.warning("%s: ignoring unknown file %s", self._name, name)
                continue
            offset, suffix = parsed
            if suffix == LOG_SUFFIX:
                logs.add(offset)
            elif suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                indexes.append((offset, name))
            elif suffix == SNAPSHOT_SUFFIX:
                self._snapshots.append(offset)
            else:
                logger.warning("%s: ignoring unknown file %s", self._name, name)
        for offset, name in indexes:
            if offset not in logs:
                logger.info("%s: removing orphan index %s", self._name, name)
                self._io.unlink(os.path.join(self._dir, name))
                removed = True
        if removed:
            self._io.fsync_dir(self._dir)
        self._snapshots.sort()
        return sorted(logs)

    def _load_clean_tail(self) -> bool:
        """After a clean shutdown: find the log end from the active segment's
        last index entry and a short header walk. False (fall back to
        recovery) when its index or tail does not check out."""
        seg = self._active
        try:
            oi, ti = seg.read_index_files(_U32 + 1)
            rel, pos = oi.last()
            next_offset = seg.base_offset + rel
            max_ts = ti.last_timestamp
            for p, h in seg.walk(pos, seg.size):
                if h.base_offset != next_offset:
                    raise IndexCorruptError(
                        f"batch at {p} has base offset {h.base_offset}, expected {next_offset}"
                    )
                next_offset = h.next_offset
                max_ts = max(max_ts, h.max_timestamp)
            if ti and ti.rel_offsets[-1] >= next_offset - seg.base_offset:
                raise IndexCorruptError("time index points past the log end")
        except (OSError, IndexCorruptError, CorruptLogError) as exc:
            logger.warning(
                "%s: clean shutdown marker present but %s does not check out (%s); recovering",
                self._name,
                seg.log_path,
                exc,
            )
            return False
        seg.next_offset = next_offset
        seg.set_indexes(oi, ti, max_ts)
        return True

    def _recover(self, recovery_point: int | None) -> None:
        """Scan from the segment holding ``recovery_point - 1``; see open().

        Not the one holding ``recovery_point``: a checkpoint can be written
        when the data was synced up to the end of the active segment, and a
        roll right there then seals that segment (trim, final index entry)
        without making the seal durable; that segment must be rescanned."""
        segs = self._segments
        start = 0
        if recovery_point is not None:
            start = max(0, bisect_right(self._bases, recovery_point - 1) - 1)
        cfg = self._ctx.config
        scan_from = segs[start].base_offset
        # Producer state: the newest snapshot, headers replayed up to the scan
        # start, then the scan feeds every batch from replay_from on.
        snapshot = self._snapshot_at_or_below(None)
        if snapshot is None:
            producers = ProducerStateManager(cfg.producer_id_expiration_ms)
            snapshot_offset = segs[0].base_offset
        else:
            producers, snapshot_offset = snapshot
        if snapshot_offset < scan_from:
            self._replay_headers(producers, snapshot_offset, scan_from)
        replay_from = max(snapshot_offset, scan_from)

        def on_producer_batch(h: BatchHeader, base_offset: int) -> None:
            if base_offset >= replay_from:
                producers.replay(h, base_offset)

        logger.info(
            "%s: recovering from offset %d (%d segment(s) to scan)",
            self._name,
            scan_from,
            len(segs) - start,
        )
        progress = _RecoveryProgress(self._name, len(segs) - start)
        i = start
        while i < len(segs):
            if i > start:
                progress.segment_done(segs[i - 1].size)
            seg = segs[i]
            last = i == len(segs) - 1
            expected_next = None if last else segs[i + 1].base_offset
            file_size = os.stat(seg.log_path).st_size
            fd = os.open(seg.log_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                result = scan_segment(
                    fd,
                    file_size,
                    seg.base_offset,
                    index_interval=cfg.index_interval_bytes,
                    max_index_entries=self._ctx.max_index_entries,
                    max_time_entries=self._ctx.max_time_entries,
                    on_producer_batch=on_producer_batch,
                    allow_gaps=seg.gapped,
                )
            finally:
                os.close(fd)
            reaches_next = not last and result.next_offset == expected_next
            if result.error is None and (last or reaches_next):
                self._adopt_scan(seg, result, file_size)
                if not last:
                    seg.next_offset = expected_next
                i += 1
                continue
            if reaches_next:
                # A sealed segment whose preallocated tail was not trimmed
                # before the crash: its batches reach the next segment's base,
                # nothing is lost. Trim and go on.
                log = logger.info if result.tail_is_zero else logger.warning
                log(
                    "%s: %s ends at byte %d, offset %d; trimming %d %s trailing bytes",
                    self._name,
                    seg.log_path,
                    result.end,
                    result.next_offset,
                    file_size - result.end,
                    "zero" if result.tail_is_zero else "NON-ZERO",
                )
                self._adopt_scan(seg, result, file_size)
                seg.next_offset = expected_next
                i += 1
                continue
            reason = result.error or (
                f"segment ends at offset {result.next_offset}, the next one starts at "
                f"{expected_next}"
            )
            if recovery_point is not None and result.next_offset < recovery_point:
                raise CorruptLogError(
                    seg.log_path, result.end, result.next_offset, recovery_point - 1, reason
                )
            later = segs[i + 1 :]
            dropped = file_size - result.end
            if later or not result.tail_is_zero:
                logger.warning(
                    "%s: torn tail in %s at byte %d (offset %d): %s; dropping %d bytes there "
                    "and %d later segment(s) (%d bytes)",
                    self._name,
                    seg.log_path,
                    result.end,
                    result.next_offset,
                    reason,
                    dropped,
                    len(later),
                    sum(os.stat(s.log_path).st_size for s in later),
                )
            elif dropped:
                logger.info(
                    "%s: %s data ends at byte %d (offset %d); trimming %d zero bytes",
                    self._name,
                    seg.log_path,
                    result.end,
                    result.next_offset,
                    dropped,
                )
            for s in reversed(later):
                for suffix in _SEGMENT_SUFFIXES:
                    with contextlib.suppress(FileNotFoundError):
                        self._io.unlink(s.path(suffix))
                self._dir_changed = True
            del segs[i + 1 :]
            del self._bases[i + 1 :]
            seg.sealed = False
            self._adopt_scan(seg, result, file_size)
            break
        active = self._active
        progress.finished(active.size, active.next_offset)
        active.sealed = False
        if recovery_point is not None and active.next_offset < recovery_point:
            raise CorruptLogError(
                active.log_path,
                active.size,
                active.next_offset,
                recovery_point - 1,
                "data below the recovery point is missing",
            )
        # What was recovered above the recovery point is now the log (it may
        # exist only in the page cache): make it durable so the recovery
        # point can honestly move to the log end. Nothing to do for a log
        # that holds nothing past its recovery point (an idle partition).
        durable_below = -1 if recovery_point is None else recovery_point
        for seg in segs[start:]:
            if seg.size and seg.next_offset > durable_below:
                fd = self._io.open(seg.log_path, os.O_RDONLY)
                try:
                    self._io.fsync(fd)
                finally:
                    os.close(fd)
        if self._dir_changed:
            self._io.fsync_dir(self._dir)
        if active.next_offset < snapshot_offset:
            # The snapshot lies past the recovered end: rebuild from an older one.
            producers = self._producer_state_at(active.next_offset)
        self._producers = producers

    def _adopt_scan(self, seg: Segment, result, file_size: int) -> None:
        seg.set_from_scan(result)
        if file_size != result.end:
            fd = self._io.open(seg.log_path, os.O_RDWR)
            try:
                self._io.ftruncate(fd, result.end)
                self._io.fsync(fd)  # the cut must hold before appends reuse the offsets
            finally:
                os.close(fd)
        seg.allocated = result.end
        if seg.write_index_files():
            self._dir_changed = True

    # --- leader epochs ------------------------------------------------------------

    def _load_epochs(self) -> None:
        """Load the leader-epoch checkpoint, fitted to the recovered log.

        No file (a single node, or a partition never led in an epoch): the
        cache stays empty and batches carry epoch 0. A checkpoint is cut to
        the log's [start, end) (a power cut may have lost records whose epoch
        was checkpointed, retention may have moved the start without the
        rewrite landing). A corrupt checkpoint is rebuilt from the epochs in
        the batch headers -- each batch carries the epoch that wrote it, so
        the rebuilt cache holds every epoch that has records; only an entry
        for an epoch led without writing is lost, which no truncation needs.
        """
        try:
            entries = read_epoch_checkpoint(self._dir)
        except CorruptCheckpointError as exc:
            logger.warning(
                "%s: %s; rebuilding the leader-epoch cache from the batch headers",
                self._name,
                exc,
            )
            cache = self._epochs_from_headers()
            changed = True
        else:
            if entries is None:
                return
            cache = LeaderEpochCache(entries)
            changed = cache.truncate_from_end(self._leo)
            changed = cache.truncate_from_start(self._log_start) or changed
        if changed:
            write_epoch_checkpoint(self._io, self._dir, cache.entries())
        self._epochs = cache
        self._leader_epoch = max(0, cache.latest_epoch)

    def _epochs_from_headers(self) -> LeaderEpochCache:
        """The epoch cache of the batch headers (structural walk, no CRC)."""
        cache = LeaderEpochCache()
        for seg in self._segments:
            for _pos, h in seg.walk(0, seg.size):
                cache.assign(h.leader_epoch, h.base_offset)
        return cache

    @property
    def leader_epoch(self) -> int:
        """The epoch stamped into the header of every batch appended now."""
        return self._leader_epoch

    @property
    def epoch_cache(self) -> LeaderEpochCache:
        """The leader-epoch cache (read it; change it only through this log)."""
        return self._epochs

    def end_offset_for_epoch(self, epoch: int) -> EpochEndOffset:
        """Answer OffsetForLeaderEpoch(``epoch``) from this log (see
        LeaderEpochCache.end_offset_for). A log without a cache (a single
        node) holds only epoch 0, from its start: it answers as if its cache
        were that one entry, as Kafka's single broker does."""
        cache = self._epochs
        if not cache and self._leo > self._log_start:
            cache = LeaderEpochCache([(0, self._log_start)])
        return cache.end_offset_for(epoch, self._leo)

    async def become_leader(self, leader_epoch: int) -> int:
        """Lead this partition in ``leader_epoch`` from the log end: record
        (epoch, log end) in the epoch cache and make the checkpoint durable
        (fsync, off the trio thread) *before* any batch carries the epoch;
        then stamp it into every appended batch. Returns the epoch's start
        offset. Append nothing while this runs. An epoch below the cache's
        latest is refused (ValueError): epochs only increase. A failed write
        takes the partition offline (StorageError), as a failed fsync of
        data does. A log that
        has records but no cache yet (it was a single node's) first gets the
        cache of its batch headers (epoch 0 from the log start)."""
        self._raise_if_unusable()
        if leader_epoch < self._epochs.latest_epoch:
            raise ValueError(
                f"{self._name}: leader epoch {leader_epoch} is below {self._epochs.latest_epoch}"
            )
        start = self._leo
        if not self._epochs and start > self._log_start:
            # records written before any epoch was given (a single node's,
            # all epoch 0): the cache starts from their headers
            cache = self._epochs_from_headers()
        else:
            cache = self._epochs.copy()
        if cache.assign(leader_epoch, start) or cache != self._epochs:
            entries = cache.entries()
            try:
                await trio.to_thread.run_sync(write_epoch_checkpoint, self._io, self._dir, entries)
            except OSError as exc:
                # a failed fsync is never retried (see the module docstring)
                self._go_offline(f"writing the leader-epoch checkpoint failed: {_describe(exc)}")
                raise StorageError(f"partition {self._name} is offline: {exc}") from exc
        if self._leo != start:
            raise RuntimeError(f"{self._name}: appended to while becoming leader")
        self._epochs = cache
        self._leader_epoch = leader_epoch
        return start

    # --- replication: the follower primitives ---------------------------------------

    @property
    def replicated(self) -> bool:
        """Whether the high watermark is the replicas' (set by the replica
        manager through :meth:`set_replicated_high_watermark`) rather than
        the flush mode's. False on a single node."""
        return self._replicated

    @replicated.setter
    def replicated(self, value: bool) -> None:
        self.set_replicated(value)

    def set_replicated(self, replicated: bool, *, high_watermark: int | None = None) -> None:
        """Switch the replicated high-watermark mode on or off.

        On: appends, follower appends and syncs no longer move the high
        watermark; only :meth:`set_replicated_high_watermark` raises it and
        only :meth:`truncate_to` lowers it. The watermark restarts at
        ``high_watermark`` (clamped to [log start, :attr:`durable_offset`]),
        by default at the log start: a log opened after a restart does not
        know which of its records were committed, and serving its log end
        (what a single node does) could show consumers records a new leader
        never had. Call it right after open, before the log is served.

        Off (a single node, or a replica manager giving the partition up):
        the watermark is the flush mode's again, i.e. :attr:`durable_offset`.
        """
        if replicated:
            if self._replicated and high_watermark is None:
                return  # already on: the watermark stays
            self._replicated = True
            start = self._log_start if high_watermark is None else high_watermark
            target = max(self._log_start, min(start, self.durable_offset))
        else:
            if not self._replicated:
                return
            self._replicated = False
            target = self.durable_offset
        offset, seg, pos = self._boundary_at(target)
        self._set_hw(max(offset, self._log_start), seg, pos)

    @property
    def durable_offset(self) -> int:
        """The offset below which the data is as durable as the topic's flush
        mode promises: the fdatasynced end with ``flush = sync``, the log end
        otherwise. What a replica may count toward the high watermark (the
        leader its own, a follower the position it reports by fetching).
        On a single node it equals the high watermark."""
        if self._ctx.config.flush == "sync":
            return min(self._flushed, self._leo)
        return self._leo

    def set_replicated_high_watermark(self, offset: int) -> bool:
        """Raise the high watermark to ``offset`` (replicated mode only;
        RuntimeError otherwise). Never above :attr:`durable_offset` (which is
        at most the log end): a larger offset is clamped to it; never lowered
        (an offset at or below the current watermark changes nothing; only
        :meth:`truncate_to` lowers it). An offset inside a batch is rounded
        down to that batch's start (reads serve whole batches). Wakes the
        high-watermark watchers as an advance does on a single node. Returns
        whether the watermark moved. Synchronous: call it on the trio thread.
        """
        if not self._replicated:
            raise RuntimeError(f"{self._name}: the high watermark is not replicated")
        if self._offline is not None or self._closed or self._truncating:
            return False
        target = min(offset, self.durable_offset)
        if target <= self._hw:
            return False
        boundary, seg, pos = self._boundary_at(target)
        if boundary <= self._hw:
            return False
        self._set_hw(boundary, seg, pos)
        return True

    #: The brief's and i16-roles' name for set_replicated_high_watermark.
    set_high_watermark = set_replicated_high_watermark

    def watch_end(self, wake: Callable[[], object]) -> None:
        """Call ``wake()`` (trio thread, synchronously) whenever the log end or
        :attr:`durable_offset` advances, the log is truncated, goes offline or
        closes, until :meth:`unwatch_end`. For what waits on data past the
        high watermark: a follower fetch's long poll on the leader, the
        leader's high-watermark recomputation after its own sync."""
        self._end_watchers.add(wake)

    def unwatch_end(self, wake: Callable[[], object]) -> None:
        self._end_watchers.discard(wake)

    def _wake_end(self) -> None:
        for wake in tuple(self._end_watchers):
            wake()

    def _wake_idle(self) -> None:
        ev = self._idle_event
        if ev is not None:
            self._idle_event = None
            ev.set()

    async def _begin_truncation(self) -> None:
        """Mark a truncation under way (appends, syncs, retention and
        cleaning stop starting) and wait for those already running."""
        self._truncating = True
        self._truncate_done = trio.Event()
        try:
            while self._syncing or self._retention_running or self._cleaning:
                ev = self._idle_event
                if ev is None:
                    ev = self._idle_event = trio.Event()
                await ev.wait()
            self._raise_if_unusable()
        except BaseException:
            self._end_truncation()
            raise

    def _end_truncation(self) -> None:
        self._truncating = False
        done, self._truncate_done = self._truncate_done, None
        if done is not None:
            done.set()
        self._wake_end()

    async def truncate_to(self, offset: int) -> None:
        """Remove every record at and above ``offset`` (a follower whose log
        diverged from its leader's: replication.truncation decides where).

        ``offset`` must be a batch boundary in [log start, log end]: the log
        end (nothing to cut; the epoch cache is still cut there, see below),
        the base offset of a batch, or the log start itself, which empties
        the log and keeps its start offset (a follower whose leader answered
        an undefined epoch refetches everything). Anything else raises
        :class:`~tailrace.broker.log.errors.TruncationOffsetError` and
        changes nothing.

        Crash-safe: a ``truncate-to`` marker is made durable first; a crash
        before it leaves the old log, a crash after it is completed by the
        next open (the log recovers truncated), never a mix. Then, in a
        worker thread: the cut segment's indexes are cut, later segments are
        deleted (renamed ``.deleted``, then unlinked), the cut segment's log
        file is cut and fsynced, producer snapshots above ``offset`` are
        removed, the directory is fsynced. Then the leader-epoch cache is cut
        from the end at ``offset`` (``truncate_from_end``) and its checkpoint
        rewritten durably, the idempotent-producer state is rebuilt as of
        ``offset`` (snapshot + header replay), and the high watermark and
        recovery point are clamped to ``offset``. The marker stays (it lets
        the next unclean open rescan from ``offset`` although the recovery
        point checkpointed before the cut was higher) until the log manager
        checkpointed a recovery point taken after the cut.

        Waits for a sync in flight; appends (leader or follower), syncs,
        retention and cleaning wait for or skip the truncation. A failed
        syscall takes the partition offline (StorageError); the next open
        completes the truncation. Readers holding a FileSlice past the cut
        may get a short read (a replica's log is not read by consumers above
        the high watermark it is cut to).
        """
        async with self._start_lock:
            self._raise_if_unusable()
            if offset < self._log_start or offset > self._leo:
                raise TruncationOffsetError(
                    f"{self._name}: cannot truncate to {offset}, outside "
                    f"[{self._log_start}, {self._leo}]",
                    offset,
                )
            if offset == self._leo:
                await self._truncate_epochs(offset)
                return
            seg = self._segment_for(offset)
            pos = 0
            if offset != seg.base_offset:
                seg.acquire()
                try:
                    pos, base = seg.find_batch(offset)
                    last = next(seg.walk(pos, seg.size))[1].last_offset
                finally:
                    seg.release()
                if base != offset:
                    if offset == self._log_start:
                        # the start is inside a batch (DeleteRecords): empty
                        # the log at its start
                        await self._reset_locked(offset)
                        return
                    raise TruncationOffsetError(
                        f"{self._name}: cannot truncate to {offset}, inside the batch of "
                        f"offsets {base}..{last}",
                        offset,
                        (base, last),
                    )
            await self._cut_locked(TruncationMarker("cut", offset, seg.base_offset, pos))

    async def _truncate_epochs(self, offset: int) -> None:
        """truncate_to the log end: no record goes, the epoch cache is cut."""
        cache = self._epochs.copy()
        if not cache.truncate_from_end(offset):
            return
        await self._begin_truncation()
        try:
            entries = cache.entries()
            await trio.to_thread.run_sync(write_epoch_checkpoint, self._io, self._dir, entries)
            self._epochs = cache
        except OSError as exc:
            self._go_offline(f"writing the leader-epoch checkpoint failed: {_describe(exc)}")
            raise StorageError(f"partition {self._name} is offline: {exc}") from exc
        finally:
            self._end_truncation()

    def _write_marker(self, marker: TruncationMarker) -> None:
        # worker thread
        write_marker(self._io, self._dir, marker)
        self._io.crash_point("truncation.marked")

    async def _cut_locked(self, marker: TruncationMarker) -> None:
        offset = marker.offset
        await self._begin_truncation()
        gone: list[Segment] = []
        try:
            self._truncations += 1
            self._truncation_marker = offset
            await trio.to_thread.run_sync(self._write_marker, marker)
            # in memory first (readers see the cut log at once), then the files
            i = bisect_right(self._bases, marker.segment_base) - 1
            cut = self._segments[i]
            new = cut.truncated(marker.position, offset)
            index_bytes, timeindex_bytes = new.index_file_bytes
            gone = self._segments[i:]
            self._segments = [*self._segments[:i], new]
            del self._bases[i + 1 :]
            self._unsynced = [x for x in self._unsynced if x not in gone]
            for x in gone:
                self._lru.pop(x.base_offset, None)
                x.close()  # unmapped before its file shrinks; fds when released
            self._leo = offset
            self._flushed = min(self._flushed, offset)
            self._clean_to = min(self._clean_to, offset)
            if self._hw >= offset:
                self._set_hw(offset, new, marker.position)
            elif self._hw_seg is cut:
                self._hw_seg = new
            cache = self._epochs.copy()
            entries = cache.entries() if cache.truncate_from_end(offset) else None
            cleaner_doc = self._clean_checkpoint_if_cut(offset)

            def files() -> None:
                cut_files(self._io, self._dir, marker, index_bytes, timeindex_bytes)
                if entries is not None:
                    write_epoch_checkpoint(self._io, self._dir, entries)
                self._finish_cut(marker, cleaner_doc)

            await trio.to_thread.run_sync(files)
            self._dir_synced_gen = self._dir_gen
            self._epochs = cache
            self._snapshots = [x for x in self._snapshots if x <= offset]
            self._producers = await self._rebuild_producers(offset)
            self._snapshot_version = -1
            logger.info(
                "%s: truncated to offset %d (%d segment(s) removed)",
                self._name,
                offset,
                len(gone) - 1,
            )
        except OSError as exc:
            self._go_offline(f"truncation to {offset} failed: {_describe(exc)}")
            raise StorageError(f"partition {self._name} is offline: {exc}") from exc
        finally:
            self._end_truncation()

    def _write_cleaner_checkpoint(self, doc: bytes) -> None:
        # worker thread
        atomic_write(self._io, os.path.join(self._dir, cleaner.CHECKPOINT_FILE), doc)

    def _finish_cut(self, marker: TruncationMarker, cleaner_doc: bytes | None) -> None:
        """The last steps of a cut's files (worker thread): the cleaner
        checkpoint lowered if the cut went below it, then the marker done."""
        if cleaner_doc is not None:
            atomic_write(self._io, os.path.join(self._dir, cleaner.CHECKPOINT_FILE), cleaner_doc)
        write_marker(self._io, self._dir, marker._replace(done=True))

    def _clean_checkpoint_if_cut(self, offset: int) -> bytes | None:
        """The cleaner checkpoint to write when the cut went below its
        clean_to (the log above the cut is new, nothing of it is clean)."""
        path = os.path.join(self._dir, cleaner.CHECKPOINT_FILE)
        if not os.path.exists(path):
            return None
        stored = cleaner.read_checkpoint(self._dir)
        if stored.clean_to <= offset:
            return None
        return cleaner.CleanerCheckpoint(offset, stored.gaps_below).to_bytes()

    async def _rebuild_producers(self, offset: int) -> ProducerStateManager:
        """Producer state as of ``offset`` (a snapshot and a header replay)
        in a worker thread; the segments it may read stay pinned (open)."""
        snaps = [x for x in self._snapshots if x <= offset]
        start = snaps[0] if snaps else self._segments[0].base_offset
        i = max(0, bisect_right(self._bases, start) - 1)
        pinned = self._segments[i:]
        for x in pinned:
            x.acquire()
        try:
            state = await trio.to_thread.run_sync(self._producer_state_at, offset)
        finally:
            for x in pinned:
                x.release()
                if x.sealed:
                    self._touch(x)
        state.expire(self._clock_ms())
        return state

    async def truncate_fully_and_start_at(self, offset: int) -> None:
        """Empty the log and restart it at ``offset`` (>= the log start, any
        offset, even above the log end): a follower whose leader's log start
        moved past the follower's log end (retention) starts over there, as
        Kafka's truncateFullyAndStartAt. Every segment is deleted, a new
        empty one is created at ``offset``, the log start offset is
        checkpointed at ``offset``, the epoch cache and producer state are
        emptied, the high watermark and recovery point become ``offset``.
        Crash-safe the same way as :meth:`truncate_to`."""
        async with self._start_lock:
            self._raise_if_unusable()
            if offset < self._log_start:
                raise TruncationOffsetError(
                    f"{self._name}: cannot restart at {offset}, below the log start "
                    f"{self._log_start}",
                    offset,
                )
            await self._reset_locked(offset)

    async def _reset_locked(self, offset: int) -> None:
        marker = TruncationMarker("reset", offset, offset, 0)
        await self._begin_truncation()
        try:
            self._truncations += 1
            self._truncation_marker = offset
            await trio.to_thread.run_sync(self._write_marker, marker)
            gone = self._segments
            for x in gone:
                self._lru.pop(x.base_offset, None)
                x.close()
            new = Segment(self._ctx, self._dir, offset, size=0, next_offset=offset, sealed=False)
            new.set_indexes(OffsetIndex(), TimeIndex(), NO_TIMESTAMP)
            self._segments = [new]
            self._bases = [offset]
            self._unsynced = []
            self._leo = self._log_start = self._flushed = offset
            self._clean_to = min(self._clean_to, offset)
            self._set_hw(offset, new, 0)
            self._epochs = LeaderEpochCache()
            self._producers = ProducerStateManager(self._ctx.config.producer_id_expiration_ms)
            self._snapshot_version = -1
            self._snapshots = []
            cleaner_doc = self._clean_checkpoint_if_cut(offset)

            def files() -> None:
                cut_files(self._io, self._dir, marker)
                self._finish_cut(marker, cleaner_doc)

            await trio.to_thread.run_sync(files)
            self._dir_synced_gen = self._dir_gen
            logger.info("%s: emptied, restarting at offset %d", self._name, offset)
        except OSError as exc:
            self._go_offline(f"restarting the log at {offset} failed: {_describe(exc)}")
            raise StorageError(f"partition {self._name} is offline: {exc}") from exc
        finally:
            self._end_truncation()

    @property
    def truncation_generation(self) -> int:
        """A token for :meth:`recovery_point_saved`: read it together with
        :attr:`recovery_point` (no await between); -1 while a truncation
        runs."""
        return -1 if self._truncating else self._truncations

    async def recovery_point_saved(self, generation: int) -> None:
        """The log manager made durable a recovery point it read together
        with ``generation`` (:attr:`truncation_generation`): if no truncation
        happened since, the truncation marker is no longer needed (see
        truncation.py) and is removed."""
        if generation < 0 or self._truncation_marker is None or self._closed:
            return
        async with self._start_lock:
            if generation != self._truncations or self._truncation_marker is None:
                return
            try:
                await trio.to_thread.run_sync(remove_marker, self._io, self._dir)
            except OSError as exc:
                logger.warning("%s: removing the truncation marker failed: %s", self._name, exc)
                return
            self._truncation_marker = None

    async def append_as_follower(self, data: bytes | bytearray | memoryview) -> AppendResult:
        """Append one or more whole batches exactly as the leader stored them.

        The first batch's base offset must be the log end and each next one
        must start where the one before ended (else
        :class:`~tailrace.broker.log.errors.FollowerAppendError`); every
        batch is validated as :meth:`append` validates (bounds, magic 1 or 2,
        CRC-32C, records; a compacted leader's cleaned batches with offset
        gaps are accepted), and on any error nothing is written. Offsets,
        leader epochs and every other byte are kept: the stored bytes are
        the leader's, byte for byte. Producer ids are not checked (the
        leader did): their state is updated from the headers, so a new
        leader deduplicates a producer's retry.

        A batch whose leader epoch is above the epoch cache's latest is
        assigned in the cache (epoch, its base offset) and the checkpoint is
        made durable (fsync in a worker thread) before the batch is
        appended, as :meth:`become_leader` does. Then the bytes are copied
        (segments roll as on append). The flush mode applies as on append:
        ``await log.wait_durable(result)`` before reporting the new log end
        to the leader (flush ``sync``: fdatasync). On a single-node log (not
        replicated) the high watermark moves as an append moves it; in
        replicated mode it does not. Raises the errors :meth:`append` raises;
        StorageError when the checkpoint write fails (offline).
        """
        if self._offline is not None or self._closed or self._truncating:
            self._raise_if_unappendable()
        view = data if type(data) is memoryview else memoryview(data)
        headers, gapped = self._check_follower_batches(view)
        end = headers[-1].next_offset
        cache = self._epochs
        if not cache and self._leo > self._log_start:
            # records from before any epoch was given (a single node's)
            cache = self._epochs_from_headers()
        new_cache = None if cache is self._epochs else cache.copy()
        latest = cache.latest_epoch
        for h in headers:
            if h.leader_epoch > latest:
                if new_cache is None:
                    new_cache = cache.copy()
                new_cache.assign(h.leader_epoch, h.base_offset)
                latest = h.leader_epoch
        gaps_doc = None
        if gapped and self._ctx.gaps_below < end:
            # a compacted leader's cleaned batches: recovery must accept
            # their gaps here too (cleaner.py's gaps_below)
            gaps_doc = cleaner.CleanerCheckpoint(self._clean_to, end).to_bytes()
        if new_cache is not None or gaps_doc is not None:
            async with self._start_lock:
                await self._prepare_follower_append(headers[0].base_offset, new_cache, gaps_doc)
                if gaps_doc is not None:
                    self._ctx.gaps_below = max(self._ctx.gaps_below, end)
                if new_cache is not None:
                    self._epochs = new_cache
                return self._append_follower_now(view, headers)
        return self._append_follower_now(view, headers)

    def _check_follower_batches(self, view: memoryview) -> tuple[list[BatchHeader], bool]:
        """Validate a follower append (nothing written): every batch whole
        and valid, the first at the log end, each where the last ended."""
        n = view.nbytes
        if not n:
            raise InvalidRecordError("empty records section")
        headers = []
        pos = 0
        expected = self._leo
        gapped = False
        while pos < n:
            h = validate_batch(view, pos, max_batch_bytes=_I32_MAX, end=n, allow_gaps=True)
            if h.base_offset != expected:
                where = "the log end" if pos == 0 else "the end of the batch before it"
                raise FollowerAppendError(
                    f"{self._name}: a follower append's batch starts at offset {h.base_offset}, "
                    f"{where} is {expected}",
                    expected,
                    h.base_offset,
                )
            if h.record_count != h.last_offset_delta + 1:
                gapped = True
            expected = h.next_offset
            pos += h.batch_length + 12
            headers.append(h)
        return headers, gapped

    async def _prepare_follower_append(
        self, base: int, cache: LeaderEpochCache | None, gaps_doc: bytes | None
    ) -> None:
        """Make the epoch (and gaps) checkpoints durable before the batches
        that need them are appended."""
        self._raise_if_unappendable()
        entries = cache.entries() if cache is not None else None

        def files() -> None:
            if gaps_doc is not None:
                self._write_cleaner_checkpoint(gaps_doc)
            if entries is not None:
                write_epoch_checkpoint(self._io, self._dir, entries)
            self._io.crash_point("follower.epoch")

        try:
            await trio.to_thread.run_sync(files)
        except OSError as exc:
            self._go_offline(f"writing the leader-epoch checkpoint failed: {_describe(exc)}")
            raise StorageError(f"partition {self._name} is offline: {exc}") from exc
        self._raise_if_unappendable()
        if self._leo != base:
            raise FollowerAppendError(
                f"{self._name}: the log end moved to {self._leo} during a follower append "
                f"at {base}",
                self._leo,
                base,
            )

    def _append_follower_now(self, data: memoryview, headers: list[BatchHeader]) -> AppendResult:
        """The synchronous half of append_as_follower (validated batches
        starting at the log end): copy the bytes as they are."""
        n = data.nbytes
        cfg = self._ctx.config
        base = self._leo
        last = headers[-1].base_offset + headers[-1].last_offset_delta
        max_ts = max(h.max_timestamp for h in headers)
        now = self._clock_ms()
        try:
            seg = self._segment_to_append(n, max_ts, last)
            seg.append_as_is(data, headers)
        except OSError as exc:
            self._go_offline(f"append failed: {_describe(exc)}")
            raise StorageError(f"partition {self._name} is offline: {_describe(exc)}") from exc
        self._leo = last + 1
        self._producers.record(headers, base)
        if cfg.flush != "sync" and not self._replicated:
            self._set_hw(self._leo, seg, seg.size)
        self._wake_end()
        return AppendResult(base, last, now, self._log_start, False)

    # --- producer state loading ---------------------------------------------------

    def _snapshot_at_or_below(self, offset: int | None) -> tuple[ProducerStateManager, int] | None:
        """The newest snapshot (at or below ``offset``, if given) that parses."""
        exp = self._ctx.config.producer_id_expiration_ms
        for snap in reversed(self._snapshots):
            if offset is not None and snap > offset:
                continue
            path = os.path.join(self._dir, offset_file_name(snap, SNAPSHOT_SUFFIX))
            try:
                with open(path, "rb") as f:
                    state, inner = ProducerStateManager.from_snapshot(f.read(), exp)
                if inner != snap:
                    raise ValueError(f"file name says offset {snap}, content {inner}")
            except (OSError, ValueError) as exc:
                logger.warning("%s: ignoring producer snapshot %s: %s", self._name, path, exc)
                continue
            return state, snap
        return None

    def _producer_state_at(self, offset: int) -> ProducerStateManager:
        """Producer state covering every batch below ``offset``: the newest
        snapshot at or below it plus a replay of the batch headers after it."""
        snapshot = self._snapshot_at_or_below(offset)
        if snapshot is None:
            exp = self._ctx.config.producer_id_expiration_ms
            state, start = ProducerStateManager(exp), self._segments[0].base_offset
        else:
            state, start = snapshot
        if start < offset:
            self._replay_headers(state, start, offset)
        return state

    def _replay_headers(self, state: ProducerStateManager, start: int, end: int) -> None:
        """Replay the headers of batches with base offset in [start, end)
        (structural walk, no CRC: this data is below the recovery point or
        was validated when the log was loaded)."""
        i = max(0, bisect_right(self._bases, start) - 1)
        for seg in self._segments[i:]:
            if seg.base_offset >= end:
                return
            for _pos, h in seg.walk(0, seg.size):
                if h.base_offset >= end:
                    return
                if h.base_offset >= start and h.producer_id >= 0:
                    state.replay(h, h.base_offset)

    def _prune_snapshots(self) -> None:
        """Delete snapshots past the log end and all but the newest few."""
        keep = [s for s in self._snapshots if s <= self._leo]
        doomed = [s for s in self._snapshots if s > self._leo] + keep[:-SNAPSHOTS_KEPT]
        for offset in doomed:
            with contextlib.suppress(FileNotFoundError):
                self._io.unlink(os.path.join(self._dir, offset_file_name(offset, SNAPSHOT_SUFFIX)))
        if doomed:
            self._io.fsync_dir(self._dir)
        self._snapshots = keep[-SNAPSHOTS_KEPT:]

    # ------------------------------------------------------------ properties

    @property
    def path(self) -> str:
        return self._dir

    @property
    def config(self) -> LogConfig:
        return self._ctx.config

    @property
    def log_start_offset(self) -> int:
        """The first offset still in the log (moves up with retention)."""
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        """The next offset to be assigned."""
        return self._leo

    @property
    def high_watermark(self) -> int:
        """Consumers read below this offset only (see the module docstring)."""
        return self._hw

    @property
    def recovery_point(self) -> int:
        """Below this offset data and sealed indexes are durable.

        A segment sealed but not yet fsynced caps it at that segment's base:
        when the data was synced while the segment was active and the roll
        came later, its trim and final index entries are not durable yet,
        so recovery must rescan it (a power cut can leave it untrimmed)."""
        if self._unsynced:
            return min(self._flushed, self._unsynced[0].base_offset)
        return self._flushed

    @property
    def offline(self) -> bool:
        return self._offline is not None

    @property
    def offline_reason(self) -> str | None:
        """Why the partition is offline (None while it is not)."""
        return self._offline

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segments(self) -> list[Segment]:
        """The segments, oldest first (read-only view for tools and tests)."""
        return list(self._segments)

    @property
    def producer_state(self) -> ProducerStateManager:
        return self._producers

    @property
    def _active(self) -> Segment:
        return self._segments[-1]

    def _raise_if_unusable(self) -> None:
        if self._offline is not None:
            raise StorageError(f"partition {self._name} is offline: {self._offline}")
        if self._closed:
            raise StorageError(f"partition {self._name} is closed")

    def _raise_if_unappendable(self) -> None:
        self._raise_if_unusable()
        if self._truncating:
            raise StorageError(f"partition {self._name} is being truncated")

    def _go_offline(self, reason: str) -> None:
        if self._offline is None:
            self._offline = reason
            logger.error("partition %s is OFFLINE until restart: %s", self._name, reason)
        self.wake_hw_watchers()
        self._wake_end()

    # ---------------------------------------------------------------- append

    def append(self, records: bytes | bytearray | memoryview) -> AppendResult:
        """Validate and append a records section of one or more batches.

        Every batch is checked first (validate_batch: bounds, magic, CRC,
        record count, ``max_batch_bytes``) and so are idempotent-producer
        sequences; on any error nothing is written. Then offsets are
        assigned, the bytes copied into the active segment's map and the
        batch headers patched in place. Raises InvalidRecordError,
        CorruptRecordError, RecordTooLargeError, the producer errors,
        StorageFullError (nothing written; retry later) or StorageError
        (offline). Synchronous, no await: never yields to other tasks.
        """
        if self._offline is not None or self._closed or self._truncating:
            self._raise_if_unappendable()
        data = records if type(records) is memoryview else memoryview(records)
        n = data.nbytes
        cfg = self._ctx.config
        max_batch = cfg.max_batch_bytes
        headers = []
        pos = 0
        count = 0
        idempotent = False
        max_ts = NO_TIMESTAMP
        while pos < n:
            h = validate_batch(data, pos, max_batch_bytes=max_batch, end=n)
            headers.append(h)
            if h.producer_id >= 0:
                idempotent = True
            if h.max_timestamp > max_ts:
                max_ts = h.max_timestamp
            count += h.record_count  # validated: == last_offset_delta + 1
            pos += h.batch_length + 12
        if not headers:
            raise InvalidRecordError("empty records section")
        if cfg.compact:
            _require_keys(data, headers)
        now = self._clock_ms()
        if idempotent:
            dup = self._producers.check(headers)
            if dup is not None:
                return AppendResult(dup.first_offset, dup.last_offset, now, self._log_start, True)
        base = self._leo
        last = base + count - 1
        try:
            seg = self._segment_to_append(n, max_ts, last)
            seg.append(data, headers, base, self._leader_epoch)
        except OSError as exc:
            self._go_offline(f"append failed: {_describe(exc)}")
            raise StorageError(f"partition {self._name} is offline: {_describe(exc)}") from exc
        self._leo = last + 1
        if idempotent:
            self._producers.record(headers, base)
        if cfg.flush != "sync" and not self._replicated:
            self._set_hw(self._leo, seg, seg.size)
        if self._end_watchers:
            self._wake_end()
        return AppendResult(base, last, now, self._log_start, False)

    def _segment_to_append(self, n: int, max_ts: int, last: int) -> Segment:
        """The active segment, opened for appending and with room for ``n``
        more bytes, rolled first if the batch (largest timestamp ``max_ts``,
        last offset ``last``) would take it past its size, age, offset or
        index limits. Raises OSError."""
        cfg = self._ctx.config
        seg = self._active
        if not seg.writable:
            seg.open_for_append()
        if seg.size and (
            seg.size + n > cfg.segment_bytes
            or (seg.roll_base_ts is not None and max_ts - seg.roll_base_ts > cfg.segment_ms)
            or last - seg.base_offset > _U32
            or seg.index_is_full
        ):
            seg = self._roll()
        seg.ensure_capacity(seg.size + n)
        return seg

    def _roll(self) -> Segment:
        """Seal the active segment and start a new one at the log end.

        The sealed segment is trimmed here; its fsync (and the directory's,
        for the new files) happens in the next sync, off the trio thread, and
        the recovery point moves past it only then.
        """
        old = self._active
        old.seal()
        self._io.crash_point("segment.roll")
        self._unsynced.append(old)
        self._lru[old.base_offset] = old
        new = Segment(self._ctx, self._dir, self._leo, size=0, next_offset=self._leo, sealed=False)
        for suffix in _SEGMENT_SUFFIXES:
            os.close(self._io.open(new.path(suffix), os.O_RDWR | os.O_CREAT | os.O_EXCL))
        self._io.crash_point("segment.created")
        self._dir_gen += 1
        self._segments.append(new)
        self._bases.append(new.base_offset)
        new.open_for_append()
        self._evict_sealed()
        logger.debug("%s: rolled to %s", self._name, new.log_path)
        return new

    # ------------------------------------------------------------ durability

    def _set_hw(self, offset: int, seg: Segment, pos: int) -> None:
        self._hw = offset
        self._hw_seg = seg
        self._hw_pos = pos
        self.wake_hw_watchers()

    def wake_hw_watchers(self) -> None:
        """Wake everything waiting for the next high-watermark advance (called
        at each advance, when going offline or closing, and by the broker
        when it drains, so long polls answer at once)."""
        ev = self._hw_event
        if ev is not None:
            self._hw_event = None
            ev.set()
        for wake in tuple(self._hw_watchers):
            wake()

    def watch_hw(self, wake: Callable[[], object]) -> None:
        """Call ``wake()`` (on the trio thread, synchronously) at every
        high-watermark advance until :meth:`unwatch_hw`. A long poll over
        many partitions registers one callable with each and is woken
        directly, without a waiter task per partition."""
        self._hw_watchers.add(wake)

    def unwatch_hw(self, wake: Callable[[], object]) -> None:
        self._hw_watchers.discard(wake)

    @property
    def hw_event(self) -> trio.Event:
        """An Event set at the next high-watermark advance (or going offline).

        A fresh Event after each advance: read the property again after it
        fires. Lets a long-poll wait for many partitions without polling.
        """
        ev = self._hw_event
        if ev is None:
            ev = self._hw_event = trio.Event()
        return ev

    async def wait_for_high_watermark(self, offset: int) -> None:
        """Wait until the high watermark is above ``offset``."""
        while self._hw <= offset:
            self._raise_if_unusable()
            await self.hw_event.wait()
        await trio.lowlevel.checkpoint()

    async def wait_durable(self, result: AppendResult | int) -> None:
        """Wait until the append (or every offset below an int) is as durable
        as the flush mode promises, i.e. below the high watermark.

        In sync mode this is where fdatasync runs: the first waiter leads a
        sync covering everything appended so far; waiters arriving meanwhile
        share the next one. Raises StorageError if the partition goes offline
        first (a failed fsync): the data must not be acknowledged.
        """
        target = result.last_offset + 1 if isinstance(result, AppendResult) else result
        if self._replicated:
            await self._wait_durable_offset(target)
            return
        if self._hw >= target:
            await trio.lowlevel.checkpoint()
            return
        # Not durable yet: waiting below is the schedule point; only the
        # cancellation check is needed first (saves a task switch per ack).
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._hw < target:
            if await self._wait_truncation(target):
                continue
            closing = self._close_done
            if closing is not None and not closing.is_set():
                await closing.wait()  # a clean close syncs everything: see then
                continue
            self._raise_if_unusable()
            if self._syncing:
                assert self._sync_done is not None
                await self._sync_done.wait()
            else:
                await self._sync(full=True)

    async def _wait_durable_offset(self, target: int) -> None:
        """wait_durable in replicated mode: the durable offset, not the HW."""
        if self.durable_offset >= target:
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        while self.durable_offset < target:
            if await self._wait_truncation(target):
                continue
            closing = self._close_done
            if closing is not None and not closing.is_set():
                await closing.wait()
                continue
            self._raise_if_unusable()
            if self._syncing:
                assert self._sync_done is not None
                await self._sync_done.wait()
            else:
                await self._sync(full=True)

    async def _wait_truncation(self, target: int) -> bool:
        """For durability waits: wait out a truncation under way (True: look
        again); raise OffsetOutOfRangeError when the offsets waited for were
        truncated away (they will never be durable)."""
        if self._truncating:
            assert self._truncate_done is not None
            await self._truncate_done.wait()
            return True
        if target > self._leo and self._offline is None and not self._closed:
            raise OffsetOutOfRangeError(
                f"{self._name}: offsets below {target} are not in the log (it ends at "
                f"{self._leo}): they were truncated"
            )
        return False

    async def flush(self) -> None:
        """Make everything appended so far durable (fdatasync)."""
        target = self._leo
        await trio.lowlevel.checkpoint()
        while self._flushed < min(target, self._leo) or self._unsynced:
            self._raise_if_unusable()
            if self._truncating:
                assert self._truncate_done is not None
                await self._truncate_done.wait()
            elif self._syncing:
                assert self._sync_done is not None
                await self._sync_done.wait()
            else:
                await self._sync(full=True)

    def flush_wanted(self, now_ms: int) -> bool:
        """Whether :meth:`maybe_flush` would sync now (cheap, synchronous:
        a flush loop over many partitions only starts work where needed)."""
        if self._offline is not None or self._closed or self._syncing or self._truncating:
            return False
        mode = self._ctx.config.flush
        if mode == "sync":
            if self._replicated:  # the HW may lag the log end: it is not the synced end
                return self._flushed < self._leo or bool(self._unsynced)
            return self._hw < self._leo or bool(self._unsynced)
        if mode == "interval":
            dirty = self._flushed < self._leo or bool(self._unsynced)
            return dirty and now_ms - self._last_flush_ms >= self._ctx.config.flush_ms
        return bool(self._unsynced)

    async def maybe_flush(self, now_ms: int | None = None) -> None:
        """Called by the broker's flush loop (every few ms to ``flush_ms``).

        sync: syncs data nobody waited for (acks=0); interval: fdatasync when
        ``flush_ms`` has passed; none: only the fsync of segments sealed by a
        roll. Raises StorageError when a sync fails (the partition goes
        offline); the loop should log it and go on with other partitions.
        """
        now = self._clock_ms() if now_ms is None else now_ms
        if not self.flush_wanted(now):
            await trio.lowlevel.checkpoint()
            return
        await self._sync(full=self._ctx.config.flush != "none")

    async def _sync(self, *, full: bool) -> None:
        """One sync round (the group-commit leader). Captures what is appended
        now, fsyncs sealed segments, the directory if segments were created,
        and fdatasyncs the active segment in a worker thread."""
        self._syncing = True
        done = self._sync_done = trio.Event()
        try:
            # Let every task that is runnable now (typically the writers the
            # previous sync just acked) append first, so that they join this
            # sync rather than wait for the next one. Twice: trio may run this
            # task before them within one scheduling batch. (Each turn also
            # polls the sockets, so requests that just arrived join too: that
            # is why these turns stay even when no task is runnable.)
            await trio.lowlevel.cancel_shielded_checkpoint()
            await trio.lowlevel.cancel_shielded_checkpoint()
            sealed = list(self._unsynced)
            active = self._active
            target = self._leo
            target_pos = active.size
            dir_gen = self._dir_gen
            sync_active = full and active.fd >= 0 and self._flushed < target
            pinned = [*sealed, active] if sync_active else sealed
            for seg in pinned:
                seg.refs += 1
            started = time.perf_counter()
            try:
                await self._run_sync(
                    self._sync_files,
                    sealed,
                    dir_gen != self._dir_synced_gen,
                    active if sync_active else None,
                )
            except OSError as exc:
                metrics.FSYNC_FAILURES.inc()
                self._go_offline(f"fsync failed: {_describe(exc)}")
                raise StorageError(
                    f"partition {self._name} is offline: fsync failed: {_describe(exc)}"
                ) from exc
            finally:
                for seg in pinned:
                    seg.release()
            metrics.FSYNC_SECONDS.observe(time.perf_counter() - started)
            for seg in sealed:
                seg.close_index_fds()
                if seg in self._unsynced:
                    self._unsynced.remove(seg)
            self._dir_synced_gen = max(self._dir_synced_gen, dir_gen)
            if full:
                advanced = target > self._flushed
                self._flushed = max(self._flushed, target)
                self._last_flush_ms = self._clock_ms()
                if self._ctx.config.flush == "sync" and target > self._hw and not self._replicated:
                    self._set_hw(target, active, target_pos)
                if advanced and self._end_watchers:
                    self._wake_end()
            elif sealed:
                self._flushed = max(self._flushed, sealed[-1].next_offset)
            self._evict_sealed()
        finally:
            self._syncing = False
            done.set()
            self._wake_idle()

    def _sync_files(self, sealed: list[Segment], sync_dir: bool, active: Segment | None) -> None:
        # Worker thread: only fds and the seam, no shared Python state.
        for seg in sealed:
            seg.sync_files()
        if sync_dir:
            self._io.fsync_dir(self._dir)
        if active is not None:
            self._io.fdatasync(active.fd)

    # ------------------------------------------------------------------ read

    def _segment_for(self, offset: int) -> Segment:
        seg = self._segments[bisect_right(self._bases, offset) - 1]
        if seg.sealed:
            self._touch(seg)
        return seg

    def _touch(self, seg: Segment) -> None:
        self._lru.pop(seg.base_offset, None)
        self._lru[seg.base_offset] = seg
        self._evict_sealed()

    def _evict_sealed(self) -> None:
        excess = len(self._lru) - MAX_OPEN_SEALED
        if excess <= 0:
            return
        for base in list(self._lru)[:-1]:
            if self._lru[base].close_if_idle():
                del self._lru[base]
                excess -= 1
                if not excess:
                    return

    def _check_offset(self, offset: int) -> None:
        if offset < self._log_start or offset > self._leo:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self._log_start}, {self._leo}] of {self._name}"
            )

    def read(self, offset: int, max_bytes: int, *, up_to: int | None = None) -> FileSlice | None:
        """Whole batches from the one holding ``offset``, below the HW.

        Returns None when ``offset`` is at (or, in sync mode, past) the high
        watermark. The slice starts at the batch holding ``offset`` (so it
        may begin below it: consumers skip those records), holds only whole
        batches of one segment, at most ``max_bytes`` unless the first batch
        alone is larger (it is then returned whole, so a consumer always makes
        progress). Raises OffsetOutOfRangeError below the log start or above
        the log end. Release the slice when done (``with``).

        ``up_to`` (replicas only: a follower fetching from its leader) reads
        whole batches below ``up_to`` instead of below the high watermark,
        typically ``up_to=log.log_end_offset``; it is capped at the log end,
        and an ``up_to`` inside a batch stops before that batch.
        """
        self._raise_if_unusable()
        self._check_offset(offset)
        if up_to is None or up_to == self._hw:
            limit, limit_seg, limit_pos = self._hw, self._hw_seg, self._hw_pos
        else:
            limit, limit_seg, limit_pos = self._boundary_at(min(up_to, self._leo))
        while offset < limit:
            seg = self._segment_for(offset)
            seg.acquire()  # the fd for the header walk, then for the reader
            try:
                pos, first = seg.find_batch(offset)
                if seg is limit_seg:
                    end, end_offset = limit_pos, limit
                else:
                    end, end_offset = seg.size, seg.next_offset
                if pos < end and end - pos > max_bytes:
                    end, end_offset = seg.last_boundary(pos, pos + max(max_bytes, 0), end)
            except BaseException:
                seg.release()
                raise
            if pos < end:
                return FileSlice(seg, pos, end - pos, first, end_offset - 1)
            # a compacted segment with nothing left at or after ``offset``
            seg.release()
            offset = end_offset
        return None

    def _boundary_at(self, offset: int) -> tuple[int, Segment, int]:
        """(b, segment, position) of the last batch boundary b <= ``offset``
        (``offset`` in [log start, log end]): the log end is the active
        segment's size; any other offset is looked up (index floor and a
        header walk) and rounded down to the start of its batch."""
        active = self._active
        if offset >= self._leo:
            return self._leo, active, active.size
        seg = self._segment_for(offset)
        if offset == seg.base_offset:
            return offset, seg, 0
        seg.acquire()
        try:
            pos, base = seg.find_batch(offset)
        finally:
            seg.release()
        return base, seg, pos

    def position_of(self, offset: int) -> LogPosition:
        """Where the batch holding ``offset`` starts (for available_bytes)."""
        self._raise_if_unusable()
        self._check_offset(offset)
        while offset < self._hw:
            seg = self._segment_for(offset)
            pos, _first = seg.find_batch(offset)
            if pos < seg.size or seg is self._hw_seg or not seg.sealed:
                return LogPosition(offset, seg.base_offset, pos)
            offset = seg.next_offset  # compacted away up to the segment's end
        seg = self._hw_seg
        assert seg is not None
        return LogPosition(offset, seg.base_offset, self._hw_pos)

    def available_bytes(self, position: LogPosition) -> int:
        """Bytes between ``position`` and the high watermark, from segment
        sizes only (no lookup): what a long-poll compares with min_bytes."""
        if position.offset >= self._hw:
            return 0
        hw_seg = self._hw_seg
        assert hw_seg is not None
        total = 0
        i = max(0, bisect_right(self._bases, position.segment_base) - 1)
        for seg in self._segments[i:]:
            start = position.position if seg.base_offset == position.segment_base else 0
            if seg is hw_seg:
                return total + max(0, self._hw_pos - start)
            total += max(0, seg.size - start)
        return total

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        """The first record (below the HW) with a timestamp >= ``timestamp``,
        found through the time index and one decoded batch; None if none."""
        self._raise_if_unusable()
        hw = self._hw
        for seg in list(self._segments):
            if seg.base_offset >= hw:
                break
            if seg.sealed:
                self._touch(seg)
            if seg.max_timestamp < timestamp:
                continue
            rel = seg.time_rel_below(timestamp)
            start_offset = seg.base_offset + rel + 1 if rel >= 0 else seg.base_offset
            if start_offset >= min(seg.next_offset, hw):
                continue
            end = self._hw_pos if seg is self._hw_seg else seg.size
            pos, _ = seg.find_batch(start_offset)
            for p, h in seg.walk(pos, end):
                if h.max_timestamp < timestamp:
                    continue
                raw = seg.pread(p, h.batch_length + 12)
                # any magic; offsets from the format (magic 2: offset deltas)
                for offset, ts, _key, _value, _headers in iter_records(raw, h):
                    if ts >= timestamp:
                        return TimestampOffset(offset, ts)
        return None

    # -------------------------------------------------------------- retention

    async def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete whole segments past ``retention_ms`` (by their largest
        record timestamp) or beyond ``retention_bytes``, oldest first, never
        at or above the high watermark; advances the log start offset.

        If every segment, the active one included, has expired, the active
        segment is rolled first so the log can empty. Crash-safe (files are
        renamed to ``.deleted`` before they are unlinked) and safe against
        readers (a FileSlice keeps its fd open). Returns segments deleted.
        """
        if (
            self._offline is not None
            or self._closed
            or self._retention_running
            or self._cleaning
            or self._truncating
        ):
            return 0
        cfg = self._ctx.config
        deleted_records = len(self._segments) > 1 and self._bases[1] <= self._log_start
        by_retention = cfg.delete and (cfg.retention_ms >= 0 or cfg.retention_bytes >= 0)
        if not by_retention and not deleted_records:
            return 0  # cleanup_policy = compact: the cleaner's job, not retention's
        now = self._clock_ms() if now_ms is None else now_ms
        excess = self.size_bytes - cfg.retention_bytes if cfg.retention_bytes >= 0 else 0
        victims: list[Segment] = []
        for seg in self._segments:
            if seg.size == 0 or seg.next_offset > self._hw:
                break
            if self._syncing and seg in self._unsynced:
                break  # a sync is using it; next time
            if seg.sealed:
                self._touch(seg)
            by_time = (
                by_retention
                and cfg.retention_ms >= 0
                and now - seg.max_timestamp > cfg.retention_ms
            )
            by_size = by_retention and cfg.retention_bytes >= 0 and excess >= seg.size
            # below the start DeleteRecords set (left by it while a sync ran)
            by_start = seg.next_offset <= self._log_start and seg is not self._active
            if not (by_time or by_size or by_start):
                break
            victims.append(seg)
            excess -= seg.size
        if not victims:
            return 0
        self._retention_running = True
        try:
            if victims[-1] is self._active:
                try:
                    if not self._active.writable:
                        self._active.open_for_append()
                    self._roll()
                except OSError as exc:
                    self._go_offline(f"roll for retention failed: {_describe(exc)}")
                    raise StorageError(f"partition {self._name} is offline: {exc}") from exc
            self._log_start = max(self._log_start, self._segments[len(victims)].base_offset)
            await self._drop_segments(victims, "retention")
        finally:
            self._retention_running = False
            self._wake_idle()
        return len(victims)

    async def _drop_segments(self, victims: list[Segment], why: str) -> None:
        """Remove ``victims`` (the oldest segments, wholly below the log
        start offset, the active one not among them) from the log, then
        delete their files in a worker thread."""
        self._unsynced = [s for s in self._unsynced if s not in victims]
        del self._segments[: len(victims)]
        del self._bases[: len(victims)]
        if self._flushed < self._log_start:
            self._flushed = self._log_start
        if self._hw_seg in victims:
            first = self._segments[0]
            self._hw_seg, self._hw_pos = first, 0
        for seg in victims:
            self._lru.pop(seg.base_offset, None)
        deleted_bytes = sum(s.size for s in victims)
        metrics.RETENTION_DELETED_SEGMENTS.inc(len(victims))
        metrics.RETENTION_DELETED_BYTES.inc(deleted_bytes)
        logger.info(
            "%s: %s deleted %d segment(s) (%d bytes); log start offset now %d",
            self._name,
            why,
            len(victims),
            deleted_bytes,
            self._log_start,
        )
        try:
            await trio.to_thread.run_sync(self._delete_segment_files, victims)
            # the leader-epoch cache starts at the log start too
            if self._epochs.truncate_from_start(self._log_start):
                entries = self._epochs.entries()
                await trio.to_thread.run_sync(write_epoch_checkpoint, self._io, self._dir, entries)
        except OSError as exc:
            self._go_offline(f"deleting segments failed: {_describe(exc)}")
            raise StorageError(f"partition {self._name} is offline: {exc}") from exc
        finally:
            for seg in victims:
                seg.close()

    # ------------------------------------------------------- delete records

    async def delete_records(self, offset: int) -> int:
        """Kafka's DeleteRecords: move the log start offset up to ``offset``
        (-1: the high watermark); returns the new log start (the low
        watermark). Offsets below it are gone for readers at once (reads
        there raise OffsetOutOfRangeError; a read from it returns the whole
        batch that holds it, as Kafka does), the new start is checkpointed
        in the partition's ``log-start-offset`` file before it applies (so a
        restart keeps it), and segments wholly below it are deleted as
        retention deletes them. Never moves the start down; an offset above
        the high watermark raises OffsetOutOfRangeError."""
        async with self._start_lock:
            self._raise_if_unusable()
            target = self._hw if offset == DELETE_TO_HIGH_WATERMARK else offset
            if target < 0 or target > self._hw:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is outside [0, {self._hw}] (the high watermark) of "
                    f"{self._name}"
                )
            if target <= self._log_start:
                return self._log_start
            path = os.path.join(self._dir, LOG_START_FILE)
            try:
                await trio.to_thread.run_sync(atomic_write, self._io, path, b"%d" % target)
            except OSError as exc:
                raise StorageError(
                    f"{self._name}: writing the log start offset failed: {_describe(exc)}"
                ) from exc
            self._log_start = max(self._log_start, target)
            if self._retention_running:
                return self._log_start  # its segments go with the next retention pass
            victims: list[Segment] = []
            for i, seg in enumerate(self._segments[:-1]):  # never the active one
                if self._segments[i + 1].base_offset > self._log_start:
                    break
                if self._syncing and seg in self._unsynced:
                    break  # a sync is using it: the next retention pass takes it
                victims.append(seg)
            if victims:
                self._retention_running = True
                try:
                    await self._drop_segments(victims, "DeleteRecords")
                finally:
                    self._retention_running = False
                    self._wake_idle()
            return self._log_start

    def _delete_segment_files(self, victims: list[Segment]) -> None:
        # Worker thread. The directory is synced first so that a segment
        # created by the roll above exists durably before older ones vanish
        # (else a crash could leave an empty directory and reuse offsets).
        io = self._io
        io.fsync_dir(self._dir)
        renamed = []
        for seg in victims:
            for suffix in _SEGMENT_SUFFIXES:
                src = seg.path(suffix)
                try:
                    io.rename(src, src + DELETED_SUFFIX)
                except FileNotFoundError:
                    continue
                renamed.append(src + DELETED_SUFFIX)
        io.fsync_dir(self._dir)
        io.crash_point("retention.renamed")
        for path in renamed:
            io.unlink(path)
        io.fsync_dir(self._dir)

    # -------------------------------------------------------------- cleaning

    @property
    def clean_to(self) -> int:
        """Below this offset the log is compacted (cleaner.py)."""
        return self._clean_to

    @property
    def dirty_bytes(self) -> tuple[int, int]:
        """(bytes of sealed segments not cleaned yet, bytes of all sealed
        segments)."""
        return cleaner.dirty_bytes(self._segments, self._clean_to)

    @property
    def dirty_ratio(self) -> float:
        """Share of the sealed segments' bytes not cleaned yet (0.0 when
        there are none): what min_cleanable_dirty_ratio is compared with."""
        dirty, total = self.dirty_bytes
        return dirty / total if total else 0.0

    def _plan_clean(
        self, settings: cleaner.CleanerSettings, throttle: cleaner.Throttle, now: int, force: bool
    ) -> cleaner.CleanJob | None:
        """Pick and pin what to clean (trio thread, no await)."""
        cfg = self._ctx.config
        picked = cleaner.plan(
            self._segments,
            clean_to=self._clean_to,
            high_watermark=self._hw,
            unsynced=self._unsynced,
            now_ms=now,
            min_ratio=cfg.min_cleanable_dirty_ratio,
            min_lag_ms=cfg.min_compaction_lag_ms,
            max_lag_ms=cfg.max_compaction_lag_ms,
            force=force,
        )
        if picked is None:
            return None
        segments, dirty_start = picked
        sources = []
        try:
            for seg in segments:
                seg.acquire()
                sources.append(seg)
                # loaded now, from the old files: readers that use this
                # segment object while the files are swapped stay consistent
                seg.offset_index  # noqa: B018
                seg.time_index  # noqa: B018
        except BaseException:
            for seg in sources:
                seg.release()
            raise
        keep_empty = {
            (pid, b.first_offset)
            for pid, entry in self._producers.producers.items()
            for b in entry.batches
        }
        return cleaner.CleanJob(
            directory=self._dir,
            io=self._io,
            sources=[
                cleaner.SourceSegment(s, s.base_offset, s.next_offset, s.size, s.fd, s.log_path)
                for s in segments
            ],
            dirty_start=dirty_start,
            now_ms=now,
            delete_retention_ms=cfg.delete_retention_ms,
            max_map_bytes=settings.key_map_bytes,
            index_interval=cfg.index_interval_bytes,
            max_index_entries=self._ctx.max_index_entries,
            max_time_entries=self._ctx.max_time_entries,
            keep_empty=keep_empty,
            gaps_below=self._ctx.gaps_below,
            throttle=throttle,
        )

    async def clean(
        self,
        settings: cleaner.CleanerSettings | None = None,
        throttle: cleaner.Throttle | None = None,
        *,
        now_ms: int | None = None,
        force: bool = False,
        limiter: trio.CapacityLimiter | None = None,
    ) -> cleaner.CleanResult | None:
        """Compact the sealed segments if the topic is compacted and due
        (``force``: whatever the dirty ratio and max lag). The file work runs
        in a worker thread (``limiter``: the cleaner's thread count); appends
        and reads go on meanwhile. Returns what it did, or None. Raises
        cleaner.CleanerStopped when ``throttle`` was stopped, StorageError
        when the files could not be written (the partition goes offline if
        the swap had been committed: recovery finishes it at the next
        start)."""
        if (
            not self._ctx.config.compact
            or self._offline is not None
            or self._closed
            or self._cleaning
            or self._retention_running
            or self._truncating
        ):
            return None
        settings = settings or cleaner.CleanerSettings()
        throttle = throttle or cleaner.Throttle(settings.io_max_bytes_per_s)
        now = self._clock_ms() if now_ms is None else now_ms
        job = self._plan_clean(settings, throttle, now, force)
        if job is None:
            return None
        self._cleaning = True
        try:
            try:
                result = await trio.to_thread.run_sync(cleaner.run_job, job, limiter=limiter)
            except (OSError, BrokerError) as exc:
                # a failed syscall, or stored data that does not decode
                # (corruption at rest): this cleaning stops, nothing it had
                # not committed is left, the partition stays online
                metrics.CLEANER_FAILURES.inc()
                reason = _describe(exc) if isinstance(exc, OSError) else str(exc)
                if job.committed:  # the swap is half done: recovery finishes it
                    self._go_offline(f"cleaner swap failed: {reason}")
                raise StorageError(f"partition {self._name}: cleaning failed: {reason}") from exc
            if result is None:
                return None
            self._adopt_cleaned(job, result)
            return result
        finally:
            self._cleaning = False
            self._wake_idle()
            for src in job.sources:
                src.segment.release()

    def _adopt_cleaned(self, job: cleaner.CleanJob, result: cleaner.CleanResult) -> None:
        """Put the new segments in place of the old ones (trio thread). The
        old Segment objects close once their readers release them."""
        self._ctx.gaps_below = result.gaps_below
        self._clean_to = result.clean_to
        by_base = {s.base_offset: s for s in result.segments}
        for i, seg in enumerate(self._segments):
            new = by_base.get(seg.base_offset)
            if new is None or not seg.sealed:
                continue
            fresh = Segment(
                self._ctx,
                self._dir,
                new.base_offset,
                size=new.size,
                next_offset=seg.next_offset,
                sealed=True,
            )
            fresh.set_indexes(new.offset_index, new.time_index, new.max_timestamp)
            fresh.roll_base_ts = seg.roll_base_ts
            self._segments[i] = fresh
            # its index arrays are loaded: let the LRU close it like any other
            self._lru.pop(seg.base_offset, None)
            self._lru[seg.base_offset] = fresh
            seg.close()
        self._evict_sealed()
        now = self._clock_ms()
        self.last_clean = (now, result)
        metrics.CLEANER_RUNS.inc()
        metrics.CLEANER_READ_BYTES.inc(result.bytes_read)
        metrics.CLEANER_WRITTEN_BYTES.inc(result.bytes_written)
        metrics.CLEANER_SECONDS.inc(result.seconds)
        logger.info(
            "%s: cleaned %d segment(s) up to offset %d: %d -> %d bytes, %d records kept, "
            "%d removed, %.3f s%s",
            self._name,
            len(result.segments),
            result.clean_to,
            result.bytes_read,
            result.bytes_written,
            result.records_kept,
            result.records_removed,
            result.seconds,
            " (key map full: more passes to come)" if result.map_full else "",
        )

    # --------------------------------------------------------------- config

    def update_config(self, config: LogConfig) -> None:
        """Apply an altered config to the open log (AlterConfigs).

        Segment and index settings apply from the next append or roll;
        switching ``flush`` away from sync moves the high watermark to the
        log end at once (the page cache is then the durability point).
        """
        self._ctx.config = config
        self._producers.expiration_ms = config.producer_id_expiration_ms
        if config.flush != "sync" and self._offline is None:
            if self._replicated:
                if self._flushed < self._leo:
                    self._wake_end()  # the durable offset is the log end now
            elif self._hw < self._leo:
                active = self._active
                self._set_hw(self._leo, active, active.size)

    # ------------------------------------------------------------ snapshots

    async def write_producer_snapshot(self) -> bool:
        """Write a producer-state snapshot at the log end if the state changed
        since the last one (called at checkpoints). Returns whether it wrote."""
        if self._closed:
            return False  # e.g. its topic was deleted while a checkpoint ran
        self._raise_if_unusable()
        if self._producers.version == self._snapshot_version:
            return False
        self._producers.expire(self._clock_ms())
        version = self._producers.version
        offset = self._leo
        data = self._producers.snapshot_bytes(offset)
        doomed = self._plan_snapshot(offset)
        await trio.to_thread.run_sync(self._write_snapshot_file, offset, data, doomed)
        self._snapshot_version = version
        return True

    def _plan_snapshot(self, offset: int) -> list[int]:
        """Record a new snapshot offset; returns the old ones to delete."""
        if offset not in self._snapshots:
            self._snapshots.append(offset)
        doomed = self._snapshots[:-SNAPSHOTS_KEPT]
        del self._snapshots[:-SNAPSHOTS_KEPT]
        return doomed

    def _write_snapshot_file(self, offset: int, data: bytes, doomed: list[int]) -> None:
        # Worker thread (or close()): files only, bookkeeping was done by the caller.
        path = os.path.join(self._dir, offset_file_name(offset, SNAPSHOT_SUFFIX))
        atomic_write(self._io, path, data)
        for old in doomed:
            with contextlib.suppress(FileNotFoundError):
                self._io.unlink(os.path.join(self._dir, offset_file_name(old, SNAPSHOT_SUFFIX)))

    # ---------------------------------------------------------------- close

    async def aclose(self) -> bool:
        """Flush, trim the active segment, snapshot producer state, close.

        Returns True for a clean close (the broker may then write its clean
        shutdown marker), False when the partition was offline or a sync
        failed: its files are then closed as they are and the next start
        recovers them.
        """
        while self._syncing or self._truncating:
            if self._truncating:
                assert self._truncate_done is not None
                await self._truncate_done.wait()
            else:
                assert self._sync_done is not None
                await self._sync_done.wait()
        plan = self._prepare_close()
        if plan is None:
            return False
        done = self._close_done = trio.Event()
        try:
            await trio.to_thread.run_sync(self._finish_close_files, *plan)
        except OSError as exc:
            return self._close_failed(exc)
        else:
            self._release_all()
            return True
        finally:
            done.set()

    def close(self) -> bool:
        """Synchronous :meth:`aclose` for tools and tests outside trio (it
        blocks on fsync). Must not run while an async sync is in flight."""
        assert not self._syncing, "close() during a sync: use aclose()"
        plan = self._prepare_close()
        if plan is None:
            return False
        try:
            self._finish_close_files(*plan)
        except OSError as exc:
            return self._close_failed(exc)
        self._release_all()
        return True

    def _prepare_close(self) -> tuple[list[Segment], Segment, int, bytes | None, list[int]] | None:
        """Trio-thread half of close; None when there is nothing clean to do."""
        if self._closed:
            return None
        if self._offline is not None:
            self.abandon()
            return None
        self._closed = True
        active = self._active
        try:
            active.trim()
        except OSError as exc:
            self._close_failed(exc)
            return None
        self._producers.expire(self._clock_ms())
        snap = None
        doomed: list[int] = []
        if self._producers.version != self._snapshot_version or (
            self._producers and self._leo not in self._snapshots
        ):
            snap = self._producers.snapshot_bytes(self._leo)
            doomed = self._plan_snapshot(self._leo)
        return list(self._unsynced), active, self._leo, snap, doomed

    def _finish_close_files(
        self,
        sealed: list[Segment],
        active: Segment,
        leo: int,
        snap: bytes | None,
        doomed: list[int],
    ) -> None:
        for seg in sealed:
            seg.sync_files()
        if active.writable:
            active.sync_files()
        self._io.fsync_dir(self._dir)
        if snap is not None:
            self._write_snapshot_file(leo, snap, doomed)

    def _close_failed(self, exc: OSError) -> bool:
        self._go_offline(f"close failed: {_describe(exc)}")
        self.abandon()
        return False

    def _release_all(self) -> None:
        # Everything was synced: writers still waiting for an ack get it.
        self._unsynced.clear()
        self._flushed = self._leo
        active = self._active
        if self._hw < self._leo and not self._replicated:
            self._set_hw(self._leo, active, active.size)
        self._wake_end()
        for seg in self._segments:
            seg.close()
        self._lru.clear()

    def abandon(self) -> None:
        """Close every fd and map without flushing, trimming or writing, as a
        crash would leave the files (tests; the broker's fatal-error path)."""
        self._closed = True
        for seg in self._segments:
            seg.close()
        self._lru.clear()
        self.wake_hw_watchers()
        self._wake_end()


#: Seconds between two "recovery progress" lines of one partition.
RECOVERY_PROGRESS_INTERVAL_S = 5.0


class _RecoveryProgress:
    """Logs a line every RECOVERY_PROGRESS_INTERVAL_S while one partition's
    recovery scans segments, and a summary if it took that long, so that an
    operator watching a slow start sees what it is doing."""

    def __init__(self, name: str, segments: int) -> None:
        self.name = name
        self.segments = segments
        self.done = 0
        self.bytes = 0
        self.started = self.last = time.monotonic()
        self.reported = False

    def segment_done(self, size: int) -> None:
        self.done += 1
        self.bytes += size
        now = time.monotonic()
        if now - self.last >= RECOVERY_PROGRESS_INTERVAL_S:
            self.last = now
            self.reported = True
            log_event(
                logger,
                logging.INFO,
                "recovery progress",
                partition=self.name,
                segments_scanned=f"{self.done}/{self.segments}",
                bytes_scanned=self.bytes,
                elapsed_s=round(now - self.started, 1),
            )

    def finished(self, size: int, log_end_offset: int) -> None:
        elapsed = time.monotonic() - self.started
        if self.reported or elapsed >= RECOVERY_PROGRESS_INTERVAL_S:
            log_event(
                logger,
                logging.INFO,
                "recovered",
                partition=self.name,
                segments_scanned=self.done + 1,
                bytes_scanned=self.bytes + size,
                elapsed_s=round(elapsed, 1),
                log_end_offset=log_end_offset,
            )


def _require_keys(data: memoryview, headers: list[BatchHeader]) -> None:
    """A compacted topic keeps the latest record per key: a record without
    one could never be superseded nor deleted, so it is refused
    (INVALID_RECORD, Kafka's answer) and nothing of the append is written.
    Decodes the records: only compacted topics pay for it."""
    pos = 0
    for h in headers:
        for offset, _ts, key, _value, _headers in iter_records(data, h, pos):
            if key is None:
                raise InvalidRecordError(
                    f"record {offset - h.base_offset} of a batch has no key: "
                    "a compacted topic (cleanup_policy compact) needs a key on every record"
                )
        pos += h.batch_length + 12


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{name} {exc.strerror or exc}".strip()
