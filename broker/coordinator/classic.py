"""Classic consumer groups: Kafka's JoinGroup / SyncGroup / Heartbeat /
LeaveGroup protocol, with client-side assignment.

Nothing here knows a wire format: members carry opaque protocol metadata
and receive opaque assignment bytes (range, roundrobin, cooperative-sticky
and any other assignor pass through untouched). The coordinator
(coordinator.py) owns one :class:`ClassicGroup` per group that uses this
protocol, calls its synchronous methods with the trio clock's ``now`` and
awaits the :class:`Waiter` a held JoinGroup or SyncGroup answer comes
through.

States (Kafka's names)::

    Empty --join--> PreparingRebalance --all joined / rebalance timeout-->
    CompletingRebalance --leader's SyncGroup--> Stable
    any --member joins with new protocols / leaves / times out--> PreparingRebalance
    PreparingRebalance --nobody rejoined--> Empty
    any --group deleted--> Dead

Rules, as Kafka's GroupCoordinator keeps them:

* **Join.** A member with an empty id gets one made here; from JoinGroup v4
  on (``require_known_member_id``) it is answered MEMBER_ID_REQUIRED with
  that id and joins when it comes back with it (until then it is *pending*,
  and expires after its session timeout). Every join starts (or joins) a
  rebalance; joins are held until every known member has rejoined or the
  rebalance deadline (the longest rebalance timeout of the members) passes:
  members that did not rejoin are removed. Then the generation goes up by
  one, the protocol is chosen (each member votes for its first protocol
  among those every member supports), the leader (the earliest joiner
  still present) receives every member's metadata, the others an empty
  list. A member that rejoins a Stable group with unchanged protocols and
  is not the leader gets the current generation back: no rebalance.
* **Initial delay.** When an empty group starts a rebalance, it first waits
  ``initial_delay`` (``[groups] initial_rebalance_delay_ms``, Kafka's
  ``group.initial.rebalance.delay.ms``, 3 s by default) even if everyone
  known has joined; each time that wait ends with a new member added
  during it, it waits again, while the rebalance timeout allows. Members
  of a group starting together then form one generation instead of one
  per joiner (clients such as kafka-python 3.0.12 mishandle a rebalance
  that overlaps their own leader-triggered rejoin; Kafka brokers avoid the
  storm the same way).
* **Sync.** The leader's SyncGroup carries every member's assignment; the
  others' SyncGroup is held until it arrives (or they are answered
  REBALANCE_IN_PROGRESS when a new rebalance starts first). Members that do
  not send SyncGroup within the rebalance timeout are removed.
* **Heartbeat.** UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID and
  ILLEGAL_GENERATION are checked in that order; during PreparingRebalance
  the answer is REBALANCE_IN_PROGRESS (the member must rejoin). A member
  whose heartbeats stop for its session timeout is removed, except while
  its JoinGroup or SyncGroup is held (the rebalance deadlines bound those).
* **Static membership.** A join with a known ``group.instance.id`` and an
  empty member id replaces the old member id; the old id is then fenced
  (FENCED_INSTANCE_ID). In a Stable group, with unchanged protocols, and
  when the member is not the leader, the new id takes the old one's place
  and assignment without a rebalance.

Invariants (tests/groups/test_classic_state.py checks them with
Hypothesis): generations only increase; every join answered for a
generation names the same leader and protocol, and the leader is a member
of that generation; a member's SyncGroup answer is exactly what the
leader assigned to it in that generation.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import trio

from tailrace.client.errors import (
    BrokerError,
    CoordinatorNotAvailableError,
    FencedInstanceIdError,
    GroupMaxSizeReachedError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidRequestError,
    MemberIdRequiredError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

__all__ = [
    "COMPLETING",
    "DEAD",
    "EMPTY",
    "PREPARING",
    "STABLE",
    "ClassicGroup",
    "ClassicMember",
    "JoinParams",
    "JoinResult",
    "SyncResult",
    "Waiter",
]

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"

#: (protocol name, opaque metadata), in the member's order of preference
Protocol = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class JoinParams:
    """What a JoinGroup asks, without its wire format."""

    member_id: str
    instance_id: str | None
    protocol_type: str
    protocols: tuple[Protocol, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    client_id: str = ""
    client_host: str = ""
    #: JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED and its id
    require_known_member_id: bool = False


@dataclass(frozen=True, slots=True)
class JoinResult:
    """A JoinGroup answer. ``members`` (id, instance id, metadata of the
    chosen protocol) is filled for the leader only."""

    error: BrokerError | None
    member_id: str = ""
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple[tuple[str, str | None, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: BrokerError | None
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


class Waiter:
    """A held answer: resolved once, awaited by the request's task."""

    __slots__ = ("_done", "result")

    def __init__(self) -> None:
        self._done = trio.Event()
        self.result: JoinResult | SyncResult | None = None

    @classmethod
    def resolved(cls, result: JoinResult | SyncResult) -> Waiter:
        w = cls()
        w.resolve(result)
        return w

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def resolve(self, result: JoinResult | SyncResult) -> None:
        if not self._done.is_set():
            self.result = result
            self._done.set()

    async def wait(self) -> JoinResult | SyncResult:
        await self._done.wait()
        assert self.result is not None
        return self.result


