"""The data path: Produce, Fetch, ListOffsets and InitProducerId.

Produce requests and Fetch responses carry record batches raw, after the
msgpack map (see ..schema rule 3): the broker appends produced bytes to its
log as they are and streams fetched bytes from segment files with sendfile.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import I8, I16, I32, I64, Name, Records, Str
from ._fields import f

#: ListOffsets timestamps with a special meaning.
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2


@dataclass(slots=True, kw_only=True)
class ProducePartition:
    partition: I32 = f("partition index")
    records: Records = f("exactly one record batch (docs/format.md)")


@dataclass(slots=True, kw_only=True)
class ProduceTopic:
    name: Name = f("topic name")
    partitions: list[ProducePartition] = f("batches per partition")


@dataclass(slots=True, kw_only=True)
class ProduceRequest:
    """Appends batches. With ``acks`` 0 the broker sends no response at all."""

    acks: I8 = f(
        "0: no response; 1: respond once the topic's flush mode is satisfied on the "
        "leader; -1 (all): also once every in-sync replica has it (a single broker: as 1)",
        1,
    )
    timeout_ms: I32 = f("longest the broker waits for durability before REQUEST_TIMED_OUT", 30_000)
    topics: list[ProduceTopic] = f("what to append")


@dataclass(slots=True, kw_only=True)
class ProducePartitionResult:
    partition: I32 = f("partition index")
    error_code: I16 = f("0 or the reason nothing was appended", 0)
    error_message: Str | None = f("explanation of error_code", None)
    base_offset: I64 = f(
        "offset of the batch's first record (the original one for a duplicate)", -1
    )
    log_append_time_ms: I64 = f("broker time of the append, ms", -1)
    log_start_offset: I64 = f("the partition's log start offset", -1)
    duplicate: bool = f("true when the batch was a retry the broker already had", False)


@dataclass(slots=True, kw_only=True)
class ProduceTopicResult:
    name: Name = f("topic name")
    partitions: list[ProducePartitionResult] = f("one per partition in the request", factory=list)


@dataclass(slots=True, kw_only=True)
class ProduceResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[ProduceTopicResult] = f("results", factory=list)


@dataclass(slots=True, kw_only=True)
class FetchPartition:
    partition: I32 = f("partition index")
    fetch_offset: I64 = f("first offset wanted")
    max_bytes: I32 = f(
        "soft limit on the partition's bytes (the first batch always comes)", 1 << 20
    )


@dataclass(slots=True, kw_only=True)
class FetchTopic:
    name: Name = f("topic name")
    partitions: list[FetchPartition] = f("partitions to read")


@dataclass(slots=True, kw_only=True)
class FetchRequest:
    """Reads batches. Waits up to ``max_wait_ms`` for ``min_bytes`` to exist."""

    max_wait_ms: I32 = f("longest the broker holds the request when data is short", 500)
    min_bytes: I32 = f("bytes that must be available before the broker answers early", 1)
    max_bytes: I32 = f("soft limit on the whole response's records", 50 << 20)
    topics: list[FetchTopic] = f("what to read")


@dataclass(slots=True, kw_only=True)
class FetchPartitionResult:
    partition: I32 = f("partition index")
    error_code: I16 = f("OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION, STORAGE_ERROR, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    high_watermark: I64 = f("offset up to which records are readable (exclusive)", -1)
    log_start_offset: I64 = f("first offset still in the log", -1)
    records: Records = f("whole batches starting at the one holding fetch_offset", b"")


@dataclass(slots=True, kw_only=True)
class FetchTopicResult:
    name: Name = f("topic name")
    partitions: list[FetchPartitionResult] = f("one per partition in the request", factory=list)


@dataclass(slots=True, kw_only=True)
class FetchResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[FetchTopicResult] = f("results", factory=list)


@dataclass(slots=True, kw_only=True)
class ListOffsetsPartition:
    partition: I32 = f("partition index")
    timestamp: I64 = f("-1 latest (the high watermark), -2 earliest, else a time in ms")


@dataclass(slots=True, kw_only=True)
class ListOffsetsTopic:
    name: Name = f("topic name")
    partitions: list[ListOffsetsPartition] = f("partitions to look up")


@dataclass(slots=True, kw_only=True)
class ListOffsetsRequest:
    topics: list[ListOffsetsTopic] = f("what to look up")


@dataclass(slots=True, kw_only=True)
class ListOffsetsPartitionResult:
    partition: I32 = f("partition index")
    error_code: I16 = f("UNKNOWN_TOPIC_OR_PARTITION, STORAGE_ERROR, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    offset: I64 = f("the offset found; -1 when no record has a timestamp >= the one asked", -1)
    timestamp: I64 = f("timestamp of the record found; -1 for earliest/latest", -1)


@dataclass(slots=True, kw_only=True)
class ListOffsetsTopicResult:
    name: Name = f("topic name")
    partitions: list[ListOffsetsPartitionResult] = f("results", factory=list)


@dataclass(slots=True, kw_only=True)
class ListOffsetsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[ListOffsetsTopicResult] = f("results", factory=list)


@dataclass(slots=True, kw_only=True)
class InitProducerIdRequest:
    """Gets an idempotent producer id and epoch. Sending back a known id and
    epoch bumps the epoch (a restarted producer fencing its old self)."""

    producer_id: I64 = f("-1 for a new id, else the id to re-initialise", -1)
    producer_epoch: I16 = f("-1 for a new id, else the current epoch", -1)


@dataclass(slots=True, kw_only=True)
class InitProducerIdResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    producer_id: I64 = f("the producer id to stamp on batches", -1)
    producer_epoch: I16 = f("the epoch to stamp on batches", -1)
