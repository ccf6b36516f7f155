"""Consumers: fetch pipelining, CRC-checked decoding, seeking."""

from .async_consumer import AsyncConsumer, ConsumerConfig
from .consumer import Consumer
from .record import Record, RecordList, TopicPartition

__all__ = ["AsyncConsumer", "Consumer", "ConsumerConfig", "Record", "RecordList", "TopicPartition"]