@dataclass(slots=True, eq=False)
class ClassicMember:
    member_id: str
    instance_id: str | None
    protocol_type: str
    protocols: tuple[Protocol, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    client_id: str = ""
    client_host: str = ""
    assignment: bytes = b""
    session_deadline: float = math.inf
    #: the held JoinGroup answer while the member waits for the rebalance
    join: Waiter | None = None
    #: the held SyncGroup answer while it waits for the leader
    sync: Waiter | None = None
    #: it sent SyncGroup for the current generation
    synced: bool = False
    #: insertion order: the earliest joiner still present leads
    order: int = field(default=0)

    def protocol_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.protocols)

    def metadata(self, protocol: str) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        raise KeyError(protocol)


def _default_member_id(client_id: str) -> str:
    return f"{client_id or 'member'}-{uuid.uuid4()}"


class ClassicGroup:
    """One classic group's membership and rebalance state (module docstring)."""

    def __init__(
        self,
        group_id: str,
        *,
        max_size: int,
        new_member_id: Callable[[str], str] = _default_member_id,
        initial_delay: float = 0.0,
    ) -> None:
        self.group_id = group_id
        self.max_size = max_size
        #: seconds an empty group's first rebalance waits for more joiners
        #: (Kafka's group.initial.rebalance.delay.ms; module docstring)
        self.initial_delay = initial_delay
        #: while that wait runs: when it ends, the rebalance time it may
        #: still take, and whether a member joined during it
        self.initial_until: float | None = None
        self._initial_remaining = 0.0
        self._joined_during_delay = False
        self.new_member_id = new_member_id
        self.state = EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, ClassicMember] = {}
        #: group.instance.id -> member id
        self.instances: dict[str, str] = {}
        #: member ids handed out with MEMBER_ID_REQUIRED -> expiry time
        self.pending: dict[str, float] = {}
        #: PreparingRebalance: when held joins complete anyway;
        #: CompletingRebalance: when members that did not sync are removed
        self.rebalance_deadline: float | None = None
        self._order = 0

    # --- views --------------------------------------------------------------

    @property
    def active(self) -> bool:
        """The group has (or is gaining) members: the native protocol may
        not take it over."""
        return bool(self.members or self.pending)

    def next_deadline(self) -> float:
        deadline = self.rebalance_deadline if self.rebalance_deadline is not None else math.inf
        if self.initial_until is not None:
            deadline = min(deadline, self.initial_until)
        for m in self.members.values():
            if m.join is None and m.sync is None:
                deadline = min(deadline, m.session_deadline)
        for expiry in self.pending.values():
            deadline = min(deadline, expiry)
        return deadline

    # --- JoinGroup ----------------------------------------------------------

    def _supports(self, protocol_type: str, protocols: Sequence[Protocol]) -> bool:
        if not protocol_type or not protocols:
            return False
        if not self.members:
            return True
        if protocol_type != self.protocol_type:
            return False
        names = {name for name, _ in protocols}
        return bool(names & self._candidates())

    def _candidates(self) -> set[str]:
        """Protocols every member supports."""
        common: set[str] | None = None
        for m in self.members.values():
            names = set(m.protocol_names())
            common = names if common is None else common & names
        return common or set()

    def join(self, p: JoinParams, now: float) -> Waiter:
        """Handle a JoinGroup; the returned waiter is resolved now or when
        the rebalance completes. Raises the request's error (nothing changed)."""
        if self.state == DEAD:
            raise CoordinatorNotAvailableError(f"group {self.group_id!r} is being deleted")
        if len({name for name, _ in p.protocols}) != len(p.protocols):
            raise InvalidRequestError("the same protocol name appears twice")
        if not self._supports(p.protocol_type, p.protocols):
            raise InconsistentGroupProtocolError(
                f"protocol type {p.protocol_type!r} with protocols "
                f"{[name for name, _ in p.protocols]} does not match group {self.group_id!r} "
                f"(type {self.protocol_type!r}, protocols every member supports: "
                f"{sorted(self._candidates())})"
            )
        if not p.member_id:
            return self._join_new(p, now)
        return self._join_known(p, now)

    def _join_new(self, p: JoinParams, now: float) -> Waiter:
        if p.instance_id is not None and p.instance_id in self.instances:
            return self._replace_static(p, now)
        if len(self.members) + len(self.pending) >= self.max_size:
            raise GroupMaxSizeReachedError(
                f"group {self.group_id!r} has {len(self.members)} members (groups.max_group_size)"
            )
        member_id = self.new_member_id(p.client_id)
        if p.instance_id is None and p.require_known_member_id:
            self.pending[member_id] = now + p.session_timeout_ms / 1000
            return Waiter.resolved(
                JoinResult(
                    MemberIdRequiredError(f"rejoin with member id {member_id}"),
                    member_id=member_id,
                )
            )
        return self._add(member_id, p, now)

    def _join_known(self, p: JoinParams, now: float) -> Waiter:
        if p.member_id in self.pending:
            if p.instance_id is not None:
                raise InvalidRequestError("a pending member cannot become static")
            del self.pending[p.member_id]
            return self._add(p.member_id, p, now)
        self._check_instance(p.member_id, p.instance_id)
        member = self.members.get(p.member_id)
        if member is None:
            raise UnknownMemberIdError(
                f"group {self.group_id!r} has no member {p.member_id!r}; rejoin with an empty id"
            )
        changed = member.protocols != p.protocols
        self._update(member, p, now)
        if self.state == PREPARING:
            waiter = member.join = self._replace_waiter(member.join)
            self._maybe_complete_join(now)
            return waiter
        if self.state == COMPLETING and not changed:
            return Waiter.resolved(self._join_result(member))
        if self.state == STABLE and not changed and member.member_id != self.leader_id:
            return Waiter.resolved(self._join_result(member))
        waiter = member.join = self._replace_waiter(member.join)
        self._prepare_rebalance(now)
        return waiter

    @staticmethod
    def _replace_waiter(old: Waiter | None) -> Waiter:
        """A member's newer request supersedes its held one."""
        if old is not None:
            old.resolve(JoinResult(RebalanceInProgressError("superseded by a newer JoinGroup")))
        return Waiter()

    def _check_instance(self, member_id: str, instance_id: str | None) -> None:
        if instance_id is None:
            return
        holder = self.instances.get(instance_id)
        if holder is not None and holder != member_id:
            raise FencedInstanceIdError(
                f"instance id {instance_id!r} now belongs to member {holder}, not {member_id}"
            )

    def _update(self, m: ClassicMember, p: JoinParams, now: float) -> None:
        m.protocols = p.protocols
        m.protocol_type = p.protocol_type
        m.session_timeout_ms = p.session_timeout_ms
        m.rebalance_timeout_ms = p.rebalance_timeout_ms
        m.client_id = p.client_id
        m.client_host = p.client_host
        m.session_deadline = now + p.session_timeout_ms / 1000

    def _add(self, member_id: str, p: JoinParams, now: float) -> Waiter:
        self._order += 1
        m = ClassicMember(
            member_id,
            p.instance_id,
            p.protocol_type,
            p.protocols,
            p.session_timeout_ms,
            p.rebalance_timeout_ms,
            order=self._order,
        )
        self._update(m, p, now)
        if not self.members:
            self.protocol_type = p.protocol_type
        self.members[member_id] = m
        if p.instance_id is not None:
            self.instances[p.instance_id] = member_id
        if self.leader_id is None:
            self.leader_id = member_id
        waiter = m.join = Waiter()
        if self.state == PREPARING:
            if self.initial_until is not None:
                self._joined_during_delay = True
            self._maybe_complete_join(now)
        else:
            self._prepare_rebalance(now)
        return waiter

    def _replace_static(self, p: JoinParams, now: float) -> Waiter:
        """A known instance id joins with an empty member id: a restarted
        static member. Its old member id is fenced."""
        assert p.instance_id is not None
        old = self.members[self.instances[p.instance_id]]
        changed = old.protocols != p.protocols
        was_leader = self.leader_id == old.member_id
        new_id = self.new_member_id(p.client_id)
        del self.members[old.member_id]
        fenced = FencedInstanceIdError(f"instance id {p.instance_id!r} rejoined as {new_id}")
        if old.join is not None:
            old.join.resolve(JoinResult(fenced))
        if old.sync is not None:
            old.sync.resolve(SyncResult(fenced))
        old.join = old.sync = None
        old.member_id = new_id
        self.members[new_id] = old
        self.instances[p.instance_id] = new_id
        if was_leader:
            self.leader_id = new_id
        self._update(old, p, now)
        if self.state == STABLE and not changed and not was_leader:
            return Waiter.resolved(self._join_result(old))
        waiter = old.join = Waiter()
        if self.state == PREPARING:
            self._maybe_complete_join(now)
        else:
            self._prepare_rebalance(now)
        return waiter

    def _join_result(self, m: ClassicMember) -> JoinResult:
        members: tuple[tuple[str, str | None, bytes], ...] = ()
        assert self.protocol is not None
        if m.member_id == self.leader_id:
            members = tuple(
                (x.member_id, x.instance_id, x.metadata(self.protocol)) for x in self._by_order()
            )
        return JoinResult(
            None,
            member_id=m.member_id,
            generation=self.generation,
            protocol_type=self.protocol_type,
            protocol_name=self.protocol,
            leader_id=self.leader_id or "",
            members=members,
        )

    def _by_order(self) -> list[ClassicMember]:
        return sorted(self.members.values(), key=lambda m: m.order)

    # --- rebalancing ----------------------------------------------------------

    def _prepare_rebalance(self, now: float) -> None:
        if self.state == COMPLETING:
            self._cancel_syncs(RebalanceInProgressError("a new rebalance started"))
        for m in self.members.values():
            m.synced = False
        timeout = max((m.rebalance_timeout_ms for m in self.members.values()), default=0) / 1000
        if self.state == EMPTY and self.initial_delay > 0:
            # Kafka's InitialDelayedJoin: wait for the others of a group
            # starting up, instead of one generation per joiner
            delay = min(self.initial_delay, timeout)
            self.initial_until = now + delay
            self._initial_remaining = max(timeout - delay, 0.0)
            self._joined_during_delay = False
        self.state = PREPARING
        self.rebalance_deadline = now + timeout
        self._maybe_complete_join(now)

    def _cancel_syncs(self, error: BrokerError) -> None:
        for m in self.members.values():
            if m.sync is not None:
                m.sync.resolve(SyncResult(error))
                m.sync = None

    def _maybe_complete_join(self, now: float) -> None:
        if self.state != PREPARING or self.initial_until is not None:
            return
        waiting = all(m.join is not None for m in self.members.values())
        if waiting and not self.pending:
            self._complete_join(now)

    def _complete_join(self, now: float) -> None:
        """End PreparingRebalance: drop who did not rejoin, start the next
        generation, answer every held join."""
        self.initial_until = None
        for m in [m for m in self.members.values() if m.join is None]:
            self._remove(m, UnknownMemberIdError("it did not rejoin within the rebalance timeout"))
        self.generation += 1
        if not self.members:
            self.state = EMPTY
            self.protocol = None
            self.leader_id = None
            self.rebalance_deadline = None
            return
        self.protocol = self._select_protocol()
        if self.leader_id not in self.members:
            self.leader_id = self._by_order()[0].member_id
        self.state = COMPLETING
        timeout = max(m.rebalance_timeout_ms for m in self.members.values())
        self.rebalance_deadline = now + timeout / 1000
        for m in self.members.values():
            m.assignment = b""
            m.synced = False
            m.session_deadline = now + m.session_timeout_ms / 1000
            waiter, m.join = m.join, None
            assert waiter is not None
            waiter.resolve(self._join_result(m))

    def _select_protocol(self) -> str:
        candidates = self._candidates()
        votes: dict[str, int] = {}
        for m in self._by_order():
            vote = next(name for name in m.protocol_names() if name in candidates)
            votes[vote] = votes.get(vote, 0) + 1
        # most votes; ties go to the leader's preference order
        leader = self.members.get(self.leader_id or "") or self._by_order()[0]
        rank = {name: i for i, name in enumerate(leader.protocol_names())}
        return min(votes, key=lambda name: (-votes[name], rank.get(name, len(rank))))

    def _remove(self, m: ClassicMember, why: BrokerError) -> None:
        del self.members[m.member_id]
        if m.instance_id is not None and self.instances.get(m.instance_id) == m.member_id:
            del self.instances[m.instance_id]
        if m.join is not None:
            m.join.resolve(JoinResult(why))
            m.join = None
        if m.sync is not None:
            m.sync.resolve(SyncResult(why))
            m.sync = None
        if self.leader_id == m.member_id:
            rest = self._by_order()
            self.leader_id = rest[0].member_id if rest else None

    def _member_left(self, m: ClassicMember, why: BrokerError, now: float) -> None:
        """Remove a member and move the group on (Kafka's
        removeMemberAndUpdateGroup)."""
        self._remove(m, why)
        if self.state == PREPARING:
            self._maybe_complete_join(now)
        elif self.state in (COMPLETING, STABLE):
            self._prepare_rebalance(now)

    # --- SyncGroup ------------------------------------------------------------

    def _known(self, member_id: str, instance_id: str | None) -> ClassicMember:
        if self.state == DEAD:
            raise CoordinatorNotAvailableError(f"group {self.group_id!r} is being deleted")
        self._check_instance(member_id, instance_id)
        m = self.members.get(member_id)
        if m is None:
            raise UnknownMemberIdError(
                f"group {self.group_id!r} has no member {member_id!r}; rejoin with an empty id"
            )
        return m

    def _check_generation(self, generation: int) -> None:
        if generation != self.generation:
            raise IllegalGenerationError(
                f"generation {generation} is not the group's ({self.generation}); rejoin"
            )

    def sync(
        self,
        member_id: str,
        instance_id: str | None,
        generation: int,
        assignments: Mapping[str, bytes],
        now: float,
    ) -> Waiter:
        """Handle a SyncGroup; ``assignments`` is the leader's (ignored from
        followers). Raises the request's error."""
        m = self._known(member_id, instance_id)
        self._check_generation(generation)
        if self.state == PREPARING:
            raise RebalanceInProgressError(f"group {self.group_id!r} is rebalancing; rejoin")
        m.session_deadline = now + m.session_timeout_ms / 1000
        if self.state == STABLE:
            return Waiter.resolved(self._sync_result(m))
        assert self.state == COMPLETING
        m.synced = True
        if m.sync is not None:
            m.sync.resolve(SyncResult(RebalanceInProgressError("superseded by a newer SyncGroup")))
        m.sync = Waiter()
        waiter = m.sync
        if member_id == self.leader_id:
            for x in self.members.values():
                x.assignment = assignments.get(x.member_id, b"")
            self.state = STABLE
            self.rebalance_deadline = None
            for x in self.members.values():
                if x.sync is not None:
                    x.sync.resolve(self._sync_result(x))
                    x.sync = None
                x.session_deadline = now + x.session_timeout_ms / 1000
        return waiter

    def _sync_result(self, m: ClassicMember) -> SyncResult:
        return SyncResult(None, m.assignment, self.protocol_type, self.protocol)

    # --- Heartbeat, LeaveGroup, commits -----------------------------------------

    def heartbeat(
        self, member_id: str, instance_id: str | None, generation: int, now: float
    ) -> None:
        """Raises the heartbeat's error (REBALANCE_IN_PROGRESS: rejoin)."""
        m = self._known(member_id, instance_id)
        self._check_generation(generation)
        if self.state == EMPTY:
            raise UnknownMemberIdError(f"group {self.group_id!r} is empty")
        m.session_deadline = now + m.session_timeout_ms / 1000
        if self.state == PREPARING:
            raise RebalanceInProgressError(f"group {self.group_id!r} is rebalancing; rejoin")

    def leave(
        self, leaving: Sequence[tuple[str, str | None]], now: float
    ) -> list[BrokerError | None]:
        """LeaveGroup for each (member id, instance id); one outcome each."""
        if self.state == DEAD:
            raise CoordinatorNotAvailableError(f"group {self.group_id!r} is being deleted")
        out: list[BrokerError | None] = []
        for member_id, instance_id in leaving:
            try:
                if member_id and instance_id is not None:
                    self._check_instance(member_id, instance_id)
                if member_id in self.pending:
                    del self.pending[member_id]
                    self._maybe_complete_join(now)
                    out.append(None)
                    continue
                if not member_id and instance_id is not None:
                    member_id = self.instances.get(instance_id, "")
                m = self.members.get(member_id)
                if m is None:
                    raise UnknownMemberIdError(
                        f"group {self.group_id!r} has no member {member_id or instance_id!r}"
                    )
                self._member_left(m, UnknownMemberIdError("it left the group"), now)
                out.append(None)
            except BrokerError as exc:
                out.append(exc)
        return out

    def check_commit(
        self, generation: int, member_id: str, instance_id: str | None, now: float
    ) -> None:
        """Whether a commit with this identity is accepted (Kafka's
        doCommitOffsets): generation < 0 only while the group is Empty
        ("simple" consumers and admin tools), otherwise a member of the
        current generation outside CompletingRebalance."""
        if self.state == DEAD:
            raise CoordinatorNotAvailableError(f"group {self.group_id!r} is being deleted")
        if generation < 0 and self.state == EMPTY:
            return
        m = self._known(member_id, instance_id)
        self._check_generation(generation)
        if self.state == COMPLETING:
            raise RebalanceInProgressError(f"group {self.group_id!r} is completing a rebalance")
        m.session_deadline = now + m.session_timeout_ms / 1000

    # --- time ---------------------------------------------------------------------

    def _end_initial_delay(self, now: float) -> None:
        """The initial wait ran out: wait once more if someone joined during
        it (while rebalance time is left), else complete when all joined."""
        delay = min(self.initial_delay, self._initial_remaining)
        if self._joined_during_delay and delay > 0:
            self.initial_until = now + delay
            self._initial_remaining -= delay
            self._joined_during_delay = False
            return
        self.initial_until = None
        self._maybe_complete_join(now)

    def tick(self, now: float) -> bool:
        """Apply every deadline that passed; returns whether anything changed."""
        changed = False
        if self.initial_until is not None and self.initial_until <= now:
            self._end_initial_delay(now)
            changed = True
        for member_id, expiry in list(self.pending.items()):
            if expiry <= now:
                del self.pending[member_id]
                changed = True
        if changed:
            self._maybe_complete_join(now)
        for m in list(self.members.values()):
            idle = m.join is None and m.sync is None
            if m.member_id in self.members and idle and m.session_deadline <= now:
                self._member_left(m, UnknownMemberIdError("its session timed out"), now)
                changed = True
        if self.rebalance_deadline is not None and self.rebalance_deadline <= now:
            if self.state == PREPARING:
                self._complete_join(now)
                changed = True
            elif self.state == COMPLETING:
                late = [m for m in self.members.values() if not m.synced]
                if late:
                    for m in late:
                        self._remove(m, UnknownMemberIdError("it did not send SyncGroup in time"))
                    self._prepare_rebalance(now)
                else:
                    self.rebalance_deadline = None
                changed = True
        return changed

    def shutdown(self, error: BrokerError) -> None:
        """Answer every held request with ``error`` (broker draining or the
        group deleted); membership stays as it is."""
        for m in self.members.values():
            if m.join is not None:
                m.join.resolve(JoinResult(error))
                m.join = None
            if m.sync is not None:
                m.sync.resolve(SyncResult(error))
                m.sync = None

    def kill(self) -> None:
        """The group is deleted (it has no members): Dead."""
        self.state = DEAD
        self.pending.clear()
        self.rebalance_deadline = None
        self.initial_until = None
