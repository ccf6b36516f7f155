"""tailrace's own Producer and Consumer against a replicated cluster: real
etcd, three real ``tailrace broker`` processes, a bootstrap list, acks=all,
and kill -9 of a partition's leader in the middle. The clients find every
leader by themselves, follow the new one, and the idempotent producer's
retries are stored once."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
import trio
from cluster_harness import BrokerCluster, ClusterBrokerProcess

from tailrace.broker.cluster.state import NO_LEADER, BrokerInfo, Keys
from tailrace.broker.cluster.status import read_view
from tailrace.broker.etcd import EtcdClient
from tailrace.client import Admin, Consumer, Producer, TopicPartition
from tailrace.client.protocol import MetadataRequest, MetadataResponse
from tailrace.client.transport import BrokerConnection

pytestmark = pytest.mark.slow

TOPIC = "events"
PARTITIONS = 3


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


def scrape(proc: Any) -> dict[str, float]:
    """``/metrics`` of a broker started with ``--metrics 127.0.0.1:0``:
    sample (name with labels) -> value."""
    address = proc.wait_for_line(r"serving metrics.* address=(\S+)").group(1)
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {m[0]: float(m[1]) for m in re.findall(r"^(tailrace_\S+) (\S+)$", text, re.M)}


async def metadata_of(address: str) -> MetadataResponse:
    async with trio.open_nursery() as nursery:
        conn = await BrokerConnection.connect(nursery, address, request_timeout=30)
        try:
            return await conn.request(MetadataRequest(topics=None))
        finally:
            await conn.aclose()


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
    procs = {n: cluster.start_broker(n, "--metrics", "127.0.0.1:0") for n in (1, 2, 3)}
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

    # the survivors' metrics: every partition led by one of them, each
    # under-replicated (the dead broker is out of every ISR), no lag of a live
    # follower once the writes are in; the dead one 50 records behind where
    # it fetched before the kill
    survivors = [p for n, p in procs.items() if n != victim]
    deadline = time.monotonic() + 60  # the bound only stops a hung test
    while True:
        samples = [scrape(p) for p in survivors]
        lead = [
            sum(s.get(f'tailrace_partition_leader{{partition="{p}",topic="{TOPIC}"}}', 0)
                for s in samples)
            for p in range(PARTITIONS)
        ]  # fmt: skip
        under = sum(s["tailrace_partitions_under_replicated"] for s in samples)
        lags = {(k, v) for s in samples for k, v in s.items()
                if k.startswith("tailrace_partition_follower_lag_records{")}  # fmt: skip
        live = [v for k, v in lags if f'replica="{victim}"' not in k]
        if lead == [1] * PARTITIONS and under == PARTITIONS and live and max(live) == 0:
            break
        assert time.monotonic() < deadline, (lead, under, lags)
        time.sleep(0.2)
    isr = [v for s in samples for k, v in s.items()
           if k.startswith("tailrace_partition_in_sync_replicas{")]  # fmt: skip
    assert sorted(isr) == [2.0] * PARTITIONS
    followed = sum(1 for leader in before.values() if leader != victim)
    assert sorted(v for k, v in lags if f'replica="{victim}"' in k) == [50.0] * followed


def test_producer_ids_are_unique_across_brokers(cluster: BrokerCluster) -> None:
    """Idempotent producers that asked different brokers for their ids write
    to one partition: every record is stored (a producer id handed out twice
    would make the second producer's first batch look like a duplicate)."""
    procs = {n: cluster.start_broker(n) for n in (1, 2, 3)}
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    with Admin(procs[1].address) as admin:
        admin.create_topic(TOPIC, 1, replication_factor=3)
    wait_leaders_of_one = time.monotonic() + 60
    while leaders(cluster).get(0, NO_LEADER) == NO_LEADER:
        assert time.monotonic() < wait_leaders_of_one, "no leader"
        time.sleep(0.1)
    values = []
    for n, proc in procs.items():  # each producer bootstraps from another broker
        with Producer(proc.address, acks="all", linger_ms=0) as producer:
            value = b"from-broker-%d" % n
            producer.send(TOPIC, value, partition=0).result()
            values.append(value)
    got: list[bytes] = []
    with Consumer(procs[2].address, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(TOPIC, 0)])
        deadline = time.monotonic() + 30  # the bound only stops a hung test
        while len(got) < len(values) and time.monotonic() < deadline:
            got += [r.value for r in consumer.poll(200)]
    assert got == values


