"""The group protocol on the wire, against a real broker: joins, the
revoke-then-assign hand-over, fencing, typed errors that change nothing,
session and rebalance timeouts, static membership, the long-poll heartbeat."""

from __future__ import annotations

import trio
from group_helpers import (
    beat,
    commit,
    create_topic,
    join,
    owned,
    partition_errors,
    start_broker,
    tps,
    wire,
)

from tailrace.client import AsyncAdmin
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import (
    ConsumerGroupHeartbeatRequest,
    DeleteGroupsRequest,
    DescribeGroupsRequest,
    ListGroupsRequest,
    OffsetFetchRequest,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from tailrace.client.records import build_batch

T4 = {("t", p) for p in range(4)}


async def _describe(c, group):
    (g,) = (await c.request(DescribeGroupsRequest(group_ids=[group]))).groups
    return g


def _owners_are_unique(group) -> None:
    seen = set()
    for m in group.members:
        mine = tps(m.assignment) | tps(m.pending_revocation)
        assert not (mine & seen), "a partition has two owners"
        seen |= mine


async def _produce(c, topic, partition, n):
    batch = build_batch([(1, None, b"x", None)] * n)
    response = await c.request(
        ProduceRequest(
            topics=[
                ProduceTopic(
                    name=topic, partitions=[ProducePartition(partition=partition, records=batch)]
                )
            ]
        )
    )
    assert response.topics[0].partitions[0].error_code == 0


async def test_hand_over_revokes_first_and_assigns_after_the_ack(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4)
    async with wire(b.address) as c:
        m1 = await c.request(join("g", ["t"]))
        assert tps(m1.assignment) == T4
        held1 = T4
        m2 = await c.request(join("g", ["t"]))
        assert m2.error_code == 0
        assert tps(m2.assignment) == set()  # its share is still m1's
        _owners_are_unique(await _describe(c, "g"))

        m1b = await c.request(beat("g", m1, held1))
        kept = tps(m1b.assignment)
        assert len(kept) == 2
        assert m1b.member_epoch == m1.member_epoch  # no new epoch until it gave them up
        m2b = await c.request(beat("g", m2, set()))
        assert tps(m2b.assignment) == set()  # not before m1 acknowledged
        g = await _describe(c, "g")
        assert g.state == "Reconciling"
        _owners_are_unique(g)

        m1c = await c.request(beat("g", m1b, kept))  # m1 stopped and acknowledges
        assert m1c.member_epoch > m1.member_epoch
        m2c = await c.request(beat("g", m2b, set()))
        assert tps(m2c.assignment) == T4 - kept
        g = await _describe(c, "g")
        assert g.state == "Stable"
        _owners_are_unique(g)


async def test_stale_epochs_and_unknown_members_are_fenced_and_change_nothing(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4)
    async with wire(b.address) as c:
        await _produce(c, "t", 0, 10)
        old = await c.request(join("g", ["t"]))
        cur = old
        for _ in range(2):  # two more members: two new epochs for m1
            other = await c.request(join("g", ["t"]))
            cur = await c.request(beat("g", cur, tps(cur.assignment)))
            cur = await c.request(beat("g", cur, tps(cur.assignment)))
            await c.request(beat("g", other, set()))
        assert cur.member_epoch >= old.member_epoch + 2
        before = await _describe(c, "g")

        stale_commit = await c.request(commit("g", {("t", 0): 5}, member=old))
        assert stale_commit.error_code == ErrorCode.FENCED_MEMBER_EPOCH
        stale_beat = await c.request(beat("g", old, tps(old.assignment)))
        assert stale_beat.error_code == ErrorCode.FENCED_MEMBER_EPOCH
        ghost = ConsumerGroupHeartbeatRequest(
            group_id="g", member_id="ghost", member_epoch=3, session_timeout_ms=5000
        )
        assert (await c.request(ghost)).error_code == ErrorCode.UNKNOWN_MEMBER_ID
        ghost_commit = commit("g", {("t", 0): 5}, epoch=3)
        ghost_commit.member_id = "ghost"
        assert (await c.request(ghost_commit)).error_code == ErrorCode.UNKNOWN_MEMBER_ID

        after = await _describe(c, "g")
        assert after == before
        fetched = await c.request(OffsetFetchRequest(group_id="g"))
        assert fetched.topics == []  # nothing was committed


async def test_commit_errors_are_per_partition_and_only_valid_offsets_are_stored(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4)
    async with wire(b.address) as c:
        for p in range(4):
            await _produce(c, "t", p, 10)
        m1 = await c.request(join("g", ["t"]))
        m2 = await c.request(join("g", ["t"]))
        m1 = await c.request(beat("g", m1, T4))
        mine = tps(m1.assignment)
        m1 = await c.request(beat("g", m1, mine))
        await c.request(beat("g", m2, set()))
        (good, other) = sorted(mine)[0], sorted(T4 - mine)[0]
        response = await c.request(
            commit(
                "g",
                {good: 7, other: 3},
                member=m1,
            )
        )
        assert partition_errors(response) == {good: 0, other: ErrorCode.NOT_ASSIGNED}
        (second,) = sorted(mine)[1:2]
        response = await c.request(commit("g", {second: 11}, member=m1))  # log end is 10
        assert partition_errors(response) == {second: ErrorCode.OFFSET_OUT_OF_RANGE}
        response = await c.request(commit("g", {second: -1}, member=m1))
        assert partition_errors(response) == {second: ErrorCode.OFFSET_OUT_OF_RANGE}
        response = await c.request(commit("g", {("nope", 0): 0}, member=m1))
        assert partition_errors(response) == {("nope", 0): ErrorCode.NOT_ASSIGNED}

        outsider = await c.request(commit("g", {good: 1}))  # member_epoch -1, no member id
        assert outsider.error_code == ErrorCode.NON_EMPTY_GROUP
        nameless = await c.request(commit("", {good: 1}))
        assert nameless.error_code == ErrorCode.INVALID_GROUP_ID

        fetched = await c.request(OffsetFetchRequest(group_id="g"))
        assert {(t.name, p.partition): p.offset for t in fetched.topics for p in t.partitions} == {
            good: 7
        }


async def test_a_member_that_stops_heartbeating_loses_its_partitions(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4)
    async with wire(b.address) as c:
        quiet = await c.request(join("g", ["t"], session=300))
        alive = await c.request(join("g", ["t"]))
        quiet = await c.request(beat("g", quiet, T4, session=300))
        # quiet now stops heartbeating while holding its partitions
        holding: set = set()
        with trio.fail_after(10):
            while holding != T4:
                alive = await c.request(beat("g", alive, holding, max_wait_ms=100))
                assert alive.error_code == 0
                holding = tps(alive.assignment)
        g = await _describe(c, "g")
        assert [m.member_id for m in g.members] == [alive.member_id]
        late = await c.request(beat("g", quiet, tps(quiet.assignment), session=300))
        assert late.error_code == ErrorCode.UNKNOWN_MEMBER_ID


async def test_a_member_that_never_gives_up_a_revoked_partition_is_removed(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4)
    async with wire(b.address) as c:
        stubborn = await c.request(join("g", ["t"], rebalance_timeout_ms=300))
        newcomer = await c.request(join("g", ["t"]))
        with trio.fail_after(10):
            while True:  # heartbeats in time, but keeps reporting all four as its own
                r = await c.request(beat("g", stubborn, T4, rebalance_timeout_ms=300))
                if r.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                    break
                assert r.error_code == 0
                assert len(tps(r.assignment)) == 2
                await trio.sleep(0.02)
        holding: set = set()
        with trio.fail_after(10):
            while holding != T4:
                newcomer = await c.request(beat("g", newcomer, holding, max_wait_ms=50))
                holding = tps(newcomer.assignment)


async def test_the_heartbeat_long_poll_answers_as_soon_as_the_member_has_news(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path, groups__heartbeat_interval_ms=20_000)
    await create_topic(b.address, "t", 4)
    async with wire(b.address) as c1, wire(b.address) as c2:
        m1 = await c1.request(join("g", ["t"], session=60_000))
        answered = []

        async def held() -> None:
            answered.append(await c1.request(beat("g", m1, T4, session=60_000, max_wait_ms=20_000)))

        with trio.fail_after(10):  # the hold is 20 s: only news can end it sooner
            async with trio.open_nursery() as n:
                n.start_soon(held)
                await trio.sleep(0.05)
                assert not answered  # nothing new yet: the broker holds it
                await c2.request(join("g", ["t"], session=60_000))
        (r,) = answered
        assert len(tps(r.assignment)) == 2  # told to give up two partitions


async def test_a_static_member_restarting_in_time_keeps_its_partitions_without_a_rebalance(
    nursery, tmp_path
):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4)
    async with wire(b.address) as c:
        s1 = await c.request(join("g", ["t"], instance_id="worker-1"))
        m2 = await c.request(join("g", ["t"]))
        s1 = await c.request(beat("g", s1, T4, instance_id="worker-1"))
        mine = tps(s1.assignment)
        s1 = await c.request(beat("g", s1, mine, instance_id="worker-1"))
        m2 = await c.request(beat("g", m2, set()))
        epoch = (await _describe(c, "g")).group_epoch

        twin = await c.request(join("g", ["t"], instance_id="worker-1"))
        assert twin.error_code == ErrorCode.UNRELEASED_INSTANCE_ID

        leave = ConsumerGroupHeartbeatRequest(
            group_id="g",
            member_id=s1.member_id,
            member_epoch=-2,
            instance_id="worker-1",
            session_timeout_ms=5000,
        )
        assert (await c.request(leave)).member_epoch == -2
        back = await c.request(join("g", ["t"], instance_id="worker-1"))
        assert back.member_id == s1.member_id
        assert tps(back.assignment) == mine
        g = await _describe(c, "g")
        assert g.group_epoch == epoch  # nobody rebalanced
        m2b = await c.request(beat("g", m2, tps(m2.assignment)))
        assert tps(m2b.assignment) == T4 - mine


