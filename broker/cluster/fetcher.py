"""The follower's fetcher: copies partitions from one leader broker.

One :class:`ReplicaFetcher` per leader broker this broker follows
partitions of, running in a nursery its owner (the replica manager) gives
it::

    fetcher = ReplicaFetcher(node_id, leader_id, leader_address, ...)
    await nursery.start(fetcher.run)
    fetcher.add_partition("orders", 0, leader_epoch, log, follower_state)
    ...
    await fetcher.remove_partition("orders", 0)   # the fetcher is done with it
    fetcher.close()                                # run() returns

It holds one connection to the leader's native listener (from
``cluster.bind_host`` when set, with the broker's own credentials where the
leader's listener authenticates) and one task, so a partition's log is
written by this task alone. Each round:

1. **Truncation first** (docs/replication.md rule 3). Every partition whose
   :class:`~..replication.follower.FollowerState` says ``needs_truncation``
   (after every epoch change, KAFKA-7164) is asked about in one
   OffsetForLeaderEpoch with its latest epoch
   (:func:`~..replication.truncation.request_epoch`); the answer goes
   through :func:`~..replication.truncation.truncation_point` and the log
   is cut with ``truncate_to``, by epochs, never to the high watermark. When
   the answer names an epoch the follower never saw, the next round asks
   again with a lower one (KIP-279); when it is done,
   ``follower_state.truncated()``.
2. **Fetch** (Fetch version 1) every other partition at its log end with
   the epoch it follows. The leader holds the request until it has
   something past a fetch offset (an append), or ``max_wait_ms``. Each
   partition's bytes go to ``append_as_follower`` as the leader stored them
   (offsets and epochs kept); with flush ``sync`` the log is fsynced before
   the next fetch reports the new log end as this follower's position; the
   follower's high watermark becomes ``FollowerState.update_high_watermark``
   (the leader's, capped at the own log end, never lowered) and is set on
   the log.

Errors: a partition answered NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
UNKNOWN_LEADER_EPOCH or any other partition error waits ``backoff_ms``
before it is fetched again, unless :meth:`ReplicaFetcher.add_partition`
gives it a new epoch first (the replica manager does so when the cluster
state changes: a stale epoch is settled by the new state, not by retrying).
OFFSET_OUT_OF_RANGE sends the partition back to truncation when its log
ends past the leader's, and starts the log over at the leader's log start
(``truncate_fully_and_start_at``) when retention moved that past its end.
A lost connection, a timeout, a failed TLS handshake or authentication is
retried on a new connection after a back-off doubling from
``reconnect_backoff_ms`` to ``reconnect_backoff_max_ms``. Nothing loops
without waiting: a round either waits on the leader (long poll), on a
back-off, or on a change of the partition set.

Bounds: a fetch asks at most ``partition_max_bytes`` per partition and
``response_max_bytes`` in all (the first batch always comes whole, so one
larger than the limits still replicates); the connection's frame limit is
sized from them.

A response is applied only to the partitions it was asked for *as they
still are*: a partition removed or given a new epoch while the request was
out is left alone (its bytes belong to an epoch it no longer follows).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from tailrace.client.errors import (
    BrokerError,
    ErrorCode,
    TailraceError,
    error_for_code,
)
from tailrace.client.protocol import (
    Limits,
    OffsetForLeaderEpochPartition,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochTopic,
    ReplicaFetchPartition,
    ReplicaFetchRequest,
    ReplicaFetchTopic,
)
from tailrace.client.security import SecurityConfig
from tailrace.client.transport.auth import sasl_authenticate
from tailrace.client.transport.connection import BrokerConnection

from ..replication.epochs import EpochEndOffset
from ..replication.truncation import request_epoch, truncation_point

if TYPE_CHECKING:
    from ..config import BrokerConfig
    from ..replication.follower import FollowerState
    from ..replication.ports import FollowerLog

__all__ = ["FetcherSettings", "ReplicaFetcher", "peer_security"]

log = logging.getLogger(__name__)

#: the version of Fetch that is a follower's fetch
REPLICA_FETCH_VERSION = 1
#: partition errors that mean "the cluster state moved": wait for the new one
_STATE_ERRORS = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
)


def peer_security(config: BrokerConfig) -> SecurityConfig | None:
    """How this broker secures its connections to other brokers, from
    ``[cluster] peer_*`` (docs/operations.md, "Cluster settings"): None for
    plaintext without SASL. Host names are not checked (brokers are reached
    by the addresses they registered, which their certificates need not
    name); the CA is. Inconsistent settings raise InvalidConfigError."""
    v = config.values
    ca, cert, key = (v[f"cluster.peer_tls_{k}_file"] for k in ("ca", "cert", "key"))
    user, password_file = v["cluster.peer_sasl_username"], v["cluster.peer_sasl_password_file"]
    if not (ca or cert or key or user or password_file):
        return None
    return SecurityConfig(
        tls=bool(ca or cert),
        ssl_cafile=ca or None,
        ssl_certfile=cert or None,
        ssl_keyfile=key or None,
        ssl_check_hostname=False,
        sasl_mechanism="SCRAM-SHA-256" if user or password_file else None,
        username=user or None,
        password_file=password_file or None,
    )


@dataclass(frozen=True, slots=True)
class FetcherSettings:
    """How a fetcher asks and backs off (Kafka's replica.fetch.* settings)."""

    #: longest the leader holds a fetch that finds nothing new
    max_wait_ms: int = 500
    #: bytes per partition per fetch (replica.fetch.max.bytes)
    partition_max_bytes: int = 1 << 20
    #: bytes per fetch response (replica.fetch.response.max.bytes)
    response_max_bytes: int = 10 << 20
    #: wait before fetching a partition again after a partition error
    backoff_ms: int = 1_000
    #: the same after an error that says the cluster state moved
    #: (_STATE_ERRORS): a follower hears of a new leader from etcd at about
    #: the moment the leader does, and often first, so its first fetch gets
    #: NOT_LEADER_OR_FOLLOWER or UNKNOWN_LEADER_EPOCH from a leader a few
    #: milliseconds from taking up the partition; waiting backoff_ms then
    #: held every acks=all write of a failover for a second
    state_backoff_ms: int = 50
    reconnect_backoff_ms: int = 50
    reconnect_backoff_max_ms: int = 1_000
    connect_timeout_ms: int = 5_000
    #: a response's deadline beyond max_wait_ms
    request_timeout_ms: int = 30_000

    def limits(self) -> Limits:
        """Frame limits for the fetcher's connection: a response of
        ``response_max_bytes`` plus one batch larger than the limits
        (batches are bounded by the frame limit the producer met)."""
        base = Limits()
        return Limits(
            max_frame_bytes=max(base.max_frame_bytes, 2 * self.response_max_bytes + (1 << 20)),
            max_body_bytes=base.max_body_bytes,
        )


class _Partition:
    """One followed partition as the fetcher holds it."""

    __slots__ = ("leader_epoch", "log", "partition", "retry_at", "state", "topic")

    def __init__(
        self, topic: str, partition: int, leader_epoch: int, log: FollowerLog, state: FollowerState
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.leader_epoch = leader_epoch
        self.log = log
        self.state = state
        #: trio time before which it is not fetched (after a partition error)
        self.retry_at = -math.inf

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"


class ReplicaFetcher:
    """Fetches the partitions this broker follows from one leader broker
    (module docstring)."""

    def __init__(
        self,
        node_id: int,
        leader_id: int,
        leader_address: str,
        *,
        settings: FetcherSettings | None = None,
        security: SecurityConfig | None = None,
        local_address: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.leader_id = leader_id
        self.settings = settings or FetcherSettings()
        self.security = security
        self.local_address = local_address or None
        # built once: a bad CA or certificate file fails here, not at each connect
        self._ssl_context = security.build_ssl_context() if security is not None else None
        self._address = leader_address
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._changed = trio.Event()
        #: held while a response is applied to the logs (remove_partition waits)
        self._apply_lock = trio.Lock()
        self._scope: trio.CancelScope | None = None
        self._conn: BrokerConnection | None = None
        #: completed fetch rounds (for tests and metrics)
        self.rounds = 0

    # ------------------------------------------------------------ the owner's API

    @property
    def leader_address(self) -> str:
        return self._address

    def partitions(self) -> list[tuple[str, int]]:
        return list(self._parts)

    def add_partition(
        self,
        topic: str,
        partition: int,
        leader_epoch: int,
        log: FollowerLog,
        follower_state: FollowerState,
    ) -> None:
        """Follow ``topic``-``partition`` in ``leader_epoch``, writing ``log``.
        Adding it again (a new epoch, same leader broker) replaces the old
        entry: the partition is fetched from the next round on, after the
        truncation ``follower_state`` asks for."""
        self._parts[(topic, partition)] = _Partition(
            topic, partition, leader_epoch, log, follower_state
        )
        self._wake()

    async def remove_partition(self, topic: str, partition: int) -> None:
        """Stop following it. On return the fetcher no longer touches its log
        (a response being applied to it finishes first)."""
        if self._parts.pop((topic, partition), None) is not None:
            self._wake()
            async with self._apply_lock:
                pass

    def set_leader_address(self, address: str) -> None:
        """The leader broker registered again at another address: reconnect."""
        if address != self._address:
            self._address = address
            conn = self._conn
            if conn is not None:
                conn.abort(f"broker {self.leader_id} moved to {address}")
            self._wake()

    def close(self) -> None:
        """Stop :meth:`run` (it returns once its connection is closed)."""
        if self._scope is not None:
            self._scope.cancel()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ------------------------------------------------------------ the task

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch until :meth:`close` (or the owner's nursery is cancelled)."""
        s = self.settings
        failures = 0
        with trio.CancelScope() as self._scope:
            task_status.started()
            while True:
                if not self._parts:
                    await self._changed.wait()
                    continue
                error: BaseException | None = None
                async with trio.open_nursery() as nursery:
                    try:
                        conn = self._conn = await self._connect(nursery)
                        try:
                            failures = 0
                            await self._serve(conn)
                        finally:
                            self._conn = None
                            conn.abort("the fetcher is done with this connection")
                    except TailraceError as exc:
                        # the connection broke, timed out, or TLS/SASL failed
                        # (the logs' own errors are handled per partition)
                        error = exc
                if error is None:
                    continue  # nothing left to follow
                failures += 1
                delay = min(
                    s.reconnect_backoff_ms * 2 ** min(failures - 1, 20), s.reconnect_backoff_max_ms
                )
                log.warning(
                    "replica fetcher %d<-%d (%s): %s; again in %d ms",
                    self.node_id,
                    self.leader_id,
                    self._address,
                    error,
                    delay,
                )
                await trio.sleep(delay / 1000)

    async def _connect(self, nursery: trio.Nursery) -> BrokerConnection:
        s = self.settings
        conn = await BrokerConnection.connect(
            nursery,
            self._address,
            limits=s.limits(),
            connect_timeout=s.connect_timeout_ms / 1000,
            request_timeout=(s.request_timeout_ms + s.max_wait_ms) / 1000,
            ssl_context=self._ssl_context,
            local_address=self.local_address,
        )
        security = self.security
        if security is not None and security.sasl_mechanism is not None:
            try:
                await sasl_authenticate(conn, security)
            except BaseException:
                conn.abort("authentication failed")
                raise
        return conn

    async def _serve(self, conn: BrokerConnection) -> None:
        """Rounds on one connection until it breaks or nothing is followed."""
        while self._parts:
            now = trio.current_time()
            parts = list(self._parts.values())
            truncating = [p for p in parts if p.state.needs_truncation and p.retry_at <= now]
            if truncating:
                await self._truncate(conn, truncating)
                continue
            ready = [p for p in parts if not p.state.needs_truncation and p.retry_at <= now]
            if not ready:
                retry_at = min(p.retry_at for p in parts)
                changed = self._changed
                with trio.move_on_at(retry_at):
                    await changed.wait()
                continue
            await self._fetch(conn, ready)

    # ------------------------------------------------------------ truncation

    async def _truncate(self, conn: BrokerConnection, parts: list[_Partition]) -> None:
        asked = [(p, request_epoch(p.log.epoch_cache)) for p in parts]
        request = OffsetForLeaderEpochRequest(
            replica_id=self.node_id,
            topics=[
                OffsetForLeaderEpochTopic(
                    name=topic,
                    partitions=[
                        OffsetForLeaderEpochPartition(
                            partition=p.partition,
                            current_leader_epoch=p.leader_epoch,
                            leader_epoch=epoch,
                        )
                        for p, epoch in group
                    ],
                )
                for topic, group in _by_topic(asked)
            ],
        )
        response = await conn.request(request)
        if response.error_code:
            self._request_failed(parts, response.error_code, response.error_message)
            return
        async with self._apply_lock:
            for t in response.topics:
                for r in t.partitions:
                    p = self._current(t.name, r.partition, parts)
                    if p is None:
                        continue
                    if r.error_code:
                        self._partition_failed(p, r.error_code, r.error_message)
                        continue
                    plog = p.log
                    answer = EpochEndOffset(r.leader_epoch, r.end_offset)
                    cut = truncation_point(
                        plog.epoch_cache, plog.log_start_offset, plog.log_end_offset, answer
                    )
                    if cut.offset < plog.log_end_offset:
                        log.info(
                            "%s: truncating from %d to %d (leader %d, epoch %d: %s)",
                            p.name,
                            plog.log_end_offset,
                            cut.offset,
                            self.leader_id,
                            p.leader_epoch,
                            answer,
                        )
                    try:
                        await plog.truncate_to(cut.offset)
                    except BrokerError as exc:  # the log went offline
                        self._log_failed(p, "truncation", exc)
                        continue
                    if cut.done and self._parts.get((p.topic, p.partition)) is p:
                        p.state.truncated()

    # ------------------------------------------------------------ fetching

    async def _fetch(self, conn: BrokerConnection, parts: list[_Partition]) -> None:
        s = self.settings
        request = ReplicaFetchRequest(
            replica_id=self.node_id,
            max_wait_ms=s.max_wait_ms,
            max_bytes=s.response_max_bytes,
            topics=[
                ReplicaFetchTopic(
                    name=topic,
                    partitions=[
                        ReplicaFetchPartition(
                            partition=p.partition,
                            current_leader_epoch=p.leader_epoch,
                            fetch_offset=p.log.log_end_offset,
                            max_bytes=s.partition_max_bytes,
                        )
                        for p, _ in group
                    ],
                )
                for topic, group in _by_topic((p, None) for p in parts)
            ],
        )
        response = await conn.request(request, REPLICA_FETCH_VERSION)
        self.rounds += 1
        if response.error_code:
            self._request_failed(parts, response.error_code, response.error_message)
            return
        async with self._apply_lock:
            for t in response.topics:
                for r in t.partitions:
                    p = self._current(t.name, r.partition, parts)
                    if p is None:
                        continue
                    if r.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                        await self._out_of_range(p, r.log_start_offset)
                    elif r.error_code:
                        self._partition_failed(p, r.error_code, r.error_message)
                    else:
                        await self._append(p, r.records, r.high_watermark)

    async def _append(self, p: _Partition, records: Any, leader_hw: int) -> None:
        plog = p.log
        try:
            if len(records):
                # bytes the log refuses (a gap, a corrupt batch) or a log gone
                # offline raise here: the partition is asked again later
                result = await plog.append_as_follower(records)
                # the next fetch reports the log end as durable as the flush
                # mode says (sync: fdatasynced; issue 16 rule 9)
                await plog.wait_durable(result)
            if self._parts.get((p.topic, p.partition)) is not p:
                return
            hw = p.state.update_high_watermark(leader_hw, plog.log_end_offset)
            plog.set_replicated_high_watermark(hw)
        except BrokerError as exc:
            self._log_failed(p, "append", exc)

    # ------------------------------------------------------------ errors

    def _current(self, topic: str, partition: int, asked: list[_Partition]) -> _Partition | None:
        """The partition the response is about, if it is still followed as
        it was when asked (same entry: same epoch, same log)."""
        p = self._parts.get((topic, partition))
        if p is None or not any(p is a for a in asked):
            return None
        return p

    async def _out_of_range(self, p: _Partition, leader_log_start: int) -> None:
        """The leader cannot serve this log's end: its log starts past it
        (retention: start over at the leader's log start, as Kafka's
        truncateFullyAndStartAt), or this log ends past the leader's (cut it
        by epochs before fetching again)."""
        end = p.log.log_end_offset
        if leader_log_start > end:
            log.info("%s: the leader's log starts at %d, past %d", p.name, leader_log_start, end)
            try:
                await p.log.truncate_fully_and_start_at(leader_log_start)
            except BrokerError as exc:
                self._log_failed(p, "restarting the log", exc)
            return
        log.info("%s: log end %d is past the leader's: truncating", p.name, end)
        p.state.needs_truncation = True

    def _partition_failed(self, p: _Partition, code: int, message: str | None) -> None:
        moved = code in _STATE_ERRORS
        backoff_ms = self.settings.state_backoff_ms if moved else self.settings.backoff_ms
        log.log(
            logging.DEBUG if moved else logging.WARNING,
            "%s: leader %d answered %s; again in %d ms",
            p.name,
            self.leader_id,
            error_for_code(code, message or ""),
            backoff_ms,
        )
        p.retry_at = trio.current_time() + backoff_ms / 1000

    def _log_failed(self, p: _Partition, what: str, exc: BrokerError) -> None:
        log.warning(
            "%s: %s failed: %s; again in %d ms", p.name, what, exc, self.settings.backoff_ms
        )
        p.retry_at = trio.current_time() + self.settings.backoff_ms / 1000

    def _request_failed(self, parts: list[_Partition], code: int, message: str | None) -> None:
        log.warning(
            "replica fetcher %d<-%d: %s; again in %d ms",
            self.node_id,
            self.leader_id,
            error_for_code(code, message or ""),
            self.settings.backoff_ms,
        )
        retry_at = trio.current_time() + self.settings.backoff_ms / 1000
        for p in parts:
            p.retry_at = retry_at


def _by_topic(
    items: Iterable[tuple[_Partition, Any]],
) -> list[tuple[str, list[tuple[_Partition, Any]]]]:
    groups: dict[str, list[tuple[_Partition, Any]]] = {}
    for p, extra in items:
        groups.setdefault(p.topic, []).append((p, extra))
    return list(groups.items())
