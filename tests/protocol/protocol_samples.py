"""One sample request and response per API, shared by the golden-bytes,
feeding and fuzz tests. Changing a sample changes its golden bytes."""

from __future__ import annotations

from tailrace.client.protocol import (
    AclCreationResult,
    AclEntry,
    AclFilterEntry,
    AlterConfigResource,
    AlterConfigResult,
    AlterConfigsRequest,
    AlterConfigsResponse,
    ApiKey,
    ApiVersionRange,
    ApiVersionsRequest,
    ApiVersionsResponse,
    BrokerInfo,
    ConfigEntry,
    ConfigResource,
    ConfigResourceResult,
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
    CreatableTopic,
    CreateAclsRequest,
    CreateAclsResponse,
    CreatedTopic,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteAclsFilterResult,
    DeleteAclsRequest,
    DeleteAclsResponse,
    DeletedGroup,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeAclsRequest,
    DescribeAclsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    DescribedGroup,
    DescribedMember,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    EpochEndOffsetResult,
    EpochEndOffsetTopicResult,
    FetchPartition,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    FetchTopicResult,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListedGroup,
    ListGroupsRequest,
    ListGroupsResponse,
    ListOffsetsPartition,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
    ListOffsetsTopicResult,
    MetadataRequest,
    MetadataResponse,
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
    OffsetForLeaderEpochPartition,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderEpochTopic,
    PartitionMetadata,
    PartitionsTopic,
    ProducePartition,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopic,
    ProduceTopicResult,
    ReplicaFetchPartition,
    ReplicaFetchPartitionResult,
    ReplicaFetchRequest,
    ReplicaFetchResponse,
    ReplicaFetchTopic,
    ReplicaFetchTopicResult,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
    TopicMetadata,
    TopicPartitions,
    TopicResult,
)
from tailrace.client.records import build_batch

BATCH = build_batch([(1700000000000, b"k", b"v", None)])

