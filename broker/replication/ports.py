"""The seams between replication's I/O parts (issue 16), as typing
Protocols: what the native front-end's leader-side handlers need of the
broker's replica manager (``ctx.replicas``), and what the follower's fetcher
needs of a partition log. No code runs here; both sides import it.

Leader side (broker/handlers/replication.py, broker/services/replica_fetch.py)
    A follower fetch or OffsetForLeaderEpoch for a partition calls
    :meth:`ReplicaManagerPort.follower_fetch` or
    :meth:`ReplicaManagerPort.offset_for_epoch` once, when the request
    arrives. Both are synchronous (the trio thread, no awaiting) and raise
    only :class:`~tailrace.client.errors.BrokerError`\\ s, which become the
    partition's error code: NotLeaderOrFollowerError (this broker does not
    lead the partition, or ``replica_id`` is not one of its replicas),
    FencedLeaderEpochError, UnknownLeaderEpochError, OffsetOutOfRangeError
    (a fetch offset above the leader's log end), UnknownTopicOrPartitionError.
    ``follower_fetch`` records the follower's position (its fetch offset is
    its log end, made durable as the topic's flush mode says) and may
    advance the high watermark before returning; the front-end then reads
    the returned log from ``fetch_offset`` up to its log end with
    ``read(offset, max_bytes, up_to=log_end_offset)`` and sends the bytes
    with sendfile. When nothing is there it holds the request (long poll)
    until the log's end watchers (``watch_end``: every append, truncation,
    going offline) fire and the log end moved past the fetch offset, or
    ``max_wait_ms`` passes. The high watermark and log end sent back are the
    log's when the response is made.

Follower side (broker/cluster/fetcher.py)
    :class:`FollowerLog` is the part of
    :class:`~tailrace.broker.log.partition.PartitionLog` the fetcher calls:
    ``truncate_to`` after each OffsetForLeaderEpoch round (it cuts the epoch
    cache too, also when no record is cut), ``truncate_fully_and_start_at``
    when the leader's log starts past this log's end, ``append_as_follower``
    with the leader's bytes (whole batches, first base offset == log end)
    and ``wait_durable`` on its result before the next fetch reports the new
    log end (the topic's flush mode), and ``set_replicated_high_watermark``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..log.partition import AppendResult, FileSlice
    from .epochs import EpochEndOffset, LeaderEpochCache

__all__ = ["FollowerFetch", "FollowerLog", "LeaderLog", "ReplicaManagerPort"]


class LeaderLog(Protocol):
    """What the leader-side handlers read of a partition log."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    @property
    def high_watermark(self) -> int: ...

    def read(self, offset: int, max_bytes: int, *, up_to: int | None = None) -> FileSlice | None:
        """Whole batches from the one holding ``offset``, below ``up_to``
        (default: the high watermark)."""
        ...

    def watch_end(self, wake: Callable[[], object]) -> None: ...

    def unwatch_end(self, wake: Callable[[], object]) -> None: ...

    def watch_hw(self, wake: Callable[[], object]) -> None: ...

    def unwatch_hw(self, wake: Callable[[], object]) -> None: ...


class FollowerFetch(NamedTuple):
    """What :meth:`ReplicaManagerPort.follower_fetch` returns."""

    log: LeaderLog
    high_watermark: int
    log_end_offset: int


class ReplicaManagerPort(Protocol):
    """``ctx.replicas``: the broker's replica manager as the front-end sees it."""

    def follower_fetch(
        self,
        topic: str,
        partition: int,
        replica_id: int,
        fetch_offset: int,
        current_leader_epoch: int,
    ) -> FollowerFetch: ...

    def offset_for_epoch(
        self, topic: str, partition: int, epoch: int, current_leader_epoch: int
    ) -> EpochEndOffset: ...


class FollowerLog(Protocol):
    """What the follower's fetcher does to its partition log."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    @property
    def epoch_cache(self) -> LeaderEpochCache: ...

    async def truncate_to(self, offset: int) -> None: ...

    async def truncate_fully_and_start_at(self, offset: int) -> None: ...

    async def append_as_follower(self, data: bytes | memoryview) -> AppendResult: ...

    async def wait_durable(self, result: AppendResult | int) -> None: ...

    def set_replicated_high_watermark(self, offset: int) -> bool: ...
