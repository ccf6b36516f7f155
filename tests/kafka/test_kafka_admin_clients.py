"""Real clients' admin APIs against a real broker's Kafka listener, where
they expose them: ACLs (confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient, seen the same from the native admin)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
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
from kafka.admin import ResourceType as KpResourceType

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
