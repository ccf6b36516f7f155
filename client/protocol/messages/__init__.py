"""Every API's request and response bodies, and the table that ties them to
their API key.

Each module holds one family of APIs. A message is a ``kw_only`` dataclass
whose field hints give the wire types (see ..schema); every response field
has a default so that a response carrying only a request-level
``error_code`` still decodes.
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum

from .admin import (
    AlterConfigResource,
    AlterConfigResult,
    AlterConfigsRequest,
    AlterConfigsResponse,
    ConfigEntry,
    ConfigResource,
    ConfigResourceResult,
    CreatableTopic,
    CreatedTopic,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    PartitionsTopic,
    TopicResult,
)
from .core import (
    ApiVersionRange,
    ApiVersionsRequest,
    ApiVersionsResponse,
    BrokerInfo,
    MetadataRequest,
    MetadataResponse,
    PartitionMetadata,
    TopicMetadata,
)
from .data import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    FetchPartition,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    FetchTopicResult,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListOffsetsPartition,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
    ListOffsetsTopicResult,
    ProducePartition,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopic,
    ProduceTopicResult,
)
from .groups import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
    DeletedGroup,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribedGroup,
    DescribedMember,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    ListedGroup,
    ListGroupsRequest,
    ListGroupsResponse,
    OffsetCommitPartition,
    OffsetCommitPartitionResult,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetCommitTopic,
    OffsetCommitTopicResult,
    OffsetFetchPartitionResult,
    OffsetFetchRequest,
    OffsetFetchResponse,
    OffsetFetchTopic,
    OffsetFetchTopicResult,
    TopicPartitions,
)
from .replication import (
    EpochEndOffsetResult,
    EpochEndOffsetTopicResult,
    OffsetForLeaderEpochPartition,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderEpochTopic,
    ReplicaFetchPartition,
    ReplicaFetchPartitionResult,
    ReplicaFetchRequest,
    ReplicaFetchResponse,
    ReplicaFetchTopic,
    ReplicaFetchTopicResult,
)
from .security import (
    AclCreationResult,
    AclEntry,
    AclFilterEntry,
    CreateAclsRequest,
    CreateAclsResponse,
    DeleteAclsFilterResult,
    DeleteAclsRequest,
    DeleteAclsResponse,
    DescribeAclsRequest,
    DescribeAclsResponse,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)


class ApiKey(IntEnum):
    """API keys; the numbers are Apache Kafka's for the same operation."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
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
    CONSUMER_GROUP_HEARTBEAT = 68


@dataclasses.dataclass(frozen=True, slots=True)
class ApiSpec:
    """An API: its version-0 request and response classes, the versions the
    broker speaks, and the versions whose messages are classes of their own
    (``versions``: (version, request, response); any other version in range
    uses ``request``/``response``)."""

    key: ApiKey
    request: type
    response: type
    min_version: int = 0
    max_version: int = 0
    versions: tuple[tuple[int, type, type], ...] = ()

    def request_type(self, version: int) -> type:
        for v, request, _response in self.versions:
            if v == version:
                return request
        return self.request

    def response_type(self, version: int) -> type:
        for v, _request, response in self.versions:
            if v == version:
                return response
        return self.response


#: api_key -> its request and response classes and supported versions.
APIS: dict[int, ApiSpec] = {
    spec.key: spec
    for spec in (
        ApiSpec(ApiKey.PRODUCE, ProduceRequest, ProduceResponse),
        ApiSpec(
            ApiKey.FETCH,
            FetchRequest,
            FetchResponse,
            max_version=1,
            # version 1: a follower's fetch (messages/replication.py)
            versions=((1, ReplicaFetchRequest, ReplicaFetchResponse),),
        ),
        ApiSpec(ApiKey.LIST_OFFSETS, ListOffsetsRequest, ListOffsetsResponse),
        ApiSpec(ApiKey.METADATA, MetadataRequest, MetadataResponse),
        ApiSpec(ApiKey.API_VERSIONS, ApiVersionsRequest, ApiVersionsResponse),
        ApiSpec(ApiKey.CREATE_TOPICS, CreateTopicsRequest, CreateTopicsResponse),
        ApiSpec(ApiKey.DELETE_TOPICS, DeleteTopicsRequest, DeleteTopicsResponse),
        ApiSpec(ApiKey.CREATE_PARTITIONS, CreatePartitionsRequest, CreatePartitionsResponse),
        ApiSpec(ApiKey.INIT_PRODUCER_ID, InitProducerIdRequest, InitProducerIdResponse),
        ApiSpec(
            ApiKey.OFFSET_FOR_LEADER_EPOCH,
            OffsetForLeaderEpochRequest,
            OffsetForLeaderEpochResponse,
        ),
        ApiSpec(ApiKey.DESCRIBE_CONFIGS, DescribeConfigsRequest, DescribeConfigsResponse),
        ApiSpec(ApiKey.ALTER_CONFIGS, AlterConfigsRequest, AlterConfigsResponse),
        ApiSpec(ApiKey.OFFSET_COMMIT, OffsetCommitRequest, OffsetCommitResponse),
        ApiSpec(ApiKey.OFFSET_FETCH, OffsetFetchRequest, OffsetFetchResponse),
        ApiSpec(ApiKey.FIND_COORDINATOR, FindCoordinatorRequest, FindCoordinatorResponse),
        ApiSpec(ApiKey.DESCRIBE_GROUPS, DescribeGroupsRequest, DescribeGroupsResponse),
        ApiSpec(ApiKey.LIST_GROUPS, ListGroupsRequest, ListGroupsResponse),
        ApiSpec(ApiKey.DELETE_GROUPS, DeleteGroupsRequest, DeleteGroupsResponse),
        ApiSpec(ApiKey.SASL_HANDSHAKE, SaslHandshakeRequest, SaslHandshakeResponse),
        ApiSpec(ApiKey.SASL_AUTHENTICATE, SaslAuthenticateRequest, SaslAuthenticateResponse),
        ApiSpec(ApiKey.DESCRIBE_ACLS, DescribeAclsRequest, DescribeAclsResponse),
        ApiSpec(ApiKey.CREATE_ACLS, CreateAclsRequest, CreateAclsResponse),
        ApiSpec(ApiKey.DELETE_ACLS, DeleteAclsRequest, DeleteAclsResponse),
        ApiSpec(
            ApiKey.CONSUMER_GROUP_HEARTBEAT,
            ConsumerGroupHeartbeatRequest,
            ConsumerGroupHeartbeatResponse,
        ),
    )
}

