"""Placeholder for i16-wire's follower fetcher (its branch replaces this
file with the real one, same constructor and methods): followers are
handed their partitions and fetch nothing, so the roles run in a cluster
while the replica fetch is not merged yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ..config import BrokerConfig
    from ..log.partition import PartitionLog
    from ..replication import FollowerState

__all__ = ["ReplicaFetcher", "peer_security"]


def peer_security(config: BrokerConfig) -> None:
    """How this broker secures its connections to other brokers (none here)."""
    del config


class ReplicaFetcher:
    def __init__(
        self,
        node_id: int,
        leader_id: int,
        leader_address: str,
        *,
        settings: Any = None,
        security: Any = None,
        local_address: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.leader_id = leader_id
        self.leader_address = leader_address
        self.partitions: dict[tuple[str, int], tuple[int, PartitionLog, FollowerState]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def add_partition(
        self,
        topic: str,
        partition: int,
        leader_epoch: int,
        log: PartitionLog,
        follower_state: FollowerState,
    ) -> None:
        self.partitions[(topic, partition)] = (leader_epoch, log, follower_state)

    async def remove_partition(self, topic: str, partition: int) -> None:
        self.partitions.pop((topic, partition), None)
        await trio.lowlevel.checkpoint()
