"""tailrace's own Producer and Consumer against a replicated cluster: real
etcd, three real ``tailrace broker`` processes, a bootstrap list, acks=all,
and kill -9 of a partition's leader in the middle. The clients find every
leader by themselves, follow the new one, and the idempotent producer's
retries are stored once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster_harness import BrokerCluster

from tailrace.broker.cluster.state import NO_LEADER
from tailrace.broker.cluster.status import read_view
from tailrace.client import Admin, Consumer, Producer, TopicPartition

pytestmark = pytest.mark.slow

TOPIC = "events"
PARTITIONS = 3


@pytest.fixture
def cluster(tmp_path: Path, etcd: Any) -> Iterator[BrokerCluster]:
    c = BrokerCluster(tmp_path, etcd)
    try:
        yield c
    finally:
        c.stop()


def leaders(cluster: BrokerCluster) -> dict[int, int]:
    view = trio.run(read_view, cluster.etcd.endpoints, "/tailrace")
    return {
        p: found[0].leader
        for (t, p), found in view.partitions.items()
        if t == TOPIC and found is not None
    }


def wait_leaders(cluster: BrokerCluster, ok: Any, what: str) -> dict[int, int]:
    deadline = time.monotonic() + 60  # the bound only stops a hung test
    while True:
        found = leaders(cluster)
        if len(found) == PARTITIONS and ok(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}; last {found}")
        time.sleep(0.1)


def produce(bootstrap: str, values: list[bytes]) -> list[tuple[int, int]]:
    with Producer(bootstrap, acks="all", linger_ms=0) as producer:
        futures = [
            producer.send(TOPIC, value, partition=i % PARTITIONS) for i, value in enumerate(values)
        ]
        producer.flush()
        return [(f.result().partition, f.result().offset) for f in futures]


def test_clients_follow_a_new_leader_and_lose_nothing_acknowledged(
    cluster: BrokerCluster,
) -> None:
    procs = {n: cluster.start_broker(n) for n in (1, 2, 3)}
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    bootstrap = ",".join(p.address for p in procs.values())
    with Admin(bootstrap) as admin:
        admin.create_topic(TOPIC, PARTITIONS, replication_factor=3)
    before = wait_leaders(cluster, lambda ls: NO_LEADER not in ls.values(), "leaders")
    for n in procs.values():  # every replica has taken its role
        for p in range(PARTITIONS):
            n.wait_for_line(rf"(leading|following) .*topic={TOPIC} partition={p}\b")

    first = [b"first-%03d" % i for i in range(150)]
    positions = produce(bootstrap, first)
    assert Counter(p for p, _ in positions) == {p: 50 for p in range(PARTITIONS)}

    victim = before[0]
    cluster.kill(victim)  # kill -9 through its handle; its etcd lease expires
    wait_leaders(
        cluster, lambda ls: ls[0] not in (victim, NO_LEADER), "partition 0 has a new leader"
    )

    # the same bootstrap list, the dead broker's address included
    second = [b"second-%03d" % i for i in range(150)]
    positions = produce(bootstrap, second)
    assert Counter(p for p, _ in positions) == {p: 50 for p in range(PARTITIONS)}

    got: list[bytes] = []
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 60  # the bound only stops a hung test
        while len(got) < 300 and time.monotonic() < deadline:
            got += [r.value for r in consumer.poll(200)]
    assert Counter(got) == Counter(first + second)  # each acknowledged record once


def test_topics_created_through_a_replica_broker_are_taken_up_everywhere(
    cluster: BrokerCluster,
) -> None:
    """CreateTopics at a broker that holds a replica: the answer is success
    and every broker takes up its replica. The handler used to create the
    local log as well, racing the broker's own replica manager: the loser
    answered TOPIC_ALREADY_EXISTS for the topic just created, or logged
    'cannot take up a replica' and never led or followed the partition (an
    acks=all write to it then waited forever)."""
    procs = {n: cluster.start_broker(n) for n in (1, 2, 3)}
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    names = [f"created-{i}" for i in range(8)]
    with Admin(procs[1].address) as admin:
        for name in names:  # each one's replicas include broker 1 (RF=3)
            assert admin.create_topic(name, 1, {"flush": "none"}, replication_factor=3) == 1
    with Producer(procs[1].address, acks="all", linger_ms=0, delivery_timeout_ms=30_000) as p:
        futures = [p.send(name, b"x", partition=0) for name in names]
        p.flush()
        assert [f.result().offset for f in futures] == [0] * len(names)
    for n in procs.values():
        for name in names:
            n.wait_for_line(rf"(leading|following) .*topic={name} partition=0\b")
        assert not [line for line in n.log_lines if "cannot take up a replica" in line]
