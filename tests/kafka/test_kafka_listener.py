"""Every advertised (api, version) against a real broker's Kafka listener,
spoken with kafka-python 3's protocol classes (requests encoded and
responses decoded by that independent codec), plus the native clients on
the same broker for what crosses protocols."""

from __future__ import annotations

import time

import pytest
from kafka.protocol.admin.acl import CreateAclsRequest, DeleteAclsRequest
from kafka.protocol.admin.configs import (
    AlterConfigsRequest,
    DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
)
from kafka.protocol.admin.topics import CreatePartitionsRequest, CreateTopicsRequest
from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import ProduceRequest
from kafka_harness import KafkaBroker
from kafka_samples import ACL, ACL_FILTER, RawKafkaClient, request

from tailrace.broker.kafka.versions import ADVERTISED
from tailrace.client import Admin, Consumer, Producer
from tailrace.client.records import build_batch

_CT = CreateTopicsRequest.CreatableTopic
_P = ProduceRequest.TopicProduceData
_F = FetchRequest.FetchTopic
_L = ListOffsetsRequest.ListOffsetsTopic


def native_topics(broker) -> dict[str, int]:
    """Topic -> partition count, as the native admin client sees them."""
    with Admin(broker.address) as admin:
        return {t.name: len(t.partitions) for t in admin.list_topics()}


def native_end_offset(broker, topic: str, partition: int) -> int:
    with Admin(broker.address) as admin:
        return admin.topic_offsets(topic)[partition][1]


def versions(api_key: int) -> list[int]:
    lo, hi = ADVERTISED[api_key]
    return list(range(lo, hi + 1))


def create(client: RawKafkaClient, name: str, partitions: int = 3, version: int = 4, **kw):
    topic = _CT(name=name, num_partitions=partitions, replication_factor=kw.pop("rf", -1))
    return client.call(request(19, version, topics=[topic], timeout_ms=10_000, **kw), version)


def produce(client: RawKafkaClient, topic: str, partition: int, records: bytes, version=8, **kw):
    data = _P(
        name=topic, partition_data=[_P.PartitionProduceData(index=partition, records=records)]
    )
    req = request(0, version, timeout_ms=10_000, topic_data=[data], **kw)
    return client.call(req, version).responses[0].partition_responses[0]


@pytest.mark.parametrize("version", versions(18))
def test_api_versions_lists_exactly_the_advertised_table(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        response = c.call(request(18, version), version)
    assert response.error_code == 0
    got = {a.api_key: (a.min_version, a.max_version) for a in response.api_keys}
    assert got == dict(ADVERTISED)


@pytest.mark.parametrize("version", versions(19))
def test_create_topics_every_version(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        first = create(c, f"created{version}", version=version)
        again = create(c, f"created{version}", version=version)
        replicated = create(c, f"replicated{version}", version=version, rf=3)
        checked = create(c, f"checked{version}", version=version, validate_only=True)
        bad_name = create(c, "bad/name", version=version)
        too_many = create(c, f"many{version}", partitions=100_000, version=version)
    assert [t.error_code for t in first.topics] == [0]
    assert [t.error_code for t in again.topics] == [36]  # TOPIC_ALREADY_EXISTS
    assert [t.error_code for t in replicated.topics] == [38]  # INVALID_REPLICATION_FACTOR
    assert [t.error_code for t in checked.topics] == [0]
    assert [t.error_code for t in bad_name.topics] == [17]  # INVALID_TOPIC_EXCEPTION
    assert [t.error_code for t in too_many.topics] == [37]  # INVALID_PARTITIONS
    topics = native_topics(kafka_broker)
    assert topics[f"created{version}"] == 3
    assert f"checked{version}" not in topics
    assert f"replicated{version}" not in topics


@pytest.mark.parametrize("version", versions(37))
def test_create_partitions_every_version(kafka_broker, version):
    grow = CreatePartitionsRequest.CreatePartitionsTopic

    def call(c, name, count, **kw):
        req = request(37, version, topics=[grow(name=name, count=count)], timeout_ms=5000, **kw)
        (result,) = c.call(req, version).results
        return result.name, result.error_code

    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "grows", partitions=1)
        assert call(c, "grows", 3) == ("grows", 0)
        assert call(c, "grows", 2) == ("grows", 37)  # INVALID_PARTITIONS: never shrinks
        assert call(c, "grows", 9, validate_only=True) == ("grows", 0)
        assert call(c, "nowhere", 2) == ("nowhere", 3)
        meta = c.call(request(3, 8, topics=[MetadataRequest.MetadataRequestTopic(name="grows")]), 8)
    assert len(meta.topics[0].partitions) == 3
    assert native_topics(kafka_broker)["grows"] == 3
    with Admin(kafka_broker.address) as admin:
        admin.create_partitions("grows", 4)
    assert native_topics(kafka_broker)["grows"] == 4


@pytest.mark.parametrize("version", versions(20))
def test_delete_topics_every_version(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "doomed")
        response = c.call(request(20, version, topic_names=["doomed", "never"]), version)
    assert [(r.name, r.error_code) for r in response.responses] == [("doomed", 0), ("never", 3)]
    assert "doomed" not in native_topics(kafka_broker)


@pytest.mark.parametrize("version", versions(3))
def test_metadata_every_version_names_the_kafka_listener(kafka_broker, version):
    host, port = kafka_broker.kafka_address.rsplit(":", 1)
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "meta", partitions=2)
        response = c.call(
            request(3, version, topics=[MetadataRequest.MetadataRequestTopic(name="meta")]),
            version,
        )
        everything = c.call(request(3, version, topics=None), version)
    assert [(b.node_id, b.host, b.port) for b in response.brokers] == [(0, host, int(port))]
    assert response.controller_id == 0
    (topic,) = response.topics
    assert (topic.name, topic.error_code, topic.is_internal) == ("meta", 0, False)
    assert [(p.partition_index, p.leader_id, p.error_code) for p in topic.partitions] == [
        (0, 0, 0),
        (1, 0, 0),
    ]
    if version >= 7:
        assert {p.leader_epoch for p in topic.partitions} == {-1}
    if version >= 2:
        assert response.cluster_id == kafka_broker.broker.context.cluster_id
    assert "meta" in {t.name for t in everything.topics}


