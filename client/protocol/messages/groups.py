"""Consumer groups: membership, committed offsets and group administration.

Membership follows Kafka's KIP-848 ("the next generation of the consumer
rebalance protocol"): the broker computes the assignment, members only
heartbeat. One API, ConsumerGroupHeartbeat, joins (``member_epoch`` 0),
keeps the session alive, reports which partitions the member still owns
(acknowledging revocations) and leaves (``member_epoch`` -1, or -2 for a
static member that will come back). Its response carries the member's
epoch and the partitions it may consume now. The heartbeat is a long poll:
the broker answers at once when the member has something to do and
otherwise holds the request up to ``max_wait_ms``, so a rebalance reaches
every member in one round trip instead of one heartbeat interval.

OffsetCommit and OffsetFetch store and read committed offsets; a commit
from a member carries its id and epoch, a commit with ``member_epoch`` -1
comes from a consumer outside group management (``assign()``) or from an
admin tool and is accepted only while the group has no members.

docs/protocol.md, "Consumer groups", describes the states, epochs and
errors in prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..schema import I16, I32, I64, MaxItems, Name, Str, StrSpec
from ._fields import f

#: Commit metadata: a short free-form string stored beside the offset.
OffsetMetadata = Annotated[str, StrSpec(4096)]
#: Member ids are broker-made UUIDs; the bound leaves room for other forms.
MemberId = Annotated[str, StrSpec(64)]
#: Group state names ("Empty", "Reconciling", "Stable", "Dead").
StateName = Annotated[str, StrSpec(32)]
PartitionList = Annotated[list[I32], MaxItems(100_000)]


@dataclass(slots=True, kw_only=True)
class TopicPartitions:
    topic: Name = f("topic name")
    partitions: PartitionList = f("partition indexes")


# --- FindCoordinator ---------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class FindCoordinatorRequest:
    """Which broker coordinates a group: in a cluster, the leader of the
    group's partition of ``__consumer_offsets``. Every other group request
    goes there; NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE mean: ask again."""

    group_id: Name = f("the group")


@dataclass(slots=True, kw_only=True)
class FindCoordinatorResponse:
    error_code: I16 = f(
        "COORDINATOR_NOT_AVAILABLE (retriable: no leader yet, or it is loading), "
        "GROUP_AUTHORIZATION_FAILED, ...",
        0,
    )
    error_message: Str | None = f("explanation of error_code", None)
    node_id: I32 = f("the coordinator's broker id; -1 on error", -1)
    host: Str = f(
        'the coordinator\'s native listener; "" when the broker asked is the coordinator '
        "(a single node: keep using this connection)",
        "",
    )
    port: I32 = f("its port; -1 with an empty host", -1)


# --- ConsumerGroupHeartbeat ---------------------------------------------------


@dataclass(slots=True, kw_only=True)
class ConsumerGroupHeartbeatRequest:
    """Joins, heartbeats in and leaves a consumer group; the response is the
    member's epoch and current assignment. See "Consumer groups" above."""

    group_id: Name = f("the group")
    member_id: MemberId = f('"" to join (the broker assigns the id); else the id it assigned', "")
    member_epoch: I32 = f(
        "0 joins (or rejoins after FENCED_MEMBER_EPOCH, keeping member_id); -1 leaves; "
        "-2 leaves for now (static members: the assignment is kept for the session "
        "timeout); otherwise the epoch of the last response",
        0,
    )
    instance_id: Name | None = f(
        "static membership: a restarted member with the same id takes its place", None
    )
    subscribed_topics: list[Name] | None = f(
        "topics the member reads; nil when unchanged (required to join)", None
    )
    owned_partitions: list[TopicPartitions] | None = f(
        "partitions the member consumes now; leaving one out acknowledges its revocation; "
        "nil when unchanged",
        None,
    )
    session_timeout_ms: I32 = f(
        "the member is removed when no heartbeat arrives for this long", 45_000
    )
    rebalance_timeout_ms: I32 = f(
        "the member is removed when it keeps a revoked partition for this long", 300_000
    )
    max_wait_ms: I32 = f(
        "longest the broker may hold the request when nothing changed for the member", 0
    )
    client_id: Str = f("the client's name, shown by DescribeGroups", "")


