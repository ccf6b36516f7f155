"""Placeholder for i16-wire's ReplicaFetcher (its branch replaces this
file): followers are handed their partitions and fetch nothing, so the
roles run in a cluster while the replica fetch is not merged yet.

The contract the replica manager uses (replicas.py, :class:`Fetcher`):
``fetcher_factory(config)`` returns ``make(nursery, leader_id, address)``,
which returns one fetcher per leader broker with ``add_partition(topic,
partition, leader_epoch, log, follower_state)`` and ``remove_partition(topic,
partition)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ..config import BrokerConfig
    from ..log.partition import PartitionLog
    from ..replication import FollowerState
    from .replicas import FetcherFactory

__all__ = ["ReplicaFetcher", "fetcher_factory"]


class ReplicaFetcher:
    def __init__(self, leader_id: int, address: str) -> None:
        self.leader_id = leader_id
        self.address = address
        self.partitions: dict[tuple[str, int], tuple[int, PartitionLog, FollowerState]] = {}

    def add_partition(
        self,
        topic: str,
        partition: int,
        leader_epoch: int,
        log: PartitionLog,
        follower_state: FollowerState,
    ) -> None:
        self.partitions[(topic, partition)] = (leader_epoch, log, follower_state)

    def remove_partition(self, topic: str, partition: int) -> None:
        self.partitions.pop((topic, partition), None)


def fetcher_factory(config: BrokerConfig) -> FetcherFactory:
    del config

    def make(nursery: trio.Nursery, leader_id: int, address: str) -> ReplicaFetcher:
        del nursery
        return ReplicaFetcher(leader_id, address)

    return make
