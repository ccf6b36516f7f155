"""``tailrace cluster status``: one reading of the cluster's metadata in
etcd, as a JSON-ready dict (the shape docs/operations.md documents)."""

from __future__ import annotations

from typing import Any

from ..etcd import EtcdClient
from .state import NO_LEADER, ClusterView, Keys

__all__ = ["read_view", "status_document"]


async def read_view(endpoints: list[str], prefix: str, *, timeout: float = 2.0) -> ClusterView:
    """Every key under ``prefix``, read once (linearizable)."""
    keys = Keys(prefix.encode())
    async with EtcdClient(endpoints, timeout=timeout) as client:
        result = await client.range(keys.root, prefix=True)
    return ClusterView.from_items(keys, {kv.key: kv for kv in result.kvs}, result.revision)


def _partition(topic: str, partition: int, view: ClusterView) -> dict[str, Any]:
    state, _revision = view.partitions[(topic, partition)]
    return {
        "topic": topic,
        "partition": partition,
        "leader": None if state.leader == NO_LEADER else state.leader,
        "leader_epoch": state.leader_epoch,
        "replicas": list(state.replicas),
        "isr": list(state.isr),
    }


def status_document(view: ClusterView) -> dict[str, Any]:
    controller = view.controller
    named = {r for s, _rev in view.partitions.values() for r in s.replicas}
    brokers = [
        {
            "node_id": b.node_id,
            "alive": True,
            "address": b.address,
            "kafka_address": b.kafka_address or None,
            "broker_epoch": b.epoch,
            "controller": controller is not None and controller.node_id == b.node_id,
        }
        for b in sorted(view.brokers.values(), key=lambda b: b.node_id)
    ]
    # replicas named in partition states whose broker is not registered: dead
    brokers += [
        {
            "node_id": n,
            "alive": False,
            "address": None,
            "kafka_address": None,
            "broker_epoch": None,
            "controller": False,
        }
        for n in sorted(named - set(view.brokers))
    ]
    brokers.sort(key=lambda b: b["node_id"])
    return {
        "revision": view.revision,
        "controller": (
            None
            if controller is None
            else {
                "node_id": controller.node_id,
                "controller_epoch": controller.epoch,
                "broker_epoch": controller.broker_epoch,
            }
        ),
        "brokers": brokers,
        "topics": len(view.topics),
        "partitions": len(view.partitions),
        "unplaced_topics": sorted(
            name
            for name, spec in view.topics.items()
            if any((name, p) not in view.partitions for p in range(spec.partitions))
        ),
        "under_replicated": [_partition(t, p, view) for t, p in view.under_replicated()],
        "offline": [_partition(t, p, view) for t, p in view.offline()],
    }
