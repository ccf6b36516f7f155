"""kafka-python 3's protocol classes (the second, independent codec) for
every Kafka API the broker advertises, and a small blocking client that
speaks them over a socket."""

from __future__ import annotations

import socket
import struct
from typing import Any

from kafka.protocol.admin.acl import (
    CreateAclsRequest,
    CreateAclsResponse,
    DeleteAclsRequest,
    DeleteAclsResponse,
    DescribeAclsRequest,
    DescribeAclsResponse,
)
from kafka.protocol.admin.configs import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from kafka.protocol.admin.groups import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    ListGroupsRequest,
    ListGroupsResponse,
)
from kafka.protocol.admin.topics import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
)
from kafka.protocol.consumer import (
    FetchRequest,
    FetchResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
)
from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    SyncGroupRequest,
    SyncGroupResponse,
)
from kafka.protocol.consumer.offsets import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from kafka.protocol.metadata import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    MetadataRequest,
    MetadataResponse,
)
from kafka.protocol.metadata.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from kafka.protocol.producer import ProduceRequest, ProduceResponse
from kafka.protocol.producer.transaction import InitProducerIdRequest, InitProducerIdResponse
from kafka.protocol.sasl import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

from tailrace.broker.kafka.versions import ADVERTISED

#: api_key -> (kafka-python request class, response class)
CLASSES: dict[int, tuple[Any, Any]] = {
    0: (ProduceRequest, ProduceResponse),
    1: (FetchRequest, FetchResponse),
    2: (ListOffsetsRequest, ListOffsetsResponse),
    3: (MetadataRequest, MetadataResponse),
    8: (OffsetCommitRequest, OffsetCommitResponse),
    9: (OffsetFetchRequest, OffsetFetchResponse),
    10: (FindCoordinatorRequest, FindCoordinatorResponse),
    11: (JoinGroupRequest, JoinGroupResponse),
    12: (HeartbeatRequest, HeartbeatResponse),
    13: (LeaveGroupRequest, LeaveGroupResponse),
    14: (SyncGroupRequest, SyncGroupResponse),
    15: (DescribeGroupsRequest, DescribeGroupsResponse),
    16: (ListGroupsRequest, ListGroupsResponse),
    18: (ApiVersionsRequest, ApiVersionsResponse),
    19: (CreateTopicsRequest, CreateTopicsResponse),
    20: (DeleteTopicsRequest, DeleteTopicsResponse),
    17: (SaslHandshakeRequest, SaslHandshakeResponse),
    21: (DeleteRecordsRequest, DeleteRecordsResponse),
    22: (InitProducerIdRequest, InitProducerIdResponse),
    23: (OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse),
    36: (SaslAuthenticateRequest, SaslAuthenticateResponse),
    29: (DescribeAclsRequest, DescribeAclsResponse),
    30: (CreateAclsRequest, CreateAclsResponse),
    31: (DeleteAclsRequest, DeleteAclsResponse),
    32: (DescribeConfigsRequest, DescribeConfigsResponse),
    33: (AlterConfigsRequest, AlterConfigsResponse),
    37: (CreatePartitionsRequest, CreatePartitionsResponse),
    42: (DeleteGroupsRequest, DeleteGroupsResponse),
    44: (IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse),
}

#: fields that kafka-python's defaults get wrong for a plain client
_FIXES: dict[int, dict[str, Any]] = {
    0: {"transactional_id": None, "acks": 1},
    22: {"transactional_id": None},
}


def request(api_key: int, version: int, **fields: Any) -> Any:
    """A kafka-python request of ``api_key`` v``version``: its defaults,
    the fixes above, then ``fields``."""
    return CLASSES[api_key][0](version=version, **{**_FIXES.get(api_key, {}), **fields})


def frame(req: Any, version: int, correlation_id: int = 1, client_id: str = "tests") -> bytes:
    req.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(req.encode(version=version, header=True, framed=True))