def test_metadata_does_not_auto_create_when_the_broker_setting_is_off(kafka_broker):
    assert not kafka_broker.broker.config.auto_create_topics
    wanted = [MetadataRequest.MetadataRequestTopic(name="notmade")]
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        response = c.call(request(3, 8, topics=wanted, allow_auto_topic_creation=True), 8)
    assert [t.error_code for t in response.topics] == [3]
    assert "notmade" not in native_topics(kafka_broker)


@pytest.mark.parametrize("version", versions(3))
def test_metadata_auto_creates_unless_the_request_says_not_to(tmp_path, version):
    broker = KafkaBroker(tmp_path / "data", auto_create_topics=True)
    try:
        _metadata_auto_creates(broker, version)
    finally:
        broker.stop()


def _metadata_auto_creates(kafka_broker, version):
    wanted = [MetadataRequest.MetadataRequestTopic(name=f"auto{version}")]
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        if version >= 4:
            no = c.call(
                request(3, version, topics=wanted, allow_auto_topic_creation=False), version
            )
            assert [t.error_code for t in no.topics] == [3]  # UNKNOWN_TOPIC_OR_PARTITION
        yes = c.call(request(3, version, topics=wanted), version)
    assert [(t.name, t.error_code) for t in yes.topics] == [(f"auto{version}", 0)]
    assert len(yes.topics[0].partitions) == kafka_broker.broker.config.default_partitions