def test_a_kafka_client_follows_a_new_leader_and_loses_nothing_acknowledged(
    cluster: BrokerCluster,
) -> None:
    """The same through the Kafka listeners with confluent-kafka (librdkafka):
    an idempotent acks=all producer across kill -9 of a leader."""
    from confluent_kafka import Consumer as KafkaConsumer
    from confluent_kafka import Producer as KafkaProducer
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    procs = {n: cluster.start_broker(n, "--kafka-listen", "127.0.0.1:0") for n in (1, 2, 3)}
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    bootstrap = ",".join(p.kafka_address() for p in procs.values())
    with Admin(procs[1].address) as admin:
        admin.create_topic(TOPIC, PARTITIONS, replication_factor=3)
    before = wait_leaders(cluster, lambda ls: NO_LEADER not in ls.values(), "leaders")

    def produce_kafka(values: list[bytes]) -> None:
        errors: list[Any] = []
        producer = KafkaProducer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 0, "message.timeout.ms": 60_000,
        })  # fmt: skip
        for i, value in enumerate(values):
            producer.produce(
                TOPIC, value, partition=i % PARTITIONS,
                on_delivery=lambda err, _msg: err is not None and errors.append(err),
            )  # fmt: skip
        assert producer.flush(90) == 0
        assert errors == []

    first = [b"first-%03d" % i for i in range(90)]
    produce_kafka(first)
    victim = before[0]
    cluster.kill(victim)
    wait_leaders(
        cluster, lambda ls: ls[0] not in (victim, NO_LEADER), "partition 0 has a new leader"
    )
    second = [b"second-%03d" % i for i in range(90)]
    produce_kafka(second)

    consumer = KafkaConsumer({
        "bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False,
    })  # fmt: skip
    try:
        consumer.assign([KafkaTopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        got: list[bytes] = []
        deadline = time.monotonic() + 60  # the bound only stops a hung test
        while len(got) < 180 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
    finally:
        consumer.close()
    assert Counter(got) == Counter(first + second)


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


def test_a_broker_out_of_the_cluster_sends_clients_to_the_next_bootstrap_broker(
    cluster: BrokerCluster, tmp_path: Any
) -> None:
    """A broker that is not a member of the cluster (here: waiting for an
    earlier session of its node id to expire; the same holds once a broker
    cut off from etcd lost its session) tells clients nothing: Metadata
    names no brokers, and a client whose bootstrap list starts with it
    moves on to the next address instead of asking it again and again."""
    procs = {n: cluster.start_broker(n) for n in (2, 3)}
    with Admin(procs[2].address) as admin:
        admin.create_topic(TOPIC, 1, replication_factor=2)
    deadline = time.monotonic() + 60  # the bound only stops a hung test
    while leaders(cluster).get(0, NO_LEADER) == NO_LEADER:
        assert time.monotonic() < deadline, "no leader"
        time.sleep(0.1)

    async def hold_node_1() -> None:  # an earlier session of node 1, still leased
        async with EtcdClient(cluster.etcd.endpoints) as client:
            lease = await client.grant(120)
            info = BrokerInfo(1, "127.0.0.1:1")  # refuses: never watched as alive
            await client.put(Keys().broker(1), info.value(), lease=lease.id)

    trio.run(hold_node_1)
    outsider = ClusterBrokerProcess(tmp_path / "outsider", 1, cluster.etcd.endpoints)
    outsider.start()
    try:
        outsider.wait_for_line(r"registered by another session")
        answer = trio.run(metadata_of, outsider.address)
        assert answer.brokers == []  # it vouches for nothing
        assert all(p.leader_id == -1 for t in answer.topics for p in t.partitions)
        with Producer(f"{outsider.address},{procs[2].address}", acks="all") as producer:
            stored = producer.send(TOPIC, b"past the outsider", partition=0).result(60)
        assert stored.offset == 0
    finally:
        outsider.kill()


def test_delete_topics_deletes_every_replica_and_a_new_topic_of_that_name_starts_empty(
    cluster: BrokerCluster,
) -> None:
    procs = {n: cluster.start_broker(n) for n in (1, 2, 3)}
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    with Admin(procs[1].address) as admin:
        admin.create_topic(TOPIC, PARTITIONS, replication_factor=3)
    wait_leaders(cluster, lambda found: NO_LEADER not in found.values(), "leaders")
    produce(",".join(p.address for p in procs.values()), [b"old-%d" % i for i in range(30)])
    assert all((p.data_dir / TOPIC).is_dir() for p in procs.values())  # acks=all: everywhere
    cluster.kill(3)  # down across the delete and the re-creation
    cluster.wait_status(
        lambda d: not any(b["alive"] for b in d["brokers"] if b["node_id"] == 3), "3 gone"
    )
    running = [procs[1], procs[2]]
    bootstrap = ",".join(p.address for p in running)

    with Admin(procs[2].address) as admin:  # any broker: the cluster's topic goes
        admin.delete_topic(TOPIC)
    deadline = time.monotonic() + 60  # the bound only stops a hung test
    while any((p.data_dir / TOPIC).exists() for p in running) or leaders(cluster):
        assert time.monotonic() < deadline, "a replica or a partition state is left"
        time.sleep(0.1)
    with Admin(procs[1].address) as admin:
        assert TOPIC not in [t.name for t in admin.list_topics()]
        admin.create_topic(TOPIC, PARTITIONS, replication_factor=2)  # on 1 and 2
    wait_leaders(cluster, lambda found: NO_LEADER not in found.values(), "new leaders")
    assert produce(bootstrap, [b"new"]) == [(0, 0)]  # offsets start again at 0

    # broker 3 comes back with the old topic's copy on disk: a copy made for
    # another create revision of the name is deleted, not served or followed
    assert (procs[3].data_dir / TOPIC).is_dir()
    cluster.start_broker(3)
    deadline = time.monotonic() + 60
    while (procs[3].data_dir / TOPIC).exists():
        assert time.monotonic() < deadline, "broker 3 kept the deleted topic's copy"
        time.sleep(0.1)
    got: list[bytes] = []
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got += [r.value for r in consumer.poll(200)]
        time.sleep(0.5)
        got += [r.value for r in consumer.poll(200)]
    assert got == [b"new"]


def test_create_partitions_grows_the_topic_on_every_replica(cluster: BrokerCluster) -> None:
    procs = {n: cluster.start_broker(n) for n in (1, 2, 3)}
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    with Admin(procs[1].address) as admin:
        admin.create_topic(TOPIC, 1, replication_factor=3)
    with Admin(procs[2].address) as admin:  # any broker: the cluster's topic grows
        admin.create_partitions(TOPIC, PARTITIONS)
    wait_leaders(cluster, lambda found: NO_LEADER not in found.values(), "3 placed partitions")
    bootstrap = ",".join(p.address for p in procs.values())
    stored = produce(bootstrap, [b"a", b"b", b"c"])  # partition i % 3, acks=all
    assert sorted(stored) == [(0, 0), (1, 0), (2, 0)]
    for proc in procs.values():  # every replica holds every partition
        assert sorted(d.name for d in (proc.data_dir / TOPIC).iterdir() if d.is_dir()) == [
            "0",
            "1",
            "2",
        ]