#: request class (of any version) -> its ApiSpec
SPEC_BY_REQUEST: dict[type, ApiSpec] = {spec.request: spec for spec in APIS.values()} | {
    request: spec for spec in APIS.values() for _v, request, _r in spec.versions
}

__all__ = [
    "APIS",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "SPEC_BY_REQUEST",
    "AclCreationResult",
    "AclEntry",
    "AclFilterEntry",
    "AlterConfigResource",
    "AlterConfigResult",
    "AlterConfigsRequest",
    "AlterConfigsResponse",
    "ApiKey",
    "ApiSpec",
    "ApiVersionRange",
    "ApiVersionsRequest",
    "ApiVersionsResponse",
    "BrokerInfo",
    "ConfigEntry",
    "ConfigResource",
    "ConfigResourceResult",
    "ConsumerGroupHeartbeatRequest",
    "ConsumerGroupHeartbeatResponse",
    "CreatableTopic",
    "CreateAclsRequest",
    "CreateAclsResponse",
    "CreatePartitionsRequest",
    "CreatePartitionsResponse",
    "CreateTopicsRequest",
    "CreateTopicsResponse",
    "CreatedTopic",
    "DeleteAclsFilterResult",
    "DeleteAclsRequest",
    "DeleteAclsResponse",
    "DeleteGroupsRequest",
    "DeleteGroupsResponse",
    "DeleteTopicsRequest",
    "DeleteTopicsResponse",
    "DeletedGroup",
    "DescribeAclsRequest",
    "DescribeAclsResponse",
    "DescribeConfigsRequest",
    "DescribeConfigsResponse",
    "DescribeGroupsRequest",
    "DescribeGroupsResponse",
    "DescribedGroup",
    "DescribedMember",
    "EpochEndOffsetResult",
    "EpochEndOffsetTopicResult",
    "FetchPartition",
    "FetchPartitionResult",
    "FetchRequest",
    "FetchResponse",
    "FetchTopic",
    "FetchTopicResult",
    "FindCoordinatorRequest",
    "FindCoordinatorResponse",
    "InitProducerIdRequest",
    "InitProducerIdResponse",
    "ListGroupsRequest",
    "ListGroupsResponse",
    "ListOffsetsPartition",
    "ListOffsetsPartitionResult",
    "ListOffsetsRequest",
    "ListOffsetsResponse",
    "ListOffsetsTopic",
    "ListOffsetsTopicResult",
    "ListedGroup",
    "MetadataRequest",
    "MetadataResponse",
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
    "OffsetForLeaderEpochPartition",
    "OffsetForLeaderEpochRequest",
    "OffsetForLeaderEpochResponse",
    "OffsetForLeaderEpochTopic",
    "PartitionMetadata",
    "PartitionsTopic",
    "ProducePartition",
    "ProducePartitionResult",
    "ProduceRequest",
    "ProduceResponse",
    "ProduceTopic",
    "ProduceTopicResult",
    "ReplicaFetchPartition",
    "ReplicaFetchPartitionResult",
    "ReplicaFetchRequest",
    "ReplicaFetchResponse",
    "ReplicaFetchTopic",
    "ReplicaFetchTopicResult",
    "SaslAuthenticateRequest",
    "SaslAuthenticateResponse",
    "SaslHandshakeRequest",
    "SaslHandshakeResponse",
    "TopicMetadata",
    "TopicPartitions",
    "TopicResult",
]
