"""ACLs enforced by a live broker, API by API: allowed with the grant,
denied (and audited) without it, literal, prefixed and wildcard bindings,
metadata filtered, changes effective at once and durable."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.lowlevel
from sec_helpers import raw_connection, start_broker

from tailrace.client import Acl, AsyncAdmin, AsyncConsumer, AsyncProducer
from tailrace.client.errors import (
    ClusterAuthorizationError,
    ErrorCode,
    GroupAuthorizationError,
    InvalidRequestError,
    TopicAuthorizationError,
)
from tailrace.client.protocol import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    InitProducerIdRequest,
    OffsetCommitPartition,
    OffsetCommitRequest,
    OffsetCommitTopic,
    OffsetFetchRequest,
    OffsetFetchTopic,
    OffsetForLeaderEpochPartition,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochTopic,
    ReplicaFetchPartition,
    ReplicaFetchRequest,
    ReplicaFetchTopic,
)
from tailrace.client.transport.auth import sasl_authenticate

USERS = {"alice": "pw-a", "bob": "pw-b"}


@pytest.fixture
async def secured(nursery, tmp_path):
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}, {"name": "anon"}],
        users=USERS,
        security={"auth_failure_delay_ms": 0},
    )
    async with AsyncAdmin(b.address("sasl"), security=b.admin_security()) as admin:
        for topic in ("orders", "orders-eu", "payments", "logs"):
            await admin.create_topic(topic, partitions=1)
    return b


async def _grant(b, *acls: Acl) -> None:
    async with AsyncAdmin(b.address("sasl"), security=b.admin_security()) as admin:
        await admin.create_acls(list(acls))


async def _revoke(b, **filter: str) -> list[Acl]:
    async with AsyncAdmin(b.address("sasl"), security=b.admin_security()) as admin:
        return await admin.delete_acls(**filter)


def _denials(caplog, *parts: str) -> list[str]:
    return [m for m in caplog.messages if "event=authz_denied" in m and all(p in m for p in parts)]


async def test_produce_and_fetch_need_write_and_read(secured, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = secured
    alice = b.scram("alice")
    async with AsyncProducer(b.address("sasl"), security=alice, delivery_timeout_ms=5000) as p:
        with pytest.raises(TopicAuthorizationError, match="'orders'"):
            await (await p.send("orders", b"x"))
    assert _denials(caplog, "principal=User:alice", "operation=describe", "name=orders")

    # seeing the topic is not writing to it
    await _grant(b, Acl("User:alice", "describe", "topic", "orders"))
    async with AsyncProducer(
        b.address("sasl"), security=alice, delivery_timeout_ms=5000, enable_idempotence=False
    ) as p:
        with pytest.raises(TopicAuthorizationError, match="may not write to 'orders'"):
            await (await p.send("orders", b"x"))
    assert _denials(caplog, "principal=User:alice", "operation=write", "name=orders")

    await _grant(b, Acl("User:alice", "write", "topic", "orders"))
    async with AsyncProducer(b.address("sasl"), security=alice) as p:
        assert (await (await p.send("orders", b"x"))).offset == 0

    async with AsyncConsumer(b.address("sasl"), security=alice, auto_offset_reset="earliest") as c:
        c.assign([("orders", 0)])
        with pytest.raises(TopicAuthorizationError, match="may not read 'orders'"):
            await c.poll(timeout_ms=5000)
    # the fetch itself, past the offset look-up
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, b.address("sasl"))
        await sasl_authenticate(conn, alice)
        fetch = FetchRequest(
            max_wait_ms=0,
            topics=[
                FetchTopic(name="orders", partitions=[FetchPartition(partition=0, fetch_offset=0)])
            ],
        )
        (t,) = (await conn.request(fetch)).topics
        assert t.partitions[0].error_code == 29  # TOPIC_AUTHORIZATION_FAILED
        await _grant(b, Acl("User:alice", "read", "topic", "orders"))
        (t,) = (await conn.request(fetch)).topics
        assert t.partitions[0].error_code == 0
        assert t.partitions[0].high_watermark == 1
        await conn.aclose()
    async with AsyncConsumer(b.address("sasl"), security=alice, auto_offset_reset="earliest") as c:
        c.assign([("orders", 0)])
        assert [r.value for r in await c.poll(timeout_ms=5000)] == [b"x"]


async def test_metadata_lists_only_describable_topics_by_literal_prefix_and_wildcard(secured):
    b = secured
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        assert await admin.list_topics() == []
        with pytest.raises(TopicAuthorizationError):
            await admin.describe_topic("orders")
        # asking for a topic that does not exist gives the same answer: no leak
        with pytest.raises(TopicAuthorizationError):
            await admin.describe_topic("no-such-topic")

    await _grant(b, Acl("User:alice", "describe", "topic", "orders", "prefixed"))
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        assert [t.name for t in await admin.list_topics()] == ["orders", "orders-eu"]
        await admin.describe_topic("orders-eu")

    # read implies describe; '*' as principal and as name
    await _grant(b, Acl("*", "read", "topic", "*"))
    async with AsyncAdmin(b.address("sasl"), security=b.scram("bob")) as admin:
        assert [t.name for t in await admin.list_topics()] == [
            "logs",
            "orders",
            "orders-eu",
            "payments",
        ]
    # the anonymous listener's principal is covered by '*' too
    async with AsyncAdmin(b.address("anon")) as admin:
        assert len(await admin.list_topics()) == 4

    # revoking takes effect on open connections at their next request
    async with AsyncAdmin(b.address("sasl"), security=b.scram("bob")) as admin:
        assert len(await admin.list_topics()) == 4
        assert len(await _revoke(b, principal="*")) == 1
        assert await admin.list_topics() == []


async def test_anonymous_has_no_rights_unless_granted(secured, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = secured
    async with AsyncAdmin(b.address("anon")) as admin:
        assert await admin.list_topics() == []
        with pytest.raises(TopicAuthorizationError):
            await admin.create_topic("new")
    assert _denials(caplog, "principal=User:ANONYMOUS", "operation=create", "name=new")
    await _grant(b, Acl("User:ANONYMOUS", "create", "topic", "scratch-", "prefixed"))
    async with AsyncAdmin(b.address("anon")) as admin:
        assert await admin.create_topic("scratch-1") == 1
        with pytest.raises(TopicAuthorizationError):
            await admin.create_topic("other")


async def test_create_delete_and_configs(secured):
    b = secured
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        with pytest.raises(TopicAuthorizationError):
            await admin.create_topic("team-a.events")
        with pytest.raises(TopicAuthorizationError):
            await admin.delete_topic("logs")
        with pytest.raises(TopicAuthorizationError):
            await admin.describe_configs("logs")
        with pytest.raises(TopicAuthorizationError):
            await admin.alter_configs("logs", {"retention_ms": 1000})
        with pytest.raises(ClusterAuthorizationError):
            await admin.describe_configs(None)

    await _grant(
        b,
        Acl("User:alice", "create", "topic", "team-a.", "prefixed"),
        Acl("User:alice", "delete", "topic", "logs"),
        Acl("User:alice", "alter", "topic", "logs"),
        Acl("User:alice", "describe", "cluster", "tailrace-cluster"),
    )
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        assert await admin.create_topic("team-a.events") == 1
        with pytest.raises(TopicAuthorizationError):
            await admin.create_topic("team-b.events")
        await admin.alter_configs("logs", {"retention_ms": 1000})
        configs = await admin.describe_configs("logs")  # alter implies describe
        assert configs["retention_ms"].value == "1000"
        assert "listeners" in await admin.describe_configs(None)
        await admin.delete_topic("logs")

    # create on the cluster allows any topic
    await _grant(b, Acl("User:bob", "create", "cluster", "tailrace-cluster"))
    async with AsyncAdmin(b.address("sasl"), security=b.scram("bob")) as admin:
        assert await admin.create_topic("anything") == 1


async def test_groups_need_read_describe_and_delete(secured, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = secured
    await _grant(b, Acl("User:alice", "read", "topic", "orders"))
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, b.address("sasl"))
        await sasl_authenticate(conn, b.scram("alice"))
        commit = OffsetCommitRequest(
            group_id="billing",
            topics=[
                OffsetCommitTopic(name=t, partitions=[OffsetCommitPartition(partition=0, offset=0)])
                for t in ("orders", "payments")
            ],
        )
        response = await conn.request(commit)
        assert response.error_code == 30  # GROUP_AUTHORIZATION_FAILED
        assert _denials(caplog, "operation=read", "resource_type=group", "name=billing")

        await _grant(b, Acl("User:alice", "read", "group", "bill", "prefixed"))
        response = await conn.request(commit)
        assert response.error_code == 0
        by_topic = {t.name: t.partitions[0].error_code for t in response.topics}
        assert by_topic == {"orders": 0, "payments": 29}  # payments: no read on the topic

        fetched = await conn.request(
            OffsetFetchRequest(
                group_id="billing",
                topics=[OffsetFetchTopic(name=t, partitions=[0]) for t in ("orders", "payments")],
            )
        )
        assert {t.name: t.partitions[0].error_code for t in fetched.topics} == {
            "orders": 0,
            "payments": 29,
        }
        everything = await conn.request(OffsetFetchRequest(group_id="billing", topics=None))
        assert [t.name for t in everything.topics] == ["orders"]
        await conn.aclose()

    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        # read on the group implies describe
        assert [g.group_id for g in await admin.list_groups()] == ["billing"]
        await admin.describe_group("billing")
        with pytest.raises(GroupAuthorizationError):
            await admin.delete_group("billing")
    async with AsyncAdmin(b.address("sasl"), security=b.scram("bob")) as admin:
        assert await admin.list_groups() == []  # filtered, not refused
        with pytest.raises(GroupAuthorizationError):
            await admin.describe_group("billing")
    await _grant(b, Acl("User:alice", "delete", "group", "billing"))
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        await admin.delete_group("billing")
    async with AsyncAdmin(b.address("sasl"), security=b.admin_security()) as admin:
        assert await admin.list_groups() == []


async def test_group_membership_needs_read_on_the_group(secured):
    b = secured
    await _grant(b, Acl("User:alice", "read", "topic", "orders"))
    async with AsyncConsumer(
        b.address("sasl"), security=b.scram("alice"), group_id="g1", auto_offset_reset="earliest"
    ) as c:
        c.subscribe(["orders"])
        with pytest.raises(GroupAuthorizationError):
            await _poll_until_error(c)


async def _poll_until_error(c) -> None:
    for _ in range(50):
        await c.poll(timeout_ms=200)


async def test_producer_ids_need_write_somewhere(secured):
    b = secured
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, b.address("sasl"))
        await sasl_authenticate(conn, b.scram("bob"))
        response = await conn.request(InitProducerIdRequest())
        assert response.error_code == 31  # CLUSTER_AUTHORIZATION_FAILED
        await _grant(b, Acl("User:bob", "write", "topic", "payments"))
        response = await conn.request(InitProducerIdRequest())
        assert response.error_code == 0
        assert response.producer_id >= 0
        await conn.aclose()


async def test_replication_requests_need_cluster_action(secured, caplog):
    """A follower's requests name a replica: a client holding every right on
    the topic still cannot send them (it would move the high watermark);
    only cluster_action on the cluster, the brokers' grant, lets them through
    (to the replica manager: a single node has no followers)."""
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = secured
    for op in ("read", "write", "describe", "alter", "delete"):
        await _grant(b, Acl("User:alice", op, "topic", "orders"))
    fetch = ReplicaFetchRequest(
        replica_id=1,
        max_wait_ms=0,
        topics=[
            ReplicaFetchTopic(
                name="orders",
                partitions=[
                    ReplicaFetchPartition(partition=0, current_leader_epoch=0, fetch_offset=0)
                ],
            )
        ],
    )

    def epochs(replica_id: int) -> OffsetForLeaderEpochRequest:
        return OffsetForLeaderEpochRequest(
            replica_id=replica_id,
            topics=[
                OffsetForLeaderEpochTopic(
                    name="orders",
                    partitions=[OffsetForLeaderEpochPartition(partition=0, leader_epoch=0)],
                )
            ],
        )

    async with trio.open_nursery() as n:
        conn = await raw_connection(n, b.address("sasl"))
        await sasl_authenticate(conn, b.scram("alice"))
        response = await conn.request(fetch, 1)
        assert response.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert response.topics == []
        response = await conn.request(epochs(1))
        assert response.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert _denials(caplog, "principal=User:alice", "operation=cluster_action")
        # as a client (no replica id) it only needs describe on the topic
        (t,) = (await conn.request(epochs(-1))).topics
        assert (t.partitions[0].error_code, t.partitions[0].end_offset) == (0, -1)

        with pytest.raises(InvalidRequestError, match="on the cluster only"):
            await _grant(b, Acl("User:alice", "cluster_action", "topic", "orders"))
        await _grant(b, Acl("User:alice", "cluster_action", "cluster", "tailrace-cluster"))
        response = await conn.request(fetch, 1)
        assert response.error_code == 0
        assert response.topics[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        (t,) = (await conn.request(epochs(1))).topics
        assert t.partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        await conn.aclose()


async def test_acl_apis_need_alter_on_the_cluster_and_acls_survive_a_restart(
    nursery, tmp_path, secured
):
    b = secured
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        with pytest.raises(ClusterAuthorizationError):
            await admin.create_acls([Acl("User:alice", "read", "topic", "*")])
        with pytest.raises(ClusterAuthorizationError):
            await admin.describe_acls()
    await _grant(b, Acl("User:alice", "alter", "cluster", "tailrace-cluster"))
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        await admin.create_acls([Acl("User:bob", "read", "topic", "logs")])
        acls = await admin.describe_acls(principal="User:bob")
        assert acls == [Acl("User:bob", "read", "topic", "logs")]
        with pytest.raises(Exception, match="operation must be one of"):
            await admin.create_acls([Acl("User:bob", "fly", "topic", "logs")])

    # a new broker on the same data directory and users file keeps them
    b.broker.shutdown()
    await trio.lowlevel.checkpoint()
    for _ in range(100):
        if b.broker.clean_shutdown is not None:
            break
        await trio.sleep(0.05)
    again = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}],
        data_dir=tmp_path / "data",
    )
    async with AsyncAdmin(again.address("sasl"), security=again.admin_security()) as admin:
        assert Acl("User:bob", "read", "topic", "logs") in await admin.describe_acls()
    again.broker.shutdown()