@pytest.mark.parametrize("version", versions(22))
def test_init_producer_id_every_version(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        first = c.call(request(22, version), version)
        second = c.call(request(22, version), version)
        txn = c.call(request(22, version, transactional_id="txn-1"), version)
    assert (first.error_code, second.error_code) == (0, 0)
    assert first.producer_id >= 0
    assert second.producer_id != first.producer_id
    assert first.producer_epoch == 0
    assert txn.error_code == 53  # TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert (txn.producer_id, txn.producer_epoch) == (-1, -1)


@pytest.mark.parametrize("version", versions(0))
def test_produce_every_version_stores_the_batch_for_the_native_consumer(kafka_broker, version):
    topic = f"produced{version}"
    batch = build_batch([(1_700_000_000_123, b"k", b"v", [("h", b"1")])] * 3)
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, topic, partitions=1)
        first = produce(c, topic, 0, batch, version)
        second = produce(c, topic, 0, batch, version, acks=-1)
        missing = produce(c, "nowhere", 0, batch, version)
        txn = produce(c, topic, 0, batch, version, transactional_id="t")
    assert (first.error_code, first.base_offset) == (0, 0)
    assert (second.error_code, second.base_offset) == (0, 3)
    assert missing.error_code == 3
    assert txn.error_code == 53
    with Consumer(kafka_broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 6 and time.monotonic() < deadline:
            got.extend(consumer.poll(timeout_ms=500))
    assert [(r.offset, r.timestamp, r.key, r.value) for r in got] == [
        (i, 1_700_000_000_123, b"k", b"v") for i in range(6)
    ]
    assert {tuple(r.headers) for r in got} == {(("h", b"1"),)}


def test_acks_0_gets_no_response_and_its_failure_closes(kafka_broker):
    batch = build_batch([(1, None, b"x", None)])
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "quiet", partitions=1)
        data = _P(name="quiet", partition_data=[_P.PartitionProduceData(index=0, records=batch)])
        c.send(request(0, 8, acks=0, timeout_ms=1000, topic_data=[data]), 8)
        # the next response on the connection is the ApiVersions one
        after = c.call(request(18, 3), 3)
        assert after.error_code == 0
        bad = _P(name="nowhere", partition_data=[_P.PartitionProduceData(index=0, records=batch)])
        c.send(request(0, 8, acks=0, timeout_ms=1000, topic_data=[bad]), 8)
        assert c.closed_by_peer()
    # the acks=0 batch was appended; it counts once its fsync is done (no ack
    # tells when that is, so look until it shows)
    deadline = time.monotonic() + 30
    while native_end_offset(kafka_broker, "quiet", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert native_end_offset(kafka_broker, "quiet", 0) == 1


@pytest.mark.parametrize("version", versions(2))
def test_list_offsets_every_version(kafka_broker, version):
    topic = f"listed{version}"
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, topic, partitions=1)
        for ts in (1000, 2000, 3000):
            produce(c, topic, 0, build_batch([(ts, None, b"a", None), (ts + 1, None, b"b", None)]))

        def lookup(timestamp: int):
            part = _L.ListOffsetsPartition(partition_index=0, timestamp=timestamp)
            response = c.call(
                request(2, version, topics=[_L(name=topic, partitions=[part])]), version
            )
            p = response.topics[0].partitions[0]
            return p.error_code, p.offset

        assert lookup(-2) == (0, 0)
        assert lookup(-1) == (0, 6)  # high watermark: last offset + 1
        assert lookup(2000) == (0, 2)
        assert lookup(2500) == (0, 4)
        assert lookup(9999) == (0, -1)


@pytest.mark.parametrize("version", versions(1))
def test_fetch_every_version_long_polls_an_empty_partition(kafka_broker, version):
    topic = f"fetched{version}"
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, topic, partitions=1)
        part = _F.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
        req = request(
            1, version, max_wait_ms=50, min_bytes=1, topics=[_F(topic=topic, partitions=[part])]
        )
        response = c.call(req, version)
        bad = _F.FetchPartition(partition=0, fetch_offset=5, partition_max_bytes=1 << 20)
        out_of_range = c.call(
            request(1, version, max_wait_ms=50, topics=[_F(topic=topic, partitions=[bad])]),
            version,
        )
    if version >= 7:
        assert (response.error_code, response.session_id) == (0, 0)
    p = response.responses[0].partitions[0]
    assert (p.error_code, p.high_watermark, p.last_stable_offset) == (0, 0, 0)
    assert not p.records
    assert out_of_range.responses[0].partitions[0].error_code == 1  # OFFSET_OUT_OF_RANGE


def test_unsupported_version_closes_but_api_versions_falls_back(kafka_broker):
    import struct

    from kafka_samples import frame

    with RawKafkaClient(kafka_broker.kafka_address) as c:
        data = bytearray(frame(request(18, 4), 4, correlation_id=11))
        struct.pack_into(">h", data, 6, 9)
        c.sock.sendall(bytes(data))
        assert c.receive_frame() == bytes.fromhex("0000000b002300000001001200000004")
        data = bytearray(frame(request(3, 1), 1, correlation_id=12))
        struct.pack_into(">h", data, 6, 0)  # Metadata v0: not advertised
        c.sock.sendall(bytes(data))
        assert c.closed_by_peer()


def test_records_from_the_native_producer_keep_their_offsets_for_kafka_list_offsets(kafka_broker):
    with Admin(kafka_broker.address) as admin:
        admin.create_topic("native", partitions=1)
    with Producer(kafka_broker.address) as producer:
        for i in range(5):
            producer.send("native", b"v%d" % i, partition=0)
        producer.flush(30)
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        part = _L.ListOffsetsPartition(partition_index=0, timestamp=-1)
        response = c.call(request(2, 5, topics=[_L(name="native", partitions=[part])]), 5)
    assert response.topics[0].partitions[0].offset == 5