@dataclass(slots=True, kw_only=True)
class ConsumerGroupHeartbeatResponse:
    error_code: I16 = f(
        "UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH, UNRELEASED_INSTANCE_ID, "
        "INVALID_SESSION_TIMEOUT, GROUP_MAX_SIZE_REACHED, COORDINATOR_LOAD_IN_PROGRESS, ...",
        0,
    )
    error_message: Str | None = f("explanation of error_code", None)
    member_id: MemberId = f("the member's id (assigned by the broker on join)", "")
    member_epoch: I32 = f("the member's epoch: send it with the next heartbeat and commits", -1)
    heartbeat_interval_ms: I32 = f(
        "send the next heartbeat with max_wait_ms up to this (the broker holds it)", 0
    )
    assignment: list[TopicPartitions] | None = f(
        "every partition the member may consume now (nil with an error)", None
    )


# --- OffsetCommit ----------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class OffsetCommitPartition:
    partition: I32 = f("partition index")
    offset: I64 = f("the next offset to consume (not the last one consumed)")
    metadata: OffsetMetadata | None = f("free-form string stored with the offset", None)


@dataclass(slots=True, kw_only=True)
class OffsetCommitTopic:
    name: Name = f("topic name")
    partitions: list[OffsetCommitPartition] = f("offsets to commit")


@dataclass(slots=True, kw_only=True)
class OffsetCommitRequest:
    """Stores committed offsets; answered once they are as durable as the
    ``__consumer_offsets`` topic's flush mode promises."""

    group_id: Name = f("the group")
    member_id: MemberId = f('the committing member; "" outside group management', "")
    member_epoch: I32 = f("the member's epoch; -1 outside group management (assign(), admin)", -1)
    topics: list[OffsetCommitTopic] = f("what to commit")


@dataclass(slots=True, kw_only=True)
class OffsetCommitPartitionResult:
    partition: I32 = f("partition index")
    error_code: I16 = f(
        "NOT_ASSIGNED, OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION, STORAGE_ERROR, ...", 0
    )
    error_message: Str | None = f("explanation of error_code", None)


@dataclass(slots=True, kw_only=True)
class OffsetCommitTopicResult:
    name: Name = f("topic name")
    partitions: list[OffsetCommitPartitionResult] = f("one per partition asked", factory=list)


@dataclass(slots=True, kw_only=True)
class OffsetCommitResponse:
    error_code: I16 = f(
        "request-level error: UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH, NON_EMPTY_GROUP, "
        "GROUP_ID_NOT_FOUND, INVALID_GROUP_ID, ...",
        0,
    )
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[OffsetCommitTopicResult] = f("results", factory=list)


# --- OffsetFetch -----------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class OffsetFetchTopic:
    name: Name = f("topic name")
    partitions: PartitionList = f("partition indexes")


@dataclass(slots=True, kw_only=True)
class OffsetFetchRequest:
    """Reads committed offsets. A group without any gets offset -1 for every
    partition, not an error (a new group has committed nothing)."""

    group_id: Name = f("the group")
    topics: list[OffsetFetchTopic] | None = f(
        "partitions to read; nil for every committed one", None
    )


@dataclass(slots=True, kw_only=True)
class OffsetFetchPartitionResult:
    partition: I32 = f("partition index")
    offset: I64 = f("committed offset; -1 when none", -1)
    metadata: OffsetMetadata | None = f("the metadata committed with it", None)
    commit_timestamp_ms: I64 = f("broker time of the commit, ms; -1 when none", -1)
    error_code: I16 = f("0, or why the offset cannot be read", 0)
    error_message: Str | None = f("explanation of error_code", None)


@dataclass(slots=True, kw_only=True)
class OffsetFetchTopicResult:
    name: Name = f("topic name")
    partitions: list[OffsetFetchPartitionResult] = f("results", factory=list)


