"""Registration, controller election and fencing against a real etcd, with
ClusterMember objects in one trio run (the broker processes are in
test_cluster_processes.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tailrace.broker.cluster.controller import Controller, ControllerFencedError
from tailrace.broker.cluster.decisions import Change
from tailrace.broker.cluster.member import ClusterMember, ClusterSettings
from tailrace.broker.cluster.state import ClusterView, Keys, PartitionState
from tailrace.broker.etcd import EtcdClient, PrefixView


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for ``predicate``; the bound only stops a hung test."""
    with trio.fail_after(60):
        while not predicate():  # noqa: ASYNC110 - the state belongs to other tasks
            await trio.sleep(0.02)


def member(etcd: Any, node_id: int) -> ClusterMember:
    settings = ClusterSettings(node_id, tuple(etcd.endpoints), session_timeout_ms=1000)
    return ClusterMember(settings, address=f"127.0.0.1:{7420 + node_id}")


def _seen(m: ClusterMember) -> ClusterView:
    view = m.snapshot()
    return view if view is not None else ClusterView(0, {}, None, {}, {})


async def test_brokers_register_with_growing_epochs_and_one_is_controller(etcd: Any) -> None:
    async with trio.open_nursery() as nursery:
        members = [member(etcd, n) for n in (1, 2, 3)]
        for m in members:
            await nursery.start(m.run)
            await m.registered.wait()
        epochs = [m.broker_epoch for m in members]
        assert epochs == sorted(epochs)
        assert len(set(epochs)) == 3
        await until(lambda: any(m.controller_epoch for m in members), "a controller")
        (controller,) = [m for m in members if m.controller_epoch]
        await until(
            lambda: (
                _seen(members[0]).controller is not None and len(_seen(members[0]).brokers) == 3
            ),
            "the first member's view of the controller and of every broker",
        )
        seen = members[0].snapshot()
        assert seen is not None
        assert set(seen.brokers) == {1, 2, 3}
        assert {n: b.epoch for n, b in seen.brokers.items()} == {
            m.node_id: m.broker_epoch for m in members
        }
        assert seen.controller is not None
        assert seen.controller.node_id == controller.node_id
        assert seen.controller.epoch == controller.controller_epoch
        nursery.cancel_scope.cancel()


async def test_a_stopping_controller_is_succeeded_with_a_higher_epoch(etcd: Any) -> None:
    async with trio.open_nursery() as nursery:
        scopes = {}
        members = [member(etcd, n) for n in (1, 2)]
        for m in members:
            scope = trio.CancelScope()
            scopes[m.node_id] = scope

            async def run(m: ClusterMember = m, scope: trio.CancelScope = scope, *, task_status):
                with scope:
                    await m.run(task_status=task_status)

            await nursery.start(run)
        await until(lambda: any(m.controller_epoch for m in members), "a controller")
        (first,) = [m for m in members if m.controller_epoch]
        (other,) = [m for m in members if m is not first]
        old_epoch = first.controller_epoch
        assert old_epoch is not None
        scopes[first.node_id].cancel()  # a clean stop revokes its lease at once
        await until(lambda: other.controller_epoch is not None, "the successor")
        assert other.controller_epoch is not None
        assert other.controller_epoch > old_epoch
        nursery.cancel_scope.cancel()


async def test_a_stale_controller_write_is_fenced(etcd: Any) -> None:
    keys = Keys(b"/fence")
    async with EtcdClient(etcd.endpoints) as client, trio.open_nursery() as nursery:
        view = PrefixView(client, keys.root)
        await nursery.start(view.run)
        lease_a = await client.grant(30)
        a = Controller(client, keys, view, node_id=1, broker_epoch=1, lease_id=lease_a.id)
        epoch_a = await a.campaign()
        state = PartitionState((1, 2), leader=1, leader_epoch=0, isr=(1, 2))
        assert await a.write(Change("t", 0, state, expected_revision=0))
        # A is paused past its lease: etcd drops it, B is elected
        await client.revoke(lease_a.id)
        lease_b = await client.grant(30)
        b = Controller(client, keys, view, node_id=2, broker_epoch=2, lease_id=lease_b.id)
        epoch_b = await b.campaign()
        assert epoch_b > epoch_a
        # A wakes up and writes with the partition's current revision: the
        # controller-epoch comparison refuses it, whatever the timing
        current = await client.get(keys.partition("t", 0))
        assert current is not None
        moved = PartitionState((1, 2), leader=2, leader_epoch=1, isr=(2,))
        with pytest.raises(ControllerFencedError) as info:
            await a.write(Change("t", 0, moved, expected_revision=current.mod_revision))
        assert info.value.epoch == epoch_a
        assert info.value.holder == epoch_b
        after = await client.get(keys.partition("t", 0))
        assert after == current  # untouched
        # B's write with the same revision goes through
        assert await b.write(Change("t", 0, moved, expected_revision=current.mod_revision))
        # and a write based on a stale revision is refused without fencing B
        assert not await b.write(Change("t", 0, state, expected_revision=current.mod_revision))
        nursery.cancel_scope.cancel()


