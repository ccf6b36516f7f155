"""What Metadata answers, one copy for both front-ends: the brokers, the
controller, and each partition's leader, leader epoch, replicas and ISR.

On a single node this broker is everything: node ``ctx.node_id`` (0) at
the listener the client should use, the controller, and the only replica
and leader of every partition (leader epoch -1: no leader epochs to
validate against).

In cluster mode the answer comes from the broker's copy of the cluster
metadata in etcd (:meth:`..cluster.member.ClusterMember.snapshot`):

* brokers: the live (registered) brokers, at their native address or, for
  the Kafka front-end, their Kafka listener address (a broker without one
  is left out of a Kafka answer);
* controller: the controller's node id, -1 while none is elected;
* topics: the cluster's topics, whether or not this broker holds a log of
  them yet, plus this broker's local ones;
* a partition's leader is its state's leader when that broker is alive,
  else -1 with LEADER_NOT_AVAILABLE (also before the controller placed
  it); offline replicas are the replicas that are not alive. Offsets and
  sizes are this broker's own copy's, when it has one.

Until the broker has read the cluster and registered in it (just started,
or etcd unreachable since start), and again from the moment its session
ends until it has registered anew (cut off from etcd for a whole session
timeout: its last view may name it leader of partitions that have moved),
Metadata answers with no brokers and every partition leaderless: a client
asks another broker or again after a back-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tailrace.client.errors import LeaderNotAvailableError

from . import topics as topics_service

if TYPE_CHECKING:
    from ..cluster.state import ClusterView
    from ..handlers.context import BrokerContext
    from ..server.connection import ConnectionInfo

__all__ = ["Endpoint", "MetadataView", "describe"]

NO_NODE = -1


@dataclass(frozen=True, slots=True)
class Endpoint:
    node_id: int
    host: str
    port: int


@dataclass(slots=True)
class MetadataView:
    brokers: list[Endpoint]
    controller_id: int
    topics: list[topics_service.TopicState]


def describe(
    ctx: BrokerContext,
    names: list[str] | None,
    info: ConnectionInfo | None = None,
    *,
    kafka: bool = False,
) -> MetadataView:
    """Metadata of ``names`` (every topic when None) for a native client, or
    with ``kafka`` for a Kafka client (Kafka listener addresses)."""
    if ctx.cluster is None:
        return _single_node(ctx, names, info, kafka=kafka)
    return _cluster(ctx, names, info, ctx.cluster.serving_snapshot(), kafka=kafka)


def _single_node(
    ctx: BrokerContext, names: list[str] | None, info: ConnectionInfo | None, *, kafka: bool
) -> MetadataView:
    node = ctx.node_id
    states = topics_service.describe_topics(ctx, names, info)
    for state in states:
        for p in state.partitions or ():
            p.leader = node
            p.replicas = p.isr = (node,)
            p.offline_replicas = (node,) if p.error is not None else ()
    if kafka:
        _, host, port = ctx.advertised_kafka_address(info)
        brokers = [Endpoint(node, host, port)]
    else:
        brokers = [Endpoint(node, b.host, b.port) for b in ctx.listeners[:1]]
    return MetadataView(brokers, node, states)


def _split(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _cluster(
    ctx: BrokerContext,
    names: list[str] | None,
    info: ConnectionInfo | None,
    view: ClusterView | None,
    *,
    kafka: bool,
) -> MetadataView:
    counts = {} if view is None else {n: t.partitions for n, t in view.topics.items()}
    states = topics_service.describe_topics(ctx, names, info, cluster_topics=counts)
    live = frozenset() if view is None else view.live
    me = ctx.node_id
    for state in states:
        for p in state.partitions or ():
            entry = None if view is None else view.partitions.get((state.name, p.partition))
            if entry is None:
                # not placed by the controller yet (or a local-only topic)
                p.leader = NO_NODE
                if p.error is None:
                    p.error = LeaderNotAvailableError(
                        f"{state.name}/{p.partition} has no leader yet"
                    )
                continue
            placed = entry[0]
            p.replicas, p.isr, p.leader_epoch = placed.replicas, placed.isr, placed.leader_epoch
            offline = [r for r in placed.replicas if r not in live]
            if p.error is not None and p.local and me in placed.replicas and me not in offline:
                offline.append(me)  # this broker's copy is offline (storage)
            p.offline_replicas = tuple(offline)
            if placed.leader in live and placed.leader not in offline:
                p.leader = placed.leader
                if placed.leader != me:
                    p.error = None  # this broker's copy says nothing of the leader's
            else:
                p.leader = NO_NODE
                p.error = LeaderNotAvailableError(
                    f"{state.name}/{p.partition} has no live leader (replicas "
                    f"{list(placed.replicas)}, in sync {list(placed.isr)})"
                )
    brokers = []
    for b in [] if view is None else sorted(view.brokers.values(), key=lambda b: b.node_id):
        address = _split(b.kafka_address if kafka else b.address)
        if address is not None:
            brokers.append(Endpoint(b.node_id, *address))
    controller = NO_NODE if view is None or view.controller is None else view.controller.node_id
    return MetadataView(brokers, controller, states)
