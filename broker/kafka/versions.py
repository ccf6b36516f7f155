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

__all__ = ["ADVERTISED", "KafkaApi", "supports"]


class KafkaApi(IntEnum):
    """Kafka's API keys, for the APIs this broker serves."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    INIT_PRODUCER_ID = 22


#: api_key -> (min_version, max_version), in api_key order.
ADVERTISED: dict[int, tuple[int, int]] = {
    KafkaApi.PRODUCE: (3, 8),
    KafkaApi.FETCH: (4, 11),
    KafkaApi.LIST_OFFSETS: (1, 5),
    KafkaApi.METADATA: (1, 8),
    KafkaApi.API_VERSIONS: (0, 4),
    KafkaApi.CREATE_TOPICS: (2, 4),
    KafkaApi.DELETE_TOPICS: (1, 3),
    KafkaApi.INIT_PRODUCER_ID: (0, 4),
}


def supports(api_key: int, api_version: int) -> bool:
    span = ADVERTISED.get(api_key)
    return span is not None and span[0] <= api_version <= span[1]
