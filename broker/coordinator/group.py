"""A consumer group: its members, epochs, target assignment and the state
machine that hands partitions over without ever giving one to two members.

Epochs (as in Kafka's KIP-848):

* the **group epoch** goes up whenever the target assignment must be
  recomputed: a member joins or leaves, a subscription changes, a
  subscribed topic appears or changes its partition count;
* the **assignment epoch** is the group epoch the current target was
  computed at (always equal here: the target is computed synchronously);
* a **member epoch** is the assignment epoch the member has caught up with.
  A member only moves to a new epoch once it has given up every partition
  the new target takes from it. Commits and heartbeats carrying an older
  epoch are fenced.

Ownership. ``owner`` maps each partition to the member that may consume it
(its ``assigned`` set) or must still stop consuming it (its ``revoking``
set). :meth:`Group.reconcile` brings one member towards its target:

1. partitions it holds outside its target move to ``revoking`` and the
   member is told its smaller assignment (its epoch stays); a newer target
   may add to them before the member acknowledged the first ones;
2. the member stops fetching them, commits, and heartbeats without them:
   :meth:`Group.acknowledge` frees them (``owner`` forgets them);
3. with nothing left to revoke, the member takes the target epoch and every
   partition of its target that no other member owns; partitions still
   being revoked elsewhere come on a later heartbeat, once freed.

A partition is therefore in at most one member's ``assigned | revoking``
at any time, and members whose partitions do not move are never asked to
stop. Member states: ``stable`` (at the target), ``unrevoked`` (waiting for
its revocations), ``unreleased`` (waiting for others' revocations).

Everything here is synchronous and runs on the broker's trio thread; the
coordinator (coordinator.py) calls it from request handlers and its
background loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import trio

from .assignor import assign
from .classic import ClassicGroup
from .records import OffsetEntry

__all__ = [
    "STATE_EMPTY",
    "STATE_RECONCILING",
    "STATE_STABLE",
    "Group",
    "Member",
]

TP = tuple[str, int]

STATE_EMPTY = "Empty"
STATE_RECONCILING = "Reconciling"
STATE_STABLE = "Stable"


class Member:
    """One member as the broker sees it."""

    __slots__ = (
        "assigned",
        "client_host",
        "client_id",
        "epoch",
        "instance_id",
        "left",
        "member_id",
        "previous_epoch",
        "rebalance_timeout_ms",
        "revoke_deadline",
        "revoking",
        "seq",
        "session_deadline",
        "session_timeout_ms",
        "subscribed",
        "wake",
    )

    def __init__(
        self,
        member_id: str,
        *,
        instance_id: str | None,
        subscribed: tuple[str, ...],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        client_id: str = "",
        client_host: str = "",
    ) -> None:
        self.member_id = member_id
        self.instance_id = instance_id
        self.subscribed = subscribed
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.client_id = client_id
        self.client_host = client_host
        self.epoch = 0
        self.previous_epoch = -1
        #: partitions the member may consume now
        self.assigned: set[TP] = set()
        #: partitions the member must stop consuming (still its own until acked)
        self.revoking: set[TP] = set()
        self.session_deadline = math.inf
        self.revoke_deadline: float | None = None
        #: a static member that left with epoch -2 (its assignment is kept)
        self.left = False
        #: heartbeats received: a held heartbeat ends when a newer one arrives
        self.seq = 0
        #: set (and replaced) to wake this member's held heartbeat
        self.wake = trio.Event()

    @property
    def owned(self) -> set[TP]:
        return self.assigned | self.revoking

    def poke(self) -> None:
        """Wake the member's held heartbeat, if any."""
        event, self.wake = self.wake, trio.Event()
        event.set()


