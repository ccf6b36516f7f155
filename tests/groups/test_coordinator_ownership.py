"""Which groups a broker coordinates (cluster mode, issue 16 rule 8): the
sans-I/O ownership table (ownership.py) and the real GroupCoordinator
loading and unloading partitions of a real, local ``__consumer_offsets``
(tmp_path) as its leadership comes and goes. The replicated path (etcd,
leaders, kill -9) is tests/cluster/test_cluster_groups.py."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from tailrace.broker.coordinator import GroupCoordinator, GroupSettings
from tailrace.broker.coordinator.classic import JoinParams
from tailrace.broker.coordinator.coordinator import CommitItem
from tailrace.broker.coordinator.ownership import (
    Ownership,
    Plan,
    java_string_hash,
    partition_for,
)
from tailrace.broker.coordinator.store import OFFSETS_TOPIC, StoreSettings
from tailrace.broker.log.manager import LogManager
from tailrace.client.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    ErrorCode,
    NotCoordinatorError,
)
from tailrace.client.protocol import ConsumerGroupHeartbeatRequest

JOIN = JoinParams(
    member_id="",
    instance_id=None,
    protocol_type="consumer",
    protocols=(("range", b"r"),),
    session_timeout_ms=10_000,
    rebalance_timeout_ms=30_000,
)


# --- the hash: Kafka's placement ------------------------------------------------


def test_java_string_hash_matches_java() -> None:
    # values of java.lang.String.hashCode()
    assert java_string_hash("") == 0
    assert java_string_hash("abc") == 96354
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)  # Integer.MIN_VALUE
    # a character outside the BMP hashes as its two UTF-16 code units
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00


def test_partition_for_is_kafkas_abs_modulo() -> None:
    assert partition_for("polygenelubricants", 7) == 0  # Utils.abs(MIN_VALUE) is 0
    assert partition_for("hello", 50) == 99162322 % 50
    assert partition_for("anything", 1) == 0
    with pytest.raises(ValueError, match="at least 1"):
        partition_for("g", 0)


@given(st.text(), st.integers(1, 200))
def test_partition_for_is_in_range(group: str, partitions: int) -> None:
    assert 0 <= partition_for(group, partitions) < partitions


# --- the ownership table ---------------------------------------------------------


def _group_on(partition: int, partitions: int, prefix: str = "g") -> str:
    return next(
        f"{prefix}{i}"
        for i in range(10_000)
        if partition_for(f"{prefix}{i}", partitions) == partition
    )


def test_ownership_loads_what_is_led_and_unloads_what_is_not() -> None:
    own = Ownership(3)
    g0, g1 = _group_on(0, 3), _group_on(1, 3)
    with pytest.raises(NotCoordinatorError):
        own.check(g0)

    assert own.plan({0: 4, 1: 2}) == Plan(unload=(), load=((0, 4), (1, 2)))
    with pytest.raises(CoordinatorLoadInProgressError):
        own.check(g0)
    assert own.loaded(0, 4)
    assert own.check(g0) == 0
    assert own.serves(g0)
    assert not own.serves(g1)

    # nothing changed: nothing to do
    assert own.plan({0: 4, 1: 2}) == Plan()
    # partition 0 re-elected here in a new epoch: unloaded, then loaded anew
    assert own.plan({0: 5, 1: 2}) == Plan(unload=(0,), load=((0, 5),))
    # the load of epoch 4 that finishes late is thrown away
    assert not own.loaded(0, 4)
    # partition 1 led elsewhere before its load finished: its load is void
    assert own.plan({0: 5}) == Plan(unload=(1,), load=())
    assert not own.loaded(1, 2)
    with pytest.raises(NotCoordinatorError):
        own.check(g1)
    assert own.ready() == frozenset()
    assert own.loaded(0, 5)
    assert own.ready() == {0}


@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.integers(0, 4), st.integers(0, 3), max_size=5),
            st.lists(st.integers(0, 4), max_size=5),
        ),
        max_size=12,
    )
)
def test_ownership_follows_any_sequence_of_leaderships(
    steps: list[tuple[dict[int, int], list[int]]],
) -> None:
    """Whatever the leaderships and whichever loads finish: after a plan the
    table holds exactly the partitions led here, each in its epoch, and only
    a load of the current epoch ever makes one ready."""
    own = Ownership(5)
    for leading, finished in steps:
        before = dict(own.held)
        plan = own.plan(leading)
        assert {p: h.leader_epoch for p, h in own.held.items()} == leading
        assert set(plan.unload) == {
            p for p, h in before.items() if leading.get(p) != h.leader_epoch
        }
        assert {p for p, _ in plan.load} == set(leading) - (set(before) - set(plan.unload))
        for p in finished:
            was = own.held.get(p)
            ok = own.loaded(p, leading.get(p, -1))
            assert ok == (was is not None and was.status == "loading")
            if ok:
                assert own.held[p].status == "ready"


def test_a_failed_load_answers_coordinator_not_available() -> None:
    own = Ownership(2)
    own.plan({1: 0})
    own.failed(1, 0, "loading failed: disk")
    with pytest.raises(CoordinatorNotAvailableError, match="disk"):
        own.check(_group_on(1, 2))
    own.failed(0, 0, "not held: ignored")
    assert 0 not in own.held


# --- the coordinator over a real offsets topic of three partitions -------------------


def _beat(group: str, member_id: str, epoch: int) -> ConsumerGroupHeartbeatRequest:
    return ConsumerGroupHeartbeatRequest(
        group_id=group,
        member_id=member_id,
        member_epoch=epoch,
        subscribed_topics=["events"] if epoch == 0 else None,
        session_timeout_ms=10_000,
        rebalance_timeout_ms=30_000,
        max_wait_ms=60_000,
    )


async def test_partitions_load_serve_and_unload(tmp_path) -> None:
    manager = LogManager.open(str(tmp_path / "data"))
    await manager.create_topic("events", 1)
    await manager.create_topic(OFFSETS_TOPIC, 3, StoreSettings().topic_config())
    coordinator = GroupCoordinator(
        manager, GroupSettings(initial_rebalance_delay_ms=0), cluster_partitions=3
    )
    g1, g2 = _group_on(1, 3), _group_on(2, 3)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run)
            with pytest.raises(NotCoordinatorError):
                coordinator.committed(g1, None)

            for p in coordinator.ownership.plan({1: 0, 2: 0}).load:
                assert await coordinator.load_partition(*p)
            errors, pending = coordinator.commit_offsets(g1, [CommitItem("events", 0, 0)])
            assert errors == [None]
            assert pending is not None
            await coordinator.wait_durable(pending)
            assert [(tp, e.offset) for tp, e in coordinator.committed(g1, None)] == [
                (("events", 0), 0)
            ]
            held = coordinator.join_group(g2, JOIN)
            assert (await held.wait()).error is None
            rejoin = coordinator.join_group(g2, JOIN)  # a second member: held for the rebalance
            # a native member of another group on partition 2, its heartbeat held
            native = _group_on(2, 3, "n")
            joined = coordinator.heartbeat(_beat(native, "", 0), "h")
            member = joined.member
            beat = coordinator.heartbeat(_beat(native, member.member_id, member.epoch), "h")
            assert coordinator.should_hold(beat)
            answers: list[int] = []

            async def hold() -> None:
                answers.append((await coordinator.hold(beat)).error_code)

            nursery.start_soon(hold)
            await trio.testing.wait_all_tasks_blocked()

            # partition 2 is led elsewhere now: its group leaves memory and the
            # held join is answered NOT_COORDINATOR; partition 1 stays
            plan = coordinator.ownership.plan({1: 0})
            for p in plan.unload:
                coordinator.unload_partition(p)
            assert isinstance((await rejoin.wait()).error, NotCoordinatorError)
            await trio.testing.wait_all_tasks_blocked()
            assert answers == [ErrorCode.NOT_COORDINATOR]
            assert g2 not in coordinator.groups
            with pytest.raises(NotCoordinatorError):
                coordinator.join_group(g2, JOIN)
            assert [v.group_id for v in coordinator.group_views()] == [g1]

            # partition 1 moves away and comes back in a new epoch: the commit
            # is read back from the log, as a new leader does
            for p in coordinator.ownership.plan({}).unload:
                coordinator.unload_partition(p)
            assert coordinator.groups == {}
            for p in coordinator.ownership.plan({1: 1}).load:
                with pytest.raises(CoordinatorLoadInProgressError):
                    coordinator.committed(g1, None)
                assert await coordinator.load_partition(*p)
            assert [(tp, e.offset) for tp, e in coordinator.committed(g1, None)] == [
                (("events", 0), 0)
            ]
            nursery.cancel_scope.cancel()
    finally:
        await manager.aclose()


async def test_a_single_node_keeps_one_offsets_partition(tmp_path) -> None:
    """Not a cluster: partition 0 of one, loaded at start, whatever the
    cluster setting says (the broker passes it only in cluster mode)."""
    manager = LogManager.open(str(tmp_path / "data"))
    await manager.create_topic("events", 1)
    coordinator = GroupCoordinator(manager, GroupSettings())
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run)
            while coordinator.status != "ready":  # noqa: ASYNC110
                await trio.sleep(0.01)
            assert coordinator.needs_log()
            await coordinator.ensure_log()
            for group in ("a", "b", "polygenelubricants"):
                errors, pending = coordinator.commit_offsets(group, [CommitItem("events", 0, 0)])
                assert errors == [None]
                assert pending is not None
                await coordinator.wait_durable(pending)
            assert manager.topic(OFFSETS_TOPIC).partitions == 1
            nursery.cancel_scope.cancel()
    finally:
        await manager.aclose()