async def test_the_same_node_id_waits_for_the_earlier_session(
    etcd: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tailrace.cluster")
    async with trio.open_nursery() as nursery:
        first, second = member(etcd, 1), member(etcd, 1)
        scope = trio.CancelScope()

        async def run_first(*, task_status):
            with scope:
                await first.run(task_status=task_status)

        await nursery.start(run_first)
        await first.registered.wait()
        await nursery.start(second.run)
        await until(
            lambda: any("registered by another session" in r.getMessage() for r in caplog.records),
            "the second session to wait",
        )
        assert not second.registered.is_set()
        # it has read the cluster, but tells clients nothing while it is
        # not a member (Metadata then names no brokers: clients go elsewhere)
        await until(lambda: second.snapshot() is not None, "the second member's view")
        assert second.serving_snapshot() is None
        assert first.serving_snapshot() is not None
        scope.cancel()
        await second.registered.wait()
        assert second.broker_epoch > first.broker_epoch
        # registered when the create answered; its watch brings the key to
        # its own view a moment later (seen on a busy machine)
        await until(
            lambda: 1 in getattr(second.serving_snapshot(), "brokers", {}),
            "the second member's serving view of its own registration",
        )
        nursery.cancel_scope.cancel()


async def test_a_lost_lease_starts_a_new_session_with_a_higher_broker_epoch(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client, trio.open_nursery() as nursery:
        m = member(etcd, 4)
        await nursery.start(m.run)
        await m.registered.wait()
        old = m.broker_epoch
        assert m.lease is not None
        await client.revoke(m.lease.id)  # as if it expired while the broker was cut off
        await until(lambda: m.broker_epoch > old, "re-registration")
        kv = await client.get(Keys().broker(4))
        assert kv is not None
        assert kv.create_revision == m.broker_epoch
        nursery.cancel_scope.cancel()


async def test_the_controller_places_a_new_topic_on_live_brokers(etcd: Any) -> None:
    async with trio.open_nursery() as nursery:
        members = [member(etcd, n) for n in (1, 2, 3)]
        for m in members:
            await nursery.start(m.run)
            await m.registered.wait()
        # the broker that creates the topic counts the live brokers in its
        # own view: wait for that one (and the others), not only the first
        await until(
            lambda: all(len(_seen(m).brokers) == 3 for m in members), "3 brokers in every view"
        )
        await members[1].create_topic("orders", 4, 2, {})

        def placed() -> ClusterView | None:
            v = members[2].snapshot()
            return v if v is not None and len(v.partitions) == 4 else None

        await until(lambda: placed() is not None, "placement")
        v = placed()
        assert v is not None
        for p in range(4):
            state, _rev = v.partitions[("orders", p)]
            assert len(state.replicas) == 2
            assert set(state.replicas) <= {1, 2, 3}
            assert (state.leader, state.leader_epoch, state.isr) == (
                state.replicas[0], 0, state.replicas,
            )  # fmt: skip
        assert v.under_replicated() == []
        assert v.offline() == []
        nursery.cancel_scope.cancel()


async def test_producer_id_blocks_never_overlap_across_brokers(etcd: Any, tmp_path: Any) -> None:
    """Three brokers' allocators reserve blocks concurrently through one
    etcd counter: every id handed out is unique cluster-wide (each broker's
    own file alone would start every broker at 0), and a block starts at or
    above what the broker's data directory already handed out."""
    from tailrace.broker.producer_ids import BLOCK, ProducerIdAllocator

    for n in (1, 2, 3):
        (tmp_path / f"b{n}").mkdir()
    used = ProducerIdAllocator(str(tmp_path / "b3"))
    for _ in range(5 * BLOCK + 1):  # broker 3's directory handed out ids before
        await used.allocate()
    async with trio.open_nursery() as nursery:
        members = [member(etcd, n) for n in (1, 2, 3)]
        allocators = []
        for m in members:
            await nursery.start(m.run)
            a = ProducerIdAllocator(str(tmp_path / f"b{m.node_id}"))
            a.reserve = m.reserve_producer_ids
            allocators.append(a)
        taken: dict[int, list[int]] = {1: [], 2: [], 3: []}

        async def take(node_id: int, a: ProducerIdAllocator) -> None:
            for _ in range(2 * BLOCK + 10):  # three blocks each
                taken[node_id].append(await a.allocate())

        async with trio.open_nursery() as racing:
            for m, a in zip(members, allocators, strict=True):
                racing.start_soon(take, m.node_id, a)
        ids = [i for got in taken.values() for i in got]
        assert len(ids) == len(set(ids)) == 3 * (2 * BLOCK + 10)
        assert min(taken[3]) >= 6 * BLOCK  # past broker 3's file
        nursery.cancel_scope.cancel()
