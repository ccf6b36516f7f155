"""Between brokers: a follower's fetch (Fetch version 1) and
OffsetForLeaderEpoch.

A follower fetch is Fetch version 1, a message of its own rather than
fields added to the consumer's: the consumer's fetch (version 0) stays as
it was on the wire, and a broker that only speaks version 0 answers a
follower with UNSUPPORTED_VERSION instead of serving it as a consumer
(below the high watermark only, which would stall replication silently).
Both requests need ``cluster_action`` on the cluster when the broker
enforces ACLs (a follower's requests name a replica; only brokers may).
The rules they carry out: docs/replication.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import I16, I32, I64, Name, Records, Str
from ._fields import f


@dataclass(slots=True, kw_only=True)
class ReplicaFetchPartition:
    partition: I32 = f("partition index")
    current_leader_epoch: I32 = f(
        "the leader epoch the follower follows; an older one is FENCED_LEADER_EPOCH, a newer "
        "one UNKNOWN_LEADER_EPOCH"
    )
    fetch_offset: I64 = f(
        "the follower's log end offset: the first offset wanted, and its position for the "
        "high watermark (made durable first as the topic's flush mode says)"
    )
    max_bytes: I32 = f(
        "soft limit on the partition's bytes (the first batch always comes)", 1 << 20
    )


@dataclass(slots=True, kw_only=True)
class ReplicaFetchTopic:
    name: Name = f("topic name")
    partitions: list[ReplicaFetchPartition] = f("partitions to read")


@dataclass(slots=True, kw_only=True)
class ReplicaFetchRequest:
    """A follower's fetch (Fetch version 1): reads up to the leader's log end,
    not only below the high watermark. Brokers only: ``cluster_action`` on
    the cluster. When no partition has a record past its fetch offset, the
    leader holds the request until one has (an append), or ``max_wait_ms``."""

    replica_id: I32 = f("node id of the fetching follower")
    max_wait_ms: I32 = f("longest the leader holds the request when no data is there", 500)
    max_bytes: I32 = f("soft limit on the whole response's records", 10 << 20)
    topics: list[ReplicaFetchTopic] = f("what to read")


@dataclass(slots=True, kw_only=True)
class ReplicaFetchPartitionResult:
    partition: I32 = f("partition index")
    error_code: I16 = f(
        "NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, "
        "OFFSET_OUT_OF_RANGE, ...",
        0,
    )
    error_message: Str | None = f("explanation of error_code", None)
    high_watermark: I64 = f("the leader's high watermark (exclusive)", -1)
    log_start_offset: I64 = f("the leader's log start offset", -1)
    log_end_offset: I64 = f("the leader's log end offset", -1)
    records: Records = f(
        "whole batches as the leader stored them, from the one holding fetch_offset", b""
    )


@dataclass(slots=True, kw_only=True)
class ReplicaFetchTopicResult:
    name: Name = f("topic name")
    partitions: list[ReplicaFetchPartitionResult] = f(
        "one per partition in the request", factory=list
    )


@dataclass(slots=True, kw_only=True)
class ReplicaFetchResponse:
    error_code: I16 = f("request-level error (CLUSTER_AUTHORIZATION_FAILED), 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[ReplicaFetchTopicResult] = f("results", factory=list)


@dataclass(slots=True, kw_only=True)
class OffsetForLeaderEpochPartition:
    partition: I32 = f("partition index")
    current_leader_epoch: I32 = f(
        "the leader epoch the sender follows (-1: not checked); an older one is "
        "FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH",
        -1,
    )
    leader_epoch: I32 = f("the epoch whose end offset is wanted")


@dataclass(slots=True, kw_only=True)
class OffsetForLeaderEpochTopic:
    name: Name = f("topic name")
    partitions: list[OffsetForLeaderEpochPartition] = f("partitions to look up")


@dataclass(slots=True, kw_only=True)
class OffsetForLeaderEpochRequest:
    """Where a leader epoch ends in the leader's log (KIP-101, KIP-279): a
    follower asks with its latest epoch before it fetches, after every
    epoch change, and truncates to what the answer says. A follower
    (``replica_id`` >= 0) needs ``cluster_action`` on the cluster, a client
    (-1) ``describe`` on the topic."""

    replica_id: I32 = f("node id of the asking follower; -1 for a client", -1)
    topics: list[OffsetForLeaderEpochTopic] = f("what to look up")


@dataclass(slots=True, kw_only=True)
class EpochEndOffsetResult:
    partition: I32 = f("partition index")
    error_code: I16 = f("NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    leader_epoch: I32 = f(
        "the largest epoch <= the one asked that the leader's log holds; -1 none", -1
    )
    end_offset: I64 = f(
        "where that epoch's records end (exclusive: the next epoch's start or the log end); "
        "-1 unknown",
        -1,
    )


@dataclass(slots=True, kw_only=True)
class EpochEndOffsetTopicResult:
    name: Name = f("topic name")
    partitions: list[EpochEndOffsetResult] = f("one per partition in the request", factory=list)


@dataclass(slots=True, kw_only=True)
class OffsetForLeaderEpochResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[EpochEndOffsetTopicResult] = f("results", factory=list)
