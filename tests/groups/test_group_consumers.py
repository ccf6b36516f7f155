"""Consumer groups through the client: several AsyncConsumer members (tasks)
against a real broker. Exclusive ownership, incremental rebalances that do
not stop unaffected members, exactly-once with synchronous commits, static
membership, assign() with a group id, auto and async commits."""

from __future__ import annotations

import itertools

import pytest
import trio
from group_helpers import create_topic, start_broker

from tailrace.client import AsyncConsumer, AsyncProducer
from tailrace.client.consumer import TopicPartition
from tailrace.client.errors import ClientClosedError

FAST_MEMBER = {"session_timeout_ms": 5000, "auto_offset_reset": "earliest"}


class Ownership:
    """Who owns which partition, per the rebalance callbacks; fails the test
    the moment a partition would have two owners."""

    def __init__(self) -> None:
        self.owner: dict[TopicPartition, str] = {}
        self.events: list[tuple[str, str, TopicPartition]] = []

    def callbacks(self, name: str) -> dict:
        def assigned(partitions):
            for tp in partitions:
                assert tp not in self.owner, (
                    f"{tp} assigned to {name} while {self.owner[tp]} owns it"
                )
                self.owner[tp] = name
                self.events.append(("assigned", name, tp))

        def revoked(partitions):
            for tp in partitions:
                assert self.owner.get(tp) == name
                del self.owner[tp]
                self.events.append(("revoked", name, tp))

        return {"on_assigned": assigned, "on_revoked": revoked}

    def of(self, name: str) -> set[TopicPartition]:
        return {tp for tp, n in self.owner.items() if n == name}


async def _produce(address: str, topic: str, partitions: int, per_partition: int) -> None:
    async with AsyncProducer(address, linger_ms=1) as producer:
        for i in range(per_partition):
            for p in range(partitions):
                await producer.send(topic, b"%d:%d" % (p, i), partition=p)
        await producer.flush()


