"""ApiVersions and Metadata: what the broker speaks and what it holds."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import I16, I32, I64, U16, Name, Str
from ._fields import f


@dataclass(slots=True, kw_only=True)
class ApiVersionsRequest:
    """Asks which APIs and versions the broker supports. Allowed before
    authentication."""

    client_name: Str = f("name of the client software, for the broker's log", "")
    client_version: Str = f("version of the client software", "")


@dataclass(slots=True, kw_only=True)
class ApiVersionRange:
    api_key: U16 = f("the API")
    min_version: U16 = f("oldest supported version")
    max_version: U16 = f("newest supported version")


@dataclass(slots=True, kw_only=True)
class ApiVersionsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    api_versions: list[ApiVersionRange] = f("supported APIs", factory=list)
    broker_version: Str = f("the broker's software version", "")


@dataclass(slots=True, kw_only=True)
class MetadataRequest:
    """Describes the broker and topics."""

    topics: list[Name] | None = f("topics to describe; nil for every topic", None)
    allow_auto_topic_creation: bool = f(
        "create missing topics when the broker runs with auto_create_topics", False
    )


@dataclass(slots=True, kw_only=True)
class BrokerInfo:
    node_id: I32 = f("the broker's id (0 on a single node, cluster.node_id in a cluster)")
    host: Str = f("host clients should connect to")
    port: U16 = f("port clients should connect to")


@dataclass(slots=True, kw_only=True)
class PartitionMetadata:
    partition: I32 = f("partition index")
    error_code: I16 = f(
        "0, STORAGE_ERROR when the partition is offline, LEADER_NOT_AVAILABLE when it has no "
        "leader (cluster)",
        0,
    )
    error_message: Str | None = f("explanation of error_code", None)
    leader_id: I32 = f("node id of the partition's leader, -1 when it has none", 0)
    leader_epoch: I32 = f(
        "the leader's epoch (cluster; bumped by every leader change), -1 on a single node", -1
    )
    replicas: list[I32] = f(
        "node ids of the partition's replicas, preferred leader first", factory=list
    )
    isr: list[I32] = f("node ids of the in-sync replicas", factory=list)
    offline_replicas: list[I32] = f(
        "node ids of replicas that are not alive (or whose copy is offline)", factory=list
    )
    log_start_offset: I64 = f("first offset still in the log", -1)
    high_watermark: I64 = f("offset up to which consumers may read (exclusive)", -1)
    log_end_offset: I64 = f("offset the next record will get", -1)
    size_bytes: I64 = f("bytes of log data on disk", 0)
    segment_count: I32 = f("number of segment files", 0)
    dirty_bytes: I64 = f(
        "compacted topics: bytes of sealed segments the cleaner has not cleaned yet", 0
    )
    cleanable_bytes: I64 = f("compacted topics: bytes of sealed segments (clean and dirty)", 0)
    last_clean_ms: I64 = f(
        "compacted topics: wall-clock ms when the cleaner last rewrote the partition, -1 never "
        "(since the broker started)",
        -1,
    )


@dataclass(slots=True, kw_only=True)
class TopicMetadata:
    name: Name = f("topic name")
    error_code: I16 = f("UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist", 0)
    error_message: Str | None = f("explanation of error_code", None)
    internal: bool = f("true for the broker's own topics", False)
    partitions: list[PartitionMetadata] = f("one entry per partition", factory=list)


@dataclass(slots=True, kw_only=True)
class MetadataResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    cluster_id: Str = f("identifier of this broker's data directory", "")
    controller_id: I32 = f(
        "node id of the controller (this broker on a single node), -1 while none is elected", 0
    )
    brokers: list[BrokerInfo] = f(
        "the brokers: this one on a single node, every live broker in a cluster", factory=list
    )
    topics: list[TopicMetadata] = f("the topics asked for", factory=list)
