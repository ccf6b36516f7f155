"""The console's one door into the broker's core.

Every read and every change the console makes goes through :class:`Core`,
and :class:`Core` only calls what the broker already has: the protocol-free
services both front-ends use (``broker/services/``: a browse is
``fetch.plan`` + ``fetch.read``, a test record ``produce.append`` +
``produce.wait_durable``, the internal-topic rule from ``topics``), the log
manager (topic listings, partition state, topic config changes), the group
coordinator (describe, committed offsets, commit), the authorizer (the same
ACL checks, audit log and cache a client request gets) and the metrics
registry. Nothing else in ``broker/console/`` touches broker internals.

Authorization: a console session is a :class:`ConnectionInfo` with the
logged-in principal (``peer`` names the browser's address), so
:meth:`Authorization.allowed` treats it exactly as a client connection:
same bindings, super users, audit line on a denial, per-session cache.
Without an authorizer (``security.authorizer`` off) everything is allowed,
as for clients.

Bounds: a browse reads at most :data:`MAX_READ_BYTES` per call through
:meth:`PartitionLog.read` (the fetch path: whole batches below the high
watermark; a single batch larger than that is returned whole, and batches
are bounded by ``max_batch_bytes``) and decodes at most
:data:`MAX_RECORDS` records.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from tailrace.client.errors import (
    BrokerError,
    ClusterAuthorizationError,
    GroupAuthorizationError,
    InvalidRequestError,
    OffsetOutOfRangeError,
    TopicAuthorizationError,
)
from tailrace.client.protocol import (
    OffsetCommitPartition,
    OffsetCommitRequest,
    OffsetCommitTopic,
)
from tailrace.client.records import MAGIC_NATIVE, build_batch, iter_headers, iter_records
from tailrace.client.records.native import columns as native_columns

from ..log.config import LogConfig
from ..security.authz import ALTER, DESCRIBE, GROUP, READ, TOPIC
from ..server.connection import ConnectionInfo
from ..services import fetch, produce
from ..services.topics import is_internal

if TYPE_CHECKING:
    from ..app import Broker
    from ..coordinator import GroupCoordinator
    from ..handlers.context import BrokerContext
    from ..log.manager import LogManager
    from ..log.partition import PartitionLog

__all__ = [
    "MAX_READ_BYTES",
    "MAX_RECORDS",
    "Core",
    "GroupPartition",
    "PartitionRow",
    "Record",
]

#: bytes one browse reads from a partition (plus at most one larger batch)
MAX_READ_BYTES = 1024 * 1024
#: records one browse returns
MAX_RECORDS = 200
#: how long a test record may wait to become durable
PRODUCE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class PartitionRow:
    partition: int
    log_start: int
    high_watermark: int
    log_end: int
    size_bytes: int
    segments: int
    leader: int
    isr: tuple[int, ...]
    offline: str | None


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass(slots=True)
class GroupPartition:
    topic: str
    partition: int
    committed: int | None
    high_watermark: int | None
    member: str = ""

    @property
    def lag(self) -> int | None:
        if self.committed is None or self.high_watermark is None:
            return None
        return max(0, self.high_watermark - self.committed)


@dataclass(slots=True)
class GroupView:
    group_id: str
    state: str
    epoch: int
    members: list[dict[str, Any]] = field(default_factory=list)
    partitions: list[GroupPartition] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)


def session_info(principal: str, peer: str) -> ConnectionInfo:
    """The identity a console session presents to the authorizer."""
    info = ConnectionInfo("console", f"console:{peer}", False)
    info.principal = principal
    return info


class Core:
    """The broker's services as the console uses them."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    # ------------------------------------------------------------ helpers

    @property
    def manager(self) -> LogManager:
        manager = self.broker.manager
        if manager is None:
            raise BrokerError("the broker is still loading its logs")
        return manager

    @property
    def context(self) -> BrokerContext:
        """What the services take (the broker's, with its authorizer)."""
        ctx = self.broker.context
        if ctx is None:
            raise BrokerError("the broker is still loading its logs")
        return ctx

    def allowed(self, who: ConnectionInfo, operation: str, resource: str, name: str) -> bool:
        authz = self.broker.security.authz
        return authz is None or authz.allowed(who, operation, resource, name, log_denial=False)

    def require(self, who: ConnectionInfo, operation: str, resource: str, name: str) -> None:
        """Raise the error a client would get for a denied request (audited)."""
        authz = self.broker.security.authz
        if authz is None or authz.allowed(who, operation, resource, name):
            return
        cls = {TOPIC: TopicAuthorizationError, GROUP: GroupAuthorizationError}.get(
            resource, ClusterAuthorizationError
        )
        raise cls(f"{who.principal} may not {operation} {resource} {name!r}")

    # ------------------------------------------------------------ cluster

    def brokers(self) -> list[dict[str, Any]]:
        """This broker (a single-node cluster): node 0 and its listeners."""
        return [
            {
                "node_id": 0,
                "listeners": [f"{b.name}={b.address}" for b in self.broker.listeners],
                "accepting": self.broker.accepting,
                "connections": self.broker.counter.open,
            }
        ]

    def cluster(self) -> dict[str, Any] | None:
        """In cluster mode, the cluster as this broker last saw it in etcd
        (the document of ``tailrace cluster status --json``: brokers, the
        controller, under-replicated and offline partitions); None on a
        single node or before the first reading."""
        member = self.broker.cluster
        if member is None:
            return None
        view = member.snapshot()
        if view is None:
            return None
        from ..cluster.status import status_document  # cluster mode only

        return status_document(view)

    def topic_names(self, who: ConnectionInfo) -> list[str]:
        return sorted(
            name for name in self.manager.topics() if self.allowed(who, DESCRIBE, TOPIC, name)
        )

    def topic_summary(self, who: ConnectionInfo) -> list[dict[str, Any]]:
        out = []
        for name in self.topic_names(who):
            rows = self.partitions(who, name)
            out.append(
                {
                    "name": name,
                    "internal": is_internal(name),
                    "partitions": len(rows),
                    "offline": sum(1 for r in rows if r.offline),
                    "size_bytes": sum(r.size_bytes for r in rows),
                    "records": sum(r.high_watermark - r.log_start for r in rows),
                }
            )
        return out

    def partitions(self, who: ConnectionInfo, topic: str) -> list[PartitionRow]:
        self.require(who, DESCRIBE, TOPIC, topic)
        info = self.manager.topic(topic)
        rows = []
        for p in range(info.partitions):
            try:
                plog = self.manager.get(topic, p)
            except BrokerError as exc:
                rows.append(PartitionRow(p, -1, -1, -1, 0, 0, 0, (), exc.message))
                continue
            rows.append(
                PartitionRow(
                    p,
                    plog.log_start_offset,
                    plog.high_watermark,
                    plog.log_end_offset,
                    plog.size_bytes,
                    len(plog.segments),
                    0,
                    (0,),
                    plog.offline_reason if plog.offline else None,
                )
            )
        return rows

    def topic_config(self, who: ConnectionInfo, topic: str) -> list[tuple[str, Any, bool]]:
        """(key, value, set on the topic) for every log setting."""
        self.require(who, DESCRIBE, TOPIC, topic)
        info = self.manager.topic(topic)
        return [(k, getattr(info.config, k), k in info.overrides) for k in LogConfig.field_names()]

    def may_alter(self, who: ConnectionInfo, topic: str) -> bool:
        return not is_internal(topic) and self.allowed(who, ALTER, TOPIC, topic)

    async def alter_topic(self, who: ConnectionInfo, topic: str, key: str, value: str) -> None:
        """Set (or with an empty value, reset to the default) one key; the
        checks of AlterConfigs: ALTER on the topic, internal topics refused."""
        self.require(who, ALTER, TOPIC, topic)
        if is_internal(topic):
            raise InvalidRequestError(f"{topic} is internal: its configuration cannot be altered")
        self.manager.topic(topic)
        if key not in LogConfig.field_names():
            raise InvalidRequestError(f"{key}: unknown log config key")
        if value.strip() == "":
            await self.manager.alter_topic_config(topic, None, [key])
        else:
            await self.manager.alter_topic_config(topic, {key: value.strip()})

    # ------------------------------------------------------------ records

    def _plog(self, who: ConnectionInfo, topic: str, partition: int, op: str) -> PartitionLog:
        self.require(who, op, TOPIC, topic)
        return self.manager.get(topic, partition)

    def offset_for(
        self, who: ConnectionInfo, topic: str, partition: int, *, time_ms: int | None, back: int
    ) -> int:
        """The offset a browse starts at: the first record at or after
        ``time_ms``, or ``back`` records before the high watermark."""
        plog = self._plog(who, topic, partition, READ)
        if time_ms is not None:
            found = plog.offset_for_timestamp(time_ms)
            return plog.high_watermark if found is None else found.offset
        return max(plog.log_start_offset, plog.high_watermark - back)

    def bounds(self, who: ConnectionInfo, topic: str, partition: int) -> tuple[int, int]:
        plog = self._plog(who, topic, partition, READ)
        return plog.log_start_offset, plog.high_watermark

    async def read(
        self,
        who: ConnectionInfo,
        topic: str,
        partition: int,
        offset: int,
        limit: int,
        *,
        max_bytes: int = MAX_READ_BYTES,
    ) -> list[Record]:
        """Up to ``limit`` records from ``offset`` through the fetch service
        (READ on the topic, below the high watermark, whole batches, bounded
        bytes); the file read runs in a worker thread."""
        limit = max(1, min(limit, MAX_RECORDS))
        out: list[Record] = []
        while len(out) < limit:
            (planned,) = fetch.plan(self.context, who, [fetch.Read(topic, partition, offset, 0)])
            if planned.error is not None:
                raise planned.error
            fetch.read([planned], max_bytes)
            if planned.error is not None:
                raise planned.error
            fslice = planned.slice
            if fslice is None:
                break  # at the high watermark
            with fslice:
                data = await trio.to_thread.run_sync(fslice.read_bytes)
                next_offset = fslice.last_offset + 1
            for pos, h in iter_headers(data):
                if h.last_offset < offset:
                    continue  # the slice starts at a batch boundary: not decoded
                if h.magic == MAGIC_NATIVE:
                    # dense offsets (base + index): only the records wanted are
                    # turned into Records, not the thousands before them in a
                    # large batch (a live tail reads the last few of one)
                    skip = max(0, offset - h.base_offset)
                    ts0, deltas, keys, values, headers_of = native_columns(
                        data, h, pos, skip, limit - len(out)
                    )
                    out.extend(
                        Record(
                            h.base_offset + skip + i,
                            ts0 + deltas[i],
                            keys[i],
                            values[i],
                            tuple((str(k), bytes(v)) for k, v in (headers_of[i] or ())),
                        )
                        for i in range(len(deltas))
                    )
                    if len(out) >= limit:
                        return out
                    continue
                for at, timestamp, key, value, headers in iter_records(data, h, pos):
                    if at < offset:
                        continue
                    out.append(
                        Record(
                            at,
                            timestamp,
                            key,
                            value,
                            tuple((str(k), bytes(v)) for k, v in (headers or ())),
                        )
                    )
                    if len(out) >= limit:
                        return out
            offset = next_offset
        return out

    async def record(self, who: ConnectionInfo, topic: str, partition: int, offset: int) -> Record:
        """One record (for a download of its whole value)."""
        found = await self.read(who, topic, partition, offset, 1, max_bytes=1)
        if not found or found[0].offset != offset:
            raise OffsetOutOfRangeError(f"no record at offset {offset} of {topic}/{partition}")
        return found[0]

    async def produce(
        self,
        who: ConnectionInfo,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> int:
        """Append one record through the produce service (WRITE on the
        topic, internal topics refused, the log's validation, the produce
        metrics) and wait until it is durable; its offset."""
        batch = build_batch([(int(time.time() * 1000), key, value, headers or None)])
        outcomes = produce.append(self.context, who, [produce.Write(topic, partition, batch)])
        await produce.wait_durable(outcomes, PRODUCE_TIMEOUT_S)
        (outcome,) = outcomes
        if outcome.error is not None:
            raise outcome.error
        return outcome.base_offset

    # ------------------------------------------------------------- groups

    def _coordinator(self) -> GroupCoordinator:
        coordinator = self.broker.coordinator
        if coordinator is None:
            raise BrokerError("the group coordinator is not running yet")
        return coordinator

    def group_ids(self, who: ConnectionInfo) -> list[dict[str, Any]]:
        listed = self._coordinator().list_groups(None)
        return [
            {"group_id": g.group_id, "state": g.state, "members": g.member_count}
            for g in listed
            if self.allowed(who, DESCRIBE, GROUP, g.group_id)
        ]

    def group(self, who: ConnectionInfo, group_id: str) -> GroupView:
        self.require(who, DESCRIBE, GROUP, group_id)
        coordinator = self._coordinator()
        described = coordinator.describe_group(group_id)
        if described.error_code:
            raise BrokerError(described.error_message or f"no group {group_id!r}")
        view = GroupView(group_id, described.state, described.group_epoch)
        owner: dict[tuple[str, int], str] = {}
        for m in described.members:
            assigned = [(t.topic, p) for t in m.assignment for p in t.partitions]
            for tp in assigned:
                owner[tp] = m.member_id
            view.members.append(
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "epoch": m.member_epoch,
                    "subscribed": list(m.subscribed_topics),
                    "assignment": sorted(assigned),
                }
            )
        group = coordinator.groups.get(group_id)
        offsets = dict(group.offsets) if group is not None else {}
        for tp in sorted(set(offsets) | set(owner)):
            if not self.allowed(who, DESCRIBE, TOPIC, tp[0]):
                continue
            entry = offsets.get(tp)
            try:
                hw: int | None = self.manager.get(*tp).high_watermark
            except BrokerError:
                hw = None
            view.partitions.append(
                GroupPartition(
                    tp[0], tp[1], None if entry is None else entry.offset, hw, owner.get(tp, "")
                )
            )
        return view

    def reset_plan(
        self, who: ConnectionInfo, group_id: str, topic: str, to: str, value: str
    ) -> list[tuple[int, int | None, int]]:
        """(partition, committed now, new offset) for resetting ``topic``'s
        offsets of the group to ``earliest``, ``latest``, an ``offset`` or
        a ``timestamp`` (ms); nothing is changed."""
        self.require(who, READ, GROUP, group_id)
        self.require(who, READ, TOPIC, topic)
        info = self.manager.topic(topic)
        coordinator = self._coordinator()
        group = coordinator.groups.get(group_id)
        offsets: Mapping[tuple[str, int], Any] = group.offsets if group is not None else {}
        plan = []
        for p in range(info.partitions):
            plog = self.manager.get(topic, p)
            if to == "earliest":
                new = plog.log_start_offset
            elif to == "latest":
                new = plog.high_watermark
            elif to in ("offset", "timestamp"):
                try:
                    number = int(value.strip())
                except ValueError:
                    raise InvalidRequestError(f"{to} must be an integer, got {value!r}") from None
                if to == "offset":
                    new = min(max(number, plog.log_start_offset), plog.high_watermark)
                else:
                    found = plog.offset_for_timestamp(number)
                    new = plog.high_watermark if found is None else found.offset
            else:
                raise InvalidRequestError("reset to earliest, latest, offset or timestamp")
            entry = offsets.get((topic, p))
            plan.append((p, None if entry is None else entry.offset, new))
        return plan

    async def reset_offsets(
        self, who: ConnectionInfo, group_id: str, topic: str, plan: list[tuple[int, int]]
    ) -> None:
        """Commit ``plan`` ((partition, offset) pairs) as an admin commit
        (no member: refused while the group has members, as for clients),
        durably; a partition the coordinator refuses raises its error."""
        self.require(who, READ, GROUP, group_id)
        self.require(who, READ, TOPIC, topic)
        coordinator = self._coordinator()
        if coordinator.needs_log():
            await coordinator.ensure_log()
        request = OffsetCommitRequest(
            group_id=group_id,
            topics=[
                OffsetCommitTopic(
                    name=topic,
                    partitions=[OffsetCommitPartition(partition=p, offset=o) for p, o in plan],
                )
            ],
        )
        response, appended = coordinator.commit(request)
        if appended is not None:
            await coordinator.wait_durable(appended)
        for t in response.topics:
            for p in t.partitions:
                if p.error_code:
                    raise BrokerError(p.error_message or f"partition {p.partition} refused")

    # ------------------------------------------------------------ storage

    def disk_use(self) -> dict[str, int]:
        usage = shutil.disk_usage(self.broker.data_dir)
        logs = sum(plog.size_bytes for _, plog in self.manager.logs())
        return {"logs": logs, "free": usage.free, "total": usage.total}

    def offline_partitions(self) -> int:
        return len(self.manager.failed) + sum(1 for _, plog in self.manager.logs() if plog.offline)
