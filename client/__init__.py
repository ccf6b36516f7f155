"""tailrace client libraries, and the sans-I/O code shared with the broker.

Producers, consumers and an admin client, each trio-native (``Async*``) and
blocking (thread-safe, running the same async core on a background trio
thread)::

    from tailrace.client import Producer, Consumer

    with Producer("127.0.0.1:7420") as producer:
        producer.send("events", b"hello").result()

``tailrace.client.records`` holds the record-batch format,
``tailrace.client.protocol`` the wire codec and ``tailrace.client.errors``
the error-code table and exceptions.
"""

from .admin import Acl, Admin, AsyncAdmin, ConfigValue, PartitionDescription, TopicDescription
from .consumer import AsyncConsumer, Consumer, Record, TopicPartition
from .errors import (
    BrokerError,
    BrokerUnavailableError,
    BufferFullError,
    ClientClosedError,
    CorruptRecordError,
    TailraceError,
)
from .producer import AsyncProducer, Producer, RecordFuture, RecordMetadata
from .security import SecurityConfig

__all__ = [
    "Acl",
    "Admin",
    "AsyncAdmin",
    "AsyncConsumer",
    "AsyncProducer",
    "BrokerError",
    "BrokerUnavailableError",
    "BufferFullError",
    "ClientClosedError",
    "ConfigValue",
    "Consumer",
    "CorruptRecordError",
    "PartitionDescription",
    "Producer",
    "Record",
    "RecordFuture",
    "RecordMetadata",
    "SecurityConfig",
    "TailraceError",
    "TopicDescription",
    "TopicPartition",
]
