"""Real clients' admin APIs against a real broker's Kafka listener, where
they expose them: ACLs (confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient, seen the same from the native admin), DeleteRecords (both
clients; the new start survives a restart); OffsetForLeaderEpoch, which no
client here exposes, as raw requests of every advertised version."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_END, KafkaError, KafkaException
from confluent_kafka import TopicPartition as ConfluentTP
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import NewTopic as KpNewTopic
from kafka.admin import ResourceType as KpResourceType
from kafka.protocol.admin.topics import DeleteRecordsRequest
from kafka.protocol.consumer.offsets import OffsetForLeaderEpochRequest
from kafka_harness import KafkaBroker
from kafka_samples import RawKafkaClient, request

from tailrace.client import Admin

TIMEOUT_S = 30

EVERY_ACL = AclBindingFilter(
    ResourceType.ANY,
    None,
    ResourcePatternType.ANY,
    None,
    None,
    AclOperation.ANY,
    AclPermissionType.ANY,
)


def _native_acls(kafka_broker) -> set[tuple[str, str, str, str, str]]:
    with Admin(kafka_broker.address) as admin:
        return {
            (a.principal, a.operation, a.resource_type, a.resource_name, a.pattern_type)
            for a in admin.describe_acls()
        }


def test_confluent_admin_creates_describes_and_deletes_acls(kafka_broker):
    admin = AdminClient({"bootstrap.servers": kafka_broker.kafka_address})
    read_orders = AclBinding(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        "User:alice",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    group_prefix = AclBinding(
        ResourceType.GROUP,
        "team-",
        ResourcePatternType.PREFIXED,
        "User:alice",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    for future in admin.create_acls([read_orders, group_prefix]).values():
        assert future.result(TIMEOUT_S) is None
    described = admin.describe_acls(EVERY_ACL).result(TIMEOUT_S)
    assert set(described) == {read_orders, group_prefix}
    # the same set the native admin manages
    assert _native_acls(kafka_broker) == {
        ("User:alice", "read", "topic", "orders", "literal"),
        ("User:alice", "read", "group", "team-", "prefixed"),
    }
    # a DENY ACL does not exist here: that creation alone fails, INVALID_REQUEST
    deny = AclBinding(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        "User:bob",
        "*",
        AclOperation.WRITE,
        AclPermissionType.DENY,
    )
    with pytest.raises(KafkaException) as refused:
        admin.create_acls([deny])[deny].result(TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
    # delete by a filter on the topic: only that ACL goes
    topic_filter = AclBindingFilter(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deleted = admin.delete_acls([topic_filter])[topic_filter].result(TIMEOUT_S)
    assert deleted == [read_orders]
    assert admin.describe_acls(EVERY_ACL).result(TIMEOUT_S) == [group_prefix]


def test_kafka_python_admin_creates_describes_and_deletes_acls(kafka_broker):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
    try:
        write = ACL(
            principal="User:carol",
            host="*",
            operation=ACLOperation.WRITE,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(KpResourceType.TOPIC, "events"),
        )
        on_host = ACL(
            principal="User:carol",
            host="10.0.0.1",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(KpResourceType.TOPIC, "events"),
        )
        created = admin.create_acls([write, on_host])
        assert [a.operation for a in created["succeeded"]] == [ACLOperation.WRITE]
        # a host other than "*": refused alone, INVALID_REQUEST
        assert [e.__name__ for e in created["failed"]] == ["InvalidRequestError"]
        every = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                KpResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )
        acls, error = admin.describe_acls(every)
        assert error.errno == 0
        assert [(a.principal, a.operation, a.resource_pattern.resource_name) for a in acls] == [
            ("User:carol", ACLOperation.WRITE, "events")
        ]
        ((_filter, matched, error),) = admin.delete_acls([every])
        assert error.errno == 0
        assert [(a.principal, a.operation) for a in matched] == [("User:carol", ACLOperation.WRITE)]
        assert admin.describe_acls(every)[0] == []
    finally:
        admin.close()


# --- DeleteRecords and OffsetForLeaderEpoch ------------------------------------------


def _produce(address: str, topic: str, per_partition: int, partitions: int = 2) -> None:
    producer = KafkaProducer(bootstrap_servers=address, acks="all")
    try:
        for p in range(partitions):
            for i in range(per_partition):
                producer.send(topic, value=b"v%d" % i, partition=p)
        producer.flush(TIMEOUT_S)
    finally:
        producer.close()


def _watermarks(address: str, topic: str, partitions: int = 2) -> list[tuple[int, int]]:
    consumer = KafkaConsumer(bootstrap_servers=address)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        low, high = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return [(low[tp], high[tp]) for tp in tps]
    finally:
        consumer.close()


def _read_from_beginning(address: str, topic: str, partition: int) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=address, auto_offset_reset="earliest")
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        offsets: list[int] = []
        for _ in range(50):
            for records in consumer.poll(timeout_ms=200).values():
                offsets.extend(r.offset for r in records)
            if consumer.position(tp) >= consumer.end_offsets([tp])[tp]:
                break
        return offsets
    finally:
        consumer.close()


def test_confluent_delete_records_moves_the_low_watermark_and_survives_a_restart(tmp_path):
    broker = KafkaBroker(tmp_path / "data")
    try:
        admin = AdminClient({"bootstrap.servers": broker.kafka_address})
        admin.create_topics([NewTopic("cut", 2, 1)])["cut"].result(TIMEOUT_S)
        _produce(broker.kafka_address, "cut", 10)
        futures = admin.delete_records(
            [ConfluentTP("cut", 0, 4), ConfluentTP("cut", 1, OFFSET_END)]
        )
        got = {tp.partition: f.result(TIMEOUT_S) for tp, f in futures.items()}
        assert got[0].low_watermark == 4
        assert got[1].low_watermark == 10  # OFFSET_END: up to the high watermark
        assert _watermarks(broker.kafka_address, "cut") == [(4, 10), (10, 10)]
        # a consumer from the beginning starts at the new start
        assert [o for o in _read_from_beginning(broker.kafka_address, "cut", 0) if o >= 4] == list(
            range(4, 10)
        )
        # beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing moves
        (beyond,) = admin.delete_records([ConfluentTP("cut", 0, 11)]).values()
        with pytest.raises(KafkaException) as refused:
            beyond.result(TIMEOUT_S)
        assert refused.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    finally:
        broker.stop()
    broker = KafkaBroker(tmp_path / "data")  # the start is durable
    try:
        assert _watermarks(broker.kafka_address, "cut") == [(4, 10), (10, 10)]
        with Admin(broker.address) as native:
            # the native protocol sees the same start
            assert native.topic_offsets("cut") == {0: (4, 10), 1: (10, 10)}
    finally:
        broker.stop()


def test_kafka_python_delete_records_and_its_refusals(kafka_broker):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
    try:
        admin.create_topics([KpNewTopic("kpcut", 2, 1)])
        _produce(kafka_broker.kafka_address, "kpcut", 5)
        got = admin.delete_records({TopicPartition("kpcut", 0): 3})
        assert got[TopicPartition("kpcut", 0)]["low_watermark"] == 3
        # a lower offset later does not move the start back
        got = admin.delete_records({TopicPartition("kpcut", 0): 1})
        assert got[TopicPartition("kpcut", 0)]["low_watermark"] == 3
        assert _watermarks(kafka_broker.kafka_address, "kpcut") == [(3, 5), (0, 5)]
    finally:
        admin.close()
    # the broker's own topic: INVALID_TOPIC, as Kafka refuses its internal ones
    # (a raw request: kafka-python looks the partition up first, and the
    # offsets topic exists only from the first commit)
    cut = DeleteRecordsRequest.DeleteRecordsTopic
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        for version in (0, 1):
            asked = request(
                21,
                version,
                topics=[
                    cut(
                        name="__consumer_offsets",
                        partitions=[cut.DeleteRecordsPartition(partition_index=0, offset=0)],
                    )
                ],
                timeout_ms=1000,
            )
            (topic,) = c.call(asked, version).topics
            assert [(p.error_code, p.low_watermark) for p in topic.partitions] == [(17, -1)]


def _epoch_request(topic: str, version: int, *parts: tuple[int, int, int]):
    ask = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    return request(
        23,
        version,
        topics=[
            ask(
                topic=topic,
                partitions=[
                    ask.OffsetForLeaderPartition(
                        partition=p, current_leader_epoch=current, leader_epoch=epoch
                    )
                    for p, current, epoch in parts
                ],
            )
        ],
    )


@pytest.mark.parametrize("version", [2, 3])
def test_offset_for_leader_epoch_answers_as_a_single_leader_in_epoch_0(kafka_broker, version):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
    try:
        admin.create_topics([KpNewTopic("epochs", 2, 1)])
    finally:
        admin.close()
    _produce(kafka_broker.kafka_address, "epochs", 7, partitions=1)  # partition 1 stays empty
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        asked = _epoch_request(
            "epochs",
            version,
            (0, -1, 0),  # epoch 0 ends at the log end
            (0, 0, 3),  # an epoch this log never had: (-1, -1)
            (0, -1, -1),  # no epoch: (-1, -1)
            (1, -1, 0),  # an empty log has no epoch entry
            (0, 2, 0),  # the client knows a newer leader epoch than the broker
            (5, -1, 0),  # no such partition
        )
        (topic,) = c.call(asked, version).topics
        got = [(p.error_code, p.leader_epoch, p.end_offset) for p in topic.partitions]
    assert got == [
        (0, 0, 7),
        (0, -1, -1),
        (0, -1, -1),
        (0, -1, -1),
        (75, -1, -1),  # UNKNOWN_LEADER_EPOCH
        (3, -1, -1),  # UNKNOWN_TOPIC_OR_PARTITION
    ]
