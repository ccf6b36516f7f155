"""The controller's decisions, sans I/O: from a :class:`ClusterView` to the
partition states it should write. Pure functions, so every rule is tested
without etcd; controller.py writes what they return, each by CAS.

Rules (Kafka's ZooKeeper-era controller, without unclean election):

* A new topic's partitions get ``replication_factor`` distinct live brokers
  each, spread round-robin over the brokers sorted by id from a start that
  moves with the partition (rack-unaware). The first replica is the
  preferred leader; leader epoch 0; the ISR is every replica.
* A partition whose leader is not alive gets a new leader: the first live
  replica that is in the ISR, in replica order. Every leader change bumps the
  leader epoch. A leader that restarted counts as a leader that died: the
  state records the leader's broker epoch, and a registration with another
  epoch means the process that led is gone (it may have lost its memory and
  its unsynced tail) even if the controller never saw the node id missing;
  it may be elected again, in a new leader epoch.
* A dead broker leaves the ISR (the controller's shrink on broker loss), but
  the ISR is never emptied: when no in-sync replica is alive, the leader
  becomes :data:`NO_LEADER` (offline) and the ISR stays as it was, so only
  one of those replicas (each holds every committed record) may lead again
  when it comes back.
* Nothing else: shrinking the ISR of a live but lagging follower and growing
  it back once it caught up is the partition leader's job (replicas.py).

Test-only fault seam: ``TAILRACE_FAULT_UNCLEAN_ELECTION=1`` in the
controller's environment switches the no-unclean-election rule off (when no
ISR member is alive, the first live replica leads, alone in the ISR, as
Kafka's ``unclean.leader.election.enable``). It exists so the reliability
harness can show its checker reports the records this loses (the
``unclean`` cluster scenario, docs/reliability.md); no setting, flag or
config file reaches it, and a controller with it on logs a warning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..replication.election import elect_leader
from .state import NO_LEADER, ClusterView, PartitionState, TopicSpec

__all__ = ["UNSAFE_UNCLEAN_ELECTION", "Change", "assign_replicas", "plan"]

#: the test-only fault seam (module docstring); read once, at import
UNSAFE_UNCLEAN_ELECTION = os.environ.get("TAILRACE_FAULT_UNCLEAN_ELECTION") == "1"


@dataclass(frozen=True, slots=True)
class Change:
    topic: str
    partition: int
    new: PartitionState
    #: the mod revision the key must still have (0: must be absent)
    expected_revision: int


class NotEnoughBrokers(Exception):
    """Fewer live brokers than the replication factor."""


def assign_replicas(
    partitions: int, replication_factor: int, brokers: list[int], start: int = 0
) -> list[tuple[int, ...]]:
    """Replica lists for ``partitions`` partitions over ``brokers``."""
    ordered = sorted(brokers)
    n = len(ordered)
    if replication_factor < 1 or replication_factor > n:
        raise NotEnoughBrokers(
            f"replication factor {replication_factor} needs that many live brokers; {n} are alive"
        )
    return [
        tuple(ordered[(start + p + j) % n] for j in range(replication_factor))
        for p in range(partitions)
    ]


def _start(topic: str, n: int) -> int:
    """A start index that differs between topics but not between runs."""
    return sum(topic.encode()) % n if n else 0


def new_topic_states(
    spec: TopicSpec, live: Mapping[int, int], controller_epoch: int
) -> list[Change]:
    """``live``: node id -> broker epoch of every registered broker."""
    assignment = assign_replicas(
        spec.partitions, spec.replication_factor, list(live), _start(spec.name, len(live))
    )
    return [
        Change(
            spec.name,
            p,
            PartitionState(replicas, replicas[0], 0, replicas, controller_epoch, live[replicas[0]]),
            0,
        )
        for p, replicas in enumerate(assignment)
    ]


def reelect(
    state: PartitionState, live: Mapping[int, int], controller_epoch: int
) -> PartitionState:
    """The state after dropping dead brokers from the ISR and electing a
    leader where the current one is dead or restarted (``live``: node id ->
    broker epoch); ``state`` itself when nothing applies.

    The election rule itself (live ISR members only, a new leader epoch,
    offline with the ISR kept when no member lives) is
    :func:`tailrace.broker.replication.election.elect_leader`; this adds
    what only the controller knows: that a leader whose broker epoch
    changed restarted (and may have lost its unsynced tail), so it must not
    go on leading in its old epoch."""
    restarted = bool(
        state.leader in live
        and state.leader_broker_epoch
        and live[state.leader] != state.leader_broker_epoch
    )
    if state.leader != NO_LEADER and state.leader in live and not restarted:
        isr = tuple(r for r in state.isr if r in live) or state.isr
        if isr == state.isr:
            return state
        return replace(
            state, isr=isr, controller_epoch=controller_epoch,
            leader_broker_epoch=live[state.leader],
        )  # fmt: skip
    if UNSAFE_UNCLEAN_ELECTION and not set(state.isr) & set(live):
        for r in state.replicas:  # the fault seam: an out-of-sync replica leads
            if r in live:
                return replace(
                    state, leader=r, leader_epoch=state.leader_epoch + 1, isr=(r,),
                    controller_epoch=controller_epoch, leader_broker_epoch=live[r],
                )  # fmt: skip
    if state.leader == NO_LEADER and not set(state.isr) & set(live):
        return state  # offline, and still no in-sync replica is back
    new = elect_leader(state, live)
    broker_epoch = live[new.leader] if new.leader != NO_LEADER else 0
    return replace(new, controller_epoch=controller_epoch, leader_broker_epoch=broker_epoch)


def plan(view: ClusterView, controller_epoch: int) -> tuple[list[Change], list[str]]:
    """The writes that bring ``view`` in line with the rules, and the topics
    that cannot be placed yet (too few live brokers)."""
    live = {n: b.epoch for n, b in view.brokers.items()}
    changes: list[Change] = []
    waiting: list[str] = []
    for name, spec in sorted(view.topics.items()):
        missing = [p for p in range(spec.partitions) if (name, p) not in view.partitions]
        if not missing:
            continue
        try:
            fresh = new_topic_states(spec, live, controller_epoch)
        except NotEnoughBrokers:
            waiting.append(name)
            continue
        changes.extend(c for c in fresh if c.partition in missing)
    for (topic, p), (state, revision) in sorted(view.partitions.items()):
        new = reelect(state, live, controller_epoch)
        if new != state:
            changes.append(Change(topic, p, new, revision))
    return changes, waiting
