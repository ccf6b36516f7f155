"""Cluster metadata as it lives in etcd: the key layout and the values, sans I/O.

Every key sits under one prefix (``cluster.etcd_prefix``, ``/tailrace`` by
default), values are JSON (readable with ``etcdctl get --prefix``)::

    <prefix>/brokers/<node_id>             {"node_id", "address", "kafka_address"}
                                           under the broker's lease; its
                                           create revision is the broker epoch
    <prefix>/controller                    {"node_id", "broker_epoch"} under the
                                           controller's lease; its create
                                           revision is the controller epoch
    <prefix>/topics/<name>                 {"partitions", "replication_factor", "configs"}
    <prefix>/partitions/<topic>/<p>        {"replicas", "leader", "leader_epoch",
                                            "isr", "controller_epoch",
                                            "leader_broker_epoch"}

A partition's state changes only by compare-and-swap on its mod revision.
Two writers:

* the controller (controller.py): new partitions, leader elections and
  dead brokers leaving the ISR, in a txn that also checks the controller
  key's create revision (the writer is still the controller it was);
* the partition's leader (replicas.py), for ISR changes only (a follower
  out of sync for ``replica_lag_time_max_ms`` leaves, a caught-up one
  rejoins): it puts the state it read with only ``isr`` changed, in a txn
  that compares the partition key's mod revision with the one that state
  had -- so leader, leader epoch and every other field are still the ones
  it leads with -- and ``<prefix>/brokers/<its node_id>``'s create revision
  with its broker epoch (a leader whose session expired writes nothing).
  The change counts toward the high watermark only once the txn succeeded
  (KIP-497); a refused one is dropped and decided again from the new state.

:class:`ClusterView` is one consistent reading of all of it, built from a
PrefixView's items.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..etcd.codec import KeyValue

__all__ = [
    "NO_LEADER",
    "BrokerInfo",
    "ClusterView",
    "ControllerInfo",
    "Keys",
    "PartitionState",
    "TopicSpec",
]

#: ``leader`` of a partition none of whose in-sync replicas is alive (offline)
NO_LEADER = -1


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: bytes = b"/tailrace"

    @property
    def root(self) -> bytes:
        return self.prefix + b"/"

    @property
    def brokers(self) -> bytes:
        return self.prefix + b"/brokers/"

    @property
    def controller(self) -> bytes:
        return self.prefix + b"/controller"

    @property
    def topics(self) -> bytes:
        return self.prefix + b"/topics/"

    @property
    def partitions(self) -> bytes:
        return self.prefix + b"/partitions/"

    @property
    def producer_ids(self) -> bytes:
        return self.prefix + b"/producer-ids"

    def broker(self, node_id: int) -> bytes:
        return self.brokers + str(node_id).encode()

    def topic(self, name: str) -> bytes:
        return self.topics + name.encode()

    def partition(self, topic: str, partition: int) -> bytes:
        return self.partitions + f"{topic}/{partition}".encode()


def _load(kv: KeyValue) -> dict[str, Any]:
    value = json.loads(kv.value)
    if not isinstance(value, dict):
        raise ValueError(f"{kv.key!r}: not a JSON object")
    return value


def dump(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    address: str
    kafka_address: str = ""
    #: the registration key's create revision (0 before it is written)
    epoch: int = 0

    def value(self) -> bytes:
        return dump(
            {"node_id": self.node_id, "address": self.address, "kafka_address": self.kafka_address}
        )

    @classmethod
    def from_kv(cls, kv: KeyValue) -> BrokerInfo:
        v = _load(kv)
        return cls(
            int(v["node_id"]), str(v["address"]), str(v.get("kafka_address", "")),
            kv.create_revision,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ControllerInfo:
    node_id: int
    broker_epoch: int
    #: the controller key's create revision (the controller epoch)
    epoch: int = 0

    def value(self) -> bytes:
        return dump({"node_id": self.node_id, "broker_epoch": self.broker_epoch})

    @classmethod
    def from_kv(cls, kv: KeyValue) -> ControllerInfo:
        v = _load(kv)
        return cls(int(v["node_id"]), int(v["broker_epoch"]), kv.create_revision)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)
    #: the topic key's create revision (0 before it is written): a topic
    #: deleted and created again under the same name has a new one
    revision: int = 0

    def value(self) -> bytes:
        return dump(
            {
                "partitions": self.partitions,
                "replication_factor": self.replication_factor,
                "configs": dict(self.configs),
            }
        )

    @classmethod
    def from_kv(cls, name: str, kv: KeyValue) -> TopicSpec:
        v = _load(kv)
        return cls(
            name, int(v["partitions"]), int(v["replication_factor"]),
            dict(v.get("configs") or {}), kv.create_revision,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PartitionState:
    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    #: the epoch of the controller that wrote this state
    controller_epoch: int = 0
    #: the leader's broker epoch when it was elected (0: no leader); a
    #: registration with another epoch means the leader restarted
    leader_broker_epoch: int = 0

    def value(self) -> bytes:
        d = asdict(self)
        d["replicas"] = list(self.replicas)
        d["isr"] = list(self.isr)
        return dump(d)

    @classmethod
    def from_kv(cls, kv: KeyValue) -> PartitionState:
        v = _load(kv)
        return cls(
            tuple(int(r) for r in v["replicas"]),
            int(v["leader"]),
            int(v["leader_epoch"]),
            tuple(int(r) for r in v["isr"]),
            int(v.get("controller_epoch", 0)),
            int(v.get("leader_broker_epoch", 0)),
        )


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One consistent reading of the cluster's metadata at ``revision``."""

    revision: int
    brokers: Mapping[int, BrokerInfo]
    controller: ControllerInfo | None
    topics: Mapping[str, TopicSpec]
    #: (topic, partition) -> (state, the key's mod revision for CAS)
    partitions: Mapping[tuple[str, int], tuple[PartitionState, int]]

    @classmethod
    def from_items(cls, keys: Keys, items: Mapping[bytes, KeyValue], revision: int) -> ClusterView:
        brokers: dict[int, BrokerInfo] = {}
        topics: dict[str, TopicSpec] = {}
        partitions: dict[tuple[str, int], tuple[PartitionState, int]] = {}
        controller = None
        for key, kv in items.items():
            if key == keys.controller:
                controller = ControllerInfo.from_kv(kv)
            elif key.startswith(keys.brokers):
                info = BrokerInfo.from_kv(kv)
                brokers[info.node_id] = info
            elif key.startswith(keys.topics):
                name = key[len(keys.topics) :].decode()
                topics[name] = TopicSpec.from_kv(name, kv)
            elif key.startswith(keys.partitions):
                topic, _, number = key[len(keys.partitions) :].decode().rpartition("/")
                partitions[(topic, int(number))] = (PartitionState.from_kv(kv), kv.mod_revision)
        return cls(revision, brokers, controller, topics, partitions)

    @property
    def live(self) -> frozenset[int]:
        return frozenset(self.brokers)

    def under_replicated(self) -> list[tuple[str, int]]:
        """Partitions with a leader but fewer in-sync replicas than replicas."""
        return sorted(
            tp
            for tp, (s, _rev) in self.partitions.items()
            if s.leader != NO_LEADER and len(s.isr) < len(s.replicas)
        )

    def offline(self) -> list[tuple[str, int]]:
        """Partitions with no live leader."""
        return sorted(
            tp
            for tp, (s, _rev) in self.partitions.items()
            if s.leader == NO_LEADER or s.leader not in self.brokers
        )
