"""Where a group's coordinator is, in cluster mode (issue 16, rule 8).

``__consumer_offsets`` is a replicated topic like any other: its spec lives
in etcd (``groups.offsets_topic_partitions`` partitions, replication factor
``groups.offsets_topic_replication_factor``, -1: the cluster default capped
at the live brokers), the controller places its replicas, the replica
managers create the logs and follow the leaders. It is created by the first
FindCoordinator that needs it (as Kafka does), so brokers that start one
by one do not create it with a replication factor of one.

:class:`OffsetsPlacement` runs beside the replica manager. After every pass
of the replica manager over the metadata it hands the partitions this
broker leads to the coordinator's ownership table (ownership.py): lost
partitions are unloaded at once; won ones load once the new leader's high
watermark is established (everything committed under earlier leaders is
then in the log up to it), each in its own task of this object's nursery.

:meth:`OffsetsPlacement.find` answers FindCoordinator from the cluster
metadata: the current leader of the group's partition (its native or Kafka
address), or COORDINATOR_NOT_AVAILABLE (retriable) while the topic does not
exist, the partition has no live leader, or this broker leads it but has
not loaded it yet.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import (
    BrokerError,
    CoordinatorNotAvailableError,
    TopicAlreadyExistsError,
)

from .ownership import partition_for
from .store import OFFSETS_TOPIC

if TYPE_CHECKING:
    from ..cluster.member import ClusterMember
    from ..cluster.replicas import ReplicaManager
    from .coordinator import GroupCoordinator

__all__ = ["OffsetsPlacement"]

log = logging.getLogger("tailrace.coordinator")


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CoordinatorNotAvailableError(f"the coordinator's address {address!r} is not usable")
    return host.strip("[]"), int(port)


class OffsetsPlacement:
    def __init__(
        self,
        coordinator: GroupCoordinator,
        member: ClusterMember,
        replicas: ReplicaManager,
        *,
        partitions: int,
        replication_factor: int = -1,
        recheck: float = 1.0,
    ) -> None:
        self.coordinator = coordinator
        self.member = member
        self.replicas = replicas
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.recheck = recheck
        coordinator.replicas = replicas
        coordinator.placement = self
        coordinator.topic_counts = self._topic_counts

    def _topic_counts(self) -> dict[str, int]:
        view = self.member.snapshot()
        return {} if view is None else {n: t.partitions for n, t in view.topics.items()}

    # --- following the leadership -------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow this broker's leadership of the offsets partitions until
        cancelled (in the broker's background nursery)."""
        async with trio.open_nursery() as loads:
            task_status.started()
            while True:
                applied = self.replicas.applied
                self.reconcile(loads)
                # every pass of the replica manager sets it; the timeout is
                # a safety net for a leadership that ended between passes
                with trio.move_on_after(self.recheck):
                    await applied.wait()

    def reconcile(self, loads: trio.Nursery) -> None:
        """Unload what is no longer led here, start loading what is."""
        view = self.member.snapshot()
        spec = None if view is None else view.topics.get(OFFSETS_TOPIC)
        ownership = self.coordinator.ownership
        if spec is not None and spec.partitions != ownership.partitions:
            # the cluster's count wins over this broker's setting
            for p in ownership.plan({}).unload:
                self.coordinator.unload_partition(p)
            ownership.partitions = spec.partitions
        leading = self.replicas.leading(OFFSETS_TOPIC) if spec is not None else {}
        plan = ownership.plan(leading)
        for p in plan.unload:
            self.coordinator.unload_partition(p)
        for p, epoch in plan.load:
            loads.start_soon(self._load, p, epoch)

    async def _load(self, partition: int, leader_epoch: int) -> None:
        if not await self.replicas.wait_established(OFFSETS_TOPIC, partition, leader_epoch):
            return  # overtaken: the next reconcile unloads it
        await self.coordinator.load_partition(partition, leader_epoch)

    # --- FindCoordinator -----------------------------------------------------

    def needs_topic(self) -> bool:
        view = self.member.snapshot()
        return view is None or OFFSETS_TOPIC not in view.topics

    async def create_topic(self) -> None:
        """Publish ``__consumer_offsets`` in etcd for the controller to
        place; a topic created meanwhile by another broker is fine. Raises
        the cluster's BrokerError (too few brokers, etcd unreachable)."""
        configs = {k: str(v) for k, v in self.coordinator.store_settings.topic_config().items()}
        try:
            await self.member.create_topic(
                OFFSETS_TOPIC, self.partitions, self.replication_factor, configs
            )
        except TopicAlreadyExistsError:
            return
        log.info(
            "created %s in the cluster (%d partitions, replication factor %s)",
            OFFSETS_TOPIC,
            self.partitions,
            self.replication_factor if self.replication_factor > 0 else "default",
        )

    def find(self, group_id: str, *, kafka: bool) -> tuple[int, str, int]:
        """(node id, host, port) of the group's coordinator: the leader of
        its offsets partition. Raises COORDINATOR_NOT_AVAILABLE (retriable)."""
        view = self.member.snapshot()
        spec = None if view is None else view.topics.get(OFFSETS_TOPIC)
        if view is None or spec is None:
            raise CoordinatorNotAvailableError(f"{OFFSETS_TOPIC} is being created; retry shortly")
        p = partition_for(group_id, spec.partitions)
        found = view.partitions.get((OFFSETS_TOPIC, p))
        leader = found[0].leader if found is not None else -1
        if found is None or leader not in view.brokers:
            raise CoordinatorNotAvailableError(
                f"{OFFSETS_TOPIC}-{p} has no live leader now; retry shortly"
            )
        if leader == self.member.node_id and not self.coordinator.ownership.serves(group_id):
            raise CoordinatorNotAvailableError(
                f"this broker is loading {OFFSETS_TOPIC}-{p}; retry shortly"
            )
        info = view.brokers[leader]
        address = info.kafka_address if kafka else info.address
        if not address:
            raise CoordinatorNotAvailableError(
                f"the coordinator (broker {leader}) has no {'Kafka' if kafka else 'native'} "
                "listener"
            )
        host, port = _split(address)
        return leader, host, port


async def create_then_unavailable(placement: OffsetsPlacement) -> BrokerError:
    """FindCoordinator before the topic exists: create it, then tell the
    client to retry (the controller places it, the leaders load it)."""
    try:
        await placement.create_topic()
    except BrokerError as exc:
        return CoordinatorNotAvailableError(f"cannot create {OFFSETS_TOPIC}: {exc.message}")
    return CoordinatorNotAvailableError(f"{OFFSETS_TOPIC} was just created; retry shortly")
