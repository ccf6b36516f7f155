"""Which groups this broker coordinates, sans I/O.

A group belongs to one partition of ``__consumer_offsets``:
:func:`partition_for` (Kafka's rule: the absolute value of Java's
``String.hashCode`` of the group id, modulo the partition count, so a group
lands where a Kafka broker with the same partition count would put it). The
broker that coordinates a group is the leader of that partition; it holds
the group's members and committed offsets in memory once it has loaded the
partition from the log.

:class:`Ownership` is the table of the partitions this broker coordinates,
each ``loading``, ``ready`` or ``failed``, with the leader epoch it was taken
up in. The coordinator asks :meth:`Ownership.check` before every group
request (NOT_COORDINATOR for a partition not held here,
COORDINATOR_LOAD_IN_PROGRESS while loading, COORDINATOR_NOT_AVAILABLE after
a failed load). The cluster side hands it the partitions this broker leads
now (``{partition: leader_epoch}``) and :meth:`Ownership.plan` answers what
to unload and what to load:

* a partition no longer led here, or led in another epoch, is unloaded (its
  groups leave memory; their members get NOT_COORDINATOR and find the new
  coordinator);
* a partition led here and not held in that epoch is loaded, marked
  ``loading`` at once; :meth:`Ownership.loaded` marks it ``ready`` only if
  it is still wanted in the same epoch (a load overtaken by a leadership
  change is thrown away).

A single node holds partition 0 of one partition, from start-up on: the
same table, loaded once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tailrace.client.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
)

__all__ = ["FAILED", "LOADING", "READY", "Ownership", "Plan", "java_string_hash", "partition_for"]

LOADING = "loading"
READY = "ready"
FAILED = "failed"


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode``: over UTF-16 code units, as a signed 32-bit int."""
    data = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group_id`` (Kafka's
    ``Utils.abs(groupId.hashCode) % partitions``; ``Utils.abs`` maps
    ``Integer.MIN_VALUE`` to 0)."""
    if partitions < 1:
        raise ValueError(f"partition count {partitions} must be at least 1")
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


@dataclass(frozen=True, slots=True)
class Held:
    leader_epoch: int
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do after a change of leadership: unload these partitions
    (first), then load these (partition, leader epoch)."""

    unload: tuple[int, ...] = ()
    load: tuple[tuple[int, int], ...] = ()


@dataclass(slots=True)
class Ownership:
    """The offsets partitions this broker coordinates (module docstring)."""

    partitions: int
    held: dict[int, Held] = field(default_factory=dict)

    def partition(self, group_id: str) -> int:
        return partition_for(group_id, self.partitions)

    def check(self, group_id: str) -> int:
        """The group's partition, if this broker serves it now; raises the
        retriable error that tells the client what to do otherwise."""
        p = self.partition(group_id)
        held = self.held.get(p)
        if held is None:
            raise NotCoordinatorError(
                f"this broker does not coordinate group {group_id!r} "
                f"(partition {p} of __consumer_offsets is led elsewhere): find the coordinator"
            )
        if held.status == LOADING:
            raise CoordinatorLoadInProgressError(
                f"loading partition {p} of __consumer_offsets; retry shortly"
            )
        if held.status == FAILED:
            raise CoordinatorNotAvailableError(held.reason)
        return p

    def serves(self, group_id: str) -> bool:
        held = self.held.get(self.partition(group_id))
        return held is not None and held.status == READY

    def ready(self) -> frozenset[int]:
        return frozenset(p for p, h in self.held.items() if h.status == READY)

    def plan(self, leading: Mapping[int, int]) -> Plan:
        """Given the partitions led here now (partition -> leader epoch),
        mark what must load as loading and forget what must unload; the
        caller does the work (unload first)."""
        unload = tuple(sorted(p for p, h in self.held.items() if leading.get(p) != h.leader_epoch))
        for p in unload:
            del self.held[p]
        load = tuple(sorted((p, e) for p, e in leading.items() if p not in self.held))
        for p, epoch in load:
            self.held[p] = Held(epoch, LOADING)
        return Plan(unload, load)

    def loaded(self, partition: int, leader_epoch: int) -> bool:
        """A load finished: True (now ready) when the partition is still
        wanted in that epoch, False when it was overtaken (throw it away)."""
        held = self.held.get(partition)
        if held is None or held.leader_epoch != leader_epoch or held.status != LOADING:
            return False
        self.held[partition] = Held(leader_epoch, READY)
        return True

    def failed(self, partition: int, leader_epoch: int, reason: str) -> None:
        held = self.held.get(partition)
        if held is not None and held.leader_epoch == leader_epoch:
            self.held[partition] = Held(leader_epoch, FAILED, reason)
