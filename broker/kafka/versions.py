"""The single table of what the Kafka listener advertises: api_key -> (min, max).

Only versions that are implemented and tested are listed (every one of them
is exercised by tests/kafka). Pre-flexible ranges are preferred (see
docs/kafka.md): librdkafka before 2.2 cannot parse non-empty tagged fields,
and these ranges are enough for librdkafka, kafka-python and aiokafka.
ApiVersions 3-4 are the one flexible range every client needs.
docs/kafka.md's table is generated from here (tools/kafka_tables.py) and a
test fails when it drifts.
"""

from __future__ import annotations

from enum import IntEnum

from kio.schema.index import api_key_map

__all__ = ["ADVERTISED", "KafkaApi", "api_name", "supports"]


class KafkaApi(IntEnum):
    """Kafka's API keys, for the APIs this broker serves."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44


#: api_key -> (min_version, max_version), in api_key order.
ADVERTISED: dict[int, tuple[int, int]] = {
    KafkaApi.PRODUCE: (3, 8),
    KafkaApi.FETCH: (4, 11),
    KafkaApi.LIST_OFFSETS: (1, 5),
    KafkaApi.METADATA: (1, 8),
    KafkaApi.OFFSET_COMMIT: (2, 7),
    KafkaApi.OFFSET_FETCH: (1, 5),
    KafkaApi.FIND_COORDINATOR: (0, 4),
    KafkaApi.JOIN_GROUP: (0, 5),
    KafkaApi.HEARTBEAT: (0, 3),
    KafkaApi.LEAVE_GROUP: (0, 3),
    KafkaApi.SYNC_GROUP: (0, 3),
    KafkaApi.DESCRIBE_GROUPS: (0, 4),
    KafkaApi.LIST_GROUPS: (0, 2),
    KafkaApi.SASL_HANDSHAKE: (0, 1),
    KafkaApi.API_VERSIONS: (0, 4),
    KafkaApi.CREATE_TOPICS: (2, 4),
    KafkaApi.DELETE_TOPICS: (1, 3),
    KafkaApi.DELETE_RECORDS: (0, 1),
    KafkaApi.INIT_PRODUCER_ID: (0, 4),
    KafkaApi.OFFSET_FOR_LEADER_EPOCH: (2, 3),
    KafkaApi.DESCRIBE_ACLS: (1, 1),
    KafkaApi.CREATE_ACLS: (1, 1),
    KafkaApi.DELETE_ACLS: (1, 1),
    KafkaApi.DESCRIBE_CONFIGS: (1, 3),
    KafkaApi.ALTER_CONFIGS: (0, 1),
    KafkaApi.SASL_AUTHENTICATE: (0, 1),
    KafkaApi.CREATE_PARTITIONS: (0, 1),
    KafkaApi.DELETE_GROUPS: (0, 1),
    KafkaApi.INCREMENTAL_ALTER_CONFIGS: (0, 1),
}


def api_name(api_key: int) -> str:
    """Kafka's name of an API key (``FIND_COORDINATOR``), for messages."""
    name = api_key_map.get(api_key)
    return name.upper() if name else f"api_key {api_key}"


def supports(api_key: int, api_version: int) -> bool:
    span = ADVERTISED.get(api_key)
    return span is not None and span[0] <= api_version <= span[1]
