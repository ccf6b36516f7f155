"""Cluster-wide consumer groups (issue 16, rule 8) against real etcd and
three real ``tailrace broker`` processes: ``__consumer_offsets`` is a
replicated topic, a group's coordinator is the leader of the group's
partition of it. Members that bootstrap to different brokers form one
group, and committed offsets survive the kill -9 of the coordinator: a new
coordinator on another broker serves them and consumption resumes there.

One cluster for the module (each broker costs seconds to start); the test
that kills a broker runs last."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from cluster_harness import BrokerCluster

from tailrace.broker.cluster.state import NO_LEADER
from tailrace.broker.cluster.status import read_view
from tailrace.broker.coordinator.ownership import partition_for
from tailrace.client import Admin, Consumer, Producer, TopicPartition
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import FindCoordinatorRequest, OffsetFetchRequest
from tailrace.client.transport.pool import BrokerClient

pytestmark = pytest.mark.slow

TOPIC = "orders"
PARTITIONS = 2
OFFSETS_PARTITIONS = 3
RECORDS = 60  # per partition


@pytest.fixture(scope="module")
def groups_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerCluster]:
    from tailrace.broker.faultkit.etcd_cluster import EtcdCluster

    base = tmp_path_factory.mktemp("groups-cluster")
    etcd = EtcdCluster(base / "etcd", members=1, heartbeat_ms=50, election_ms=500)
    etcd.start()
    cluster = BrokerCluster(
        base,
        etcd,
        env={
            "TAILRACE_GROUPS_OFFSETS_TOPIC_PARTITIONS": str(OFFSETS_PARTITIONS),
            "TAILRACE_GROUPS_INITIAL_REBALANCE_DELAY_MS": "0",
        },
    )
    try:
        for n in (1, 2, 3):
            cluster.start_broker(n, "--kafka-listen", "127.0.0.1:0")
        cluster.wait_status(
            lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers"
        )
        with Admin(cluster.brokers[1].address) as admin:
            admin.create_topic(TOPIC, PARTITIONS, replication_factor=3)
        with Producer(cluster.brokers[1].address, acks="all", linger_ms=0) as producer:
            for i in range(RECORDS * PARTITIONS):
                producer.send(TOPIC, b"v%03d" % i, partition=i % PARTITIONS)
            producer.flush()
        # the first FindCoordinator creates __consumer_offsets: every test
        # starts with it placed (each test may run alone)
        trio.run(_find, cluster.brokers[1].address, "warm-up")
        yield cluster
    finally:
        cluster.stop()
        etcd.stop()
        shutil.rmtree(base / "etcd", ignore_errors=True)  # ~123 MB of WAL


async def _find(address: str, group: str) -> Any:
    """FindCoordinator at ``address`` until it names one (it answers
    COORDINATOR_NOT_AVAILABLE while the topic is created and loaded)."""
    async with trio.open_nursery() as nursery:
        client = BrokerClient(nursery, address)
        try:
            with trio.fail_after(60):  # the bound only stops a hung test
                while True:
                    found = await client.request(FindCoordinatorRequest(group_id=group))
                    if found.error_code != ErrorCode.COORDINATOR_NOT_AVAILABLE:
                        break
                    await trio.sleep(0.1)
        finally:
            await client.aclose()
    assert found.error_code == 0, found.error_message
    return found


def _until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout  # the bound only stops a hung test
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.1)


def coordinator_of(cluster: BrokerCluster, group: str) -> int:
    """The live leader of the group's partition of __consumer_offsets, per etcd."""
    p = partition_for(group, OFFSETS_PARTITIONS)

    def leader() -> int:
        view = trio.run(read_view, cluster.etcd.endpoints, "/tailrace")
        found = view.partitions.get(("__consumer_offsets", p))
        if found is None or found[0].leader == NO_LEADER or found[0].leader not in view.brokers:
            return 0
        return found[0].leader

    return _until(f"a live coordinator for {group}", leader)


