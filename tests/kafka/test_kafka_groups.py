"""Kafka's group APIs (broker/kafka/groups.py) against a real broker in this
test's nursery (its coordinator, its offsets store in tmp_path, its ACLs),
driven with kio request entities of every advertised version; every reply
is round-tripped through kio's codec. The Kafka listener is another
module's; these tests call the handlers as it does."""

from __future__ import annotations

import struct

import pytest
import trio
from harness import broker_config
from kafka_group_helpers import Caller, Pending, info, ms, pick, request, settle
from kio.schema.consumer_protocol_assignment.v0.data import ConsumerProtocolAssignment
from kio.schema.consumer_protocol_subscription.v0.data import ConsumerProtocolSubscription
from kio.schema.errors import ErrorCode as K
from kio.serial import entity_reader

from tailrace.broker.app import Broker
from tailrace.broker.kafka.errors import kafka_error
from tailrace.broker.kafka.groups import GROUP_HANDLERS
from tailrace.broker.kafka.versions import ADVERTISED
from tailrace.broker.security.acl import AclBinding
from tailrace.client.protocol import ConsumerGroupHeartbeatRequest, OffsetFetchRequest

FIND, JOIN, HEARTBEAT, LEAVE, SYNC, DESCRIBE, LIST, COMMIT, FETCH, DELETE = (
    10, 11, 12, 13, 14, 15, 16, 8, 9, 42,
)  # fmt: skip

#: protocol mechanics, step by step: no initial rebalance delay (its own
#: tests are in tests/groups/test_classic_state.py)
FAST = {
    "groups__session_timeout_min_ms": 100,
    "groups__heartbeat_interval_ms": 200,
    "groups__initial_rebalance_delay_ms": 0,
}


async def start(nursery: trio.Nursery, data_dir, **flags) -> Broker:
    b = Broker(broker_config(data_dir, **{**FAST, **flags}))
    await nursery.start(b.serve)
    # the coordinator has no readiness event: it loads __consumer_offsets
    # (in a thread) and then says so in its status
    while b.coordinator is None or b.coordinator.status != "ready":  # noqa: ASYNC110
        await trio.sleep(0.01)
    return b


@pytest.fixture
async def broker(nursery, tmp_path) -> Broker:
    b = await start(nursery, tmp_path / "data")
    await b.context.manager.create_topic("t", 3)
    return b


def caller(b: Broker, principal: str = "User:ANONYMOUS") -> Caller:
    return Caller(b.context, info(b.listeners[0].name, principal))


def join(v: int, group: str = "g", member_id: str = "", *, protocols=None, instance=None):
    protocols = protocols or [("range", b"meta")]
    return request(
        JOIN,
        v,
        "JoinGroupRequest",
        group_id=group,
        session_timeout=ms(10_000),
        rebalance_timeout=ms(20_000),
        member_id=member_id,
        group_instance_id=instance,
        protocol_type="consumer",
        protocols=tuple(
            request(JOIN, v, "JoinGroupRequestProtocol", name=n, metadata=m) for n, m in protocols
        ),
    )


def sync(v: int, member_id: str, generation: int, assignments=(), group="g", instance=None):
    return request(
        SYNC,
        v,
        "SyncGroupRequest",
        group_id=group,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=instance,
        assignments=tuple(
            request(SYNC, v, "SyncGroupRequestAssignment", member_id=m, assignment=a)
            for m, a in assignments
        ),
    )


def heartbeat(v: int, member_id: str, generation: int, group="g", instance=None):
    return request(
        HEARTBEAT,
        v,
        "HeartbeatRequest",
        group_id=group,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=instance,
    )


def leave(v: int, members, group="g"):
    """``members``: [(member id, instance id)]; v0-2 take the first only."""
    if v < 3:
        return request(LEAVE, v, "LeaveGroupRequest", group_id=group, member_id=members[0][0])
    return request(
        LEAVE,
        v,
        "LeaveGroupRequest",
        group_id=group,
        members=tuple(
            request(LEAVE, v, "MemberIdentity", member_id=m, group_instance_id=i)
            for m, i in members
        ),
    )