SAMPLES: dict[ApiKey, tuple[object, object]] = {
    ApiKey.PRODUCE: (
        ProduceRequest(
            acks=1,
            timeout_ms=1000,
            topics=[
                ProduceTopic(name="t", partitions=[ProducePartition(partition=0, records=BATCH)])
            ],
        ),
        ProduceResponse(
            topics=[
                ProduceTopicResult(
                    name="t",
                    partitions=[
                        ProducePartitionResult(
                            partition=0, base_offset=42, log_append_time_ms=5, log_start_offset=0
                        )
                    ],
                )
            ]
        ),
    ),
    ApiKey.FETCH: (
        FetchRequest(
            max_wait_ms=100,
            min_bytes=1,
            max_bytes=1 << 20,
            topics=[FetchTopic(name="t", partitions=[FetchPartition(partition=0, fetch_offset=7)])],
        ),
        FetchResponse(
            topics=[
                FetchTopicResult(
                    name="t",
                    partitions=[
                        FetchPartitionResult(
                            partition=0, high_watermark=9, log_start_offset=0, records=BATCH
                        ),
                        FetchPartitionResult(partition=1, error_code=1, error_message="range"),
                    ],
                )
            ]
        ),
    ),
    ApiKey.LIST_OFFSETS: (
        ListOffsetsRequest(
            topics=[
                ListOffsetsTopic(
                    name="t", partitions=[ListOffsetsPartition(partition=0, timestamp=-2)]
                )
            ]
        ),
        ListOffsetsResponse(
            topics=[
                ListOffsetsTopicResult(
                    name="t",
                    partitions=[ListOffsetsPartitionResult(partition=0, offset=3, timestamp=-1)],
                )
            ]
        ),
    ),
    ApiKey.METADATA: (
        MetadataRequest(topics=["t"]),
        MetadataResponse(
            cluster_id="c1",
            brokers=[BrokerInfo(node_id=0, host="127.0.0.1", port=7420)],
            topics=[
                TopicMetadata(
                    name="t",
                    partitions=[
                        PartitionMetadata(
                            partition=0,
                            log_start_offset=0,
                            high_watermark=10,
                            log_end_offset=10,
                            size_bytes=1000,
                            segment_count=1,
                        )
                    ],
                )
            ],
        ),
    ),
    ApiKey.API_VERSIONS: (
        ApiVersionsRequest(client_name="tailrace-python", client_version="0.1.0"),
        ApiVersionsResponse(
            api_versions=[ApiVersionRange(api_key=0, min_version=0, max_version=0)],
            broker_version="0.1.0",
        ),
    ),
    ApiKey.CREATE_TOPICS: (
        CreateTopicsRequest(
            topics=[CreatableTopic(name="t", partitions=3, configs={"flush": "none"})]
        ),
        CreateTopicsResponse(topics=[CreatedTopic(name="t", partitions=3)]),
    ),
    ApiKey.DELETE_TOPICS: (
        DeleteTopicsRequest(topics=["t"]),
        DeleteTopicsResponse(topics=[TopicResult(name="t", error_code=3, error_message="no")]),
    ),
    ApiKey.CREATE_PARTITIONS: (
        CreatePartitionsRequest(topics=[PartitionsTopic(name="t", count=6)]),
        CreatePartitionsResponse(topics=[TopicResult(name="t", error_code=37, error_message="no")]),
    ),
    ApiKey.INIT_PRODUCER_ID: (
        InitProducerIdRequest(),
        InitProducerIdResponse(producer_id=1000, producer_epoch=0),
    ),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (
        OffsetForLeaderEpochRequest(
            replica_id=2,
            topics=[
                OffsetForLeaderEpochTopic(
                    name="t",
                    partitions=[
                        OffsetForLeaderEpochPartition(
                            partition=0, current_leader_epoch=5, leader_epoch=3
                        )
                    ],
                )
            ],
        ),
        OffsetForLeaderEpochResponse(
            topics=[
                EpochEndOffsetTopicResult(
                    name="t",
                    partitions=[
                        EpochEndOffsetResult(partition=0, leader_epoch=3, end_offset=140),
                        EpochEndOffsetResult(partition=1, error_code=74, error_message="stale"),
                    ],
                )
            ]
        ),
    ),
    ApiKey.DESCRIBE_CONFIGS: (
        DescribeConfigsRequest(
            resources=[ConfigResource(resource_type="topic", name="t", keys=["flush"])]
        ),
        DescribeConfigsResponse(
            resources=[
                ConfigResourceResult(
                    resource_type="topic",
                    name="t",
                    configs=[ConfigEntry(name="flush", value="sync", source="default")],
                )
            ]
        ),
    ),
    ApiKey.ALTER_CONFIGS: (
        AlterConfigsRequest(
            resources=[
                AlterConfigResource(
                    resource_type="topic",
                    name="t",
                    configs={"retention_ms": "1000", "flush": None},
                )
            ]
        ),
        AlterConfigsResponse(resources=[AlterConfigResult(resource_type="topic", name="t")]),
    ),
    ApiKey.OFFSET_COMMIT: (
        OffsetCommitRequest(
            group_id="g",
            member_id="m1",
            member_epoch=3,
            topics=[
                OffsetCommitTopic(
                    name="t",
                    partitions=[OffsetCommitPartition(partition=0, offset=42, metadata="x")],
                )
            ],
        ),
        OffsetCommitResponse(
            topics=[
                OffsetCommitTopicResult(
                    name="t",
                    partitions=[
                        OffsetCommitPartitionResult(partition=0),
                        OffsetCommitPartitionResult(
                            partition=1, error_code=1001, error_message="not assigned"
                        ),
                    ],
                )
            ]
        ),
    ),
    ApiKey.OFFSET_FETCH: (
        OffsetFetchRequest(group_id="g", topics=[OffsetFetchTopic(name="t", partitions=[0])]),
        OffsetFetchResponse(
            topics=[
                OffsetFetchTopicResult(
                    name="t",
                    partitions=[
                        OffsetFetchPartitionResult(
                            partition=0, offset=42, metadata="x", commit_timestamp_ms=1000
                        )
                    ],
                )
            ]
        ),
    ),
    ApiKey.DESCRIBE_GROUPS: (
        DescribeGroupsRequest(group_ids=["g"]),
        DescribeGroupsResponse(
            groups=[
                DescribedGroup(
                    group_id="g",
                    state="Stable",
                    group_epoch=2,
                    assignment_epoch=2,
                    members=[
                        DescribedMember(
                            member_id="m1",
                            client_id="c",
                            client_host="127.0.0.1:5000",
                            member_epoch=2,
                            subscribed_topics=["t"],
                            assignment=[TopicPartitions(topic="t", partitions=[0, 1])],
                            target_assignment=[TopicPartitions(topic="t", partitions=[0, 1])],
                            session_timeout_ms=45000,
                            rebalance_timeout_ms=300000,
                        )
                    ],
                )
            ]
        ),
    ),
    ApiKey.LIST_GROUPS: (
        ListGroupsRequest(states_filter=["stable"]),
        ListGroupsResponse(
            groups=[ListedGroup(group_id="g", state="Stable", member_count=1, group_epoch=2)]
        ),
    ),
    ApiKey.DELETE_GROUPS: (
        DeleteGroupsRequest(group_ids=["g"]),
        DeleteGroupsResponse(
            results=[DeletedGroup(group_id="g", error_code=68, error_message="members")]
        ),
    ),
    ApiKey.CONSUMER_GROUP_HEARTBEAT: (
        ConsumerGroupHeartbeatRequest(
            group_id="g",
            member_id="m1",
            member_epoch=2,
            subscribed_topics=["t"],
            owned_partitions=[TopicPartitions(topic="t", partitions=[0])],
            session_timeout_ms=10000,
            max_wait_ms=3000,
        ),
        ConsumerGroupHeartbeatResponse(
            member_id="m1",
            member_epoch=3,
            heartbeat_interval_ms=3000,
            assignment=[TopicPartitions(topic="t", partitions=[0, 1])],
        ),
    ),
    ApiKey.SASL_HANDSHAKE: (
        SaslHandshakeRequest(mechanism="SCRAM-SHA-256"),
        SaslHandshakeResponse(mechanisms=["SCRAM-SHA-256", "PLAIN"]),
    ),
    ApiKey.SASL_AUTHENTICATE: (
        SaslAuthenticateRequest(auth_bytes=b"n,,n=u,r=abc"),
        SaslAuthenticateResponse(auth_bytes=b"r=abcdef,s=c2FsdA==,i=4096"),
    ),
    ApiKey.DESCRIBE_ACLS: (
        DescribeAclsRequest(filter=AclFilterEntry(principal="User:a")),
        DescribeAclsResponse(
            bindings=[
                AclEntry(
                    principal="User:a", operation="read", resource_type="topic", resource_name="t"
                )
            ]
        ),
    ),
    ApiKey.CREATE_ACLS: (
        CreateAclsRequest(
            creations=[
                AclEntry(
                    principal="*",
                    operation="write",
                    resource_type="topic",
                    resource_name="t-",
                    pattern_type="prefixed",
                )
            ]
        ),
        CreateAclsResponse(results=[AclCreationResult()]),
    ),
    ApiKey.DELETE_ACLS: (
        DeleteAclsRequest(filters=[AclFilterEntry(resource_type="group")]),
        DeleteAclsResponse(
            results=[
                DeleteAclsFilterResult(
                    deleted=[
                        AclEntry(
                            principal="User:a",
                            operation="read",
                            resource_type="group",
                            resource_name="g",
                        )
                    ]
                )
            ]
        ),
    ),
}


#: Fetch version 1 (a follower's fetch): its own messages, not in SAMPLES
#: (which holds version 0 of every API)
REPLICA_FETCH = (
    ReplicaFetchRequest(
        replica_id=2,
        max_wait_ms=500,
        topics=[
            ReplicaFetchTopic(
                name="t",
                partitions=[
                    ReplicaFetchPartition(partition=0, current_leader_epoch=5, fetch_offset=7)
                ],
            )
        ],
    ),
    ReplicaFetchResponse(
        topics=[
            ReplicaFetchTopicResult(
                name="t",
                partitions=[
                    ReplicaFetchPartitionResult(
                        partition=0,
                        high_watermark=7,
                        log_start_offset=0,
                        log_end_offset=9,
                        records=BATCH,
                    ),
                    ReplicaFetchPartitionResult(partition=1, error_code=6, error_message="moved"),
                ],
            )
        ]
    ),
)