@dataclass(slots=True, kw_only=True)
class OffsetFetchResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[OffsetFetchTopicResult] = f("results", factory=list)


# --- DescribeGroups ---------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class DescribeGroupsRequest:
    group_ids: list[Name] = f("groups to describe")


@dataclass(slots=True, kw_only=True)
class DescribedMember:
    member_id: MemberId = f("the member's id")
    instance_id: Name | None = f("static membership id", None)
    client_id: Str = f("the client's name", "")
    client_host: Str = f("address the member heartbeats from", "")
    member_epoch: I32 = f("the member's epoch", 0)
    subscribed_topics: list[Name] = f("topics it subscribes to", factory=list)
    assignment: list[TopicPartitions] = f("partitions it owns now", factory=list)
    pending_revocation: list[TopicPartitions] = f(
        "partitions it was asked to give up and still owns", factory=list
    )
    target_assignment: list[TopicPartitions] = f(
        "partitions it will own once the rebalance completes", factory=list
    )
    session_timeout_ms: I32 = f("its session timeout", 0)
    rebalance_timeout_ms: I32 = f("its rebalance timeout", 0)


@dataclass(slots=True, kw_only=True)
class DescribedGroup:
    group_id: Name = f("the group")
    error_code: I16 = f("GROUP_ID_NOT_FOUND for an unknown group", 0)
    error_message: Str | None = f("explanation of error_code", None)
    state: StateName = f('"Empty", "Reconciling" or "Stable"', "")
    group_epoch: I32 = f("bumped by every membership or subscription change", 0)
    assignment_epoch: I32 = f("epoch of the target assignment", 0)
    members: list[DescribedMember] = f("the members", factory=list)


@dataclass(slots=True, kw_only=True)
class DescribeGroupsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    groups: list[DescribedGroup] = f("one per group asked", factory=list)


# --- ListGroups ------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class ListGroupsRequest:
    states_filter: list[StateName] | None = f(
        "only groups in these states (case-insensitive); nil for all", None
    )


@dataclass(slots=True, kw_only=True)
class ListedGroup:
    group_id: Name = f("the group")
    state: StateName = f('"Empty", "Reconciling" or "Stable"')
    member_count: I32 = f("members now", 0)
    group_epoch: I32 = f("the group epoch", 0)


@dataclass(slots=True, kw_only=True)
class ListGroupsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    groups: list[ListedGroup] = f("every group the broker knows", factory=list)


# --- DeleteGroups ----------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class DeleteGroupsRequest:
    """Deletes groups and their committed offsets (durably: tombstones in
    ``__consumer_offsets``). Only a group without members can be deleted."""

    group_ids: list[Name] = f("groups to delete")


@dataclass(slots=True, kw_only=True)
class DeletedGroup:
    group_id: Name = f("the group")
    error_code: I16 = f("GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)


@dataclass(slots=True, kw_only=True)
class DeleteGroupsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    results: list[DeletedGroup] = f("one per group asked", factory=list)


__all__ = [
    "ConsumerGroupHeartbeatRequest",
    "ConsumerGroupHeartbeatResponse",
    "DeleteGroupsRequest",
    "DeleteGroupsResponse",
    "DeletedGroup",
    "DescribeGroupsRequest",
    "DescribeGroupsResponse",
    "DescribedGroup",
    "DescribedMember",
    "FindCoordinatorRequest",
    "FindCoordinatorResponse",
    "ListGroupsRequest",
    "ListGroupsResponse",
    "ListedGroup",
    "OffsetCommitPartition",
    "OffsetCommitPartitionResult",
    "OffsetCommitRequest",
    "OffsetCommitResponse",
    "OffsetCommitTopic",
    "OffsetCommitTopicResult",
    "OffsetFetchPartitionResult",
    "OffsetFetchRequest",
    "OffsetFetchResponse",
    "OffsetFetchTopic",
    "OffsetFetchTopicResult",
    "TopicPartitions",
]
