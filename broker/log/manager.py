"""The data directory: every topic's partition logs, their configs and the
per-directory recovery metadata.

Layout (docs/format.md, "Storage", has the byte formats)::

    data_dir/
      ~lock                    flock()ed while a broker owns the directory
      ~clean-shutdown          present only between a clean close and the next open
      ~recovery-points         per partition recovery point (atomic rewrite)
      <topic>/topic.json       partition count, config overrides and, in cluster
                               mode, the topic's etcd create revision (atomic rewrite)
      <topic>/<partition>/     one PartitionLog each
      ~staging-<hex>/          a topic being created (removed at open)
      ~deleting-<hex>/         a topic being deleted (removed at open)

Names starting with ``~`` cannot collide with topics: topic names are
``[A-Za-z0-9._-]{1,249}`` (not ``.`` or ``..``), checked before any path is
built from them.

Crash safety: a topic is built complete in a staging directory and renamed
into place; a deleted topic is renamed away before it is removed; every file
rewrite is write-temp, fsync, rename, fsync-directory. A restart therefore
never sees a half-made or half-deleted topic.

The broker owns the housekeeping loops. It calls :meth:`flush_due` every few
ms (interval flushes, syncs nobody waited for, roll fsyncs),
:meth:`checkpoint` every minute or so, :meth:`enforce_retention` every few
minutes, and :meth:`aclose` at shutdown; :meth:`run_maintenance` is a
ready-made loop doing exactly that, to start in the broker's nursery.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import crc32c
import trio

from tailrace.client.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    StorageError,
    StorageFullError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from .config import LogConfig
from .errors import CorruptLogError
from .files import TMP_SUFFIX, atomic_write
from .partition import PartitionLog, init_partition_dir
from .storage_io import StorageIO
from .syncer import SyncThread

__all__ = ["LogManager", "TopicInfo", "validate_topic_name"]

logger = logging.getLogger(__name__)

LOCK_FILE = "~lock"
CLEAN_MARKER = "~clean-shutdown"
CHECKPOINT_FILE = "~recovery-points"
STAGING_PREFIX = "~staging-"
DELETING_PREFIX = "~deleting-"
TOPIC_CONFIG_FILE = "topic.json"
MAX_PARTITIONS = 10_000
_CHECKPOINT_HEADER = "tailrace-recovery-points 1"
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a valid topic name, else InvalidTopicError.

    Valid: 1-249 characters from ``[A-Za-z0-9._-]``, and not ``.`` or ``..``.
    No separator can pass, so a valid name is always one path component.
    """
    if not isinstance(name, str) or not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        shown = (
            repr(name) if not isinstance(name, str) or len(name) < 60 else repr(name[:60]) + "..."
        )
        raise InvalidTopicError(
            f"invalid topic name {shown}: use 1-249 characters from [A-Za-z0-9._-], not '.' or '..'"
        )
    return name


class TopicInfo(NamedTuple):
    name: str
    partitions: int
    #: The keys this topic sets itself (stored in topic.json).
    overrides: dict[str, Any]
    #: Broker defaults with the overrides applied.
    config: LogConfig
    #: In cluster mode, the create revision of the topic's key in etcd when
    #: this copy was made (0: a local topic): a copy whose revision the
    #: cluster no longer has belongs to a deleted topic (stored in topic.json).
    cluster_revision: int = 0


def _storage_error(what: str, exc: OSError) -> StorageError:
    cls = StorageFullError if exc.errno in (errno.ENOSPC, errno.EDQUOT) else StorageError
    return cls(f"{what}: {exc}")


