"""Classic groups through the real GroupCoordinator (its LogManager and
offsets store in tmp_path) on trio's MockClock: the rebalance and session
deadlines are applied by the coordinator's own loop as virtual time
passes; held joins are answered when the broker drains; commits land in
the same store as native ones and survive a reload."""

from __future__ import annotations

import pytest
import trio

from tailrace.broker.coordinator import GroupCoordinator, GroupSettings
from tailrace.broker.coordinator.classic import STABLE, JoinParams
from tailrace.broker.coordinator.coordinator import CommitItem
from tailrace.broker.log.manager import LogManager
from tailrace.client.errors import (
    CoordinatorNotAvailableError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from tailrace.client.records import build_batch

JOIN = JoinParams(
    member_id="",
    instance_id=None,
    protocol_type="consumer",
    protocols=(("range", b"r"),),
    session_timeout_ms=10_000,
    rebalance_timeout_ms=30_000,
)


async def _ready(coordinator: GroupCoordinator) -> None:
    # no readiness event: the coordinator reports it in its status
    while coordinator.status != "ready":  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_deadlines_run_on_the_trio_clock(tmp_path, autojump_clock):
    manager = LogManager.open(str(tmp_path / "data"))
    coordinator = GroupCoordinator(manager, GroupSettings(session_timeout_min_ms=100))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run)
            await _ready(coordinator)
            a = await coordinator.join_group("g", JOIN).wait()
            assert a.error is None
            synced = coordinator.sync_group("g", a.member_id, None, 1, {a.member_id: b"A"})
            assert (await synced.wait()).assignment == b"A"

            # b joins; a keeps heartbeating (told to rejoin) but never does
            start = trio.current_time()
            held = coordinator.join_group("g", JOIN)
            told: list[type] = []

            async def beat_a() -> None:
                while True:
                    await trio.sleep(3)
                    try:
                        coordinator.classic_heartbeat("g", a.member_id, None, 1)
                    except (RebalanceInProgressError, UnknownMemberIdError) as exc:
                        told.append(type(exc))
                        if isinstance(exc, UnknownMemberIdError):
                            return

            nursery.start_soon(beat_a)
            b = await held.wait()
            # answered at the rebalance timeout, without a
            assert trio.current_time() - start == pytest.approx(30.0)
            assert (b.error, b.generation, b.leader_id) == (None, 2, b.member_id)
            assert [m for m, _, _ in b.members] == [b.member_id]
            await trio.sleep(3.5)
            assert told[0] is RebalanceInProgressError
            assert told[-1] is UnknownMemberIdError

            # b syncs, then falls silent: its session ends 10 s later and the
            # group, with no members and no offsets, is gone
            await coordinator.sync_group("g", b.member_id, None, 2, {b.member_id: b"B"}).wait()
            assert coordinator.groups["g"].classic.state == STABLE
            await trio.sleep(9)
            assert "g" in coordinator.groups
            await trio.sleep(2)
            assert "g" not in coordinator.groups
            nursery.cancel_scope.cancel()
    finally:
        await manager.aclose()


async def test_draining_answers_held_joins(tmp_path, autojump_clock):
    manager = LogManager.open(str(tmp_path / "data"))
    coordinator = GroupCoordinator(manager, GroupSettings(session_timeout_min_ms=100))
    draining = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run, draining)
            await _ready(coordinator)
            a = await coordinator.join_group("g", JOIN).wait()
            await coordinator.sync_group("g", a.member_id, None, 1, {}).wait()
            held = coordinator.join_group("g", JOIN)
            await trio.sleep(1)
            assert not held.done
            draining.set()
            result = await held.wait()
            assert isinstance(result.error, CoordinatorNotAvailableError)
            nursery.cancel_scope.cancel()
    finally:
        await manager.aclose()


async def test_classic_commits_share_the_store_and_survive_a_reload(tmp_path):
    data = str(tmp_path / "data")
    manager = LogManager.open(data)
    await manager.create_topic("t", 2)
    plog = manager.get("t", 0)
    await plog.wait_durable(plog.append(build_batch([(0, None, b"v", None)] * 5)))
    coordinator = GroupCoordinator(manager)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run)
            await _ready(coordinator)
            await coordinator.ensure_log()
            a = await coordinator.join_group("g", JOIN).wait()
            await coordinator.sync_group("g", a.member_id, None, 1, {}).wait()
            errors, appended = coordinator.commit_offsets(
                "g",
                [CommitItem("t", 0, 4, "meta"), CommitItem("t", 9, 1)],
                generation=1,
                member_id=a.member_id,
            )
            assert errors[0] is None
            assert errors[1] is not None
            assert appended is not None
            await coordinator.wait_durable(appended)
            assert coordinator.committed("g", [("t", 0)])[0][1].offset == 4
            nursery.cancel_scope.cancel()
    finally:
        await manager.aclose()
    manager = LogManager.open(data)
    reloaded = GroupCoordinator(manager)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reloaded.run)
            await _ready(reloaded)
            ((tp, entry),) = reloaded.committed("g", None)
            assert (tp, entry.offset, entry.metadata) == (("t", 0), 4, "meta")
            # membership does not survive a restart (as natively); the
            # group is Empty and takes commits from assign() consumers
            assert reloaded.group_view("g").members == ()
            errors, _ = reloaded.commit_offsets("g", [CommitItem("t", 0, 5)])
            assert errors == [None]
            nursery.cancel_scope.cancel()
    finally:
        await manager.aclose()
