"""The replica manager: a broker's part in replication, in cluster mode only.

It follows the cluster metadata (the :class:`ClusterMember`'s watched
etcd prefix) and, for every partition assigned to this broker, wires the
sans-I/O decisions of :mod:`..replication` to the partition's log::

    a partition state names this broker leader (in the broker epoch of this
    session: a leader that restarted never resumes its old epoch)
        -> stop following; await log.become_leader(epoch) (the epoch cache
           is durable before any batch carries the epoch); a LeaderState
           for this epoch (a new one on every epoch, re-election included)
    it names another live broker leader
        -> a new FollowerState, on_state (every epoch change means
           truncation first, KAFKA-7164), and the partition goes to the
           ReplicaFetcher of that leader (add_partition; the fetcher
           truncates by epochs, fetches, append_as_follower)
    neither (offline, restarted leader, no longer assigned)
        -> neither produce nor reads; stop following

The log is in replicated mode from the first state on: the high watermark
is what the leader logic says (``log.set_replicated_high_watermark``), not
the flush mode's "durable up to here"; it restarts at the log start (a
restarted replica does not know what was committed) and a new leader's
watermark is established once it reaches the start of its epoch.

Leader side (called by the front-ends through ``ctx.replicas``):

* :meth:`follower_fetch` / :meth:`offset_for_epoch`: fencing by the
  sender's current leader epoch, the follower's position
  (LeaderState.on_follower_fetch), high-watermark advance.
* produce: :meth:`leader_for_append` before the append (NOT_LEADER_OR_FOLLOWER
  on a non-leader, NOT_ENOUGH_REPLICAS for acks=all with too small an ISR),
  :meth:`appended` after it, :meth:`wait_acked` for the answer (acks=all:
  until the high watermark covers the batch).
* reads: :meth:`check_readable` (consumers read at the leader only) and
  :meth:`served_high_watermark` (a new leader's watermark is not served
  before it is established, KIP-207).

ISR changes: a loop proposes shrinks (a follower not caught up for
``replica_lag_time_max_ms``) and expansions (a caught-up follower of a
live broker) and writes each with one etcd transaction on the partition
key (state.py says which comparisons); only once it succeeded does the
change count (LeaderState.confirm_isr_change).

Test-only fault seam: ``TAILRACE_FAULT_TRUNCATE_TO_HW=1`` in
the broker's environment switches rule 7 off: on every epoch change a
follower truncates its log to its own high watermark at once, as Kafka did
before KIP-101, instead of by leader epoch (the fetcher's OffsetForLeaderEpoch
exchange, which it then skips). Its watermark trails the leader's (by a
fetch round; after a restart it is the log start), so records the leader
acknowledged are cut; if this follower leads before it fetched them again,
they are lost. It exists so the reliability harness can show its checker
reports that (the ``kip101`` cluster scenario, docs/reliability.md); no
setting, flag or config file reaches it, and a broker with it on logs a
warning at start and at each such truncation.

Leaving the leadership (a new epoch, another leader, the session lost)
fails every acks=all produce still waiting with NOT_LEADER_OR_FOLLOWER:
their records were appended and may or may not end up committed (the
outcome is indefinite; an idempotent producer's retry is stored once).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import trio

from tailrace.client.errors import (
    BrokerError,
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)

from ..etcd import Compare, EtcdError, EtcdUnavailableError, Op
from ..logs import log_event
from ..replication import (
    UNDEFINED_EPOCH,
    EpochEndOffset,
    FollowerState,
    IsrChange,
    LeaderState,
    default_min_insync_replicas,
)
from ..services.topics import is_internal
from .state import NO_LEADER, ClusterView, PartitionState

if TYPE_CHECKING:
    from ..log.manager import LogManager
    from ..log.partition import AppendResult, PartitionLog
    from .member import ClusterMember

__all__ = [
    "Fetcher",
    "FetcherFactory",
    "FollowerFetch",
    "Leadership",
    "ReplicaManager",
    "ReplicaSettings",
]

log = logging.getLogger("tailrace.cluster")

#: the test-only fault seam (module docstring); read once, at import
UNSAFE_TRUNCATE_TO_HW = os.environ.get("TAILRACE_FAULT_TRUNCATE_TO_HW") == "1"

Role = Literal["leader", "follower", "none"]


class Fetcher(Protocol):
    """What the manager needs of a ReplicaFetcher (one per source leader
    broker, built by i16-wire's code). ``remove_partition`` may be a
    coroutine; once it returned, the fetcher appends nothing more to that
    partition's log."""

    def add_partition(
        self,
        topic: str,
        partition: int,
        leader_epoch: int,
        log: PartitionLog,
        follower_state: FollowerState,
    ) -> Any: ...

    def remove_partition(self, topic: str, partition: int) -> Any: ...


#: ``await make(nursery, leader_node_id, leader_address) -> Fetcher``: the
#: fetcher runs its tasks in ``nursery`` (the manager's) until it is cancelled
FetcherFactory = Callable[[trio.Nursery, int, str], Awaitable[Fetcher]]


class FollowerFetch(NamedTuple):
    """What :meth:`ReplicaManager.follower_fetch` returns."""

    log: PartitionLog
    high_watermark: int
    log_end_offset: int


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    #: a follower that has not caught up for this long leaves the ISR
    replica_lag_time_max_ms: int = 10_000
    #: how often the leader looks for ISR changes (Kafka: half the lag limit)
    isr_check_interval_ms: int = 0
    #: pause before retrying after etcd refused or could not be reached
    retry_delay: float = 0.25

    @property
    def isr_interval(self) -> float:
        ms = self.isr_check_interval_ms or max(self.replica_lag_time_max_ms // 2, 1)
        return ms / 1000


@dataclass(slots=True, eq=False)
class Replica:
    """This broker's copy of one partition."""

    topic: str
    partition: int
    log: PartitionLog
    role: Role = "none"
    #: the partition state last acted on and its etcd mod revision
    state: PartitionState | None = None
    version: int = 0
    leader: LeaderState | None = None
    follower: FollowerState | None = None
    #: the fetcher this partition is handed to (following only)
    fetcher_key: tuple[int, str] | None = None
    #: while leading: registered with log.watch_end (appends, fsyncs)
    end_watch: Callable[[], object] | None = None
    #: set (and replaced) at every high-watermark advance or role change:
    #: what acks=all produces wait on
    changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        ev = self.changed
        self.changed = trio.Event()
        ev.set()


@dataclass(frozen=True, slots=True)
class Leadership:
    """Proof that a produce was checked against one leader epoch: the wait
    for its acknowledgement ends with NOT_LEADER_OR_FOLLOWER once this
    LeaderState is no longer the partition's."""

    manager: ReplicaManager
    replica: Replica
    leader: LeaderState


def _now_ms() -> int:
    return int(trio.current_time() * 1000)


class ReplicaManager:
    def __init__(
        self,
        member: ClusterMember,
        logs: LogManager,
        make_fetcher: FetcherFactory,
        settings: ReplicaSettings | None = None,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.member = member
        self.logs = logs
        self.make_fetcher = make_fetcher
        self.settings = settings or ReplicaSettings()
        self.clock_ms = clock_ms
        self.node_id = member.node_id
        self.replicas: dict[tuple[str, int], Replica] = {}
        self.fetchers: dict[tuple[int, str], Fetcher] = {}
        #: the cluster metadata last acted on
        self.view: ClusterView | None = None
        #: the broker epoch the roles were decided under
        self.broker_epoch = 0
        self._nursery: trio.Nursery | None = None
        self._isr_wake = trio.Event()
        #: set after every pass over the metadata (tests wait on it)
        self.applied = trio.Event()
        #: ISR changes this broker wrote as a leader, by kind (metrics)
        self.isr_changes: dict[str, int] = {"shrink": 0, "expand": 0}

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the cluster metadata until cancelled (in the broker's
        background nursery; the fetchers and the ISR loop run inside)."""
        if UNSAFE_TRUNCATE_TO_HW:
            log_event(
                log, logging.WARNING,
                "TAILRACE_FAULT_TRUNCATE_TO_HW is set: followers truncate to their "
                "high watermark, not by leader epoch; acknowledged records may be lost "
                "(a test-only fault seam)",
            )  # fmt: skip
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._isr_loop)
            task_status.started()
            try:
                await self._follow_metadata()
            finally:
                for r in self.replicas.values():
                    self._drop_leadership(r)
                nursery.cancel_scope.cancel()

    async def _follow_metadata(self) -> None:
        member = self.member
        seen = (None, -1, -1)
        while True:
            view = member.view
            revision = view.revision if view is not None else 0
            epoch = member.broker_epoch if member.registered.is_set() else 0
            if (view, revision, epoch) != seen and revision:
                seen = (view, revision, epoch)
                snapshot = member.snapshot()
                if snapshot is not None and not await self._apply(snapshot, epoch):
                    # a replica could not be taken up (its topic's local
                    # creation still under way elsewhere, say): apply the same
                    # view again after the delay, not only on the next change
                    seen = (None, -1, -1)
            if view is None or not revision:
                await trio.sleep(self.settings.retry_delay)
                continue
            # wakes on the next change; the timeout notices a new session
            # (a new view object, a new broker epoch) without a change
            with trio.move_on_after(self.settings.retry_delay):
                await view.wait_beyond(revision)

    async def _apply(self, view: ClusterView, broker_epoch: int) -> bool:
        """Take up this broker's replicas as ``view`` says; False when one
        of them could not be (the caller tries again)."""
        self.view = view
        ok = True
        self.broker_epoch = broker_epoch
        mine: set[tuple[str, int]] = set()
        for (topic, p), (state, version) in sorted(view.partitions.items()):
            if self.node_id not in state.replicas:
                continue
            mine.add((topic, p))
            try:
                r = await self._replica(view, topic, p)
                await self._become(r, state, version, view, broker_epoch)
            except (BrokerError, ValueError) as exc:
                # ValueError: an epoch below the log's latest (become_leader)
                ok = False
                log_event(
                    log,
                    logging.ERROR,
                    "cannot take up a replica",
                    topic=topic,
                    partition=p,
                    error=str(exc),
                )
        for key, r in self.replicas.items():
            if key not in mine and r.role != "none":
                await self._become_none(r, "no longer assigned here")
        await self._delete_gone_topics(view)
        self.applied.set()
        self.applied = trio.Event()
        return ok

    async def _delete_gone_topics(self, view: ClusterView) -> None:
        """Delete the local copy of every cluster topic (one whose topic.json
        records the etcd create revision it was made for) that the cluster
        no longer has (DeleteTopics removed its spec and partition states,
        maybe while this broker was down), or has again under a new create
        revision (deleted and created anew: the old copy is another topic's
        data). Local topics (revision 0) are never touched."""
        placed = {t for t, _p in view.partitions}
        doomed = set()
        for topic, info in self.logs.topics().items():
            if not info.cluster_revision:
                continue
            spec = view.topics.get(topic)
            gone = spec is None and topic not in placed
            recreated = spec is not None and spec.revision != info.cluster_revision
            if gone or recreated:
                doomed.add(topic)
        for topic in sorted(doomed):
            for key in [k for k in self.replicas if k[0] == topic]:
                r = self.replicas.pop(key)
                await self._become_none(r, "topic deleted from the cluster")
            if topic in self.logs.topics():
                await self.logs.delete_topic(topic)
            log_event(log, logging.INFO, "deleted a topic the cluster no longer has", topic=topic)

    async def _replica(self, view: ClusterView, topic: str, p: int) -> Replica:
        r = self.replicas.get((topic, p))
        spec = view.topics.get(topic)
        local = self.logs.topics().get(topic)
        if (
            local is not None
            and local.cluster_revision
            and spec is not None
            and spec.revision != local.cluster_revision
        ):
            # deleted and created again since this copy was made: the old
            # copy goes first
            await self._delete_gone_topics(view)
            r, local = None, None
        if r is not None:
            return r
        if local is None:
            if spec is None:
                raise NotLeaderOrFollowerError(f"topic {topic!r} is not in the cluster metadata")
            await self.logs.create_topic(
                topic, spec.partitions, dict(spec.configs), cluster_revision=spec.revision
            )
        elif spec is not None and local.partitions < spec.partitions:
            await self.logs.grow_topic(topic, spec.partitions)
        plog = self.logs.get(topic, p)
        plog.set_replicated(True)
        r = self.replicas[(topic, p)] = Replica(topic, p, plog)
        return r

    # -------------------------------------------------------------- roles

    async def _become(
        self,
        r: Replica,
        state: PartitionState,
        version: int,
        view: ClusterView,
        broker_epoch: int,
    ) -> None:
        if state.leader == self.node_id:
            if not broker_epoch or state.leader_broker_epoch != broker_epoch:
                # elected in an earlier session of this broker (or this one
                # is not registered): the controller elects anew, never this
                # process in that epoch
                await self._become_none(r, "led in another broker epoch", state, version)
                return
            leader = r.leader
            if (
                r.role == "leader"
                and leader is not None
                and leader.leader_epoch == state.leader_epoch
            ):
                if version > leader.version:
                    leader.apply_state(state, version)  # an ISR change by the controller
                    r.state, r.version = state, version
                    self._update_hw(r)
                    r.notify()
                return
            await self._become_leader(r, state, version)
            return
        if state.leader == NO_LEADER or state.leader not in view.brokers:
            await self._become_none(r, "no live leader", state, version)
            return
        follower = r.follower
        if (
            r.role == "follower"
            and follower is not None
            and follower.leader_epoch == state.leader_epoch
        ):
            r.state, r.version = state, version
            return
        await self._become_follower(r, state, version, view)

    async def _become_leader(self, r: Replica, state: PartitionState, version: int) -> None:
        self._drop_leadership(r)
        r.role = "none"
        await self._stop_following(r)
        plog = r.log
        start = await plog.become_leader(state.leader_epoch)
        rf = len(state.replicas)
        configured = plog.config.min_insync_replicas
        leader = LeaderState(
            state,
            version=version,
            replica_id=self.node_id,
            epoch_start_offset=start,
            high_watermark=min(plog.high_watermark, start),
            now_ms=self.clock_ms(),
            replica_lag_time_max_ms=self.settings.replica_lag_time_max_ms,
            min_insync_replicas=configured if configured > 0 else default_min_insync_replicas(rf),
        )
        r.leader, r.follower = leader, None
        r.state, r.version = state, version
        r.role = "leader"
        # the leader's own log end and fsyncs count toward the watermark:
        # recompute it whenever they move (acks=0/1 traffic, the flush loop)
        r.end_watch = lambda: self._update_hw(r)
        plog.watch_end(r.end_watch)
        self._update_hw(r)
        r.notify()
        log_event(
            log,
            logging.INFO,
            "leading",
            topic=r.topic,
            partition=r.partition,
            leader_epoch=state.leader_epoch,
            epoch_start_offset=start,
            isr=",".join(map(str, state.isr)),
        )

    async def _become_follower(
        self, r: Replica, state: PartitionState, version: int, view: ClusterView
    ) -> None:
        self._drop_leadership(r)
        r.role = "none"
        await self._stop_following(r)
        follower = FollowerState(self.node_id, r.log.high_watermark)
        follower.on_state(state)  # a new epoch: truncation first (KAFKA-7164)
        if UNSAFE_TRUNCATE_TO_HW:
            await self._unsafe_truncate_to_high_watermark(r, follower)
        address = view.brokers[state.leader].address
        key = (state.leader, address)
        fetcher = self.fetchers.get(key)
        if fetcher is None:
            assert self._nursery is not None
            fetcher = await self.make_fetcher(self._nursery, state.leader, address)
            self.fetchers[key] = fetcher
        await _maybe_await(
            fetcher.add_partition(r.topic, r.partition, state.leader_epoch, r.log, follower)
        )
        r.follower, r.fetcher_key = follower, key
        r.state, r.version = state, version
        r.role = "follower"
        r.notify()
        log_event(
            log,
            logging.INFO,
            "following",
            topic=r.topic,
            partition=r.partition,
            leader=state.leader,
            leader_epoch=state.leader_epoch,
        )

    async def _unsafe_truncate_to_high_watermark(self, r: Replica, follower: FollowerState) -> None:
        """The fault seam (module docstring): cut the log at its high
        watermark now and skip the epoch exchange."""
        plog = r.log
        hw = plog.high_watermark
        log_event(
            log, logging.WARNING,
            "truncating to the high watermark (TAILRACE_FAULT_TRUNCATE_TO_HW, a "
            "test-only fault seam)",
            topic=r.topic, partition=r.partition, log_end_offset=plog.log_end_offset,
            high_watermark=hw,
        )  # fmt: skip
        await plog.truncate_to(hw)
        follower.truncated()

    async def _become_none(
        self,
        r: Replica,
        why: str,
        state: PartitionState | None = None,
        version: int = 0,
    ) -> None:
        if state is not None:
            r.state, r.version = state, version
        if r.role == "none":
            return
        self._drop_leadership(r)
        r.role = "none"
        await self._stop_following(r)
        r.follower = None
        r.notify()
        log_event(log, logging.INFO, "neither leading nor following", topic=r.topic,
                  partition=r.partition, reason=why)  # fmt: skip

    def _drop_leadership(self, r: Replica) -> None:
        """Forget the LeaderState (waiting acks=all produces see it gone)."""
        if r.end_watch is not None:
            r.log.unwatch_end(r.end_watch)
            r.end_watch = None
        if r.leader is not None:
            r.leader = None
            r.notify()

    async def _stop_following(self, r: Replica) -> None:
        key = r.fetcher_key
        if key is None:
            return
        r.fetcher_key = None
        fetcher = self.fetchers.get(key)
        if fetcher is not None:
            await _maybe_await(fetcher.remove_partition(r.topic, r.partition))

    # ------------------------------------------------- high watermark

    def _counted_offset(self, plog: PartitionLog) -> int:
        """The part of the leader's log that counts toward the high
        watermark: with flush ``sync`` only what is fsynced."""
        return plog.durable_offset

    def _update_hw(self, r: Replica) -> None:
        leader = r.leader
        if leader is None:
            return
        if leader.update_high_watermark(self._counted_offset(r.log)):
            self._publish_hw(r, leader)

    def _publish_hw(self, r: Replica, leader: LeaderState) -> None:
        r.log.set_replicated_high_watermark(leader.high_watermark)
        r.notify()

    # ------------------------------------------------ leader: followers

    def _leader(self, topic: str, partition: int) -> tuple[Replica, LeaderState]:
        r = self.replicas.get((topic, partition))
        leader = r.leader if r is not None else None
        if r is None or leader is None or r.role != "leader":
            view = self.member.snapshot()  # the newest, on this error path only
            if view is None or (topic, partition) not in view.partitions:
                raise UnknownTopicOrPartitionError(
                    f"{topic}-{partition} is not in the cluster metadata"
                )
            raise NotLeaderOrFollowerError(
                f"broker {self.node_id} does not lead {topic}-{partition}"
            )
        return r, leader

    def follower_fetch(
        self,
        topic: str,
        partition: int,
        replica_id: int,
        fetch_offset: int,
        current_leader_epoch: int,
    ) -> FollowerFetch:
        """A follower fetches at ``fetch_offset`` (its log end, durable as
        its topic's flush mode says). Fenced by ``current_leader_epoch``
        (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH); the position counts
        toward the high watermark. Returns (log, high watermark, log end)
        for the response."""
        r, leader = self._leader(topic, partition)
        leader.check_epoch(current_leader_epoch)
        plog = r.log
        leo = plog.log_end_offset
        if fetch_offset > leo or fetch_offset < 0:
            raise OffsetOutOfRangeError(
                f"fetch offset {fetch_offset} is outside [0, {leo}] of {topic}-{partition}"
            )
        try:
            advanced = leader.on_follower_fetch(
                replica_id,
                fetch_offset,
                current_leader_epoch,
                self.clock_ms(),
                leo,
                self._counted_offset(plog),
            )
        except ValueError as exc:
            raise NotLeaderOrFollowerError(str(exc)) from None
        if advanced:
            self._publish_hw(r, leader)
        view = self.view
        if (
            replica_id not in leader.isr
            and view is not None
            and leader.can_join(replica_id, view.brokers)
        ):
            self._isr_wake.set()
        return FollowerFetch(plog, leader.high_watermark, leo)

    def offset_for_epoch(
        self, topic: str, partition: int, epoch: int, current_leader_epoch: int
    ) -> EpochEndOffset:
        """A follower's OffsetForLeaderEpoch(``epoch``), fenced first."""
        r, leader = self._leader(topic, partition)
        leader.check_epoch(current_leader_epoch)
        return r.log.end_offset_for_epoch(epoch)

    # ------------------------------------------------- leader: produce

    def leader_for_append(self, topic: str, partition: int, acks: int) -> Leadership:
        """Before a client's append: this broker must lead the partition
        (NOT_LEADER_OR_FOLLOWER) and, for acks=all, the ISR must hold
        ``min_insync_replicas`` (NOT_ENOUGH_REPLICAS; nothing is written)."""
        r, leader = self._leader(topic, partition)
        leader.check_append(acks)
        return Leadership(self, r, leader)

    def appended(self, lead: Leadership) -> None:
        """After the append: with the ISR this broker alone (or flush not
        ``sync``) the watermark may move at once (the log's end watcher
        does this too; this keeps the produce path from depending on it)."""
        if lead.replica.leader is lead.leader:
            self._update_hw(lead.replica)

    def must_wait(self, lead: Leadership, appended: AppendResult, acks: int) -> bool:
        required = appended.last_offset + 1
        if acks == -1:
            return lead.leader.high_watermark < required
        plog = lead.replica.log
        return plog.config.flush == "sync" and plog.durable_offset < required

    async def wait_acked(self, lead: Leadership, appended: AppendResult, acks: int) -> None:
        """Until the append may be acknowledged: acks=1, once it is as
        durable as the topic's flush mode says on this broker; acks=all,
        once the high watermark covers it. Raises NOT_LEADER_OR_FOLLOWER
        when the leadership ends first and NOT_ENOUGH_REPLICAS_AFTER_APPEND
        (both indefinite outcomes: the batch is stored)."""
        r, leader = lead.replica, lead.leader
        plog = r.log
        required = appended.last_offset + 1
        if plog.config.flush == "sync" and plog.durable_offset < required:
            await plog.flush()
            if r.leader is leader:
                self._update_hw(r)
        if acks != -1:
            return
        while not leader.acks_all_done(required):
            if r.leader is not leader:
                raise NotLeaderOrFollowerError(
                    f"broker {self.node_id} stopped leading {r.topic}-{r.partition} before the "
                    "batch was committed: it was appended and may or may not be committed"
                )
            await r.changed.wait()
        if r.leader is not leader:
            raise NotLeaderOrFollowerError(
                f"broker {self.node_id} stopped leading {r.topic}-{r.partition}"
            )

    # -------------------------------------------------- leader: reads

    def check_readable(
        self, topic: str, partition: int, current_leader_epoch: int = UNDEFINED_EPOCH
    ) -> None:
        """Consumers read a partition at its leader only, fenced by the
        leader epoch their metadata gave (a Kafka client's
        ``current_leader_epoch``, KIP-320: FENCED_LEADER_EPOCH when older than
        this leader's, UNKNOWN_LEADER_EPOCH when newer; -1 is not checked).
        The broker's own topics (``__`` prefix) pass: readable at any
        replica, below that replica's high watermark (``__consumer_offsets``
        is replicated; the group coordinator reads it at the leader)."""
        if is_internal(topic):
            return
        _r, leader = self._leader(topic, partition)
        leader.check_epoch(current_leader_epoch)

    def served_high_watermark(self, topic: str, partition: int) -> int:
        """The watermark to report (ListOffsets latest); OFFSET_NOT_AVAILABLE
        until a new leader's watermark is established."""
        if is_internal(topic):
            return self.logs.get(topic, partition).high_watermark
        _r, leader = self._leader(topic, partition)
        return leader.served_high_watermark()

    # ---------------------------------------------- the group coordinator

    def leading(self, topic: str) -> dict[int, int]:
        """The partitions of ``topic`` this broker leads now: partition ->
        leader epoch (the group coordinator follows ``__consumer_offsets``)."""
        return {
            p: r.leader.leader_epoch
            for (t, p), r in self.replicas.items()
            if t == topic and r.role == "leader" and r.leader is not None
        }

    async def wait_established(self, topic: str, partition: int, leader_epoch: int) -> bool:
        """Until this broker's leadership of the partition in
        ``leader_epoch`` has its high watermark established (every record of
        earlier epochs committed, KIP-207): True; False once it no longer
        leads in that epoch."""
        while True:
            r = self.replicas.get((topic, partition))
            leader = r.leader if r is not None else None
            if r is None or leader is None or leader.leader_epoch != leader_epoch:
                return False
            if leader.established:
                return True
            await r.changed.wait()

    # ------------------------------------------------------------ ISR

    async def _isr_loop(self) -> None:
        interval = self.settings.isr_interval
        while True:
            with trio.move_on_after(interval):
                await self._isr_wake.wait()
            self._isr_wake = trio.Event()
            for r in list(self.replicas.values()):
                if r.role == "leader" and r.leader is not None:
                    await self._change_isr(r, r.leader)

    async def _change_isr(self, r: Replica, leader: LeaderState) -> None:
        view, client, state = self.view, self.member.client, r.state
        if view is None or client is None or state is None:
            return
        change = leader.propose_isr_change(self.clock_ms(), r.log.log_end_offset, view.brokers)
        if change is None:
            return
        new = change.apply(state)
        keys = self.member.keys
        key = keys.partition(r.topic, r.partition)
        try:
            result = await client.txn(
                [
                    Compare.mod_revision(key, change.base_version),
                    Compare.create_revision(keys.broker(self.node_id), self.broker_epoch),
                ],
                [Op.put(key, new.value())],
            )
        except EtcdError as exc:
            # unanswered: maybe written. The smaller ISR does not count
            # until the watch shows it (apply_state); an expansion stops
            # counting, which only holds the watermark back
            leader.abort_isr_change(change)
            log_event(log, logging.WARNING, "ISR change: etcd", topic=r.topic,
                      partition=r.partition, error=str(exc))  # fmt: skip
            if isinstance(exc, EtcdUnavailableError):
                await trio.sleep(self.settings.retry_delay)
            return
        if not result.succeeded:
            leader.abort_isr_change(change)
            log_event(log, logging.INFO, "ISR change refused: the partition changed",
                      topic=r.topic, partition=r.partition, kind=change.kind)  # fmt: skip
            return
        self._confirmed(r, leader, change, new, result.revision)

    def _confirmed(
        self,
        r: Replica,
        leader: LeaderState,
        change: IsrChange,
        new: PartitionState,
        revision: int,
    ) -> None:
        if leader.pending is change:
            leader.confirm_isr_change(change, revision)
        self.isr_changes[change.kind] = self.isr_changes.get(change.kind, 0) + 1
        # else the watch delivered the write first (apply_state)
        if r.leader is leader and r.version < revision:
            r.state, r.version = new, revision
        log_event(
            log,
            logging.INFO,
            "ISR " + change.kind,
            topic=r.topic,
            partition=r.partition,
            leader_epoch=change.leader_epoch,
            isr=",".join(map(str, change.new_isr)),
            replicas=",".join(map(str, change.replicas)),
        )
        if r.leader is leader:
            self._update_hw(r)
            r.notify()  # acks=all waiters check the ISR against the minimum


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value
