"""Committed offsets, stored in the broker's own log: ``__consumer_offsets``.

Why a topic: the log already gives crash safety (CRC-checked batches,
recovery truncating a torn tail), durability per flush mode with group
commit, and tooling (dump-log). Nothing is ever rewritten in place: a commit
is an append, a deletion is a tombstone (records.py has the format).

Durability: :meth:`OffsetStore.append` appends synchronously (so commits on
one connection reach the log in request order); the caller awaits
:meth:`OffsetStore.wait_durable` before acknowledging. The topic is created
with ``flush = sync``, so an acknowledged commit survives ``kill -9`` and
power loss; an operator who alters the topic's flush mode gets that mode's
promise instead. Entries become visible (OffsetFetch, describe) only once
durable, and in log order (``on_durable`` is called in append order), so a
reader never sees an offset that a crash could take back: committed offsets
never go backwards through a restart.

Bounded growth: snapshot, then size retention. The topic has time retention
off and ``retention_bytes`` R. Size retention always keeps at least the
newest R bytes (it deletes whole oldest segments only while what remains is
at least R). So the store keeps this invariant: *the newest complete
snapshot starts within the newest R bytes of the log*. When more than R/2
bytes follow the last snapshot's start, the append that crossed the line
also appends a new snapshot (every live entry, between begin and end
markers), in the same synchronous step. A snapshot is kept below R/8 by
raising R (AlterConfigs on the topic) from the coordinator's background
loop as the number of committed offsets grows. On load, records before the
newest complete snapshot are superseded by it; older segments are deleted
by the broker's ordinary retention pass.

Compaction (the default since the log cleaner exists, issue 17): the topic
is created with ``cleanup_policy = compact`` and no retention, so the
cleaner keeps the latest record of every (group, topic, partition) key and
drops a deleted entry's tombstone after ``delete_retention_ms``; no
snapshot is written (they need ``retention_bytes`` >= 0). An offsets topic
created before, with ``delete``, is switched to ``compact`` at load
(check_topic_config). Loading reads records by their own offsets (a
compacted log has gaps) and accepts a snapshot from which the cleaner
removed superseded entries (its end marker then counts more entries than
are left). ``StoreSettings(cleanup_policy="delete")`` keeps the snapshot
scheme (tests, and operators who prefer it).

Cluster mode (issue 16, rule 8): ``__consumer_offsets`` is a replicated
topic of many partitions; one OffsetStore per partition this broker leads
(``partition``, ``replicas``: the broker's ReplicaManager). An append is
checked against the leadership first (NOT_COORDINATOR when this broker no
longer leads the partition, COORDINATOR_NOT_AVAILABLE when the ISR is below
``min_insync_replicas``) and is durable once the high watermark covers it
(acks=all): :meth:`OffsetStore.wait_durable` raises NOT_COORDINATOR when the
leadership ends first (the commit may or may not survive; the client
commits again at the new coordinator). Loading reads the partition up to
its high watermark, which the coordinator lets it do only once the new
leader's watermark is established (every record of earlier epochs
committed). The topic's configuration is the cluster's (etcd), never
altered here.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import (
    BrokerError,
    CoordinatorNotAvailableError,
    CorruptRecordError,
    InvalidRecordError,
    NotCoordinatorError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderOrFollowerError,
    TopicAlreadyExistsError,
)
from tailrace.client.records import build_batch, iter_headers, iter_records, validate_batch

from ..log.manager import LogManager
from ..log.partition import AppendResult, PartitionLog
from .records import (
    KIND_OFFSET,
    KIND_SNAPSHOT_BEGIN,
    KIND_SNAPSHOT_END,
    CorruptOffsetsRecord,
    OffsetEntry,
    decode_count,
    decode_key,
    decode_offset_value,
    encode_offset,
    encode_snapshot_marker,
)

if TYPE_CHECKING:
    from ..cluster.replicas import Leadership, ReplicaManager

__all__ = ["OFFSETS_TOPIC", "Appended", "OffsetStore", "StoreSettings"]

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"

TP = tuple[str, int]
#: (group, (topic, partition), entry or None for a deletion)
Change = tuple[str, TP, OffsetEntry | None]

MiB = 1024 * 1024
#: Bytes of records per batch when writing a snapshot.
SNAPSHOT_BATCH_BYTES = 256 * 1024
#: Estimated bytes per entry beyond its key and value (record framing).
_ENTRY_OVERHEAD = 8


class StoreSettings:
    """Shape of the offsets topic. The defaults suit production; tests pass
    small sizes to watch snapshots and retention work."""

    def __init__(
        self,
        *,
        retention_bytes: int = 32 * MiB,
        segment_bytes: int = 8 * MiB,
        preallocate_bytes: int = 1 * MiB,
        cleanup_policy: str = "compact",
    ) -> None:
        self.retention_bytes = retention_bytes
        self.segment_bytes = segment_bytes
        self.preallocate_bytes = preallocate_bytes
        self.cleanup_policy = cleanup_policy

    def topic_config(self) -> dict[str, object]:
        compact = self.cleanup_policy == "compact"
        return {
            "flush": "sync",
            "cleanup_policy": self.cleanup_policy,
            "retention_ms": -1,
            "retention_bytes": -1 if compact else self.retention_bytes,
            "segment_bytes": self.segment_bytes,
            "preallocate_bytes": self.preallocate_bytes,
        }


@dataclass(frozen=True, slots=True)
class Appended:
    """An append to await (:meth:`OffsetStore.wait_durable`) before answering."""

    result: AppendResult
    #: cluster mode: the leadership the append was checked against
    lead: Leadership | None = None
    #: the offsets partition written
    partition: int = 0

    @property
    def last_offset(self) -> int:
        return self.result.last_offset


def _as_coordinator_error(exc: BrokerError) -> BrokerError:
    """A replication error as a group client reads it (Kafka's mapping)."""
    if isinstance(exc, NotLeaderOrFollowerError):
        return NotCoordinatorError(f"{exc.message}: find the coordinator again")
    if isinstance(exc, NotEnoughReplicasError | NotEnoughReplicasAfterAppendError):
        return CoordinatorNotAvailableError(exc.message)
    return exc


class OffsetStore:
    """The offsets log: load, append, durability, snapshots."""

    def __init__(
        self,
        manager: LogManager,
        on_durable: Callable[[str, TP, OffsetEntry | None], None],
        settings: StoreSettings | None = None,
        clock_ms: Callable[[], int] | None = None,
        *,
        partition: int = 0,
        replicas: ReplicaManager | None = None,
    ) -> None:
        self.manager = manager
        self.partition = partition
        self.replicas = replicas
        self.settings = settings or StoreSettings()
        self.on_durable = on_durable
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        #: Every entry as appended (durable or not), group -> tp -> entry:
        #: what a snapshot must hold.
        self.view: dict[str, dict[TP, OffsetEntry]] = {}
        self.log: PartitionLog | None = None
        self._pending: deque[tuple[int, list[Change]]] = deque()
        self._since_snapshot = 0
        self._live_bytes = 0
        self._entry_bytes: dict[tuple[str, TP], int] = {}
        self._snapshot_id = 0
        self._create_lock = trio.Lock()
        #: Snapshots written since start (for tests and the log).
        self.snapshots_written = 0

    # --- load --------------------------------------------------------------

    async def load(self) -> None:
        """Read the whole offsets log (if the topic exists) into the view and
        report every live entry through ``on_durable``."""
        if OFFSETS_TOPIC not in self.manager.topics():
            return
        plog = self.manager.get(OFFSETS_TOPIC, self.partition)
        state: dict[tuple[str, TP], OffsetEntry] = {}
        # Every offset record applies to the state; a snapshot's records are
        # the state at its time, so applying them changes nothing but can
        # restore entries whose older records retention deleted. A complete
        # snapshot (end marker with the begin marker's id) also drops every
        # key it does not hold: those were deleted before it.
        snapshot_keys: set[tuple[str, TP]] | None = None
        snapshot_id = -1
        total = 0
        last_snapshot_start = 0
        pending_start = 0
        found_snapshot = False
        offset = plog.log_start_offset
        start = offset
        hw = plog.high_watermark
        compacted = plog.config.compact
        while offset < hw:
            fslice = plog.read(offset, 4 * MiB)
            if fslice is None:
                break
            try:
                data = await trio.to_thread.run_sync(fslice.read_bytes)
            finally:
                fslice.release()
            next_offset = offset
            for pos, header in iter_headers(data):
                try:
                    validate_batch(data, pos, max_batch_bytes=len(data), allow_gaps=True)
                    # offsets from the records: a compacted log has gaps
                    records = list(iter_records(data, header, pos))
                except (CorruptRecordError, InvalidRecordError) as exc:
                    raise CorruptOffsetsRecord(
                        f"{OFFSETS_TOPIC} batch at offset {header.base_offset}: {exc.message}"
                    ) from exc
                for record_offset, timestamp, key, value, _headers in records:
                    if record_offset < offset:
                        continue
                    try:
                        kind, fields = decode_key(key)
                        if kind == KIND_OFFSET:
                            group, topic, partition = fields
                            entry = decode_offset_value(value, timestamp)
                            k = (group, (topic, partition))
                            if entry is None:
                                state.pop(k, None)
                            else:
                                state[k] = entry
                            if snapshot_keys is not None:
                                snapshot_keys.add(k)
                        elif kind == KIND_SNAPSHOT_BEGIN:
                            snapshot_keys = set()
                            snapshot_id = fields[0]
                            pending_start = total
                        else:
                            count = decode_count(value)
                            if snapshot_keys is not None and fields[0] == snapshot_id:
                                # the cleaner may have removed superseded
                                # entries of a snapshot: fewer, never more
                                if count < len(snapshot_keys) or (
                                    count > len(snapshot_keys) and not compacted
                                ):
                                    raise CorruptOffsetsRecord(
                                        f"snapshot {snapshot_id} ends with count {count} "
                                        f"but holds {len(snapshot_keys)} entries"
                                    )
                                for k in [k for k in state if k not in snapshot_keys]:
                                    del state[k]
                                found_snapshot = True
                                last_snapshot_start = pending_start
                            snapshot_keys = None
                            self._snapshot_id = max(self._snapshot_id, fields[0] + 1)
                    except CorruptOffsetsRecord as exc:
                        raise CorruptOffsetsRecord(
                            f"{OFFSETS_TOPIC} offset {record_offset}: {exc}"
                        ) from exc
                total += header.size
                next_offset = header.next_offset
            if next_offset <= offset:
                raise CorruptOffsetsRecord(
                    f"{OFFSETS_TOPIC}: no whole batch readable at offset {offset}"
                )
            offset = next_offset
        if snapshot_keys is not None:
            log.warning(
                "%s: snapshot %d at the end of the log is incomplete (a crash tore it); "
                "using the state before it",
                OFFSETS_TOPIC,
                snapshot_id,
            )
        if start > 0 and not found_snapshot:
            log.error(
                "%s starts at offset %d without a complete snapshot: offsets committed "
                "before it may be missing",
                OFFSETS_TOPIC,
                start,
            )
        self.log = plog
        self._since_snapshot = total - last_snapshot_start
        for (group, tp), entry in state.items():
            self.view.setdefault(group, {})[tp] = entry
            self._account(group, tp, entry)
            self.on_durable(group, tp, entry)
        log.info(
            "%s-%d loaded: %d committed offsets in %d groups from offsets %d-%d",
            OFFSETS_TOPIC,
            self.partition,
            len(state),
            len(self.view),
            start,
            offset,
        )
        if self.replicas is None:  # the cluster's topic config is etcd's
            await self.check_topic_config()

    # --- the log -------------------------------------------------------------

    async def ensure_log(self) -> None:
        """Create the offsets topic if it does not exist yet (first commit)."""
        if self.log is not None:
            return
        async with self._create_lock:
            if self.log is not None:
                return
            if OFFSETS_TOPIC not in self.manager.topics():
                try:
                    await self.manager.create_topic(OFFSETS_TOPIC, 1, self.settings.topic_config())
                    log.info("created %s", OFFSETS_TOPIC)
                except TopicAlreadyExistsError:
                    pass
            self.log = self.manager.get(OFFSETS_TOPIC, 0)

    @property
    def ready(self) -> bool:
        return self.log is not None

    def append(self, changes: list[Change]) -> Appended:
        """Append ``changes`` as one batch (synchronously, no await) and
        update the view; call :meth:`wait_durable` before acknowledging.
        Raises the log's BrokerError (StorageError, StorageFullError) and,
        in cluster mode, NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE, and
        then changes nothing."""
        plog = self.log
        assert plog is not None, "ensure_log first"
        lead = None
        if self.replicas is not None:
            try:
                lead = self.replicas.leader_for_append(OFFSETS_TOPIC, self.partition, -1)
            except BrokerError as exc:
                raise _as_coordinator_error(exc) from None
        now = self.clock_ms()
        records = []
        for group, (topic, partition), entry in changes:
            key, value = encode_offset(group, topic, partition, entry)
            records.append((now, key, value, None))
        batch = build_batch(records)
        result = plog.append(batch)
        if self.replicas is not None and lead is not None:
            self.replicas.appended(lead)
        for group, tp, entry in changes:
            entries = self.view.setdefault(group, {})
            if entry is None:
                entries.pop(tp, None)
                if not entries:
                    del self.view[group]
            else:
                entries[tp] = entry
            self._account(group, tp, entry)
        self._pending.append((result.last_offset, changes))
        self._since_snapshot += len(batch)
        limit = plog.config.retention_bytes
        if limit >= 0 and self._since_snapshot > limit // 2:
            self._write_snapshot(plog, now)
        return Appended(result, lead, self.partition)

    async def wait_durable(self, appended: Appended) -> None:
        """Wait until the append is as durable as the topic's flush mode
        promises (cluster mode: until the high watermark covers it), then
        publish every entry appended up to it, in order."""
        plog = self.log
        assert plog is not None
        if appended.lead is not None and self.replicas is not None:
            try:
                await self.replicas.wait_acked(appended.lead, appended.result, -1)
            except BrokerError as exc:
                raise _as_coordinator_error(exc) from None
        else:
            await plog.wait_durable(appended.result)
        hw = plog.high_watermark
        while self._pending and self._pending[0][0] < hw:
            _, changes = self._pending.popleft()
            for group, tp, entry in changes:
                self.on_durable(group, tp, entry)

    # --- snapshots -----------------------------------------------------------

    def _account(self, group: str, tp: TP, entry: OffsetEntry | None) -> None:
        key = (group, tp)
        self._live_bytes -= self._entry_bytes.pop(key, 0)
        if entry is not None:
            size = len(group) + len(tp[0]) + len(entry.metadata or "") + 40 + _ENTRY_OVERHEAD
            self._entry_bytes[key] = size
            self._live_bytes += size

    @property
    def snapshot_estimate(self) -> int:
        """About how many bytes a snapshot of the live state takes."""
        return self._live_bytes + 1024

    def _write_snapshot(self, plog: PartitionLog, now: int) -> None:
        """Append the whole view between begin and end markers, in one
        synchronous append (so no commit interleaves)."""
        sid = self._snapshot_id
        self._snapshot_id += 1
        count = sum(len(v) for v in self.view.values())
        key, value = encode_snapshot_marker(KIND_SNAPSHOT_BEGIN, sid, count)
        batches: list[bytes] = []
        current: list[tuple[int, bytes, bytes | None, None]] = [(now, key, value, None)]
        size = 0
        for group, entries in self.view.items():
            for (topic, partition), entry in entries.items():
                k, v = encode_offset(group, topic, partition, entry)
                current.append((now, k, v, None))
                size += len(k) + len(v or b"") + _ENTRY_OVERHEAD
                if size >= SNAPSHOT_BATCH_BYTES:
                    batches.append(build_batch(current))
                    current, size = [], 0
        key, value = encode_snapshot_marker(KIND_SNAPSHOT_END, sid, count)
        current.append((now, key, value, None))
        batches.append(build_batch(current))
        data = b"".join(batches)
        try:
            plog.append(data)
        except BrokerError as exc:
            # The commit that triggered this is already appended; the next
            # commit tries again.
            log.error("%s: writing snapshot %d failed: %s", OFFSETS_TOPIC, sid, exc.message)
            return
        self._since_snapshot = len(data)
        self.snapshots_written += 1
        log.info(
            "%s: snapshot %d written (%d entries, %d bytes)", OFFSETS_TOPIC, sid, count, len(data)
        )

    async def check_topic_config(self) -> None:
        """Keep the topic's retention compatible with the snapshot invariant:
        no time retention, and retention_bytes at least 8 snapshots' worth.
        Called at load and from the coordinator's background loop."""
        if OFFSETS_TOPIC not in self.manager.topics():
            return
        config = self.manager.topic(OFFSETS_TOPIC).config
        changes: dict[str, object] = {}
        if self.settings.cleanup_policy == "compact" and config.cleanup_policy == "delete":
            # created before compaction: every record has a key and replay
            # applies them in order, so the cleaner can take over at once
            changes["cleanup_policy"] = "compact"
            changes["retention_bytes"] = -1
        if config.retention_ms != -1:
            changes["retention_ms"] = -1
        floor = 8 * self.snapshot_estimate
        if "cleanup_policy" not in changes and 0 <= config.retention_bytes < floor:
            changes["retention_bytes"] = max(floor * 2, self.settings.retention_bytes)
        if changes:
            log.warning("%s: adjusting retention to keep offsets safe: %s", OFFSETS_TOPIC, changes)
            await self.manager.alter_topic_config(OFFSETS_TOPIC, changes)