def test_acl_refusals_are_kafka_authorization_errors(tmp_path):
    """With ACLs enforced and none granted, the anonymous Kafka client is
    refused with Kafka's own codes: 29 for topics, 31 for the cluster."""
    broker = KafkaBroker(tmp_path / "data", security__authorizer="on")
    try:
        batch = build_batch([(1, None, b"x", None)])
        with RawKafkaClient(broker.kafka_address) as c:
            created = create(c, "guarded")
            meta = c.call(
                request(3, 8, topics=[MetadataRequest.MetadataRequestTopic(name="guarded")]), 8
            )
            produced = produce(c, "guarded", 0, batch)
            part = _F.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1024)
            fetched = c.call(
                request(1, 11, max_wait_ms=10, topics=[_F(topic="guarded", partitions=[part])]),
                11,
            )
            lpart = _L.ListOffsetsPartition(partition_index=0, timestamp=-1)
            listed = c.call(request(2, 5, topics=[_L(name="guarded", partitions=[lpart])]), 5)
            deleted = c.call(request(20, 3, topic_names=["guarded"]), 3)
            pid = c.call(request(22, 4), 4)
    finally:
        broker.stop()
    assert [t.error_code for t in created.topics] == [29]
    assert [t.error_code for t in meta.topics] == [29]
    assert produced.error_code == 29
    assert fetched.responses[0].partitions[0].error_code == 29
    assert listed.topics[0].partitions[0].error_code == 29
    assert [r.error_code for r in deleted.responses] == [29]
    assert pid.error_code == 31


def _describe(c: RawKafkaClient, version: int, rtype: int, name: str, keys=None):
    res = DescribeConfigsRequest.DescribeConfigsResource(
        resource_type=rtype, resource_name=name, configuration_keys=keys
    )
    (result,) = c.call(request(32, version, resources=[res]), version).results
    return result


@pytest.mark.parametrize("version", versions(32))
def test_describe_configs_every_version(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "described", partitions=1)
        _alter(c, 44, 1, "described", [("retention.ms", 0, "60000")])
        topic = _describe(c, version, 2, "described")
        some = _describe(c, version, 2, "described", keys=["flush", "retention.ms"])
        broker = _describe(c, version, 4, "0")
        missing = _describe(c, version, 2, "nowhere")
        bogus = _describe(c, version, 9, "x")
    entries = {e.name: e for e in topic.configs}
    assert topic.error_code == 0
    assert entries["retention.ms"].value == "60000"
    assert entries["retention.ms"].config_source == 1  # DYNAMIC_TOPIC_CONFIG
    assert entries["flush"].config_source == 5  # DEFAULT_CONFIG
    assert not entries["flush"].read_only
    assert sorted(e.name for e in some.configs) == ["flush", "retention.ms"]
    assert broker.error_code == 0
    assert {e.name for e in broker.configs} >= {"limits.max_batch_bytes", "listeners"}
    assert all(e.read_only for e in broker.configs)
    assert missing.error_code == 3
    assert bogus.error_code == 42


def _alter(c: RawKafkaClient, api_key: int, version: int, topic: str, changes, **kw):
    cls = (
        AlterConfigsRequest if api_key == 33 else IncrementalAlterConfigsRequest
    ).AlterConfigsResource
    items = [
        cls.AlterableConfig(name=n, value=v, **({"config_operation": op} if api_key == 44 else {}))
        for n, op, v in changes
    ]
    res = cls(resource_type=2, resource_name=topic, configs=items)
    (result,) = c.call(request(api_key, version, resources=[res], **kw), version).responses
    return result.error_code


@pytest.mark.parametrize("version", versions(33))
def test_alter_configs_replaces_the_whole_set(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "altered", partitions=1)
        assert (
            _alter(c, 33, version, "altered", [("retention.ms", 0, "5000"), ("flush", 0, "none")])
            == 0
        )
        assert _alter(c, 33, version, "altered", [("flush", 0, "interval")]) == 0
        assert _alter(c, 33, version, "altered", [("no.such.key", 0, "1")]) == 40
        assert _alter(c, 33, version, "altered", [("flush", 0, "none")], validate_only=True) == 0
        entries = {e.name: e for e in _describe(c, 3, 2, "altered").configs}
    assert entries["flush"].value == "interval"
    assert entries["retention.ms"].config_source == 5  # reverted: not in the last request


