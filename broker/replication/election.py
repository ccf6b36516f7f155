"""A partition's replicated state and the controller's decisions on it.

What the cluster store (etcd) holds per partition: the assigned replicas,
the leader, the leader epoch and the in-sync replicas (ISR); every change
compares the key's revision (compare-and-swap). The functions here take any
frozen dataclass with those four fields (:class:`ReplicaState`: the
cluster's own ``broker.cluster.state.PartitionState``, or
:class:`PartitionState` here, which adds ``version`` for models and tests),
return the next state built with :func:`dataclasses.replace` (other fields
kept), and the caller writes it with a CAS on the revision it read and acts
on it only if the CAS succeeded.

Rules (issue 16 rules 2 and 6; Kafka's ZooKeeper-era controller with
unclean election switched off for good):

* Only a live ISR member becomes leader: the first one in assignment order
  (the preferred replica first). Never an out-of-sync replica: it may lack
  committed records.
* Every leader change bumps the leader epoch, also re-electing the same
  broker, and so does taking the partition offline (``leader`` NO_LEADER):
  the old leader, maybe alive behind a partition, is fenced by the epoch.
* The ISR is never emptied: when its last member dies the partition goes
  offline keeping that member in the ISR, and comes back only when that
  member does.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, TypeVar

__all__ = [
    "NO_LEADER",
    "PartitionState",
    "ReplicaState",
    "default_min_insync_replicas",
    "elect_leader",
    "remove_replica",
]

#: ``leader`` of a partition that has none (offline).
NO_LEADER = -1


class ReplicaState(Protocol):
    """The fields of a partition state these decisions read (a frozen
    dataclass: the decisions return ``dataclasses.replace`` copies)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def replicas(self) -> tuple[int, ...]: ...
    @property
    def leader(self) -> int: ...
    @property
    def leader_epoch(self) -> int: ...
    @property
    def isr(self) -> tuple[int, ...]: ...


S = TypeVar("S", bound=ReplicaState)


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition's replication state, with the store revision it was
    read at (``version``), checked for the invariants on construction."""

    #: assigned replica broker ids, preferred leader first
    replicas: tuple[int, ...]
    #: broker id of the leader, or NO_LEADER
    leader: int
    leader_epoch: int
    #: in-sync replicas (never empty), leader included when there is one
    isr: tuple[int, ...]
    #: the store's revision of this state; opaque here, compared by the CAS
    version: int = 0

    def __post_init__(self) -> None:
        if not self.isr:
            raise ValueError("the ISR is never empty")
        if not set(self.isr) <= set(self.replicas):
            raise ValueError(f"ISR {self.isr} is not a subset of replicas {self.replicas}")
        if self.leader != NO_LEADER and self.leader not in self.isr:
            raise ValueError(f"leader {self.leader} is not in the ISR {self.isr}")

    @property
    def online(self) -> bool:
        return self.leader != NO_LEADER

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    @classmethod
    def new(cls, replicas: Collection[int]) -> PartitionState:
        """A new partition: every replica in sync (all logs are empty), the
        first one leading in epoch 0."""
        reps = tuple(replicas)
        if not reps or len(set(reps)) != len(reps):
            raise ValueError(f"replicas must be distinct and not empty: {reps}")
        return cls(reps, reps[0], 0, reps)


def default_min_insync_replicas(replication_factor: int) -> int:
    """The topic default: min(2, replication factor)."""
    return min(2, replication_factor)


def elect_leader(state: S, live: Collection[int], *, prefer: int | None = None) -> S:
    """The state after (re-)electing a leader among the live ISR members.

    The new leader is ``prefer`` when it is a live ISR member (a controlled
    move: preferred-leader election, a broker shutting down), otherwise the
    first replica in assignment order that is both in the ISR and in
    ``live``; the new ISR is the live part of the old one. With
    no live ISR member the partition goes offline (leader NO_LEADER, ISR kept
    as it was). Either way the epoch goes up by one, so write the result
    (CAS on the revision ``state`` was read at) even when the leader is
    unchanged.
    """
    live_set = set(live)
    order = state.replicas
    if prefer is not None:
        order = (prefer, *(r for r in state.replicas if r != prefer))
    for replica in order:
        if replica in state.isr and replica in live_set:
            isr = tuple(r for r in state.isr if r in live_set)
            return replace(state, leader=replica, leader_epoch=state.leader_epoch + 1, isr=isr)
    return replace(state, leader=NO_LEADER, leader_epoch=state.leader_epoch + 1)


def remove_replica(state: S, broker: int, live: Collection[int]) -> S:
    """The state after ``broker`` died (its registration lease expired).

    Its leadership moves (see :func:`elect_leader`); a follower leaves the
    ISR without an epoch change, unless it is the last member (the ISR is
    never emptied). Returns ``state`` itself when nothing changes.
    """
    if broker == state.leader:
        return elect_leader(state, set(live) - {broker})
    if broker in state.isr and len(state.isr) > 1:
        return replace(state, isr=tuple(r for r in state.isr if r != broker))
    return state