async def test_bad_joins_are_refused_with_typed_errors(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path, groups__max_group_size=2)
    await create_topic(b.address, "t", 2)
    async with wire(b.address) as c:
        r = await c.request(join("g", ["t"], session=50))
        assert r.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
        r = await c.request(join("", ["t"]))
        assert r.error_code == ErrorCode.INVALID_GROUP_ID
        r = await c.request(ConsumerGroupHeartbeatRequest(group_id="g", session_timeout_ms=5000))
        assert r.error_code == ErrorCode.INVALID_REQUEST  # joining needs a subscription
        for _ in range(2):
            assert (await c.request(join("g", ["t"]))).error_code == 0
        r = await c.request(join("g", ["t"]))
        assert r.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
        assert len((await _describe(c, "g")).members) == 2


async def test_a_topic_created_after_the_subscription_is_picked_up(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    async with wire(b.address) as c:
        m = await c.request(join("g", ["later"]))
        assert tps(m.assignment) == set()
        await create_topic(b.address, "later", 3)
        m = await c.request(beat("g", m, set()))
        assert tps(m.assignment) == {("later", p) for p in range(3)}


async def test_list_describe_and_delete_groups(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 2)
    async with wire(b.address) as c:
        await _produce(c, "t", 0, 5)
        missing = await _describe(c, "nope")
        assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND
        m = await c.request(join("g", ["t"]))
        m = await c.request(beat("g", m, tps(m.assignment)))
        r = await c.request(commit("g", {("t", 0): 5}, member=m))
        assert partition_errors(r) == {("t", 0): 0}
        listed = (await c.request(ListGroupsRequest())).groups
        assert [(g.group_id, g.state, g.member_count) for g in listed] == [("g", "Stable", 1)]
        assert (await c.request(ListGroupsRequest(states_filter=["empty"]))).groups == []

        busy = await c.request(DeleteGroupsRequest(group_ids=["g", "nope"]))
        assert [(r.group_id, r.error_code) for r in busy.results] == [
            ("g", ErrorCode.NON_EMPTY_GROUP),
            ("nope", ErrorCode.GROUP_ID_NOT_FOUND),
        ]
        leave = beat("g", m, set())
        leave.member_epoch = -1
        assert (await c.request(leave)).member_epoch == -1
        g = await _describe(c, "g")
        assert (g.state, g.members) == ("Empty", [])  # kept: it has offsets

        done = await c.request(DeleteGroupsRequest(group_ids=["g"]))
        assert [r.error_code for r in done.results] == [0]
        assert (await _describe(c, "g")).error_code == ErrorCode.GROUP_ID_NOT_FOUND
        fetched = await c.request(OffsetFetchRequest(group_id="g"))
        assert fetched.topics == []
        assert owned(set()) == []


async def test_a_subscribed_topic_changing_its_partition_count_rebalances(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 2)
    async with wire(b.address) as c, AsyncAdmin(b.address) as admin:
        m = await c.request(join("g", ["t"]))
        assert tps(m.assignment) == {("t", 0), ("t", 1)}
        holding = tps(m.assignment)
        epoch = (await _describe(c, "g")).group_epoch
        await admin.delete_topic("t")
        await admin.create_topic("t", partitions=3)
        with trio.fail_after(10):
            while holding != {("t", p) for p in range(3)}:
                m = await c.request(beat("g", m, holding))
                holding = tps(m.assignment)
        assert (await _describe(c, "g")).group_epoch > epoch
