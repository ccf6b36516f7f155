"""KIP-320 through the Kafka listeners of a real cluster: Metadata gives
each partition's leader epoch, the leader fences an older or newer epoch
in OffsetForLeaderEpoch (and Fetch and ListOffsets, by the same check),
answers a position's epoch from its epoch cache, and a confluent-kafka
consumer that reads across a leader's kill -9 (validating its position
against the new leader) gets every record once."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from cluster_harness import BrokerCluster

from tailrace.client import Admin, Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kafka"))
from kafka_samples import RawKafkaClient, request

pytestmark = pytest.mark.slow

TOPIC = "epochs"
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
NOT_LEADER_OR_FOLLOWER = 6


def leader_and_epoch(address: str) -> tuple[int, int]:
    from kafka.protocol.metadata import MetadataRequest

    with RawKafkaClient(address) as c:
        answer = c.call(request(3, 7, topics=[MetadataRequest.MetadataRequestTopic(name=TOPIC)]), 7)
    (topic,) = answer.topics
    (p,) = topic.partitions
    return p.leader_id, p.leader_epoch


def epoch_end(address: str, current: int, epoch: int) -> tuple[int, int, int]:
    from kafka.protocol.consumer.offsets import OffsetForLeaderEpochRequest

    ask = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    req = request(
        23, 3,
        topics=[ask(topic=TOPIC, partitions=[ask.OffsetForLeaderPartition(
            partition=0, current_leader_epoch=current, leader_epoch=epoch)])],
    )  # fmt: skip
    with RawKafkaClient(address) as c:
        answer = c.call(req, 3)
    (p,) = answer.topics[0].partitions
    return p.error_code, p.leader_epoch, p.end_offset


def test_kafka_clients_get_leader_epochs_are_fenced_by_them_and_read_across_a_kill(
    cluster: BrokerCluster,
) -> None:
    from confluent_kafka import Consumer as KafkaConsumer
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    procs = {n: cluster.start_broker(n, "--kafka-listen", "127.0.0.1:0") for n in (1, 2, 3)}
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    native = ",".join(p.address for p in procs.values())
    with Admin(procs[1].address) as admin:
        admin.create_topic(TOPIC, 1, replication_factor=3)

    def send(values: list[bytes]) -> None:
        with Producer(native, acks="all", linger_ms=0) as producer:
            for v in values:
                producer.send(TOPIC, v, partition=0)
            producer.flush()

    def settled(exclude: int | None = None) -> tuple[int, int]:
        deadline = time.monotonic() + 60  # the bound only stops a hung test
        while True:
            seen = {leader_and_epoch(p.kafka_address()) for n, p in procs.items() if n != exclude}
            if len(seen) == 1:
                (found,) = seen
                if found[0] not in (-1, exclude):
                    return found
            assert time.monotonic() < deadline, f"brokers disagree on the leader: {seen}"
            time.sleep(0.1)

    send([b"a-%02d" % i for i in range(30)])
    old_leader, old_epoch = settled()
    assert old_epoch >= 0  # the real epoch, no longer -1

    bootstrap = ",".join(p.kafka_address() for p in procs.values())
    consumer = KafkaConsumer({
        "bootstrap.servers": bootstrap, "group.id": "epochs", "enable.auto.commit": False,
        "topic.metadata.refresh.interval.ms": 500,
    })  # fmt: skip
    got: list[bytes] = []

    def read_until(n: int, within: float = 60.0) -> None:
        deadline = time.monotonic() + within  # the bound only stops a hung test
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())

    try:
        consumer.assign([KafkaTopicPartition(TOPIC, 0, 0)])
        read_until(30)
        cluster.kill(old_leader)
        new_leader, new_epoch = settled(exclude=old_leader)
        assert new_leader != old_leader
        assert new_epoch > old_epoch
        send([b"b-%02d" % i for i in range(20)])
        read_until(50)
        read_until(51, within=1.0)  # and nothing more (no record twice)
    finally:
        consumer.close()
    assert got == [b"a-%02d" % i for i in range(30)] + [b"b-%02d" % i for i in range(20)]

    lead = procs[new_leader].kafka_address()
    # the end of the old epoch is where the new one starts: offset 30
    assert epoch_end(lead, new_epoch, old_epoch) == (0, old_epoch, 30)
    assert epoch_end(lead, new_epoch, new_epoch) == (0, new_epoch, 50)
    assert epoch_end(lead, new_epoch - 1, old_epoch)[0] == FENCED_LEADER_EPOCH
    assert epoch_end(lead, new_epoch + 5, old_epoch)[0] == UNKNOWN_LEADER_EPOCH
    (follower,) = [n for n in procs if n not in (old_leader, new_leader)]
    assert epoch_end(procs[follower].kafka_address(), new_epoch, 0)[0] == NOT_LEADER_OR_FOLLOWER