class RawKafkaClient:
    """One blocking connection: send kafka-python requests, decode the
    responses with kafka-python (the broker encodes them with kio)."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawKafkaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, req: Any, version: int) -> int:
        self.correlation_id += 1
        self.sock.sendall(frame(req, version, self.correlation_id))
        return self.correlation_id

    def receive_frame(self) -> bytes:
        size = struct.unpack(">i", self._exactly(4))[0]
        return self._exactly(size)

    def call(self, req: Any, version: int) -> Any:
        correlation_id = self.send(req, version)
        data = self.receive_frame()
        response = CLASSES[req.API_KEY][1].decode(data, version=version, header=True)
        assert response.header.correlation_id == correlation_id
        return response

    def _exactly(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def closed_by_peer(self) -> bool:
        """True when the broker has closed the connection (reads EOF)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


#: User:alice may read topic "orders" (Kafka's numbering: topic 2, literal 3,
#: read 3, allow 3)
ACL = {
    "resource_type": 2,
    "resource_name": "orders",
    "resource_pattern_type": 3,
    "principal": "User:alice",
    "host": "*",
    "operation": 3,
    "permission_type": 3,
}
#: every ACL (ANY everywhere, nulls for the names)
ACL_FILTER = {
    "resource_type_filter": 1,
    "resource_name_filter": None,
    "pattern_type_filter": 1,
    "principal_filter": None,
    "host_filter": None,
    "operation": 1,
    "permission_type": 1,
}

ALL = [(k, v) for k, (lo, hi) in sorted(ADVERTISED.items()) for v in range(lo, hi + 1)]


def sample(api_key: int, version: int):
    """A request with content where the API has nested data."""
    _P = ProduceRequest.TopicProduceData
    _F = FetchRequest.FetchTopic
    _L = ListOffsetsRequest.ListOffsetsTopic
    if api_key == 0:
        part = _P.PartitionProduceData(index=2, records=b"\x00" * 70)
        return request(
            0, version, timeout_ms=1500, topic_data=[_P(name="t", partition_data=[part])]
        )
    if api_key == 1:
        part = _F.FetchPartition(partition=1, fetch_offset=42, partition_max_bytes=1 << 20)
        return request(
            1, version, max_wait_ms=500, min_bytes=1, topics=[_F(topic="t", partitions=[part])]
        )
    if api_key == 2:
        part = _L.ListOffsetsPartition(partition_index=0, timestamp=-2)
        return request(2, version, topics=[_L(name="t", partitions=[part])])
    if api_key == 3:
        return request(3, version, topics=[MetadataRequest.MetadataRequestTopic(name="t")])
    if api_key == 29:
        return request(29, 1, **ACL_FILTER)
    if api_key == 30:
        return request(30, 1, creations=[CreateAclsRequest.AclCreation(**ACL)])
    if api_key == 31:
        return request(31, 1, filters=[DeleteAclsRequest.DeleteAclsFilter(**ACL_FILTER)])
    if api_key == 32:
        res = DescribeConfigsRequest.DescribeConfigsResource
        return request(32, version, resources=[res(resource_type=2, resource_name="t")])
    if api_key in (33, 44):
        cls = CLASSES[api_key][0].AlterConfigsResource
        item = cls.AlterableConfig(name="retention.ms", value="1000")
        return request(
            api_key, version, resources=[cls(resource_type=2, resource_name="t", configs=[item])]
        )
    if api_key == 17:
        return request(17, version, mechanism="SCRAM-SHA-256")
    if api_key == 36:
        return request(36, version, auth_bytes=b"n,,n=user,r=nonce")
    if api_key == 37:
        grow = CreatePartitionsRequest.CreatePartitionsTopic(name="t", count=4, assignments=None)
        return request(37, version, topics=[grow], timeout_ms=1000)
    if api_key == 20:
        return request(20, version, topic_names=["a", "b"])
    if api_key == 21:
        cut = DeleteRecordsRequest.DeleteRecordsTopic
        part = cut.DeleteRecordsPartition(partition_index=0, offset=-1)
        return request(21, version, topics=[cut(name="t", partitions=[part])], timeout_ms=1000)
    if api_key == 23:
        ask = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
        part = ask.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=0)
        return request(23, version, topics=[ask(topic="t", partitions=[part])])
    return request(api_key, version)