async def _until(predicate, timeout: float = 15) -> None:
    """Wait for a condition the member tasks make true (checked every 10 ms)."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - many tasks change what it reads
            await trio.sleep(0.01)


async def test_members_share_the_partitions_each_owned_by_exactly_one(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 7, flush="none")
    own = Ownership()
    stop = trio.Event()
    members: dict[str, AsyncConsumer] = {}

    async def member(name: str) -> None:
        async with AsyncConsumer(b.address, group_id="g", **FAST_MEMBER) as c:
            members[name] = c
            c.subscribe(["t"], **own.callbacks(name))
            while not stop.is_set():
                await c.poll(timeout_ms=50)
                assert c.assignment() == own.of(name)

    async with trio.open_nursery() as n:
        for i in range(3):
            n.start_soon(member, f"m{i}")
        await _until(lambda: len(own.owner) == 7 and all(own.of(f"m{i}") for i in range(3)))
        sizes = sorted(len(own.of(f"m{i}")) for i in range(3))
        assert sizes == [2, 2, 3]
        stop.set()
    assert own.owner == {}  # every member gave its partitions up on close


async def test_joining_and_leaving_move_only_what_must_move_and_the_rest_keeps_flowing(
    nursery, tmp_path
):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 12, flush="none")
    own = Ownership()
    clock = itertools.count()
    received: dict[str, list[int]] = {}
    revoking_window: dict[str, tuple[int, int]] = {}
    stops = {f"m{i}": trio.Event() for i in range(4)}

    async def member(name: str, slow_revoke: bool = False) -> None:
        cbs = own.callbacks(name)
        plain_revoked = cbs["on_revoked"]

        async def on_revoked(partitions):
            start = next(clock)
            if slow_revoke:
                await trio.sleep(0.5)  # a member slow to hand over...
            plain_revoked(partitions)
            revoking_window.setdefault(name, (start, next(clock)))

        async with AsyncConsumer(b.address, group_id="g", **FAST_MEMBER) as c:
            c.subscribe(["t"], on_assigned=cbs["on_assigned"], on_revoked=on_revoked)
            while not stops[name].is_set():
                for _ in await c.poll(timeout_ms=20):
                    received.setdefault(name, []).append(next(clock))

    stop_producing = trio.Event()

    async def produce_forever() -> None:
        async with AsyncProducer(b.address, linger_ms=1) as producer:
            for i in itertools.count():
                if stop_producing.is_set():
                    return
                for p in range(12):
                    await producer.send("t", b"%d" % i, partition=p)
                await trio.sleep(0.005)

    async with trio.open_nursery() as n:
        n.start_soon(produce_forever)
        n.start_soon(member, "m0", True)
        await _until(lambda: len(own.of("m0")) == 12)
        n.start_soon(member, "m1")
        n.start_soon(member, "m2")
        await _until(lambda: sorted(len(own.of(f"m{i}")) for i in range(3)) == [4, 4, 4])
        before = {f"m{i}": own.of(f"m{i}") for i in range(3)}
        revoking_window.clear()
        del own.events[:]

        n.start_soon(member, "m3")  # the fourth member
        await _until(lambda: len(own.of("m3")) == 3)
        moves = [e for e in own.events if e[0] == "revoked"]
        assert len(moves) == 3  # exactly the newcomer's share moved
        for i in range(3):
            assert len(before[f"m{i}"] - own.of(f"m{i}")) == 1
            assert own.of(f"m{i}") <= before[f"m{i}"]
        # m1 and m2 kept consuming while m0 was still handing its partition over
        start, end = revoking_window["m0"]
        for name in ("m1", "m2"):
            assert any(start < t < end for t in received[name]), f"{name} paused"

        del own.events[:]
        leaving = own.of("m1")
        stops["m1"].set()
        await _until(lambda: not own.of("m1") and len(own.owner) == 12)
        gained = [e for e in own.events if e[0] == "assigned"]
        assert {e[2] for e in gained} == leaving  # only the leaver's partitions moved
        assert not [e for e in own.events if e[0] == "revoked" and e[1] != "m1"]
        stop_producing.set()
        for s in stops.values():
            s.set()
    assert own.owner == {}


async def test_every_record_is_consumed_exactly_once_with_sync_commits_and_clean_leaves(
    nursery, tmp_path
):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 6, flush="none")
    per_partition = 400
    await _produce(b.address, "t", 6, per_partition)
    total = 6 * per_partition
    seen: list[tuple[int, int]] = []
    stops = {f"m{i}": trio.Event() for i in range(5)}

    async def member(name: str) -> None:
        async with AsyncConsumer(
            b.address, group_id="g", enable_auto_commit=False, max_poll_records=37, **FAST_MEMBER
        ) as c:
            c.subscribe(["t"])
            while not stops[name].is_set():
                records = await c.poll(timeout_ms=20)
                seen.extend((r.partition, r.offset) for r in records)
                if records:
                    await c.commit()
                await trio.sleep(0.002)  # others get a turn: rebalances land mid-stream

    async with trio.open_nursery() as n:
        n.start_soon(member, "m0")
        n.start_soon(member, "m1")
        await _until(lambda: len(seen) > total // 5)
        n.start_soon(member, "m2")
        await _until(lambda: len(seen) > 2 * total // 5)
        stops["m0"].set()  # a clean leave mid-stream
        n.start_soon(member, "m3")
        await _until(lambda: len(seen) > 3 * total // 5)
        stops["m2"].set()
        n.start_soon(member, "m4")
        await _until(lambda: len(seen) >= total)
        await trio.sleep(0.2)  # anything consumed twice would show up now
        for s in stops.values():
            s.set()
    assert len(seen) == total
    assert set(seen) == {(p, o) for p in range(6) for o in range(per_partition)}


async def test_a_static_member_restart_takes_its_partitions_back_without_a_rebalance(
    nursery, tmp_path
):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4, flush="none")
    own = Ownership()
    stop_other = trio.Event()

    async def other() -> None:
        async with AsyncConsumer(b.address, group_id="g", **FAST_MEMBER) as c:
            c.subscribe(["t"], **own.callbacks("other"))
            while not stop_other.is_set():
                await c.poll(timeout_ms=20)

    async def static_member(stop: trio.Event) -> str:
        async with AsyncConsumer(
            b.address, group_id="g", group_instance_id="worker-1", **FAST_MEMBER
        ) as c:
            c.subscribe(["t"], **own.callbacks("static"))
            while not stop.is_set():
                await c.poll(timeout_ms=20)
            return c.member_id

    async with trio.open_nursery() as n:
        n.start_soon(other)
        first_stop = trio.Event()
        ids = []

        async def run_static(stop):
            ids.append(await static_member(stop))

        n.start_soon(run_static, first_stop)
        await _until(lambda: len(own.of("static")) == 2 and len(own.of("other")) == 2)
        mine = own.of("static")
        others = own.of("other")
        del own.events[:]
        first_stop.set()
        await _until(lambda: not own.of("static") and ids)
        second_stop = trio.Event()
        n.start_soon(run_static, second_stop)
        await _until(lambda: own.of("static") == mine)
        assert own.of("other") == others
        assert all(e[1] == "static" for e in own.events)  # the other member never moved
        assert ids[0]
        second_stop.set()
        await _until(lambda: len(ids) == 2)
        assert ids[1] == ids[0]
        stop_other.set()


async def test_assign_with_a_group_id_commits_and_starts_from_the_committed_offset(
    nursery, tmp_path
):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 2, flush="none")
    await _produce(b.address, "t", 2, 50)
    async with AsyncConsumer(
        b.address, group_id="solo", enable_auto_commit=False, **FAST_MEMBER
    ) as c:
        c.assign([("t", 0)])
        assert await c.committed(("t", 0)) is None
        got = []
        while len(got) < 20:
            got += await c.poll(timeout_ms=1000, max_records=20 - len(got))
        await c.commit()
        assert (await c.committed(("t", 0))).offset == 20
        await c.commit({("t", 0): (15, "checkpoint")})
        committed = await c.committed(("t", 0))
        assert (committed.offset, committed.metadata) == (15, "checkpoint")
    async with AsyncConsumer(b.address, group_id="solo", **FAST_MEMBER) as c:
        c.assign([("t", 0), ("t", 1)])
        first = {}
        with trio.fail_after(10):
            while len(first) < 2:
                for r in await c.poll(timeout_ms=1000):
                    first.setdefault(r.partition, r.offset)
        assert first == {0: 15, 1: 0}  # committed offset, else auto_offset_reset


async def test_auto_commit_commits_what_was_consumed_and_close_commits_the_rest(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 1, flush="none")
    await _produce(b.address, "t", 1, 30)
    async with AsyncConsumer(
        b.address, group_id="g", auto_commit_interval_ms=50, **FAST_MEMBER
    ) as c:
        c.subscribe(["t"])
        got = []
        with trio.fail_after(10):
            while len(got) < 10:
                got += await c.poll(timeout_ms=500, max_records=10 - len(got))
            # polls trigger the auto commit; one may have committed the
            # starting position (0) before the first records arrived
            while (mark := await c.committed(("t", 0))) is None or mark.offset < 10:
                await c.poll(timeout_ms=20, max_records=0)
        assert mark.offset == 10  # what was consumed, no further
        got += await c.poll(timeout_ms=1000, max_records=5)
    async with AsyncConsumer(b.address, group_id="g", **FAST_MEMBER) as c:
        c.assign([("t", 0)])
        assert (await c.committed(("t", 0))).offset == 15  # committed on close


async def test_async_commits_land_in_order(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 1, flush="none")
    await _produce(b.address, "t", 1, 100)
    async with AsyncConsumer(b.address, group_id="g", enable_auto_commit=False, **FAST_MEMBER) as c:
        c.assign([("t", 0)])
        handles = [c.commit_async({("t", 0): i}) for i in range(1, 60)]
        for h in handles:
            await h.wait()
        assert all(h.done() and h.exception() is None for h in handles)
        assert (await c.committed(("t", 0))).offset == 59


async def test_subscribe_and_commit_need_a_group_and_a_running_consumer(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    async with AsyncConsumer(b.address) as c:
        with pytest.raises(ValueError, match="group_id"):
            c.subscribe(["t"])
        with pytest.raises(ValueError, match="group_id"):
            await c.commit()
    async with AsyncConsumer(b.address, group_id="g") as c:
        c.assign([("t", 0)])
        with pytest.raises(ValueError, match="assign"):
            c.subscribe(["t"])
    with pytest.raises(ClientClosedError):
        c.subscribe(["t"])
    with pytest.raises(ValueError, match="group_instance_id"):
        AsyncConsumer(b.address, group_instance_id="x")
