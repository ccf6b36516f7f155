"""What clients learn about a cluster: real etcd, three real ``tailrace
broker`` processes, asked through both front-ends (the native Metadata over
a real connection, the Kafka listener through confluent-kafka) and through
the CLI, before and after the leader of a partition is killed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import trio
from cluster_harness import BrokerCluster
from confluent_kafka.admin import AdminClient
from harness import ROOT

from tailrace.client import Admin
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import MetadataRequest, MetadataResponse
from tailrace.client.transport.connection import BrokerConnection

pytestmark = pytest.mark.slow

T = TypeVar("T")


def native_metadata(address: str, topics: list[str] | None = None) -> MetadataResponse:
    async def ask() -> MetadataResponse:
        async with trio.open_nursery() as nursery:
            conn = await BrokerConnection.connect(nursery, address)
            try:
                return await conn.request(MetadataRequest(topics=topics))
            finally:
                await conn.aclose()

    return trio.run(ask)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something (the bound only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.2)


def placement(response: MetadataResponse, topic: str) -> dict[int, tuple[Any, ...]] | None:
    """partition -> (error, leader, epoch, replicas, isr, offline), or None
    while the broker does not know every partition's leader yet."""
    (t,) = [t for t in response.topics if t.name == topic]
    if t.error_code:
        return None
    out = {
        p.partition: (p.error_code, p.leader_id, p.leader_epoch, p.replicas, p.isr,
                      p.offline_replicas)
        for p in t.partitions
    }  # fmt: skip
    return out if out and all(v[1] >= 0 for v in out.values()) else None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tailrace.broker.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_both_front_ends_and_the_cli_name_every_leader_and_follow_a_kill(
    cluster: BrokerCluster,
) -> None:
    procs = {n: cluster.start_broker(n, "--kafka-listen", "127.0.0.1:0") for n in (1, 2, 3)}
    doc = cluster.wait_status(lambda d: d["controller"] is not None, "a controller")
    controller = doc["controller"]["node_id"]
    bootstrap = ",".join(p.address for p in procs.values())

    done = cli("topics", "create", "orders", "--partitions", "3", "--replication-factor", "2",
               "--bootstrap", bootstrap)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "created topic orders (3 partitions, replication factor 2)\n"
    cluster.wait_status(lambda d: d["partitions"] == 3, "orders placed")

    # every broker, whether it holds a replica or not, names the same leaders
    views = {
        n: eventually(lambda p=p: placement(native_metadata(p.address, ["orders"]), "orders"),
                      f"broker {n} knows the leaders")
        for n, p in procs.items()
    }  # fmt: skip
    first = views[1]
    assert views[2] == views[3] == first
    for error, leader, epoch, replicas, isr, offline in first.values():
        assert (error, epoch, offline) == (0, 0, [])
        assert len(set(replicas)) == len(replicas) == 2
        assert leader == replicas[0]
        assert isr == replicas
    response = native_metadata(procs[2].address)
    assert {(b.node_id, f"{b.host}:{b.port}") for b in response.brokers} == {
        (n, p.address) for n, p in procs.items()
    }
    assert response.controller_id == controller

    # the Kafka listener says the same, at the Kafka addresses
    kafka = AdminClient({"bootstrap.servers": procs[3].kafka_address()}).list_topics(timeout=30)
    assert {n: f"{b.host}:{b.port}" for n, b in kafka.brokers.items()} == {
        n: p.kafka_address() for n, p in procs.items()
    }
    assert kafka.controller_id == controller
    assert {
        p.id: (p.leader, list(p.replicas), list(p.isrs))
        for p in kafka.topics["orders"].partitions.values()
    } == {p: (v[1], v[3], v[4]) for p, v in first.items()}

    # kill -9 the leader of partition 0: another in-sync replica takes over,
    # one leader epoch up; the dead broker is offline and out of the ISR
    _, dead, _, replicas, _, _ = first[0]
    survivor = next(n for n in procs if n != dead)
    cluster.kill(dead)

    def moved() -> dict[int, tuple[Any, ...]] | None:
        view = placement(native_metadata(procs[survivor].address, ["orders"]), "orders")
        return view if view is not None and view[0][1] != dead else None

    after = eventually(moved, "partition 0 has a new leader")
    error, leader, epoch, _, isr, offline = after[0]
    assert (error, epoch, offline) == (0, 1, [dead])
    assert leader in replicas
    assert isr == [leader]
    response = native_metadata(procs[survivor].address)
    assert dead not in {b.node_id for b in response.brokers}

    # the CLI shows the placement, the offline replica marked
    done = cli("topics", "describe", "orders", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "TOPIC orders"
    assert lines[2].split()[:5] == ["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"]
    row = lines[3].split()
    marked = ",".join(f"{r}(offline)" if r == dead else str(r) for r in replicas)
    assert row[:5] == ["0", str(leader), "1", marked, str(leader)]
    with Admin(bootstrap) as admin:
        parts = admin.describe_topic("orders").partitions
    assert (parts[0].leader, parts[0].leader_epoch, parts[0].offline_replicas) == (
        leader,
        1,
        (dead,),
    )


def test_a_partition_without_a_live_in_sync_replica_is_offline_to_both_front_ends(
    cluster: BrokerCluster,
) -> None:
    procs = {n: cluster.start_broker(n, "--kafka-listen", "127.0.0.1:0") for n in (1, 2)}
    cluster.wait_status(lambda d: d["controller"] is not None, "a controller")
    with Admin(procs[1].address) as admin:
        admin.create_topic("solo", 1, replication_factor=1)
    cluster.wait_status(lambda d: d["partitions"] == 1, "solo placed")
    view = eventually(lambda: placement(native_metadata(procs[1].address, ["solo"]), "solo"),
                      "the leader of solo")  # fmt: skip
    owner = view[0][1]
    other = next(n for n in procs if n != owner)
    cluster.kill(owner)
    cluster.wait_status(lambda d: len(d["offline"]) == 1, "solo offline")

    def offline() -> Any:
        (t,) = native_metadata(procs[other].address, ["solo"]).topics
        (p,) = t.partitions
        return p if p.leader_id == -1 else None

    p = eventually(offline, "solo has no leader")
    assert p.error_code == ErrorCode.LEADER_NOT_AVAILABLE
    assert (p.replicas, p.isr, p.offline_replicas) == ([owner], [owner], [owner])
    kafka = AdminClient({"bootstrap.servers": procs[other].kafka_address()}).list_topics(
        "solo", timeout=30
    )
    part = kafka.topics["solo"].partitions[0]
    assert part.leader == -1
    assert part.error is not None
    assert part.error.code() == ErrorCode.LEADER_NOT_AVAILABLE
