"""Producers: batching, partitioning, idempotent retries."""

from .async_producer import AsyncProducer
from .batch import RecordFuture, RecordMetadata
from .core import ProducerConfig
from .partitioner import murmur2, partition_for_key
from .producer import Producer

__all__ = [
    "AsyncProducer",
    "Producer",
    "ProducerConfig",
    "RecordFuture",
    "RecordMetadata",
    "murmur2",
    "partition_for_key",
]