@pytest.mark.parametrize("version", versions(44))
def test_incremental_alter_configs_sets_and_deletes(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "stepped", partitions=1)
        assert (
            _alter(c, 44, version, "stepped", [("retention.ms", 0, "7000"), ("flush", 0, "none")])
            == 0
        )
        assert _alter(c, 44, version, "stepped", [("flush", 1, None)]) == 0
        assert _alter(c, 44, version, "stepped", [("flush", 2, "x")]) == 40  # APPEND
        assert _alter(c, 44, version, "__consumer_offsets", [("flush", 0, "none")]) == 17
        entries = {e.name: e for e in _describe(c, 3, 2, "stepped").configs}
    assert (entries["retention.ms"].value, entries["retention.ms"].config_source) == ("7000", 1)
    assert entries["flush"].config_source == 5
    with Admin(kafka_broker.address) as admin:
        assert admin.describe_configs("stepped")["retention_ms"].value == "7000"


@pytest.mark.parametrize("version", versions(44))
def test_compaction_settings_under_kafka_names(kafka_broker, version):
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "changelog", partitions=1)
        changes = [
            ("cleanup.policy", 0, "compact"),
            ("delete.retention.ms", 0, "1000"),
            ("min.cleanable.dirty.ratio", 0, "0.1"),
            ("min.compaction.lag.ms", 0, "5"),
            ("max.compaction.lag.ms", 0, "60000"),
        ]
        assert _alter(c, 44, version, "changelog", changes) == 0
        assert _alter(c, 44, version, "changelog", [("cleanup.policy", 0, "shred")]) == 40
        assert _alter(c, 44, version, "changelog", [("min.cleanable.dirty.ratio", 0, "2")]) == 40
        entries = {e.name: e for e in _describe(c, 3, 2, "changelog").configs}
    assert entries["cleanup.policy"].value == "compact"
    assert entries["min.cleanable.dirty.ratio"].value == "0.1"
    assert entries["delete.retention.ms"].config_source == 1
    assert entries["max.compaction.lag.ms"].value == "60000"


def test_acls_created_described_and_deleted_over_kafka_are_the_native_ones(kafka_broker):
    creation = CreateAclsRequest.AclCreation
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        created = c.call(
            request(
                30,
                1,
                creations=[
                    creation(**ACL),
                    creation(
                        **{
                            **ACL,
                            "resource_type": 3,
                            "resource_name": "billing-",
                            "resource_pattern_type": 4,
                            "operation": 2,
                        }
                    ),
                    creation(**{**ACL, "permission_type": 2}),  # DENY: allow-only here
                    creation(**{**ACL, "host": "10.0.0.1"}),
                ],
            ),
            1,
        )
        described = c.call(request(29, 1, **ACL_FILTER), 1)
        only_topics = c.call(request(29, 1, **{**ACL_FILTER, "resource_type_filter": 2}), 1)
        denies = c.call(request(29, 1, **{**ACL_FILTER, "permission_type": 2}), 1)
    assert [r.error_code for r in created.results] == [0, 0, 42, 42]
    assert described.error_code == 0
    got = {
        (r.resource_type, r.resource_name, r.pattern_type, a.principal, a.operation)
        for r in described.resources
        for a in r.acls
    }
    assert (2, "orders", 3, "User:alice", 3) in got
    assert {op for t, _n, _p, _u, op in got if t == 3} == {3, 4, 5, 6, 7, 8}  # ALL, expanded
    assert {r.resource_type for r in only_topics.resources} == {2}
    assert denies.resources == []
    with Admin(kafka_broker.address) as admin:
        native = {(a.resource_type, a.resource_name, a.operation) for a in admin.describe_acls()}
    assert ("topic", "orders", "read") in native
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        deleted = c.call(
            request(
                31,
                1,
                filters=[
                    DeleteAclsRequest.DeleteAclsFilter(**{**ACL_FILTER, "resource_type_filter": 3})
                ],
            ),
            1,
        )
        left = c.call(request(29, 1, **ACL_FILTER), 1)
    (result,) = deleted.filter_results
    assert result.error_code == 0
    assert len(result.matching_acls) == 6
    assert [(r.resource_type, r.resource_name) for r in left.resources] == [(2, "orders")]


def test_acl_apis_need_the_cluster_permissions(tmp_path):
    broker = KafkaBroker(tmp_path / "data", security__authorizer="on")
    try:
        with RawKafkaClient(broker.kafka_address) as c:
            described = c.call(request(29, 1, **ACL_FILTER), 1)
            created = c.call(request(30, 1, creations=[CreateAclsRequest.AclCreation(**ACL)]), 1)
            deleted = c.call(
                request(31, 1, filters=[DeleteAclsRequest.DeleteAclsFilter(**ACL_FILTER)]), 1
            )
    finally:
        broker.stop()
    assert described.error_code == 31  # CLUSTER_AUTHORIZATION_FAILED
    assert [r.error_code for r in created.results] == [31]
    assert [r.error_code for r in deleted.filter_results] == [31]
