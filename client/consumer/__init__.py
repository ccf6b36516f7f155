"""Consumers: fetch pipelining, CRC-checked decoding, seeking, consumer groups."""

from .async_consumer import AsyncConsumer, ConsumerConfig, RebalanceCallback
from .committer import CommitHandle, OffsetAndMetadata
from .consumer import Consumer
from .record import Record, RecordList, TopicPartition

__all__ = [
    "AsyncConsumer",
    "CommitHandle",
    "Consumer",
    "ConsumerConfig",
    "OffsetAndMetadata",
    "RebalanceCallback",
    "Record",
    "RecordList",
    "TopicPartition",
]