class Group:
    """Members, target assignment, ownership and committed offsets of one group."""

    def __init__(self, group_id: str, now_ms: int) -> None:
        self.group_id = group_id
        self.epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, Member] = {}
        #: static instance id -> member id
        self.instances: dict[str, str] = {}
        self.target: dict[str, frozenset[TP]] = {}
        #: partition -> the member that owns it (assigned or revoking)
        self.owner: dict[TP, str] = {}
        #: partition counts of the subscribed topics the target was computed with
        self.topic_counts: dict[str, int] = {}
        #: durable committed offsets
        self.offsets: dict[TP, OffsetEntry] = {}
        #: wall-clock ms since which the group has had no members
        self.empty_since_ms = now_ms
        #: the classic (JoinGroup/SyncGroup) membership, when the group last
        #: used that protocol; a group has members of one protocol at a time
        self.classic: ClassicGroup | None = None

    @property
    def classic_active(self) -> bool:
        return self.classic is not None and self.classic.active

    @property
    def has_members(self) -> bool:
        """Members of either protocol (or classic members being admitted)."""
        return bool(self.members) or self.classic_active

    @property
    def protocol_type(self) -> str:
        """``"consumer"`` for native members, the classic protocol type for
        classic ones, ``""`` for a group that only holds offsets."""
        if self.members:
            return "consumer"
        if self.classic is not None and self.classic.protocol_type is not None:
            return self.classic.protocol_type
        return ""

    # --- views -------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.classic_active:
            assert self.classic is not None
            return self.classic.state
        if not self.members:
            return STATE_EMPTY
        for m in self.members.values():
            if self.member_state(m) != "stable":
                return STATE_RECONCILING
        return STATE_STABLE

    def member_state(self, m: Member) -> str:
        if m.revoking:
            return "unrevoked"
        if m.epoch != self.assignment_epoch or m.assigned != self.target.get(
            m.member_id, frozenset()
        ):
            return "unreleased"
        return "stable"

    def wake_all(self) -> None:
        for m in self.members.values():
            m.poke()

    # --- membership ----------------------------------------------------------

    def add(self, m: Member, partition_counts: Mapping[str, int]) -> None:
        self.members[m.member_id] = m
        if m.instance_id is not None:
            self.instances[m.instance_id] = m.member_id
        self.rebalance(partition_counts)

    def remove(self, m: Member, partition_counts: Mapping[str, int], now_ms: int) -> None:
        """Drop a member (left, timed out or fenced): its partitions are free."""
        self._release(m, m.owned)
        m.assigned.clear()
        m.revoking.clear()
        del self.members[m.member_id]
        if m.instance_id is not None and self.instances.get(m.instance_id) == m.member_id:
            del self.instances[m.instance_id]
        self.target.pop(m.member_id, None)
        if not self.members:
            self.empty_since_ms = now_ms
        self.rebalance(partition_counts)
        m.poke()

    def reset(self, m: Member) -> None:
        """A member rejoining with epoch 0 owns nothing: free what it held."""
        self._release(m, m.owned)
        m.assigned.clear()
        m.revoking.clear()
        m.revoke_deadline = None
        m.epoch = 0
        m.previous_epoch = -1
        m.left = False

    def _release(self, m: Member, tps: set[TP]) -> None:
        for tp in tps:
            if self.owner.get(tp) == m.member_id:
                del self.owner[tp]

    # --- target assignment ----------------------------------------------------

    def subscribed_counts(self, partition_counts: Mapping[str, int]) -> dict[str, int]:
        """Partition counts (0: missing) of every topic some member subscribes to."""
        topics = {t for m in self.members.values() for t in m.subscribed}
        return {t: partition_counts.get(t, 0) for t in sorted(topics)}

    def rebalance(self, partition_counts: Mapping[str, int]) -> None:
        """Bump the group epoch and compute a new target assignment."""
        self.epoch += 1
        counts = self.subscribed_counts(partition_counts)
        self.topic_counts = counts
        self.target = assign(
            {mid: m.subscribed for mid, m in self.members.items()},
            {t: n for t, n in counts.items() if n > 0},
            self.target,
        )
        self.assignment_epoch = self.epoch

    def refresh_metadata(self, partition_counts: Mapping[str, int]) -> bool:
        """Rebalance if a subscribed topic appeared, vanished or changed its
        partition count since the target was computed."""
        if not self.members:
            return False
        # topic_counts holds every subscribed topic: any subscription change
        # goes through rebalance(), which refreshes it.
        if all(partition_counts.get(t, 0) == n for t, n in self.topic_counts.items()):
            return False
        self.rebalance(partition_counts)
        return True

    # --- reconciliation ---------------------------------------------------------

    def acknowledge(self, m: Member, owned: set[TP]) -> bool:
        """The member reports ``owned``: revoked partitions missing from it
        are given up. Returns whether any partition was freed."""
        released = m.revoking - owned
        if not released:
            return False
        m.revoking -= released
        self._release(m, released)
        if not m.revoking:
            m.revoke_deadline = None
        return True

    def reconcile(self, m: Member, now: float) -> bool:
        """Move the member one step towards its target (module docstring).
        Returns whether its epoch or ownership changed."""
        target = self.target.get(m.member_id, frozenset())
        to_revoke = m.assigned - target
        if to_revoke:
            # (also while earlier revocations are pending: a newer target may
            # take more; the deadline stays that of the first revocation)
            m.assigned -= to_revoke
            m.revoking |= to_revoke
            if m.revoke_deadline is None:
                m.revoke_deadline = now + m.rebalance_timeout_ms / 1000
            return True
        if m.revoking:
            return False
        changed = False
        if m.epoch != self.assignment_epoch:
            m.previous_epoch = m.epoch
            m.epoch = self.assignment_epoch
            changed = True
        for tp in sorted(target - m.assigned):
            if tp not in self.owner:
                self.owner[tp] = m.member_id
                m.assigned.add(tp)
                changed = True
        return changed
