"""The leader's side of replication requests: follower fetches and
OffsetForLeaderEpoch (issue 16), one copy for any front-end.

Who may ask: a follower's request names a replica, so it needs
``cluster_action`` on the cluster when ACLs are enforced (Kafka's rule:
only brokers hold it; a client posing as a replica would move the high
watermark). A refusal is CLUSTER_AUTHORIZATION_FAILED for the whole
request. OffsetForLeaderEpoch from a client (``replica_id`` -1) needs
``describe`` on the topic instead.

What is served: :meth:`~..replication.ports.ReplicaManagerPort.follower_fetch`
fences the epoch, records the follower's position and returns the log; the
follower then reads whole batches from its fetch offset up to the leader's
**log end** (not the high watermark: that is how records reach the
followers that move it), as file slices that a front-end sends with
sendfile and releases. Budgets as for consumers (services/fetch.py): each
partition at most its ``max_bytes``, the response at most ``max_bytes``,
except that the first batch always comes whole.

Long poll: when no partition has a record past its fetch offset, :func:`wait`
waits for any of the logs' end watchers (``watch_end``: woken at every
append, truncation, going offline) or high-watermark watchers (which a
draining broker wakes), or the deadline; no polling. The high watermark, log start and log
end sent back are read when the response is made, after the wait.

A single node (``ctx.replicas`` None) leads every partition alone: a
follower's fetch or OffsetForLeaderEpoch is NOT_LEADER_OR_FOLLOWER there,
while a client's OffsetForLeaderEpoch is answered from the log (epoch 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import BrokerError, NotLeaderOrFollowerError

from ..replication.epochs import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
from ..replication.leader import check_leader_epoch
from ..security.authz import CLUSTER, CLUSTER_ACTION, CLUSTER_NAME, DESCRIBE, TOPIC
from .topics import check_allowed, partition_for_fetch

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..log.partition import FileSlice
    from ..replication.ports import LeaderLog
    from ..server.connection import ConnectionInfo

__all__ = [
    "EpochQuery",
    "ReplicaRead",
    "has_data",
    "offset_for_epoch",
    "plan",
    "read",
    "release",
    "wait",
]

_SINGLE_NODE = "this broker runs alone (no cluster): it has no followers"


@dataclass(slots=True)
class ReplicaRead:
    topic: str
    partition: int
    offset: int
    max_bytes: int
    current_leader_epoch: int
    error: BrokerError | None = None
    log: LeaderLog | None = None
    high_watermark: int = -1
    log_start_offset: int = -1
    log_end_offset: int = -1
    #: what :func:`read` found (zero copy; released by the writer)
    slice: FileSlice | None = None


def plan(
    ctx: BrokerContext, info: ConnectionInfo, replica_id: int, reads: list[ReplicaRead]
) -> list[ReplicaRead]:
    """Authorize (raises ClusterAuthorizationError for the whole request),
    then hand each partition to the replica manager, which fences the epoch
    and records the follower's position. A failed partition has ``error``
    set and no ``log``."""
    check_allowed(ctx, info, CLUSTER_ACTION, CLUSTER, CLUSTER_NAME)
    replicas = ctx.replicas
    for r in reads:
        try:
            if replicas is None:
                raise NotLeaderOrFollowerError(_SINGLE_NODE)
            got = replicas.follower_fetch(
                r.topic, r.partition, replica_id, r.offset, r.current_leader_epoch
            )
        except BrokerError as exc:
            r.error = exc
            continue
        r.log = got.log
        r.high_watermark = got.high_watermark
        r.log_end_offset = got.log_end_offset
    return reads


def has_data(reads: list[ReplicaRead]) -> bool:
    """Whether to answer now: an error, or a record past a fetch offset."""
    for r in reads:
        if r.error is not None:
            return True
        log = r.log
        if log is not None and log.log_end_offset != r.offset:
            return True  # past it (or cut below it: the read says so)
    return False


async def wait(ctx: BrokerContext, reads: list[ReplicaRead], max_wait_ms: int) -> None:
    """Until a log has a record past its fetch offset, the broker drains or
    ``max_wait_ms`` passes. The wake-up is registered with every log before
    the check and stays registered across the loop (as in services/fetch.py),
    so an append is never missed."""
    deadline = trio.current_time() + max(max_wait_ms, 0) / 1000
    logs = [r.log for r in reads if r.log is not None]
    woken = trio.Event()
    wake = woken.set
    for log in logs:
        log.watch_end(wake)
        log.watch_hw(wake)  # a draining broker wakes these
    try:
        while not has_data(reads) and trio.current_time() < deadline:
            if ctx.draining.is_set():
                return
            with trio.move_on_at(deadline):
                await woken.wait()
            for log in logs:
                log.unwatch_end(wake)
                log.unwatch_hw(wake)
            woken = trio.Event()
            wake = woken.set
            for log in logs:
                log.watch_end(wake)
                log.watch_hw(wake)
    finally:
        for log in logs:
            log.unwatch_end(wake)
            log.unwatch_hw(wake)


def read(reads: list[ReplicaRead], max_bytes: int) -> None:
    """Read each planned partition up to its log end under the budgets;
    refreshes the watermark, log start and log end. On an exception every
    slice taken so far is released."""
    remaining = max(max_bytes, 0)
    first = True
    try:
        for r in reads:
            log = r.log
            if log is None:
                continue
            try:
                r.high_watermark = log.high_watermark
                r.log_start_offset = log.log_start_offset
                r.log_end_offset = end = log.log_end_offset
                if not first and remaining <= 0:
                    continue
                limit = max(min(r.max_bytes, remaining), 0)
                fslice = log.read(r.offset, limit, up_to=end)
            except BrokerError as exc:
                r.error = exc
                continue
            if fslice is None:
                continue
            if not first and fslice.length > remaining:
                fslice.release()  # only the response's first batch may overshoot
                continue
            r.slice = fslice
            remaining -= fslice.length
            first = False
    except BaseException:
        release(reads)
        raise


def release(reads: list[ReplicaRead]) -> None:
    for r in reads:
        if r.slice is not None:
            r.slice.release()
            r.slice = None


@dataclass(slots=True)
class EpochQuery:
    topic: str
    partition: int
    #: the epoch whose end offset is wanted
    leader_epoch: int
    current_leader_epoch: int = UNDEFINED_EPOCH
    error: BrokerError | None = None
    #: filled by offset_for_epoch
    end_epoch: int = UNDEFINED_EPOCH
    end_offset: int = UNDEFINED_EPOCH_OFFSET


def offset_for_epoch(
    ctx: BrokerContext, info: ConnectionInfo, replica_id: int, queries: list[EpochQuery]
) -> list[EpochQuery]:
    """Answer each query (module docstring for who may ask); a follower's
    refusal raises ClusterAuthorizationError for the whole request."""
    follower = replica_id >= 0
    if follower:
        check_allowed(ctx, info, CLUSTER_ACTION, CLUSTER, CLUSTER_NAME)
    replicas = ctx.replicas
    for q in queries:
        try:
            if not follower:
                check_allowed(ctx, info, DESCRIBE, TOPIC, q.topic)
            if replicas is not None:
                answer = replicas.offset_for_epoch(
                    q.topic, q.partition, q.leader_epoch, q.current_leader_epoch
                )
            elif follower:
                raise NotLeaderOrFollowerError(_SINGLE_NODE)
            else:
                plog = partition_for_fetch(ctx, q.topic, q.partition)
                check_leader_epoch(q.current_leader_epoch, plog.leader_epoch)
                answer = plog.end_offset_for_epoch(q.leader_epoch)
        except BrokerError as exc:
            q.error = exc
            continue
        q.end_epoch, q.end_offset = answer.epoch, answer.end_offset
    return queries
