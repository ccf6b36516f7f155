"""The group coordinator: every consumer group of the broker, and their
committed offsets.

Request handlers (broker/handlers/groups.py) call the synchronous methods
here; each validates everything first and raises a BrokerError (sent as the
request-level error) without changing anything, or makes its whole change
before returning: state changes never span an await. The waits (a commit's
durability, a heartbeat held as a long poll) happen afterwards, in the
handler's own task.

Lifecycle: :meth:`GroupCoordinator.run` runs in the broker's nursery. It
loads the committed offsets from ``__consumer_offsets`` (requests meanwhile
get COORDINATOR_LOAD_IN_PROGRESS, retriable), then loops: members whose
session timed out, or who kept a revoked partition past their rebalance
timeout, are removed and their partitions reassigned; offsets of groups
that have been empty for ``offsets_retention_ms`` (measured from the later of
the commit and the moment the group became empty) are deleted with
tombstones; the offsets topic's retention is kept safe for the snapshots
(store.py). When the broker drains, held heartbeats are answered at once.

Two membership protocols share the one set of groups and the one offsets
store: the native one (ConsumerGroupHeartbeat, group.py: broker-side
assignment) and Kafka's classic one (JoinGroup/SyncGroup/Heartbeat/
LeaveGroup, classic.py: client-side assignment). A group has members of
one protocol at a time; a join through the other protocol is refused with
INCONSISTENT_GROUP_PROTOCOL until the group is empty again. A third loop
applies the classic groups' deadlines (rebalance, sync and session
timeouts), sleeping until the earliest one.

The methods added for the classic protocol and the Kafka front-end take
plain values and return ``BrokerError | None`` per item (group-level
errors are raised); the older native ones still take and return native
messages.

Cluster mode (``cluster_partitions`` set; issue 16, rule 8): the groups
are spread over the partitions of the replicated ``__consumer_offsets``
(ownership.py) and this broker coordinates those of the partitions it
leads. placement.py follows the leadership and calls
:meth:`GroupCoordinator.load_partition` (one OffsetStore per partition,
the same loading code as a single node's start) and
:meth:`GroupCoordinator.unload_partition` (the partition's groups leave
memory; held requests are answered NOT_COORDINATOR). Every group request
checks the ownership first: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS.
A single node is the same with one partition, loaded at start.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from tailrace.client.errors import (
    BrokerError,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    FencedMemberEpochError,
    GroupIdNotFoundError,
    GroupMaxSizeReachedError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    NotAssignedError,
    NotCoordinatorError,
    OffsetMetadataTooLargeError,
    OffsetOutOfRangeError,
    UnknownMemberIdError,
    UnreleasedInstanceIdError,
)
from tailrace.client.protocol import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
    DeletedGroup,
    DescribedGroup,
    DescribedMember,
    ListedGroup,
    OffsetCommitPartitionResult,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetCommitTopicResult,
    OffsetFetchPartitionResult,
    OffsetFetchRequest,
    OffsetFetchResponse,
    OffsetFetchTopicResult,
    TopicPartitions,
)

from ..log.manager import LogManager
from .classic import ClassicGroup, JoinParams, Waiter
from .group import Group, Member
from .ownership import Ownership
from .records import OffsetEntry
from .store import OFFSETS_TOPIC, Appended, OffsetStore, StoreSettings

if TYPE_CHECKING:
    from ..cluster.replicas import ReplicaManager
    from .placement import OffsetsPlacement

__all__ = [
    "CommitItem",
    "GroupCoordinator",
    "GroupSettings",
    "GroupView",
    "HeartbeatResult",
    "MemberView",
]

log = logging.getLogger(__name__)

TP = tuple[str, int]
#: what a write returns for the handler to await (:meth:`GroupCoordinator.wait_durable`)
Pending = Appended | Sequence[Appended]

LOADING = "loading"
READY = "ready"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """The ``[groups]`` section of the broker configuration."""

    session_timeout_min_ms: int = 6_000
    session_timeout_max_ms: int = 1_800_000
    heartbeat_interval_ms: int = 3_000
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    max_group_size: int = 1_000
    #: an empty classic group's first rebalance waits this long for more
    #: joiners (Kafka's group.initial.rebalance.delay.ms)
    initial_rebalance_delay_ms: int = 3_000
    #: longest offset metadata string kept (Kafka's offset.metadata.max.bytes)
    max_offset_metadata: int = 4096


@dataclass(frozen=True, slots=True)
class CommitItem:
    """One offset to commit."""

    topic: str
    partition: int
    offset: int
    metadata: str | None = None


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as DescribeGroups shows it (either protocol)."""

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    #: native: the member epoch; classic: the group's generation
    epoch: int
    session_timeout_ms: int
    rebalance_timeout_ms: int
    #: native only
    subscribed: tuple[str, ...] = ()
    assigned: frozenset[TP] = frozenset()
    revoking: frozenset[TP] = frozenset()
    target: frozenset[TP] = frozenset()
    #: classic only: the chosen protocol's metadata and the assignment, opaque
    metadata: bytes = b""
    assignment: bytes = b""


@dataclass(frozen=True, slots=True)
class GroupView:
    """A group as ListGroups and DescribeGroups show it (either protocol)."""

    group_id: str
    #: "classic", "consumer" (native) or "" (no members: offsets only)
    kind: str
    state: str
    #: "consumer" for native groups; the classic group's protocol type
    protocol_type: str
    #: the classic group's chosen protocol ("" otherwise)
    protocol: str
    #: native: the group epoch; classic: the generation
    epoch: int
    assignment_epoch: int
    members: tuple[MemberView, ...] = field(default=())