def commit(v: int, offsets, *, group="g", generation=-1, member_id="", instance=None):
    """``offsets``: {topic: {partition: offset}}."""
    return request(
        COMMIT,
        v,
        "OffsetCommitRequest",
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        group_instance_id=instance,
        topics=tuple(
            request(
                COMMIT,
                v,
                "OffsetCommitRequestTopic",
                name=topic,
                partitions=tuple(
                    request(
                        COMMIT,
                        v,
                        "OffsetCommitRequestPartition",
                        partition_index=p,
                        committed_offset=o,
                        committed_metadata=f"m{o}",
                    )
                    for p, o in parts.items()
                ),
            )
            for topic, parts in offsets.items()
        ),
    )


def fetch(v: int, topics, group="g"):
    """``topics``: {topic: [partitions]} or None (all, v2+)."""
    return request(
        FETCH,
        v,
        "OffsetFetchRequest",
        group_id=group,
        topics=None
        if topics is None
        else tuple(
            request(FETCH, v, "OffsetFetchRequestTopic", name=t, partition_indexes=tuple(ps))
            for t, ps in topics.items()
        ),
    )


def commit_codes(response) -> dict:
    return {
        (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
    }


def fetched(response) -> dict:
    return {
        (t.name, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
        for t in response.topics
        for p in t.partitions
    }


async def produce(b: Broker, topic: str, partition: int, n: int) -> None:
    from tailrace.client.records import build_batch

    plog = b.context.manager.get(topic, partition)
    result = plog.append(build_batch([(0, None, b"v", None)] * n))
    await plog.wait_durable(result)


# --- the table ------------------------------------------------------------------------


def test_every_advertised_api_has_a_handler_and_kio_schemas():
    from kio.index import load_payload_module
    from kio.static.constants import EntityType

    for key in GROUP_HANDLERS:
        low, high = ADVERTISED[key]
        for v in range(low, high + 1):
            for kind in (EntityType.request, EntityType.response):
                module = load_payload_module(key, v, kind)
                if key == FIND and v >= 3:
                    continue  # FindCoordinator v3 is flexible, v4 batches keys (KIP-699)
                assert not getattr(
                    module,
                    next(
                        n
                        for n in dir(module)
                        if n.endswith("Request" if kind == EntityType.request else "Response")
                    ),
                ).__flexible__, "only pre-flexible versions are advertised"


# --- FindCoordinator ------------------------------------------------------------------


@pytest.mark.parametrize("v", range(0, 4))
async def test_find_coordinator_names_this_broker(broker, v):
    c = caller(broker)
    listener = broker.listeners[0]
    r = await c.call(request(FIND, v, "FindCoordinatorRequest", key="g", key_type=0))
    assert r.error_code == K.none
    assert (r.node_id, r.host, r.port) == (0, listener.host, listener.port)
    # the Kafka listener's advertised address, when the context provides it
    broker.context.advertised_kafka_address = lambda conn: (0, "kafka.example", 19092)
    try:
        r = await c.call(request(FIND, v, "FindCoordinatorRequest", key="g", key_type=0))
        assert (r.host, r.port) == ("kafka.example", 19092)
    finally:
        del broker.context.advertised_kafka_address
    if v >= 1:
        r = await c.call(request(FIND, v, "FindCoordinatorRequest", key="tx", key_type=1))
        assert r.error_code == K.invalid_request
        assert "transactions are not supported" in r.error_message
        assert (r.node_id, r.port) == (-1, -1)


async def test_find_coordinator_v4_answers_each_key(broker):
    """KIP-699: a batch of group ids, one answer each (with ACLs, a denied
    group alone is refused: test_group_acls_refuse_with_kafka_codes)."""
    c = caller(broker)
    listener = broker.listeners[0]
    r = await c.call(
        request(FIND, 4, "FindCoordinatorRequest", key_type=0, coordinator_keys=("a", "b"))
    )
    assert [(x.key, x.error_code, x.node_id, x.host, x.port) for x in r.coordinators] == [
        (k, K.none, 0, listener.host, listener.port) for k in ("a", "b")
    ]
    r = await c.call(
        request(FIND, 4, "FindCoordinatorRequest", key_type=1, coordinator_keys=("tx",))
    )
    assert [(x.key, x.error_code, x.node_id) for x in r.coordinators] == [
        ("tx", K.invalid_request, -1)
    ]


# --- membership: every version ------------------------------------------------------------

VERSION_SETS = [  # JoinGroup, SyncGroup, Heartbeat, LeaveGroup
    (0, 0, 0, 0),
    (1, 1, 1, 1),
    (2, 2, 2, 2),
    (3, 3, 3, 3),
    (4, 3, 3, 3),
    (5, 3, 3, 3),
]


async def _join_new(c: Caller, jv: int, nursery, **kw):
    """Join with an empty member id; from v4 on that is MEMBER_ID_REQUIRED
    first, then the join with the given id. Returns the reply or a Pending."""
    body = join(jv, **kw)
    if jv >= 4:
        first = c.now(body)
        assert first.error_code == K.member_id_required
        assert first.member_id
        body = join(jv, member_id=first.member_id, **kw)
    reply = c.send(body)
    from tailrace.broker.server.connection import Later

    if type(reply) is Later:
        return Pending(nursery, reply)
    return reply


@pytest.mark.parametrize(("jv", "sv", "hv", "lv"), VERSION_SETS)
async def test_join_sync_heartbeat_leave(broker, nursery, jv, sv, hv, lv):
    c = caller(broker)
    # a alone: generation 1 at once, a leads
    a1 = await _join_new(c, jv, nursery)
    assert a1.error_code == K.none
    a = a1.member_id
    assert (a1.generation_id, a1.leader, a1.protocol_name) == (1, a, "range")
    assert [m.member_id for m in a1.members] == [a]
    assert (await c.call(sync(sv, a, 1, [(a, b"A1")]))).assignment == b"A1"
    assert (await c.call(heartbeat(hv, a, 1))).error_code == K.none

    # b joins: its join is held; a learns of the rebalance from its heartbeat
    b_join = await _join_new(c, jv, nursery)
    assert isinstance(b_join, Pending)
    await settle()
    assert not b_join.done.is_set()
    assert (await c.call(heartbeat(hv, a, 1))).error_code == K.rebalance_in_progress
    # a rejoins: generation 2 completes for both
    a2 = await c.call(join(jv, member_id=a, protocols=[("range", b"meta-a")]))
    b2 = await b_join.result()
    b = b2.member_id
    assert a2.generation_id == b2.generation_id == 2
    assert a2.leader == b2.leader == a
    assert {m.member_id: m.metadata for m in a2.members} == {a: b"meta-a", b: b"meta"}
    assert b2.members == ()

    # the follower's SyncGroup waits for the leader's
    b_sync = Pending(nursery, c.send(sync(sv, b, 2)))
    await settle()
    assert not b_sync.done.is_set()
    ra = await c.call(sync(sv, a, 2, [(a, b"for-a"), (b, b"for-b")]))
    assert ra.error_code == K.none
    assert ra.assignment == b"for-a"
    rb = await b_sync.result()
    assert (rb.error_code, rb.assignment) == (K.none, b"for-b")

    assert (await c.call(heartbeat(hv, b, 2))).error_code == K.none
    assert (await c.call(heartbeat(hv, b, 1))).error_code == K.illegal_generation
    assert (await c.call(heartbeat(hv, "nobody", 2))).error_code == K.unknown_member_id
    assert (await c.call(sync(sv, b, 1))).error_code == K.illegal_generation

    # b leaves; a is asked to rejoin
    r = await c.call(leave(lv, [(b, None)]))
    assert r.error_code == K.none
    if lv >= 3:
        assert [(m.member_id, m.error_code) for m in r.members] == [(b, K.none)]
    assert (await c.call(heartbeat(hv, a, 2))).error_code == K.rebalance_in_progress
    r = await c.call(leave(lv, [("ghost", None)]))
    if lv >= 3:
        assert r.error_code == K.none
        assert r.members[0].error_code == K.unknown_member_id
    else:
        assert r.error_code == K.unknown_member_id


async def test_static_member_restart_keeps_its_assignment_without_rebalance(broker, nursery):
    c = caller(broker)
    a = (await c.call(join(5, instance="ia"))).member_id
    b_join = Pending(nursery, c.send(join(5, instance="ib")))
    await c.call(join(5, member_id=a, instance="ia"))
    b = (await b_join.result()).member_id
    b_sync = Pending(nursery, c.send(sync(3, b, 2, instance="ib")))
    await c.call(sync(3, a, 2, [(a, b"A"), (b, b"B")], instance="ia"))
    assert (await b_sync.result()).assignment == b"B"

    # b restarts: same instance id, empty member id, same protocols
    nb = c.now(join(5, instance="ib"))
    assert nb.error_code == K.none
    assert nb.generation_id == 2
    assert nb.member_id != b
    assert (await c.call(sync(3, nb.member_id, 2, instance="ib"))).assignment == b"B"
    assert (await c.call(heartbeat(3, a, 2, instance="ia"))).error_code == K.none  # no rebalance
    assert (await c.call(heartbeat(3, b, 2, instance="ib"))).error_code == K.fenced_instance_id
    r = await c.call(leave(3, [(b, "ib"), ("", "ib")]))
    assert [m.error_code for m in r.members] == [K.fenced_instance_id, K.none]


async def test_join_errors(broker):
    c = caller(broker)
    r = await c.call(join(5, member_id="made-up"))
    assert r.error_code == K.unknown_member_id
    bad = request(
        JOIN,
        5,
        "JoinGroupRequest",
        group_id="g",
        session_timeout=ms(10),  # below groups.session_timeout_min_ms
        rebalance_timeout=ms(1000),
        member_id="",
        protocol_type="consumer",
        protocols=(request(JOIN, 5, "JoinGroupRequestProtocol", name="range", metadata=b""),),
    )
    assert (await c.call(bad)).error_code == K.invalid_session_timeout
    assert (await c.call(join(5, group=""))).error_code == K.invalid_group_id
    ok = await c.call(join(1))
    assert ok.error_code == K.none
    r = await c.call(join(1, protocols=[("roundrobin", b"")]))
    assert r.error_code == K.inconsistent_group_protocol


# --- one group set: classic and native ------------------------------------------------------


async def test_classic_and_native_cannot_share_a_group(broker):
    c = caller(broker)
    coordinator = broker.coordinator
    a = await c.call(join(5, group="k", instance="x"))
    assert a.error_code == K.none
    from tailrace.client.errors import InconsistentGroupProtocolError

    native_join = ConsumerGroupHeartbeatRequest(
        group_id="k", member_epoch=0, subscribed_topics=["t"], session_timeout_ms=10_000
    )
    with pytest.raises(InconsistentGroupProtocolError):
        coordinator.heartbeat(native_join, "127.0.0.1")
    # the native admin APIs see the classic group
    described = coordinator.describe_group("k")
    assert (described.error_code, described.state, described.group_epoch) == (
        0,
        "CompletingRebalance",
        1,
    )
    assert [(m.member_id, m.instance_id) for m in described.members] == [(a.member_id, "x")]
    listed = {g.group_id: g for g in coordinator.list_groups(None)}
    assert (listed["k"].state, listed["k"].member_count) == ("CompletingRebalance", 1)
    (deleted,), appended = coordinator.delete_groups(["k"])
    assert (deleted.error_code, appended) == (68, None)  # NON_EMPTY_GROUP
    # a native group refuses classic members
    coordinator.heartbeat(
        ConsumerGroupHeartbeatRequest(
            group_id="n", member_epoch=0, subscribed_topics=["t"], session_timeout_ms=10_000
        ),
        "127.0.0.1",
    )
    assert (await c.call(join(5, group="n"))).error_code == K.inconsistent_group_protocol
    assert (await c.call(heartbeat(3, "m", 1, group="n"))).error_code == (
        K.inconsistent_group_protocol
    )
    # once the classic group is empty, a native member may take it over
    assert (await c.call(leave(3, [(a.member_id, "x")], group="k"))).members[0].error_code == 0
    result = coordinator.heartbeat(native_join, "127.0.0.1")
    assert coordinator.heartbeat_response(result).error_code == 0
    assert coordinator.groups["k"].classic is None


# --- offsets --------------------------------------------------------------------------------


@pytest.mark.parametrize("v", range(2, 8))
async def test_simple_commits_are_durable_and_shared_with_native(nursery, tmp_path, v):
    """assign()-mode commits (generation -1, no member id), read back by every
    OffsetFetch version, by the native API, and after a restart."""
    data = tmp_path / "data"
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            b = await start(inner, data)
            await b.context.manager.create_topic("t", 3)
            await produce(b, "t", 0, 10)
            await produce(b, "t", 1, 10)
            c = caller(b)
            r = await c.call(commit(v, {"t": {0: 5, 1: 10, 2: 1}, "nope": {0: 1}}))
            assert commit_codes(r) == {
                ("t", 0): K.none,
                ("t", 1): K.none,
                ("t", 2): K.offset_out_of_range,  # beyond the log end, as natively
                ("nope", 0): K.unknown_topic_or_partition,
            }
            native = b.coordinator.fetch_offsets(OffsetFetchRequest(group_id="g"))
            assert {
                (t.name, p.partition): p.offset for t in native.topics for p in t.partitions
            } == {
                ("t", 0): 5,
                ("t", 1): 10,
            }
            b.shutdown()
            scope.cancel()
    async with trio.open_nursery() as inner:
        b = await start(inner, data)
        c = caller(b)
        for fv in range(1, 6):
            r = await c.call(fetch(fv, {"t": [0, 1, 2]}))
            assert fetched(r) == {
                ("t", 0): (5, "m5", K.none),
                ("t", 1): (10, "m10", K.none),
                ("t", 2): (-1, "", K.none),
            }
            if fv >= 2:
                assert r.error_code == K.none
                everything = await c.call(fetch(fv, None))
                assert set(fetched(everything)) == {("t", 0), ("t", 1)}
        b.shutdown()
        inner.cancel_scope.cancel()


async def _stable_group(c: Caller, nursery):
    a = (await c.call(join(3))).member_id
    assert (await c.call(sync(3, a, 1, [(a, b"A")]))).assignment == b"A"
    return a


@pytest.mark.parametrize("v", range(2, 8))
async def test_member_commits_are_checked_against_the_generation(broker, nursery, v):
    c = caller(broker)
    await produce(broker, "t", 0, 10)
    a = await _stable_group(c, nursery)
    ok = await c.call(commit(v, {"t": {0: 3}}, generation=1, member_id=a))
    assert commit_codes(ok) == {("t", 0): K.none}
    stale = await c.call(commit(v, {"t": {0: 4}}, generation=0, member_id=a))
    assert commit_codes(stale) == {("t", 0): K.illegal_generation}
    stranger = await c.call(commit(v, {"t": {0: 4}}, generation=1, member_id="x"))
    assert commit_codes(stranger) == {("t", 0): K.unknown_member_id}
    # an assign()-mode commit while the group has members is refused
    simple = await c.call(commit(v, {"t": {0: 4}}))
    assert commit_codes(simple) == {("t", 0): K.unknown_member_id}
    # during a rebalance the current generation may still commit...
    Pending(nursery, c.send(join(3)))
    await settle()
    assert commit_codes(await c.call(commit(v, {"t": {0: 6}}, generation=1, member_id=a))) == {
        ("t", 0): K.none
    }
    r = await c.call(fetch(5, {"t": [0]}))
    assert fetched(r)[("t", 0)][0] == 6


async def test_commit_metadata_is_bounded(broker):
    c = caller(broker)
    await produce(broker, "t", 0, 1)
    body = request(
        COMMIT,
        7,
        "OffsetCommitRequest",
        group_id="g",
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=(
            request(
                COMMIT,
                7,
                "OffsetCommitRequestTopic",
                name="t",
                partitions=(
                    request(
                        COMMIT,
                        7,
                        "OffsetCommitRequestPartition",
                        partition_index=0,
                        committed_offset=1,
                        committed_metadata="x" * 5000,
                    ),
                ),
            ),
        ),
    )
    assert commit_codes(await c.call(body)) == {("t", 0): K.offset_metadata_too_large}
    assert fetched(await c.call(fetch(5, {"t": [0]})))[("t", 0)][0] == -1


# --- DescribeGroups, ListGroups, DeleteGroups -----------------------------------------------


def _consumer_protocol(cls, data: bytes):
    assert struct.unpack(">h", data[:2]) == (0,)
    value, size = entity_reader(cls)(data, 2)
    assert size == len(data) - 2  # everything after the version
    return value


@pytest.mark.parametrize(
    ("dv", "lv", "xv"), [(0, 0, 0), (1, 1, 1), (2, 2, 1), (3, 2, 1), (4, 2, 1)]
)
async def test_describe_list_delete_both_kinds(broker, nursery, dv, lv, xv):
    c = caller(broker)
    await produce(broker, "t", 0, 5)
    a = await _stable_group(c, nursery)
    # a native group "n" with one member, and an empty group "e" with offsets
    result = broker.coordinator.heartbeat(
        ConsumerGroupHeartbeatRequest(
            group_id="n", member_epoch=0, subscribed_topics=["t"], session_timeout_ms=10_000
        ),
        "127.0.0.1",
    )
    assert broker.coordinator.heartbeat_response(result).error_code == 0
    assert commit_codes(await c.call(commit(7, {"t": {0: 2}}, group="e"))) == {("t", 0): K.none}

    body = request(
        DESCRIBE,
        dv,
        "DescribeGroupsRequest",
        groups=("g", "n", "e", "unknown"),
        include_authorized_operations=True,
    )
    groups = pick((await c.call(body)).groups, lambda g: g.group_id)
    g = groups["g"]
    assert (g.error_code, g.group_state, g.protocol_type, g.protocol_data) == (
        K.none,
        "Stable",
        "consumer",
        "range",
    )
    assert [(m.member_id, m.member_metadata, m.member_assignment) for m in g.members] == [
        (a, b"meta", b"A")
    ]
    n = groups["n"]
    assert (n.group_state, n.protocol_type) == ("Stable", "consumer")
    (member,) = n.members
    subscription = _consumer_protocol(ConsumerProtocolSubscription, member.member_metadata)
    assert subscription.topics == ("t",)
    assignment = _consumer_protocol(ConsumerProtocolAssignment, member.member_assignment)
    assert [(tp.topic, tp.partitions) for tp in assignment.assigned_partitions] == [
        ("t", (0, 1, 2))
    ]
    assert (groups["e"].group_state, groups["e"].members) == ("Empty", ())
    assert (groups["unknown"].error_code, groups["unknown"].group_state) == (K.none, "Dead")
    if dv >= 3:
        # READ (3), DELETE (6), DESCRIBE (8) without an authorizer
        assert g.authorized_operations == (1 << 3) | (1 << 6) | (1 << 8)

    listed = await c.call(request(LIST, lv, "ListGroupsRequest"))
    assert listed.error_code == K.none
    assert {(x.group_id, x.protocol_type) for x in listed.groups} == {
        ("g", "consumer"),
        ("n", "consumer"),
        ("e", ""),
    }

    r = await c.call(
        request(DELETE, xv, "DeleteGroupsRequest", groups_names=("g", "n", "e", "unknown"))
    )
    assert {x.group_id: x.error_code for x in r.results} == {
        "g": K.non_empty_group,
        "n": K.non_empty_group,
        "e": K.none,
        "unknown": K.group_id_not_found,
    }
    assert fetched(await c.call(fetch(5, {"t": [0]}, group="e")))[("t", 0)][0] == -1
    # the classic group, emptied, can be deleted too, with its offsets
    committed = await c.call(commit(7, {"t": {0: 4}}, generation=1, member_id=a))
    assert commit_codes(committed) == {("t", 0): K.none}
    assert (await c.call(leave(3, [(a, None)]))).members[0].error_code == K.none
    r = await c.call(request(DELETE, xv, "DeleteGroupsRequest", groups_names=("g",)))
    assert r.results[0].error_code == K.none
    assert "g" not in broker.coordinator.groups
    assert fetched(await c.call(fetch(5, {"t": [0]})))[("t", 0)][0] == -1


# --- authorization --------------------------------------------------------------------------


@pytest.fixture
async def secured(nursery, tmp_path) -> Broker:
    b = await start(
        nursery,
        tmp_path / "data",
        security__authorizer="on",
        security__super_users="User:ANONYMOUS",
    )
    await b.context.manager.create_topic("t", 1)
    await b.context.manager.create_topic("secret", 1)
    await produce(b, "t", 0, 5)
    await produce(b, "secret", 0, 5)
    return b


def _grant(b: Broker, *bindings: tuple[str, str, str]) -> None:
    b.context.acl_store.add(AclBinding("User:alice", op, kind, name) for op, kind, name in bindings)
    b.context.authz.generation += 1


async def test_group_acls_refuse_with_kafka_codes(secured, nursery):
    b = secured
    alice = caller(b, "User:alice")
    find = request(FIND, 2, "FindCoordinatorRequest", key="g", key_type=0)
    assert (await alice.call(find)).error_code == K.group_authorization_failed
    assert (await alice.call(join(5))).error_code == K.group_authorization_failed
    assert (await alice.call(sync(3, "m", 1))).error_code == K.group_authorization_failed
    assert (await alice.call(heartbeat(3, "m", 1))).error_code == K.group_authorization_failed
    assert (await alice.call(leave(3, [("m", None)]))).error_code == K.group_authorization_failed
    assert commit_codes(await alice.call(commit(7, {"t": {0: 1}}))) == {
        ("t", 0): K.group_authorization_failed
    }
    assert (await alice.call(fetch(5, {"t": [0]}))).error_code == K.group_authorization_failed
    assert fetched(await alice.call(fetch(1, {"t": [0]})))[("t", 0)][2] == (
        K.group_authorization_failed
    )
    describe_g = request(
        DESCRIBE, 4, "DescribeGroupsRequest", groups=("g",), include_authorized_operations=True
    )
    assert (await alice.call(describe_g)).groups[0].error_code == K.group_authorization_failed
    deleted = await alice.call(request(DELETE, 1, "DeleteGroupsRequest", groups_names=("g",)))
    assert deleted.results[0].error_code == K.group_authorization_failed

    # READ on the groups and on "t" only: "secret" is refused per topic
    admin = caller(b)
    assert commit_codes(await admin.call(commit(7, {"secret": {0: 3}}, group="h"))) == {
        ("secret", 0): K.none
    }
    _grant(
        b,
        ("read", "group", "g"),
        ("describe", "group", "g"),
        ("read", "group", "h"),
        ("read", "topic", "t"),
    )
    assert (await alice.call(find)).error_code == K.none
    batch = request(FIND, 4, "FindCoordinatorRequest", key_type=0, coordinator_keys=("g", "x"))
    assert [(x.key, x.error_code) for x in (await alice.call(batch)).coordinators] == [
        ("g", K.none),
        ("x", K.group_authorization_failed),
    ]
    assert (await alice.call(join(3))).error_code == K.none
    both = commit(7, {"t": {0: 1}, "secret": {0: 1}}, group="h")
    assert commit_codes(await alice.call(both)) == {
        ("t", 0): K.none,
        ("secret", 0): K.topic_authorization_failed,
    }
    r = await alice.call(fetch(5, {"t": [0], "secret": [0]}, group="h"))
    assert fetched(r) == {
        ("t", 0): (1, "m1", K.none),
        ("secret", 0): (-1, "", K.topic_authorization_failed),
    }
    # every committed offset: only those of topics alice may read
    assert set(fetched(await alice.call(fetch(5, None, group="h")))) == {("t", 0)}
    assert set(fetched(await admin.call(fetch(5, None, group="h")))) == {("t", 0), ("secret", 0)}
    # ListGroups without DESCRIBE on the cluster: the groups alice may
    # describe (READ implies DESCRIBE, as in Kafka); "z" is not one of them
    assert commit_codes(await admin.call(commit(7, {"t": {0: 2}}, group="z"))) == {("t", 0): K.none}
    listed = await alice.call(request(LIST, 2, "ListGroupsRequest"))
    assert [x.group_id for x in listed.groups] == ["g", "h"]
    everything = await admin.call(request(LIST, 2, "ListGroupsRequest"))
    assert [x.group_id for x in everything.groups] == ["g", "h", "z"]
    described = (await alice.call(describe_g)).groups[0]
    assert described.error_code == K.none
    assert described.authorized_operations == (1 << 3) | (1 << 8)  # READ, DESCRIBE
    deleted = await alice.call(request(DELETE, 1, "DeleteGroupsRequest", groups_names=("h",)))
    assert deleted.results[0].error_code == K.group_authorization_failed


async def test_while_the_coordinator_loads(broker):
    """FindCoordinator says not available (clients look again); the group
    APIs say COORDINATOR_LOAD_IN_PROGRESS (clients retry)."""
    c = caller(broker)
    broker.coordinator.status = "loading"
    try:
        find = await c.call(request(FIND, 2, "FindCoordinatorRequest", key="g", key_type=0))
        assert find.error_code == K.coordinator_not_available
        assert (await c.call(join(5))).error_code == K.coordinator_load_in_progress
        assert (await c.call(fetch(5, {"t": [0]}))).error_code == K.coordinator_load_in_progress
        assert commit_codes(await c.call(commit(7, {"t": {0: 0}}))) == {
            ("t", 0): K.coordinator_load_in_progress
        }
        listed = await c.call(request(LIST, 2, "ListGroupsRequest"))
        assert listed.error_code == K.coordinator_load_in_progress
    finally:
        broker.coordinator.status = "ready"


def test_tailrace_only_codes_map_to_the_nearest_kafka_error():
    from tailrace.client.errors import (
        ErrorCode,
        NotAssignedError,
        StorageFullError,
        UnknownMemberIdError,
        error_for_code,
    )

    assert kafka_error(None) == K.none
    assert kafka_error(UnknownMemberIdError("x")) == K.unknown_member_id
    assert kafka_error(StorageFullError("x")) == K.kafka_storage_error
    assert kafka_error(NotAssignedError("x")) == K.rebalance_in_progress
    # every code tailrace has is answered with a code Kafka clients know
    for code in ErrorCode:
        if code != ErrorCode.NONE:
            assert int(kafka_error(error_for_code(int(code)))) < 1000