def kafka_consumer(bootstrap: str, group: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 500, "topic.metadata.refresh.interval.ms": 1000,
    })  # fmt: skip


def test_members_bootstrapped_to_different_brokers_form_one_group(
    groups_cluster: BrokerCluster,
) -> None:
    cluster = groups_cluster
    group = "one-group"
    # two members, two partitions: one group gives each one partition; two
    # groups (one per broker asked) would give each both
    consumers = [kafka_consumer(cluster.brokers[n].kafka_address(), group) for n in (1, 2)]
    try:
        for c in consumers:
            c.subscribe([TOPIC])

        def split() -> list[set[int]] | None:
            for c in consumers:
                c.poll(0.1)
            sets = [{tp.partition for tp in c.assignment()} for c in consumers]
            return sets if sorted(len(s) for s in sets) == [1, 1] else None

        sets = _until("one group of two members, one partition each", split)
    finally:
        for c in consumers:
            c.close()
    assert sets[0] | sets[1] == {0, 1}
    # at least one member bootstrapped to a broker that is not the
    # coordinator: it found the coordinator through FindCoordinator
    assert coordinator_of(cluster, group) in (1, 2, 3)


def native_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=10_000,
    )  # fmt: skip


def test_native_members_bootstrapped_to_different_brokers_form_one_group(
    groups_cluster: BrokerCluster,
) -> None:
    """tailrace's own consumer finds the coordinator with FindCoordinator
    instead of running its group at the broker it bootstrapped to."""
    cluster = groups_cluster
    group = "native-one-group"
    consumers = [native_consumer(cluster.brokers[n].address, group) for n in (1, 2)]
    try:
        for c in consumers:
            c.subscribe([TOPIC])

        def split() -> list[set[int]] | None:
            for c in consumers:
                c.poll(100)
            sets = [{tp.partition for tp in c.assignment()} for c in consumers]
            return sets if sorted(len(s) for s in sets) == [1, 1] else None

        sets = _until("one native group of two members, one partition each", split)
        assert sets[0] | sets[1] == {0, 1}
        # a commit through one member is read through a consumer that
        # bootstrapped to the third broker
        mine = TopicPartition(TOPIC, next(iter(sets[0])))
        consumers[0].commit({mine: 7})
    finally:
        for c in consumers:
            c.close()
    with native_consumer(cluster.brokers[3].address, group) as reader:
        found = reader.committed(mine)
    assert found is not None
    assert found.offset == 7
    # the admin client asks the coordinator too, and every broker for the list
    with Admin(cluster.brokers[3].address) as admin:
        assert group in {g.group_id for g in admin.list_groups()}
        described = admin.describe_group(group)
        assert [(r.partition, r.committed_offset) for r in described.offsets] == [
            (mine.partition, 7)
        ]
        admin.delete_group(group)
        assert group not in {g.group_id for g in admin.list_groups()}


def test_every_broker_names_the_coordinator_and_others_refuse(
    groups_cluster: BrokerCluster,
) -> None:
    """FindCoordinator at any broker names the leader of the group's offsets
    partition at its native address; a group request at another broker
    answers NOT_COORDINATOR."""
    cluster = groups_cluster
    group = "asked-everywhere"
    expected = coordinator_of(cluster, group)

    async def ask() -> list[tuple[int, int, str, int]]:
        out = []
        for n, proc in sorted(cluster.brokers.items()):
            found = await _find(proc.address, group)
            async with trio.open_nursery() as nursery:
                client = BrokerClient(nursery, proc.address)
                try:
                    fetched = await client.request(OffsetFetchRequest(group_id=group))
                finally:
                    await client.aclose()
            out.append((n, found.node_id, f"{found.host}:{found.port}", fetched.error_code))
        return out

    answers = trio.run(ask)
    assert [(n, node, address) for n, node, address, _ in answers] == [
        (n, expected, cluster.brokers[expected].address) for n in (1, 2, 3)
    ]
    assert [(n, code) for n, _, _, code in answers] == [
        (n, 0 if n == expected else ErrorCode.NOT_COORDINATOR) for n in (1, 2, 3)
    ]