class LogManager:
    """Owns one data directory. Create with :meth:`open` (synchronous)."""

    def __init__(
        self,
        data_dir: str,
        defaults: LogConfig,
        io: StorageIO,
        clock_ms: Callable[[], int],
        lock_fd: int,
    ) -> None:
        """Use :meth:`open`."""
        self.data_dir = data_dir
        self.defaults = defaults
        self._io = io
        self._clock_ms = clock_ms
        self._lock_fd = lock_fd
        self._topics: dict[str, TopicInfo] = {}
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        #: Partitions refused at open (corruption): (topic, partition) -> error.
        self.failed: dict[tuple[str, int], StorageError] = {}
        #: Recovery points read at open, kept for partitions that failed to load.
        self._loaded_points: dict[tuple[str, int], int] = {}
        self._pending: set[str] = set()
        self._meta_lock = trio.Lock()
        self._checkpoint_lock = trio.Lock()
        self._closed = False
        #: runs the partitions' sync rounds (syncer.py), stopped at close
        self._syncer = SyncThread()
        #: Whether the previous shutdown was clean (the marker was present).
        self.clean_start = False

    # ----------------------------------------------------------------- open

    @classmethod
    def open(
        cls,
        data_dir: str,
        defaults: LogConfig | None = None,
        *,
        io: StorageIO | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> LogManager:
        """Lock ``data_dir`` (created if missing) and load every topic.

        A partition refused by recovery (CorruptLogError) does not stop the
        others: it is listed in :attr:`failed` and :meth:`get` raises its
        error. Raises StorageError if another process holds the directory.
        Synchronous and possibly slow (recovery): a broker may run it in a
        worker thread.
        """
        io = io or StorageIO()
        defaults = defaults or LogConfig()
        clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        if not os.path.isdir(data_dir):
            os.makedirs(data_dir, exist_ok=True)
            io.fsync_dir(os.path.dirname(os.path.abspath(data_dir)))
        lock_fd = os.open(os.path.join(data_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StorageError(f"data directory {data_dir} is in use by another process") from None
        manager = cls(data_dir, defaults, io, clock_ms, lock_fd)
        try:
            manager._load()
        except BaseException:
            manager._abandon()
            raise
        return manager

    def _load(self) -> None:
        io = self._io
        self._remove_leftovers()
        marker = os.path.join(self.data_dir, CLEAN_MARKER)
        self.clean_start = os.path.exists(marker)
        fresh = not any(n != LOCK_FILE for n in os.listdir(self.data_dir))
        self._loaded_points = self._read_checkpoint()
        started = time.monotonic()
        for name in sorted(os.listdir(self.data_dir)):
            path = os.path.join(self.data_dir, name)
            if name.startswith("~") or not os.path.isdir(path):
                continue
            try:
                validate_topic_name(name)
            except InvalidTopicError:
                logger.warning("ignoring directory %s: not a topic name", path)
                continue
            self._load_topic(name)
        if self.clean_start:
            io.unlink(marker)
            io.fsync_dir(self.data_dir)
        logger.info(
            "loaded %d topic(s), %d partition(s) from %s in %.2f s (%s)%s",
            len(self._topics),
            len(self._logs),
            self.data_dir,
            time.monotonic() - started,
            "a new data directory"
            if fresh
            else ("clean shutdown before" if self.clean_start else "unclean shutdown before"),
            f"; {len(self.failed)} partition(s) refused" if self.failed else "",
        )

    def _remove_leftovers(self) -> None:
        removed = False
        for name in os.listdir(self.data_dir):
            path = os.path.join(self.data_dir, name)
            if name.startswith((STAGING_PREFIX, DELETING_PREFIX)):
                logger.info("removing unfinished topic operation %s", path)
                self._io.rmtree(path)
                removed = True
            elif name.startswith("~") and name.endswith(TMP_SUFFIX):
                self._io.unlink(path)
                removed = True
        if removed:
            self._io.fsync_dir(self.data_dir)

    def _load_topic(self, name: str) -> None:
        path = os.path.join(self.data_dir, name)
        try:
            with open(os.path.join(path, TOPIC_CONFIG_FILE), "rb") as f:
                doc = json.loads(f.read())
            partitions = doc["partitions"]
            overrides = doc["overrides"]
            cluster_revision = doc.get("cluster_revision", 0)
            if type(cluster_revision) is not int or cluster_revision < 0:
                raise ValueError(f"bad cluster revision {cluster_revision!r}")
            if doc.get("format") != 1 or doc.get("name") != name:
                raise ValueError("unknown format or wrong name")
            if type(partitions) is not int or not 1 <= partitions <= MAX_PARTITIONS:
                raise ValueError(f"bad partition count {partitions!r}")
            config = self.defaults.with_overrides(overrides)
        except (OSError, ValueError, KeyError, TypeError, InvalidConfigError) as exc:
            logger.error("topic %s not loaded: %s is unusable: %s", name, TOPIC_CONFIG_FILE, exc)
            self.failed[(name, -1)] = StorageError(f"topic {name}: config file unusable: {exc}")
            return
        self._topics[name] = TopicInfo(name, partitions, dict(overrides), config, cluster_revision)
        for p in range(partitions):
            key = (name, p)
            try:
                self._logs[key] = PartitionLog.open(
                    os.path.join(path, str(p)),
                    config,
                    recovery_point=self._loaded_points.get(key),
                    clean=self.clean_start,
                    io=self._io,
                    clock_ms=self._clock_ms,
                    syncer=self._syncer,
                )
            except StorageError as exc:
                logger.error("partition %s-%d refused: %s", name, p, exc)
                self.failed[key] = exc

    # ----------------------------------------------------------- lookups

    def topics(self) -> dict[str, TopicInfo]:
        return dict(self._topics)

    def has_topic(self, name: str) -> bool:
        """Whether topic ``name`` exists here (no copy of the topic table)."""
        return name in self._topics

    def topic(self, name: str) -> TopicInfo:
        info = self._topics.get(name)
        if info is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        return info

    def get(self, topic: str, partition: int) -> PartitionLog:
        """The log of a partition; UnknownTopicOrPartitionError, or the
        StorageError that refused it at open."""
        log = self._logs.get((topic, partition))
        if log is not None:
            return log
        failed = self.failed.get((topic, partition))
        if failed is not None:
            if isinstance(failed, CorruptLogError):  # a fresh copy, same code and offsets
                raise CorruptLogError(
                    failed.path,
                    failed.position,
                    failed.first_offset,
                    failed.last_offset,
                    failed.reason,
                )
            raise StorageError(failed.message)
        raise UnknownTopicOrPartitionError(f"unknown topic or partition {topic}-{partition}")

    def logs(self) -> Iterator[tuple[tuple[str, int], PartitionLog]]:
        return iter(list(self._logs.items()))

    # ------------------------------------------------------- topic changes

    async def create_topic(
        self,
        name: str,
        partitions: int,
        overrides: Mapping[str, Any] | None = None,
        *,
        cluster_revision: int = 0,
    ) -> TopicInfo:
        """Create a topic crash-safely: built in a staging directory, renamed
        into place, then opened (``cluster_revision``: TopicInfo's). Validates
        everything before touching disk:
        InvalidTopicError, TopicAlreadyExistsError, InvalidPartitionsError,
        InvalidConfigError; a disk error raises StorageError/StorageFullError."""
        validate_topic_name(name)
        if type(partitions) is not int or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(
                f"partition count {partitions!r} is outside [1, {MAX_PARTITIONS}]"
            )
        over = dict(overrides or {})
        config = self.defaults.with_overrides(over)
        stored = {k: getattr(config, k) for k in over}
        self._check_open()
        if name in self._topics or name in self._pending or (name, -1) in self.failed:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        self._pending.add(name)
        try:
            async with self._meta_lock:
                try:
                    await trio.to_thread.run_sync(
                        self._build_topic, name, partitions, stored, cluster_revision
                    )
                except FileExistsError as exc:
                    raise TopicAlreadyExistsError(f"topic {name!r} already exists on disk") from exc
                except OSError as exc:
                    raise _storage_error(f"cannot create topic {name}", exc) from exc
            path = os.path.join(self.data_dir, name)
            info = TopicInfo(name, partitions, stored, config, cluster_revision)
            for p in range(partitions):
                self._logs[(name, p)] = PartitionLog.open(
                    os.path.join(path, str(p)),
                    config,
                    recovery_point=0,
                    clean=True,
                    io=self._io,
                    clock_ms=self._clock_ms,
                    syncer=self._syncer,
                )
            self._topics[name] = info
        finally:
            self._pending.discard(name)
        logger.info("created topic %s with %d partition(s)", name, partitions)
        return info

    def _build_topic(
        self, name: str, partitions: int, overrides: dict[str, Any], cluster_revision: int
    ) -> None:
        io = self._io
        target = os.path.join(self.data_dir, name)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", target)
        staging = os.path.join(self.data_dir, STAGING_PREFIX + uuid.uuid4().hex)
        try:
            io.mkdir(staging)
            _write_file(
                io,
                os.path.join(staging, TOPIC_CONFIG_FILE),
                _topic_doc(name, partitions, overrides, cluster_revision),
            )
            for p in range(partitions):
                init_partition_dir(os.path.join(staging, str(p)), io)
            io.fsync_dir(staging)
            io.crash_point("topic.create.staged")
            io.rename(staging, target)
        except BaseException:
            with contextlib.suppress(OSError):
                io.rmtree(staging)
            raise
        io.fsync_dir(self.data_dir)

    async def grow_topic(self, name: str, partitions: int) -> TopicInfo:
        """Raise a topic's partition count to ``partitions`` (never lower:
        records keep their partitions). Crash-safe in this order: the new
        partition directories are made and synced, then topic.json names the
        new count (the commit point), then the new logs open. A crash before
        the commit leaves directories no topic.json names: the next grow
        replaces them. InvalidPartitionsError for a count not above the
        current one or above the maximum; nothing changes then."""
        validate_topic_name(name)
        self._check_open()
        info = self.topic(name)
        if type(partitions) is not int or not info.partitions < partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(
                f"topic {name!r} has {info.partitions} partition(s); a new count must be "
                f"above that and at most {MAX_PARTITIONS} (not {partitions!r})"
            )
        async with self._meta_lock:
            info = self.topic(name)  # the lock may have waited on another change
            if partitions <= info.partitions:
                raise InvalidPartitionsError(
                    f"topic {name!r} already has {info.partitions} partition(s)"
                )
            try:
                await trio.to_thread.run_sync(self._grow_topic_dirs, info, partitions)
            except OSError as exc:
                raise _storage_error(f"cannot add partitions to {name}", exc) from exc
            path = os.path.join(self.data_dir, name)
            for p in range(info.partitions, partitions):
                self._logs[(name, p)] = PartitionLog.open(
                    os.path.join(path, str(p)),
                    info.config,
                    recovery_point=0,
                    clean=True,
                    io=self._io,
                    clock_ms=self._clock_ms,
                    syncer=self._syncer,
                )
            info = info._replace(partitions=partitions, overrides=dict(info.overrides))
            self._topics[name] = info
        logger.info("grew topic %s to %d partition(s)", name, partitions)
        return info

    def _grow_topic_dirs(self, info: TopicInfo, new: int) -> None:
        io = self._io
        name, old = info.name, info.partitions
        topic_dir = os.path.join(self.data_dir, name)
        for p in range(old, new):
            part = os.path.join(topic_dir, str(p))
            if os.path.lexists(part):  # left by a grow that crashed before its commit
                io.rmtree(part)
            init_partition_dir(part, io)
        io.fsync_dir(topic_dir)
        io.crash_point("topic.grow.dirs")
        atomic_write(
            io,
            os.path.join(topic_dir, TOPIC_CONFIG_FILE),
            _topic_doc(name, new, dict(info.overrides), info.cluster_revision),
        )

    async def delete_topic(self, name: str) -> None:
        """Delete a topic: unregister it, close its logs (readers keep their
        slices until released), rename its directory away, remove it."""
        validate_topic_name(name)
        self._check_open()
        if name not in self._topics and not any(t == name for t, _p in self.failed):
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        info = self._topics.pop(name, None)
        for key in [k for k in self.failed if k[0] == name]:
            del self.failed[key]
        if info is not None:
            for p in range(info.partitions):
                log = self._logs.pop((name, p), None)
                if log is not None:
                    log.abandon()
        async with self._meta_lock:
            try:
                await trio.to_thread.run_sync(self._remove_topic_dir, name)
            except OSError as exc:
                raise _storage_error(f"cannot delete topic {name}", exc) from exc
        logger.info("deleted topic %s", name)

    def _remove_topic_dir(self, name: str) -> None:
        io = self._io
        doomed = os.path.join(self.data_dir, DELETING_PREFIX + uuid.uuid4().hex)
        io.rename(os.path.join(self.data_dir, name), doomed)
        io.fsync_dir(self.data_dir)
        io.crash_point("topic.delete.renamed")
        io.rmtree(doomed)
        io.fsync_dir(self.data_dir)

    async def alter_topic_config(
        self,
        name: str,
        set_keys: Mapping[str, Any] | None = None,
        delete_keys: Iterable[str] = (),
    ) -> TopicInfo:
        """Set and/or remove (back to the broker default) topic config keys,
        durably, then apply them to the open logs. InvalidConfigError names
        a bad key or value and changes nothing."""
        info = self.topic(name)
        over = dict(info.overrides)
        for key in delete_keys:
            if key not in LogConfig.field_names():
                raise InvalidConfigError(f"{key}: unknown log config key")
            over.pop(key, None)
        over.update(set_keys or {})
        config = self.defaults.with_overrides(over)
        stored = {k: getattr(config, k) for k in over}
        async with self._meta_lock:
            path = os.path.join(self.data_dir, name, TOPIC_CONFIG_FILE)
            doc = _topic_doc(name, info.partitions, stored, info.cluster_revision)
            try:
                await trio.to_thread.run_sync(atomic_write, self._io, path, doc)
            except OSError as exc:
                raise _storage_error(f"cannot store config of {name}", exc) from exc
        info = info._replace(overrides=stored, config=config)
        if name in self._topics:
            self._topics[name] = info
            for p in range(info.partitions):
                log = self._logs.get((name, p))
                if log is not None:
                    log.update_config(config)
        return info

    # -------------------------------------------------------- housekeeping

    async def flush_due(self, now_ms: int | None = None) -> None:
        """Let every log flush what its mode wants now (see maybe_flush).
        A failing partition goes offline; that is logged and the rest go on."""
        now = self._clock_ms() if now_ms is None else now_ms

        async def one(key: tuple[str, int], log: PartitionLog) -> None:
            try:
                await log.maybe_flush(now)
            except StorageError as exc:
                logger.error("flush of %s-%d failed: %s", key[0], key[1], exc)

        async with trio.open_nursery() as nursery:
            for key, log in self.logs():
                if log.flush_wanted(now):
                    nursery.start_soon(one, key, log)

    async def enforce_retention(self, now_ms: int | None = None) -> int:
        """Apply retention to every log; returns the segments deleted."""
        now = self._clock_ms() if now_ms is None else now_ms
        deleted = 0
        for key, log in self.logs():
            try:
                deleted += await log.enforce_retention(now)
            except StorageError as exc:
                logger.error("retention on %s-%d failed: %s", key[0], key[1], exc)
        return deleted

    async def checkpoint(self) -> None:
        """Write producer snapshots and the recovery-point file.

        A log's recovery point only ever covers data that was flushed (its
        sealed segments' indexes included), so writing it needs no flush of
        its own: the flush came first by construction.
        """
        async with self._checkpoint_lock:
            for key, log in self.logs():
                if log.offline:
                    continue
                try:
                    await log.write_producer_snapshot()
                except (StorageError, OSError) as exc:
                    logger.error("producer snapshot of %s-%d failed: %s", key[0], key[1], exc)
            # read with the points, no await between: a truncation marker
            # may go once a point taken after its cut is durable
            generations = [(log, log.truncation_generation) for _key, log in self.logs()]
            await trio.to_thread.run_sync(self._write_checkpoint, self._recovery_points())
            for log, generation in generations:
                await log.recovery_point_saved(generation)

    def _recovery_points(self) -> dict[tuple[str, int], int]:
        points = {k: v for k, v in self._loaded_points.items() if k in self.failed}
        for key, log in self._logs.items():
            points[key] = log.recovery_point
        return points

    def _write_checkpoint(self, points: dict[tuple[str, int], int]) -> None:
        lines = [_CHECKPOINT_HEADER, str(len(points))]
        lines += [f"{t} {p} {off}" for (t, p), off in sorted(points.items())]
        body = ("\n".join(lines) + "\n").encode()
        data = body + f"crc32c {crc32c.crc32c(body):08x}\n".encode()
        path = os.path.join(self.data_dir, CHECKPOINT_FILE)
        atomic_write(self._io, path, data, crash_point="checkpoint.written")

    def _read_checkpoint(self) -> dict[tuple[str, int], int]:
        path = os.path.join(self.data_dir, CHECKPOINT_FILE)
        try:
            with open(path, "rb") as f:
                data = f.read(64 * 1024 * 1024)
        except FileNotFoundError:
            return {}
        try:
            return parse_checkpoint(data)
        except (ValueError, InvalidTopicError) as exc:
            logger.warning("%s unusable (%s): recovering every partition from its start", path, exc)
            return {}

    async def run_maintenance(
        self,
        *,
        flush_tick_ms: int = 50,
        checkpoint_interval_ms: int = 60_000,
        retention_check_ms: int = 300_000,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The housekeeping loop, for the broker to start in its nursery."""
        next_checkpoint = trio.current_time() + checkpoint_interval_ms / 1000
        next_retention = trio.current_time() + retention_check_ms / 1000
        task_status.started()
        while True:
            await trio.sleep(flush_tick_ms / 1000)
            await self.flush_due()
            now = trio.current_time()
            if now >= next_retention:
                await self.enforce_retention()
                next_retention = now + retention_check_ms / 1000
            if now >= next_checkpoint:
                await self.checkpoint()
                next_checkpoint = now + checkpoint_interval_ms / 1000

    # ---------------------------------------------------------------- close

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the log manager is closed")

    async def aclose(self) -> bool:
        """Close every log, write the final checkpoint and, if everything
        closed cleanly, the clean-shutdown marker. Returns whether it did."""
        if self._closed:
            return False
        self._closed = True
        clean = not self.failed
        try:
            for _key, log in self.logs():
                clean = await log.aclose() and clean
            await trio.to_thread.run_sync(self._write_checkpoint, self._recovery_points())
            if clean:
                marker = os.path.join(self.data_dir, CLEAN_MARKER)
                stamp = f"tailrace clean shutdown {self._clock_ms()}\n".encode()
                await trio.to_thread.run_sync(atomic_write, self._io, marker, stamp)
        finally:
            self._abandon()
        return clean

    def _abandon(self) -> None:
        self._closed = True
        for _key, log in self.logs():
            log.abandon()
        self._syncer.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def parse_checkpoint(data: bytes) -> dict[tuple[str, int], int]:
    """Parse a recovery-point file (format in docs/format.md); ValueError."""
    body, sep, trailer = data.rpartition(b"crc32c ")
    if not sep or trailer[-1:] != b"\n":
        raise ValueError("no CRC line")
    if int(trailer[:-1], 16) != crc32c.crc32c(body):
        raise ValueError("CRC-32C mismatch")
    lines = body.decode().split("\n")
    if lines[0] != _CHECKPOINT_HEADER or lines[-1] != "":
        raise ValueError("unknown header")
    count = int(lines[1])
    entries = lines[2:-1]
    if len(entries) != count:
        raise ValueError(f"declares {count} entries, holds {len(entries)}")
    points = {}
    for line in entries:
        topic, part, offset = line.split(" ")
        points[(validate_topic_name(topic), int(part))] = int(offset)
    return points


def _topic_doc(
    name: str, partitions: int, overrides: dict[str, Any], cluster_revision: int = 0
) -> bytes:
    doc: dict[str, Any] = {"format": 1, "name": name, "partitions": partitions}
    doc["overrides"] = overrides
    if cluster_revision:
        doc["cluster_revision"] = cluster_revision
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def _write_file(io: StorageIO, path: str, data: bytes) -> None:
    fd = io.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        io.pwrite(fd, data, 0)
        io.fsync(fd)
    finally:
        os.close(fd)