@dataclass(slots=True)
class HeartbeatResult:
    """A handled heartbeat: who it came from and what it reported, so the
    handler can answer now or hold it (:meth:`GroupCoordinator.hold`)."""

    group: Group
    member: Member
    #: the epoch the request carried (-1/-2 for a leave)
    epoch: int
    #: the partitions the request said the member owns (None: not reported)
    owned: set[TP] | None
    seq: int
    max_wait_ms: int


def _tps(items: Iterable[TopicPartitions] | None) -> set[TP] | None:
    if items is None:
        return None
    return {(t.topic, p) for t in items for p in t.partitions}


def _as_topic_partitions(tps: Iterable[TP]) -> list[TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(tps):
        by_topic.setdefault(topic, []).append(p)
    return [TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


class _PartitionCounts(Mapping[str, int]):
    """Partition counts read through the manager's topic table, without
    copying it on every heartbeat."""

    __slots__ = ("_topics",)

    def __init__(self, topics: Mapping[str, Any]) -> None:
        self._topics = topics

    def __getitem__(self, name: str) -> int:
        return self._topics[name].partitions

    def __iter__(self) -> Iterator[str]:
        return iter(self._topics)

    def __len__(self) -> int:
        return len(self._topics)


def _ignore(_group_id: str, _tp: TP, _entry: OffsetEntry | None) -> None:
    """on_durable of a store no longer served here."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class GroupCoordinator:
    """Every group on this broker. See the module docstring."""

    def __init__(
        self,
        manager: LogManager,
        settings: GroupSettings | None = None,
        *,
        store_settings: StoreSettings | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
        cluster_partitions: int | None = None,
    ) -> None:
        self.manager = manager
        self.settings = settings or GroupSettings()
        self.store_settings = store_settings or StoreSettings()
        self.clock_ms = clock_ms
        self.groups: dict[str, Group] = {}
        #: cluster mode: the partitions of __consumer_offsets and which are held here
        self.clustered = cluster_partitions is not None
        self.ownership = Ownership(cluster_partitions or 1)
        #: one store per offsets partition served here (a single node: partition 0)
        self.stores: dict[int, OffsetStore] = {}
        if not self.clustered:
            self.stores[0] = OffsetStore(
                manager, self._apply_durable, self.store_settings, clock_ms
            )
        #: cluster mode: set by the broker before any partition loads
        self.replicas: ReplicaManager | None = None
        self.placement: OffsetsPlacement | None = None
        #: cluster mode: partition counts of the cluster's topics (the
        #: native assignor's input; a coordinator need not host them)
        self.topic_counts: Callable[[], Mapping[str, int]] | None = None
        self.status = LOADING
        self.draining = False
        self._failure = ""
        #: set to wake the classic deadline loop when an earlier deadline appears
        self._classic_wake = trio.Event()
        self._classic_next = math.inf

    # --- lifecycle -----------------------------------------------------------

    async def run(
        self,
        draining: trio.Event | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Load, then run the background loops until cancelled (cluster
        mode: partitions load as this broker comes to lead them)."""
        task_status.started()
        if not self.clustered:
            try:
                await self.store.load()
            except Exception as exc:
                log.exception("group coordinator failed to load %s", OFFSETS_TOPIC)
                self._failure = f"loading {OFFSETS_TOPIC} failed: {exc}"
                self.status = FAILED
                return
        self.status = READY
        async with trio.open_nursery() as nursery:
            if draining is not None:
                nursery.start_soon(self._watch_draining, draining)
            nursery.start_soon(self._session_loop)
            nursery.start_soon(self._retention_loop)
            nursery.start_soon(self._classic_loop)

    async def _watch_draining(self, draining: trio.Event) -> None:
        await draining.wait()
        self.draining = True
        for group in self.groups.values():
            group.wake_all()
            if group.classic is not None:
                group.classic.shutdown(
                    CoordinatorNotAvailableError("the broker is shutting down; retry elsewhere")
                )

    @property
    def store(self) -> OffsetStore:
        """A single node's one store (partition 0)."""
        return self.stores[0]

    def _check_ready(self) -> None:
        if self.status == LOADING:
            raise CoordinatorLoadInProgressError(f"loading {OFFSETS_TOPIC}; retry shortly")
        if self.status == FAILED:
            raise CoordinatorNotAvailableError(self._failure)

    def _check_group_id(self, group_id: str) -> None:
        """The id is valid and (cluster mode) this broker coordinates it now."""
        if not group_id:
            raise InvalidGroupIdError("the group id must not be empty")
        if self.clustered:
            self.ownership.check(group_id)

    def _store_for(self, group_id: str) -> OffsetStore:
        """The store of a group checked by :meth:`_check_group_id`."""
        if not self.clustered:
            return self.stores[0]
        store = self.stores.get(self.ownership.partition(group_id))
        if store is None:
            raise NotCoordinatorError(f"this broker does not coordinate group {group_id!r}")
        return store

    def _view_of(self, group_id: str) -> Mapping[TP, OffsetEntry]:
        if not self.clustered:
            return self.stores[0].view.get(group_id, {})
        store = self.stores.get(self.ownership.partition(group_id))
        return {} if store is None else store.view.get(group_id, {})

    def _partition_counts(self) -> Mapping[str, int]:
        if self.topic_counts is not None:
            return self.topic_counts()
        return _PartitionCounts(self.manager.topics())

    # --- cluster mode: partitions come and go -----------------------------------

    async def load_partition(self, partition: int, leader_epoch: int) -> bool:
        """Load one offsets partition this broker now leads (the ownership
        marked it loading); True once it serves, False when the load failed
        or a leadership change overtook it (then nothing of it stays)."""
        loaded: list[tuple[str, TP, OffsetEntry | None]] = []
        store = OffsetStore(
            self.manager,
            lambda g, tp, e: loaded.append((g, tp, e)),
            self.store_settings,
            self.clock_ms,
            partition=partition,
            replicas=self.replicas,
        )
        try:
            await store.load()
            if not store.ready:
                raise CoordinatorNotAvailableError(f"no local log of {OFFSETS_TOPIC}-{partition}")
        except Exception as exc:
            log.exception("group coordinator failed to load %s-%d", OFFSETS_TOPIC, partition)
            self.ownership.failed(partition, leader_epoch, f"loading failed: {exc}")
            return False
        if not self.ownership.loaded(partition, leader_epoch):
            return False
        store.on_durable = self._apply_durable
        self.stores[partition] = store
        for group_id, tp, entry in loaded:
            self._apply_durable(group_id, tp, entry)
        log.info(
            "coordinating the groups of %s-%d (leader epoch %d): %d group(s)",
            OFFSETS_TOPIC,
            partition,
            leader_epoch,
            len(store.view),
        )
        return True

    def unload_partition(self, partition: int) -> None:
        """This broker no longer leads ``partition`` (the ownership forgot
        it): its groups leave memory; held requests answer NOT_COORDINATOR."""
        store = self.stores.pop(partition, None)
        if store is not None:
            # a commit acknowledged just before must not bring a group back
            store.on_durable = _ignore

        error = NotCoordinatorError(
            f"the coordinator of this group moved ({OFFSETS_TOPIC}-{partition} is led "
            "elsewhere now): find the coordinator again"
        )
        gone = [g for gid, g in self.groups.items() if self.ownership.partition(gid) == partition]
        for group in gone:
            del self.groups[group.group_id]
            group.wake_all()
            if group.classic is not None:
                group.classic.shutdown(error)
        log.info(
            "no longer coordinating the groups of %s-%d (%d group(s) unloaded)",
            OFFSETS_TOPIC,
            partition,
            len(gone),
        )

    def _unloaded(self, group: Group) -> bool:
        return self.clustered and self.groups.get(group.group_id) is not group

    # --- membership: ConsumerGroupHeartbeat -----------------------------------

    def heartbeat(self, body: ConsumerGroupHeartbeatRequest, client_host: str) -> HeartbeatResult:
        """Join, heartbeat or leave (see messages/groups.py); raises the
        request-level error and then changes nothing."""
        self._check_ready()
        self._check_group_id(body.group_id)
        s = self.settings
        if not s.session_timeout_min_ms <= body.session_timeout_ms <= s.session_timeout_max_ms:
            raise InvalidSessionTimeoutError(
                f"session_timeout_ms {body.session_timeout_ms} is outside "
                f"[{s.session_timeout_min_ms}, {s.session_timeout_max_ms}] "
                "(groups.session_timeout_min_ms / max_ms)"
            )
        if body.rebalance_timeout_ms <= 0:
            raise InvalidRequestError("rebalance_timeout_ms must be positive")
        if body.max_wait_ms < 0:
            raise InvalidRequestError("max_wait_ms must not be negative")
        owned = _tps(body.owned_partitions)
        counts = self._partition_counts()
        now = trio.current_time()
        group = self.groups.get(body.group_id)
        epoch = body.member_epoch
        changed = False

        if epoch == 0:
            if group is not None and group.classic_active:
                raise InconsistentGroupProtocolError(
                    f"group {body.group_id!r} has members using Kafka's classic protocol "
                    "(JoinGroup); a native member can join once it is empty"
                )
            member, changed = self._join(group, body, counts)
            group = self.groups[body.group_id]
            owned = set()
        elif epoch in (-1, -2):
            member = self._member(group, body.member_id)
            assert group is not None
            if epoch == -2 and member.instance_id is None:
                raise InvalidRequestError("member_epoch -2 is for static members (instance_id)")
            if epoch == -1 or member.instance_id is None:
                group.remove(member, counts, self.clock_ms())
                self._maybe_drop(group)
                log.info("group %s: member %s left", group.group_id, member.member_id)
            else:
                member.left = True
                member.session_deadline = now + member.session_timeout_ms / 1000
                log.info(
                    "group %s: static member %s (%s) left for now; its partitions wait for it",
                    group.group_id,
                    member.member_id,
                    member.instance_id,
                )
            group.wake_all()
            return HeartbeatResult(group, member, epoch, None, member.seq, 0)
        elif epoch > 0:
            member = self._member(group, body.member_id)
            assert group is not None
            if member.left:
                raise FencedMemberEpochError(
                    f"member {member.member_id} left the group; rejoin with member_epoch 0"
                )
            if epoch != member.epoch and not (
                epoch == member.previous_epoch and (owned is None or owned <= member.owned)
            ):
                raise FencedMemberEpochError(
                    f"member epoch {epoch} is stale (current {member.epoch}); rejoin"
                )
            if owned is not None and not owned <= member.owned:
                extra = sorted(owned - member.owned)[:3]
                raise FencedMemberEpochError(
                    f"member {member.member_id} reports partitions it does not own "
                    f"({', '.join(f'{t}/{p}' for t, p in extra)}); rejoin"
                )
        else:
            raise InvalidRequestError(f"member_epoch {epoch} is not 0, -1, -2 or an epoch")

        member.session_deadline = now + body.session_timeout_ms / 1000
        member.session_timeout_ms = body.session_timeout_ms
        member.rebalance_timeout_ms = body.rebalance_timeout_ms
        member.client_id = body.client_id
        member.client_host = client_host
        member.seq += 1
        member.poke()  # an older held heartbeat of this member answers now
        if body.subscribed_topics is not None:
            topics = tuple(sorted(set(body.subscribed_topics)))
            if topics != member.subscribed:
                member.subscribed = topics
                group.rebalance(counts)
                changed = True
        if group.refresh_metadata(counts):
            changed = True
        if owned is not None and group.acknowledge(member, owned):
            changed = True
        if group.reconcile(member, now):
            changed = True
        if changed:
            group.wake_all()
        return HeartbeatResult(group, member, epoch, owned, member.seq, body.max_wait_ms)

    def _member(self, group: Group | None, member_id: str) -> Member:
        member = group.members.get(member_id) if group is not None else None
        if member is None:
            raise UnknownMemberIdError(
                f"the group has no member {member_id!r} (it left or timed out); "
                'rejoin with member_id "" and member_epoch 0'
            )
        return member

    def _join(
        self, group: Group | None, body: ConsumerGroupHeartbeatRequest, counts: Mapping[str, int]
    ) -> tuple[Member, bool]:
        if body.member_id:
            member = self._member(group, body.member_id)
            assert group is not None
            if member.instance_id != body.instance_id:
                raise InvalidRequestError(
                    f"member {member.member_id} has instance_id {member.instance_id!r}, "
                    f"not {body.instance_id!r}"
                )
            group.reset(member)
            log.info("group %s: member %s rejoined", group.group_id, member.member_id)
            return member, True
        if body.subscribed_topics is None:
            raise InvalidRequestError("subscribed_topics is required to join")
        if group is not None and body.instance_id is not None:
            existing_id = group.instances.get(body.instance_id)
            if existing_id is not None:
                existing = group.members[existing_id]
                if not existing.left:
                    raise UnreleasedInstanceIdError(
                        f"instance_id {body.instance_id!r} is held by live member "
                        f"{existing_id}; it must leave (or time out) first"
                    )
                # A static member back within its session: it takes its old
                # place and assignment, nobody else rebalances.
                existing.left = False
                log.info(
                    "group %s: static member %s (%s) is back",
                    group.group_id,
                    existing_id,
                    body.instance_id,
                )
                return existing, False
        if group is not None and len(group.members) >= self.settings.max_group_size:
            raise GroupMaxSizeReachedError(
                f"group {body.group_id!r} has {len(group.members)} members (groups.max_group_size)"
            )
        if group is None:
            group = self.groups[body.group_id] = Group(body.group_id, self.clock_ms())
        group.classic = None  # an empty classic group becomes a native one
        member = Member(
            str(uuid.uuid4()),
            instance_id=body.instance_id,
            subscribed=tuple(sorted(set(body.subscribed_topics))),
            session_timeout_ms=body.session_timeout_ms,
            rebalance_timeout_ms=body.rebalance_timeout_ms,
            client_id=body.client_id,
        )
        group.add(member, counts)
        log.info(
            "group %s: member %s joined (epoch %d, %d members)",
            group.group_id,
            member.member_id,
            group.epoch,
            len(group.members),
        )
        return member, True

    def heartbeat_interval_ms(self, member: Member) -> int:
        return max(1, min(self.settings.heartbeat_interval_ms, member.session_timeout_ms // 3))

    def _settled(self, r: HeartbeatResult) -> bool:
        """Nothing new to tell the member: its epoch and assignment are what
        its request reported, and no newer heartbeat of it arrived."""
        m = r.member
        return (
            not self.draining
            and not self._unloaded(r.group)
            and r.group.members.get(m.member_id) is m
            and m.seq == r.seq
            and m.epoch == r.epoch
            and (r.owned is None or m.assigned == r.owned)
        )

    def should_hold(self, r: HeartbeatResult) -> bool:
        return r.max_wait_ms > 0 and r.epoch > 0 and self._settled(r)

    async def hold(self, r: HeartbeatResult) -> ConsumerGroupHeartbeatResponse:
        """The long poll: wait until the member has something to learn, a
        newer heartbeat of it arrives, or max_wait_ms (at most the heartbeat
        interval) passes; then answer with its state."""
        m = r.member
        wait = min(r.max_wait_ms, self.heartbeat_interval_ms(m)) / 1000
        deadline = trio.current_time() + wait
        while self._settled(r):
            event = m.wake
            with trio.move_on_at(deadline) as scope:
                await event.wait()
            if scope.cancelled_caught:
                break
            if r.group.members.get(m.member_id) is m and r.group.reconcile(m, trio.current_time()):
                r.group.wake_all()
        return self.heartbeat_response(r)

    def heartbeat_response(self, r: HeartbeatResult) -> ConsumerGroupHeartbeatResponse:
        m = r.member
        if r.epoch in (-1, -2):
            return ConsumerGroupHeartbeatResponse(member_id=m.member_id, member_epoch=r.epoch)
        if self._unloaded(r.group) and r.group.members.get(m.member_id) is m:
            moved = NotCoordinatorError("the group's coordinator moved: find it again")
            return ConsumerGroupHeartbeatResponse(
                error_code=int(moved.code), error_message=moved.message
            )
        if r.group.members.get(m.member_id) is not m:
            error = UnknownMemberIdError(f"member {m.member_id} was removed from the group")
            return ConsumerGroupHeartbeatResponse(
                error_code=int(error.code), error_message=error.message
            )
        return ConsumerGroupHeartbeatResponse(
            member_id=m.member_id,
            member_epoch=m.epoch,
            heartbeat_interval_ms=self.heartbeat_interval_ms(m),
            assignment=_as_topic_partitions(m.assigned),
        )

    # --- membership: the classic protocol (JoinGroup, SyncGroup, ...) ------------

    def _check_session_timeout(self, session_timeout_ms: int) -> None:
        s = self.settings
        if not s.session_timeout_min_ms <= session_timeout_ms <= s.session_timeout_max_ms:
            raise InvalidSessionTimeoutError(
                f"session timeout {session_timeout_ms} ms is outside "
                f"[{s.session_timeout_min_ms}, {s.session_timeout_max_ms}] "
                "(groups.session_timeout_min_ms / max_ms)"
            )

    def _classic_group(self, group_id: str) -> Group:
        """The group for a classic request that needs an existing group."""
        self._check_ready()
        self._check_group_id(group_id)
        group = self.groups.get(group_id)
        if group is None or group.classic is None:
            if group is not None and group.members:
                raise InconsistentGroupProtocolError(
                    f"group {group_id!r} is a native group (ConsumerGroupHeartbeat)"
                )
            raise UnknownMemberIdError(f"group {group_id!r} has no classic members; join first")
        return group

    def _check_not_draining(self) -> None:
        """Requests that may be held are refused once the broker drains (the
        held ones are answered the same way): clients find a coordinator again."""
        if self.draining:
            raise CoordinatorNotAvailableError("the broker is shutting down; retry elsewhere")

    def join_group(self, group_id: str, params: JoinParams) -> Waiter:
        """JoinGroup. Raises the request's error; otherwise the waiter gives
        the answer now or once the rebalance completes."""
        self._check_ready()
        self._check_not_draining()
        self._check_group_id(group_id)
        self._check_session_timeout(params.session_timeout_ms)
        if params.rebalance_timeout_ms <= 0:
            raise InvalidRequestError("the rebalance timeout must be positive")
        group = self.groups.get(group_id)
        if group is not None and group.members:
            raise InconsistentGroupProtocolError(
                f"group {group_id!r} has native members (ConsumerGroupHeartbeat); "
                "a classic member can join once it is empty"
            )
        if group is None or group.classic is None:
            if params.member_id and params.instance_id is None:
                raise UnknownMemberIdError(
                    f"group {group_id!r} has no member {params.member_id!r}; "
                    "rejoin with an empty member id"
                )
            if group is None:
                group = self.groups[group_id] = Group(group_id, self.clock_ms())
            group.classic = ClassicGroup(
                group_id,
                max_size=self.settings.max_group_size,
                initial_delay=self.settings.initial_rebalance_delay_ms / 1000,
            )
        try:
            with self._classic_step(group):
                waiter = group.classic.join(params, trio.current_time())
        finally:
            self._maybe_drop(group)
        return waiter

    def sync_group(
        self,
        group_id: str,
        member_id: str,
        instance_id: str | None,
        generation: int,
        assignments: Mapping[str, bytes],
    ) -> Waiter:
        """SyncGroup; ``assignments`` (member id -> opaque bytes) counts
        only from the leader. Raises the request's error."""
        self._check_not_draining()
        group = self._classic_group(group_id)
        assert group.classic is not None
        with self._classic_step(group):
            return group.classic.sync(
                member_id, instance_id, generation, assignments, trio.current_time()
            )

    def classic_heartbeat(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> None:
        """Heartbeat; raises its error (REBALANCE_IN_PROGRESS: rejoin)."""
        group = self._classic_group(group_id)
        assert group.classic is not None
        with self._classic_step(group):
            group.classic.heartbeat(member_id, instance_id, generation, trio.current_time())

    def leave_group(
        self, group_id: str, members: Sequence[tuple[str, str | None]]
    ) -> list[BrokerError | None]:
        """LeaveGroup of (member id, instance id) pairs; one outcome each."""
        self._check_ready()
        self._check_group_id(group_id)
        group = self.groups.get(group_id)
        if group is None or group.classic is None:
            return [
                UnknownMemberIdError(f"group {group_id!r} has no classic member {m or i!r}")
                for m, i in members
            ]
        try:
            with self._classic_step(group):
                return group.classic.leave(members, trio.current_time())
        finally:
            self._maybe_drop(group)

    @contextlib.contextmanager
    def _classic_step(self, group: Group) -> Iterator[None]:
        """Around a change of a classic group: note when it became empty
        (offset retention counts from then) and reschedule the deadline loop."""
        was_active = group.classic_active
        try:
            yield
        finally:
            if was_active and not group.has_members:
                group.empty_since_ms = self.clock_ms()
            if group.classic is not None:
                self._schedule_classic(group.classic.next_deadline())

    def _schedule_classic(self, deadline: float) -> None:
        if deadline < self._classic_next:
            self._classic_next = deadline
            self._classic_wake.set()

    async def _classic_loop(self) -> None:
        """Apply the classic groups' deadlines, sleeping until the earliest
        (rescheduled by :meth:`_schedule_classic` when an earlier one appears)."""
        while True:
            self._classic_wake = trio.Event()
            self._classic_next = self.tick_classic(trio.current_time())
            with trio.move_on_at(self._classic_next):
                await self._classic_wake.wait()

    def tick_classic(self, now: float) -> float:
        """Expire what is due in every classic group; returns the next deadline."""
        nearest = math.inf
        for group in list(self.groups.values()):
            classic = group.classic
            if classic is None:
                continue
            with self._classic_step(group):
                if classic.tick(now):
                    log.info(
                        "group %s: %s, generation %d, %d member(s)",
                        group.group_id,
                        classic.state,
                        classic.generation,
                        len(classic.members),
                    )
            self._maybe_drop(group)
            nearest = min(nearest, classic.next_deadline())
        return nearest

    # --- committed offsets ------------------------------------------------------

    def needs_log(self) -> bool:
        """Whether the offsets topic must be created before a write (a
        single node's first commit; the cluster creates its own)."""
        return not self.clustered and not self.store.ready

    async def ensure_log(self) -> None:
        await self.store.ensure_log()

    def commit(self, body: OffsetCommitRequest) -> tuple[OffsetCommitResponse, Pending | None]:
        """Validate and append a native commit (synchronously). The caller
        awaits :meth:`wait_durable` on the returned append before answering."""
        self._check_ready()
        self._check_group_id(body.group_id)
        group = self.groups.get(body.group_id)
        owned: set[TP] | None = None
        if body.member_epoch >= 0 or body.member_id:
            member = self._member(group, body.member_id)
            if body.member_epoch not in (member.epoch, member.previous_epoch) or member.left:
                raise FencedMemberEpochError(
                    f"member epoch {body.member_epoch} is stale (current {member.epoch}): "
                    "the member was fenced by a rebalance and must rejoin"
                )
            owned = member.owned
        elif group is not None and group.has_members:
            raise GroupNotEmptyError(
                f"group {body.group_id!r} has active member(s): only "
                "they may commit (stop them first)"
            )
        items = [
            CommitItem(t.name, p.partition, p.offset, p.metadata)
            for t in body.topics
            for p in t.partitions
        ]
        errors, appended = self._append_offsets(body.group_id, items, owned, body.member_id)
        outcomes = iter(errors)
        topics = []
        for t in body.topics:
            results = []
            for p in t.partitions:
                result = OffsetCommitPartitionResult(partition=p.partition)
                error = next(outcomes)
                if error is not None:
                    result.error_code = int(error.code)
                    result.error_message = error.message
                results.append(result)
            topics.append(OffsetCommitTopicResult(name=t.name, partitions=results))
        return OffsetCommitResponse(topics=topics), appended

    def commit_offsets(
        self,
        group_id: str,
        items: Sequence[CommitItem],
        *,
        generation: int = -1,
        member_id: str = "",
        instance_id: str | None = None,
    ) -> tuple[list[BrokerError | None], Pending | None]:
        """A classic (Kafka) commit: validated against the classic
        generation and member, or, with generation < 0, accepted only while
        the group has no members (assign() consumers, admin tools). Raises
        the group-level error; otherwise returns one outcome per item and
        the append to await (:meth:`wait_durable`) before answering."""
        self._check_ready()
        self._check_group_id(group_id)
        group = self.groups.get(group_id)
        if group is not None and group.members:
            raise UnknownMemberIdError(
                f"group {group_id!r} has native members (ConsumerGroupHeartbeat): "
                "only they may commit"
            )
        classic = group.classic if group is not None else None
        if classic is not None:
            classic.check_commit(generation, member_id, instance_id, trio.current_time())
        elif generation >= 0:
            if group is None:
                raise IllegalGenerationError(
                    f"group {group_id!r} does not exist: no generation {generation}"
                )
            raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}")
        return self._append_offsets(group_id, items, None, member_id)

    def _append_offsets(
        self, group_id: str, items: Sequence[CommitItem], owned: set[TP] | None, member_id: str
    ) -> tuple[list[BrokerError | None], Pending | None]:
        """Check each item and append the good ones as one batch."""
        now = self.clock_ms()
        changes: list[tuple[str, TP, OffsetEntry | None]] = []
        errors: list[BrokerError | None] = []
        limit = self.settings.max_offset_metadata
        for item in items:
            tp = (item.topic, item.partition)
            try:
                if owned is not None and tp not in owned:
                    raise NotAssignedError(
                        f"{item.topic}/{item.partition} is not assigned to member {member_id}"
                    )
                if item.metadata is not None and len(item.metadata) > limit:
                    raise OffsetMetadataTooLargeError(
                        f"offset metadata of {item.topic}/{item.partition} is "
                        f"{len(item.metadata)} characters; at most {limit} are kept"
                    )
                if self.clustered:
                    # the partition's leader may be elsewhere: its log end is not known here
                    if item.offset < 0:
                        raise OffsetOutOfRangeError(
                            f"offset {item.offset} of {item.topic}/{item.partition} is negative"
                        )
                    errors.append(None)
                    changes.append((group_id, tp, OffsetEntry(item.offset, item.metadata, now)))
                    continue
                plog = self.manager.get(item.topic, item.partition)
                if item.offset < 0 or item.offset > plog.log_end_offset:
                    raise OffsetOutOfRangeError(
                        f"offset {item.offset} of {item.topic}/{item.partition} is outside "
                        f"[0, {plog.log_end_offset}] (the log end)"
                    )
            except BrokerError as exc:
                errors.append(exc)
                continue
            errors.append(None)
            changes.append((group_id, tp, OffsetEntry(item.offset, item.metadata, now)))
        if not changes:
            return errors, None
        return errors, self._store_for(group_id).append(changes)

    async def wait_durable(self, appended: Pending) -> None:
        """Until the write is durable (cluster mode: committed to the ISR);
        raises NOT_COORDINATOR when this broker stopped leading meanwhile."""
        for one in [appended] if isinstance(appended, Appended) else appended:
            store = self.stores.get(one.partition)
            if store is None:
                raise NotCoordinatorError(
                    "the group's coordinator moved before the write was committed: "
                    "find it again and retry"
                )
            await store.wait_durable(one)

    def _apply_durable(self, group_id: str, tp: TP, entry: OffsetEntry | None) -> None:
        """An offset change became durable: make it visible."""
        group = self.groups.get(group_id)
        if entry is None:
            if group is not None:
                group.offsets.pop(tp, None)
                self._maybe_drop(group)
            return
        if group is None:
            group = self.groups[group_id] = Group(group_id, self.clock_ms())
        group.offsets[tp] = entry

    def _maybe_drop(self, group: Group) -> None:
        """A group with neither members nor offsets no longer exists."""
        if not group.has_members and not group.offsets and not self._view_of(group.group_id):
            self.groups.pop(group.group_id, None)

    def committed(
        self, group_id: str, partitions: Sequence[TP] | None
    ) -> list[tuple[TP, OffsetEntry | None]]:
        """Committed offsets of ``partitions`` (None: every committed one),
        for either protocol; None where nothing is committed."""
        self._check_ready()
        self._check_group_id(group_id)
        group = self.groups.get(group_id)
        offsets = group.offsets if group is not None else {}
        if partitions is None:
            return [(tp, offsets[tp]) for tp in sorted(offsets)]
        return [(tp, offsets.get(tp)) for tp in partitions]

    def fetch_offsets(self, body: OffsetFetchRequest) -> OffsetFetchResponse:
        self._check_ready()
        self._check_group_id(body.group_id)
        group = self.groups.get(body.group_id)
        offsets = group.offsets if group is not None else {}
        wanted: dict[str, list[int]] = {}
        if body.topics is None:
            for topic, p in sorted(offsets):
                wanted.setdefault(topic, []).append(p)
        else:
            for t in body.topics:
                wanted.setdefault(t.name, []).extend(t.partitions)
        topics = []
        for topic, partitions in wanted.items():
            results = []
            for p in partitions:
                entry = offsets.get((topic, p))
                result = OffsetFetchPartitionResult(partition=p)
                if entry is not None:
                    result.offset = entry.offset
                    result.metadata = entry.metadata
                    result.commit_timestamp_ms = entry.commit_timestamp
                results.append(result)
            topics.append(OffsetFetchTopicResult(name=topic, partitions=results))
        return OffsetFetchResponse(topics=topics)

    # --- administration ---------------------------------------------------------

    def group_views(self) -> list[GroupView]:
        """Every group (either protocol), without members, by id (cluster
        mode: the groups this broker coordinates, as Kafka's ListGroups)."""
        self._check_ready()
        return [
            self._view(self.groups[gid], members=False)
            for gid in sorted(self.groups)
            if not self.clustered or self.ownership.serves(gid)
        ]

    def group_view(self, group_id: str) -> GroupView | None:
        """One group with its members, or None when it does not exist."""
        self._check_ready()
        if self.clustered:
            self.ownership.check(group_id)
        group = self.groups.get(group_id)
        return None if group is None else self._view(group, members=True)

    @staticmethod
    def _view(group: Group, *, members: bool) -> GroupView:
        classic = group.classic
        if classic is not None and group.classic_active:
            views = ()
            if members:
                protocol = classic.protocol
                views = tuple(
                    MemberView(
                        member_id=m.member_id,
                        instance_id=m.instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        epoch=classic.generation,
                        session_timeout_ms=m.session_timeout_ms,
                        rebalance_timeout_ms=m.rebalance_timeout_ms,
                        metadata=m.metadata(protocol) if protocol in m.protocol_names() else b"",
                        assignment=m.assignment,
                    )
                    for m in sorted(classic.members.values(), key=lambda m: m.member_id)
                )
            return GroupView(
                group_id=group.group_id,
                kind="classic",
                state=classic.state,
                protocol_type=classic.protocol_type or "",
                protocol=classic.protocol or "",
                epoch=classic.generation,
                assignment_epoch=classic.generation,
                members=views,
            )
        views = ()
        if members:
            views = tuple(
                MemberView(
                    member_id=m.member_id,
                    instance_id=m.instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    epoch=m.epoch,
                    session_timeout_ms=m.session_timeout_ms,
                    rebalance_timeout_ms=m.rebalance_timeout_ms,
                    subscribed=m.subscribed,
                    assigned=frozenset(m.assigned),
                    revoking=frozenset(m.revoking),
                    target=frozenset(group.target.get(m.member_id, ())),
                )
                for m in sorted(group.members.values(), key=lambda m: m.member_id)
            )
        return GroupView(
            group_id=group.group_id,
            kind="consumer" if group.members else "",
            state=group.state,
            protocol_type=group.protocol_type,
            protocol="",
            epoch=group.epoch if group.members or classic is None else classic.generation,
            assignment_epoch=group.assignment_epoch,
            members=views,
        )

    def list_groups(self, states: list[str] | None) -> list[ListedGroup]:
        wanted = None if states is None else {s.lower() for s in states}
        return [
            ListedGroup(
                group_id=v.group_id,
                state=v.state,
                member_count=self._member_count(v.group_id),
                group_epoch=v.epoch,
            )
            for v in self.group_views()
            if wanted is None or v.state.lower() in wanted
        ]

    def _member_count(self, group_id: str) -> int:
        group = self.groups[group_id]
        if group.classic_active:
            assert group.classic is not None
            return len(group.classic.members)
        return len(group.members)

    def describe_group(self, group_id: str) -> DescribedGroup:
        view = self.group_view(group_id)
        if view is None:
            error = GroupIdNotFoundError(f"no group {group_id!r}")
            return DescribedGroup(
                group_id=group_id, error_code=int(error.code), error_message=error.message
            )
        members = [
            DescribedMember(
                member_id=m.member_id,
                instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_epoch=m.epoch,
                subscribed_topics=list(m.subscribed),
                assignment=_as_topic_partitions(m.assigned),
                pending_revocation=_as_topic_partitions(m.revoking),
                target_assignment=_as_topic_partitions(m.target),
                session_timeout_ms=m.session_timeout_ms,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
            )
            for m in view.members
        ]
        return DescribedGroup(
            group_id=group_id,
            state=view.state,
            group_epoch=view.epoch,
            assignment_epoch=view.assignment_epoch,
            members=members,
        )

    def delete_groups(self, group_ids: list[str]) -> tuple[list[DeletedGroup], Pending | None]:
        """Native adapter of :meth:`delete`."""
        errors, appended = self.delete(group_ids)
        results = []
        for gid, error in zip(group_ids, errors, strict=True):
            result = DeletedGroup(group_id=gid)
            if error is not None:
                result.error_code = int(error.code)
                result.error_message = error.message
            results.append(result)
        return results, appended

    def delete(self, group_ids: Sequence[str]) -> tuple[list[BrokerError | None], Pending | None]:
        """Check and append the tombstones of every deletable group (either
        protocol; not while it has members); one outcome per group. The
        caller waits for durability before answering."""
        self._check_ready()
        errors: list[BrokerError | None] = []
        changes: list[tuple[str, TP, OffsetEntry | None]] = []
        for gid in group_ids:
            group = self.groups.get(gid)
            try:
                self._check_group_id(gid)
                entries = self._view_of(gid)
                if group is None and not entries:
                    raise GroupIdNotFoundError(f"no group {gid!r}")
                if group is not None and group.has_members:
                    raise GroupNotEmptyError(f"group {gid!r} has active member(s)")
            except BrokerError as exc:
                errors.append(exc)
                continue
            errors.append(None)
            changes.extend((gid, tp, None) for tp in sorted(entries))
            if group is not None and group.classic is not None:
                group.classic.kill()
                group.classic = None
            if group is not None and not entries:
                self._maybe_drop(group)
        if not changes:
            return errors, None
        by_store: dict[int, list[tuple[str, TP, OffsetEntry | None]]] = {}
        for change in changes:
            p = self.ownership.partition(change[0]) if self.clustered else 0
            by_store.setdefault(p, []).append(change)
        appended: list[Appended] = []
        for p, some in by_store.items():
            store = self.stores.get(p)
            try:
                if store is None:
                    raise NotCoordinatorError(f"{OFFSETS_TOPIC}-{p} is no longer served here")
                appended.append(store.append(some))
            except BrokerError as exc:
                failed = {c[0] for c in some}
                errors = [
                    exc if e is None and gid in failed else e
                    for gid, e in zip(group_ids, errors, strict=True)
                ]
        if not appended:
            return errors, None
        log.info("deleted group(s) %s", ", ".join(sorted({c[0] for c in changes})))
        return errors, appended[0] if len(appended) == 1 else appended

    # --- background loops ---------------------------------------------------------

    async def _session_loop(self) -> None:
        tick = min(1.0, self.settings.session_timeout_min_ms / 4000)
        while True:
            self.expire_members(trio.current_time())
            await trio.sleep(tick)

    def expire_members(self, now: float) -> None:
        """Remove members past their session timeout, or holding a revoked
        partition past their rebalance timeout."""
        counts: Mapping[str, int] | None = None
        for group in list(self.groups.values()):
            doomed = []
            for m in group.members.values():
                if m.session_deadline <= now:
                    doomed.append((m, "its session timed out"))
                elif m.revoke_deadline is not None and m.revoke_deadline <= now:
                    doomed.append((m, "it kept revoked partitions past its rebalance timeout"))
            if not doomed:
                continue
            if counts is None:
                counts = self._partition_counts()
            for m, why in doomed:
                log.info(
                    "group %s: removing member %s: %s (partitions %s)",
                    group.group_id,
                    m.member_id,
                    why,
                    ", ".join(f"{t}/{p}" for t, p in sorted(m.owned)) or "none",
                )
                group.remove(m, counts, self.clock_ms())
            group.wake_all()
            self._maybe_drop(group)

    async def _retention_loop(self) -> None:
        interval = self.settings.offsets_retention_check_interval_ms / 1000
        while True:
            await trio.sleep(interval)
            await self.expire_offsets(self.clock_ms())
            if not self.clustered and self.store.ready:
                try:
                    await self.store.check_topic_config()
                except BrokerError as exc:
                    log.error("cannot adjust %s retention: %s", OFFSETS_TOPIC, exc.message)

    async def expire_offsets(self, now_ms: int) -> int:
        """Delete the offsets of empty groups older than offsets_retention_ms.
        Returns how many were deleted."""
        if self.status != READY:
            return 0
        expired = 0
        for store in list(self.stores.values()):
            if store.ready:
                expired += await self._expire_in(store, now_ms)
        return expired

    async def _expire_in(self, store: OffsetStore, now_ms: int) -> int:
        retention = self.settings.offsets_retention_ms
        changes: list[tuple[str, TP, OffsetEntry | None]] = []
        for gid, entries in store.view.items():
            group = self.groups.get(gid)
            if group is not None and group.has_members:
                continue
            since = group.empty_since_ms if group is not None else -math.inf
            for tp, entry in sorted(entries.items()):
                if now_ms - max(entry.commit_timestamp, since) > retention:
                    changes.append((gid, tp, None))
        if not changes:
            return 0
        try:
            appended = store.append(changes)
            await store.wait_durable(appended)
        except BrokerError as exc:
            log.error("expiring committed offsets failed: %s", exc.message)
            return 0
        log.info(
            "expired %d committed offset(s) of empty group(s) %s",
            len(changes),
            ", ".join(sorted({c[0] for c in changes})),
        )
        return len(changes)