def test_commits_survive_kill_of_the_coordinator(groups_cluster: BrokerCluster) -> None:
    """A Kafka group and a native group coordinated by the same broker
    commit; the broker is killed (-9); a coordinator on another broker
    serves both groups' commits and consumption resumes exactly there."""
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    cluster = groups_cluster
    kafka_group = "survivor"
    p = partition_for(kafka_group, OFFSETS_PARTITIONS)
    native_group = next(
        g for i in range(1000) if partition_for(g := f"native-survivor-{i}", 3) == p
    )
    coordinator = coordinator_of(cluster, kafka_group)
    # bootstrap through a broker that is not the coordinator
    other = next(n for n in (1, 2, 3) if n != coordinator)

    consumer = kafka_consumer(cluster.brokers[other].kafka_address(), kafka_group)
    read: dict[int, list[int]] = {0: [], 1: []}
    try:
        consumer.subscribe([TOPIC])

        def enough() -> bool:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                read[msg.partition()].append(msg.offset())
            return all(len(v) >= 25 for v in read.values())

        _until("25 records of each partition", enough)
        commits = [KafkaTopicPartition(TOPIC, q, 20 + q) for q in (0, 1)]
        done = consumer.commit(offsets=commits, asynchronous=False)
        assert all(tp.error is None for tp in done)
    finally:
        consumer.close()

    with native_consumer(cluster.brokers[other].address, native_group) as native:
        native.subscribe([TOPIC])
        seen: set[int] = set()

        def both() -> bool:
            seen.update(r.partition for r in native.poll(200))
            return seen == {0, 1}

        _until("the native member reads both partitions", both)
        native.commit({TopicPartition(TOPIC, q): 30 + q for q in (0, 1)})

    cluster.brokers[coordinator].wait_for_line(
        rf"coordinating the groups of __consumer_offsets-{p}\b"
    )
    cluster.kill(coordinator)  # kill -9 through its handle
    survivor = _until(
        "a new coordinator on another broker",
        lambda: (n := coordinator_of(cluster, kafka_group)) != coordinator and n,
    )
    live = [n for n in (1, 2, 3) if n != coordinator]

    consumer = kafka_consumer(
        ",".join(cluster.brokers[n].kafka_address() for n in live), kafka_group
    )
    try:
        committed = _until(
            "the committed offsets from the new coordinator",
            lambda: _committed(consumer, KafkaTopicPartition),
        )
        assert committed == {0: 20, 1: 21}
        consumer.subscribe([TOPIC])
        first: dict[int, int] = {}

        def resumed() -> bool:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                first.setdefault(msg.partition(), msg.offset())
            return len(first) == PARTITIONS

        _until("records of both partitions after the failover", resumed)
    finally:
        consumer.close()
    # resumed exactly at the commits: nothing before them read again
    assert first == {0: 20, 1: 21}

    with native_consumer(",".join(cluster.brokers[n].address for n in live), native_group) as c:
        c.subscribe([TOPIC])
        native_first: dict[int, int] = {}

        def native_resumed() -> bool:
            for r in c.poll(200):
                native_first.setdefault(r.partition, r.offset)
            return len(native_first) == PARTITIONS

        _until("the native group reads both partitions after the failover", native_resumed)
    assert native_first == {0: 30, 1: 31}
    # the new coordinator loaded the partition from its replica of the log
    cluster.brokers[survivor].wait_for_line(rf"coordinating the groups of __consumer_offsets-{p}\b")


def _committed(consumer: Any, topic_partition: Any) -> dict[int, int] | None:
    from confluent_kafka import KafkaException

    try:
        found = consumer.committed([topic_partition(TOPIC, p) for p in (0, 1)], timeout=5)
    except KafkaException:
        return None  # the coordinator is moving: ask again
    offsets = {tp.partition: tp.offset for tp in found}
    return offsets if all(o >= 0 for o in offsets.values()) else None
