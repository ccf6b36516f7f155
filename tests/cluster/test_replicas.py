"""The replica manager against a real etcd: three ClusterMembers (the real
controller places topics and elects leaders), each with its own LogManager
in tmp_path and a ReplicaManager, in one trio run. The follower side's
fetching is the ReplicaFetcher's (tests/cluster elsewhere); here a stand-in
fetcher records what it is handed, and followers' positions reach the
leader through ``follower_fetch`` as the replica fetch handler calls it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from harness import broker_config

from tailrace.broker.cluster.member import ClusterMember, ClusterSettings
from tailrace.broker.cluster.replicas import ReplicaManager, ReplicaSettings
from tailrace.broker.cluster.state import PartitionState
from tailrace.broker.etcd import Compare, Op
from tailrace.broker.handlers.context import BrokerContext
from tailrace.broker.log.manager import LogManager
from tailrace.broker.producer_ids import ProducerIdAllocator
from tailrace.broker.replication import FollowerState
from tailrace.broker.server.connection import ConnectionInfo
from tailrace.broker.services import fetch as fetch_service
from tailrace.broker.services import offsets as offsets_service
from tailrace.broker.services import produce as produce_service
from tailrace.client.errors import (
    FencedLeaderEpochError,
    NotEnoughReplicasError,
    NotLeaderOrFollowerError,
    UnknownLeaderEpochError,
    UnknownTopicOrPartitionError,
)
from tailrace.client.records.native import build_batch

TOPIC = "orders"
INFO = ConnectionInfo("test", "127.0.0.1:1", zero_copy=False)


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for ``predicate``; the bound only stops a hung test."""
    with trio.fail_after(60):
        while not predicate():  # noqa: ASYNC110 - the state belongs to other tasks
            await trio.sleep(0.01)


def batch(n: int = 3) -> bytes:
    return build_batch([(1_700_000_000_000 + i, None, b"v%d" % i, None) for i in range(n)])


class StandInFetcher:
    """What a ReplicaFetcher is handed (the real one fetches)."""

    def __init__(self, leader: int, address: str) -> None:
        self.leader = leader
        self.address = address
        self.partitions: dict[tuple[str, int], tuple[int, Any, FollowerState]] = {}
        self.history: list[tuple[str, tuple[str, int], int]] = []

    def add_partition(
        self, topic: str, partition: int, leader_epoch: int, log: Any, state: FollowerState
    ) -> None:
        self.partitions[(topic, partition)] = (leader_epoch, log, state)
        self.history.append(("add", (topic, partition), leader_epoch))

    async def remove_partition(self, topic: str, partition: int) -> None:
        await trio.lowlevel.checkpoint()
        epoch = self.partitions.pop((topic, partition))[0]
        self.history.append(("remove", (topic, partition), epoch))


@dataclass
class Node:
    member: ClusterMember
    logs: LogManager
    replicas: ReplicaManager
    ctx: BrokerContext
    scope: trio.CancelScope
    fetchers: dict[int, StandInFetcher] = field(default_factory=dict)

    @property
    def node_id(self) -> int:
        return self.member.node_id


class Cluster:
    def __init__(self, etcd: Any, tmp_path: Path, nursery: trio.Nursery, lag_ms: int) -> None:
        self.etcd = etcd
        self.tmp_path = tmp_path
        self.nursery = nursery
        self.lag_ms = lag_ms
        self.nodes: dict[int, Node] = {}

    async def start(self, node_id: int) -> Node:
        settings = ClusterSettings(node_id, tuple(self.etcd.endpoints), session_timeout_ms=1000)
        member = ClusterMember(settings, address=f"127.0.0.1:{7420 + node_id}")
        data = self.tmp_path / f"b{node_id}"
        config = broker_config(data)
        logs = LogManager.open(str(data), config.topic_defaults)
        fetchers: dict[int, StandInFetcher] = {}

        async def make(_nursery: trio.Nursery, leader: int, address: str) -> StandInFetcher:
            await trio.lowlevel.checkpoint()
            fetchers[leader] = StandInFetcher(leader, address)
            return fetchers[leader]

        replicas = ReplicaManager(
            member, logs, make, ReplicaSettings(self.lag_ms, isr_check_interval_ms=20)
        )
        ctx = BrokerContext(config, logs, ProducerIdAllocator(str(data)), [], "test")
        ctx.cluster, ctx.replicas, ctx.node_id = member, replicas, node_id
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            with scope:
                try:
                    async with trio.open_nursery() as inner:
                        await inner.start(member.run)
                        await inner.start(replicas.run)
                        task_status.started()
                finally:
                    with trio.CancelScope(shield=True):
                        await logs.aclose()

        await self.nursery.start(run)
        node = self.nodes[node_id] = Node(member, logs, replicas, ctx, scope, fetchers)
        await member.registered.wait()
        return node

    def roles(self, topic: str = TOPIC, p: int = 0) -> dict[int, str]:
        out = {}
        for n, node in self.nodes.items():
            r = node.replicas.replicas.get((topic, p))
            out[n] = r.role if r is not None else "-"
        return out

    def state(self, topic: str = TOPIC, p: int = 0) -> tuple[PartitionState, int] | None:
        for node in self.nodes.values():
            view = node.member.snapshot()
            if view is not None and (topic, p) in view.partitions:
                return view.partitions[(topic, p)]
        return None

    def leader(self, topic: str = TOPIC, p: int = 0) -> Node:
        found = self.state(topic, p)
        assert found is not None
        return self.nodes[found[0].leader]


@pytest.fixture
async def cluster(etcd: Any, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(etcd, tmp_path, nursery, lag_ms=300)
        for n in (1, 2, 3):
            await c.start(n)
        yield c
        nursery.cancel_scope.cancel()


async def create(c: Cluster, rf: int = 3, configs: dict[str, str] | None = None) -> Node:
    def sees_all() -> bool:
        view = c.nodes[1].member.snapshot()
        return view is not None and len(view.brokers) == len(c.nodes)

    await until(sees_all, "every broker registered")
    await c.nodes[1].member.create_topic(TOPIC, 1, rf, configs or {})
    await until(lambda: c.state() is not None, "the controller places the topic")
    state, _ = c.state()  # type: ignore[misc]
    await until(
        lambda: all(
            c.roles()[n] == ("leader" if n == state.leader else "follower") for n in state.replicas
        ),
        "every replica takes its role",
    )
    return c.leader()


def sees_partition(node: Node) -> bool:
    view = node.member.snapshot()
    return view is not None and (TOPIC, 0) in view.partitions


async def produce(node: Node, acks: int, data: bytes) -> produce_service.WriteOutcome:
    (out,) = produce_service.append(
        node.ctx, INFO, [produce_service.Write(TOPIC, 0, data)], acks=acks
    )
    if produce_service.needs_wait([out]):
        await produce_service.wait_durable([out], 30)
    return out


def fetch_at(leader: Node, follower: int, offset: int, epoch: int) -> int:
    _log, hw, _leo = leader.replicas.follower_fetch(TOPIC, 0, follower, offset, epoch)
    return hw


async def test_roles_follow_the_partition_state_and_logs_exist_on_every_replica(
    cluster: Cluster,
) -> None:
    leader = await create(cluster)
    state, _ = cluster.state()  # type: ignore[misc]
    assert state.leader_epoch == 0
    for n in state.replicas:
        node = cluster.nodes[n]
        assert TOPIC in node.logs.topics()
        if n == leader.node_id:
            assert node.logs.get(TOPIC, 0).epoch_cache.latest_epoch == 0
            continue
        fetcher = node.fetchers[leader.node_id]
        assert fetcher.address == leader.member.info.address
        epoch, log, follower = fetcher.partitions[(TOPIC, 0)]
        assert epoch == 0
        assert log is node.logs.get(TOPIC, 0)
        assert follower.needs_truncation  # a new epoch: truncation first (KAFKA-7164)


async def test_only_the_leader_takes_writes_and_serves_consumers(cluster: Cluster) -> None:
    leader = await create(cluster)
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    for acks in (1, -1):
        out = await produce(follower, acks, batch())
        assert isinstance(out.error, NotLeaderOrFollowerError)
    assert follower.logs.get(TOPIC, 0).log_end_offset == 0
    (read,) = fetch_service.plan(follower.ctx, INFO, [fetch_service.Read(TOPIC, 0, 0, 1000)])
    assert isinstance(read.error, NotLeaderOrFollowerError)
    (q,) = offsets_service.list_offsets(
        follower.ctx, INFO, [offsets_service.OffsetQuery(TOPIC, 0, offsets_service.LATEST)]
    )
    assert isinstance(q.error, NotLeaderOrFollowerError)
    with pytest.raises(NotLeaderOrFollowerError):
        follower.replicas.follower_fetch(TOPIC, 0, leader.node_id, 0, 0)


async def test_acks_all_waits_for_every_in_sync_replica(cluster: Cluster) -> None:
    leader = await create(cluster)
    f1, f2 = (n for n in cluster.nodes if n != leader.node_id)
    plog = leader.logs.get(TOPIC, 0)
    done = trio.Event()
    result: list[produce_service.WriteOutcome] = []

    async def send() -> None:
        result.append(await produce(leader, -1, batch(3)))
        done.set()

    cluster.nursery.start_soon(send)
    await until(lambda: plog.log_end_offset == 3, "the leader appends")
    assert plog.high_watermark == 0
    # acks=1 answers after the local append (and fsync), not the followers
    one = await produce(leader, 1, batch(2))
    assert one.error is None
    assert one.base_offset == 3
    assert fetch_at(leader, f1, 5, 0) == 0  # one follower is not enough
    await trio.lowlevel.checkpoint()
    assert not done.is_set()
    assert fetch_at(leader, f2, 3, 0) == 3  # both reached the first batch
    await until(done.is_set, "acks=all answers")
    assert result[0].error is None
    assert result[0].base_offset == 0
    assert plog.high_watermark == 3
    # consumers read below the watermark only
    (read,) = fetch_service.plan(leader.ctx, INFO, [fetch_service.Read(TOPIC, 0, 0, 1 << 20)])
    assert read.error is None
    assert read.high_watermark == 3
    (q,) = offsets_service.list_offsets(
        leader.ctx, INFO, [offsets_service.OffsetQuery(TOPIC, 0, offsets_service.LATEST)]
    )
    assert q.offset == 3


async def test_follower_requests_are_fenced_by_leader_epoch(cluster: Cluster) -> None:
    leader = await create(cluster)
    f1 = next(n for n in cluster.nodes if n != leader.node_id)
    with pytest.raises(UnknownLeaderEpochError):
        fetch_at(leader, f1, 0, 1)
    answer = leader.replicas.offset_for_epoch(TOPIC, 0, 0, 0)
    assert (answer.epoch, answer.end_offset) == (0, 0)
    with pytest.raises(UnknownLeaderEpochError):
        leader.replicas.offset_for_epoch(TOPIC, 0, 0, 5)
    # move the leadership (as a preferred-leader election would): epoch 1
    state, version = cluster.state()  # type: ignore[misc]
    new_leader = cluster.nodes[f1]
    moved = PartitionState(
        state.replicas, f1, 1, state.isr, state.controller_epoch, new_leader.member.broker_epoch
    )
    client = leader.member.client
    assert client is not None
    key = leader.member.keys.partition(TOPIC, 0)
    result = await client.txn([Compare.mod_revision(key, version)], [Op.put(key, moved.value())])
    assert result.succeeded
    await until(lambda: cluster.roles()[f1] == "leader", "the new leader leads")
    with pytest.raises(FencedLeaderEpochError):
        fetch_at(new_leader, leader.node_id, 0, 0)
    await until(lambda: cluster.roles()[leader.node_id] == "follower", "the old leader follows")
    assert new_leader.logs.get(TOPIC, 0).epoch_cache.latest_epoch == 1


async def test_leaving_the_leadership_fails_waiting_acks_all(cluster: Cluster) -> None:
    leader = await create(cluster)
    f1 = next(n for n in cluster.nodes if n != leader.node_id)
    outcomes: list[produce_service.WriteOutcome] = []
    done = trio.Event()

    async def send() -> None:
        outcomes.append(await produce(leader, -1, batch()))
        done.set()

    cluster.nursery.start_soon(send)
    await until(lambda: leader.logs.get(TOPIC, 0).log_end_offset == 3, "appended")
    state, version = cluster.state()  # type: ignore[misc]
    moved = PartitionState(
        state.replicas,
        f1,
        1,
        state.isr,
        state.controller_epoch,
        cluster.nodes[f1].member.broker_epoch,
    )
    client = leader.member.client
    assert client is not None
    key = leader.member.keys.partition(TOPIC, 0)
    assert (
        await client.txn([Compare.mod_revision(key, version)], [Op.put(key, moved.value())])
    ).succeeded
    await until(done.is_set, "the waiting produce is answered")
    assert isinstance(outcomes[0].error, NotLeaderOrFollowerError)
    assert "may or may not be committed" in outcomes[0].error.message
    out = await produce(leader, 1, batch())
    assert isinstance(out.error, NotLeaderOrFollowerError)
    # the old leader now follows the new one, from a truncation
    await until(lambda: cluster.roles()[leader.node_id] == "follower", "follows")
    epoch, _log, follower = leader.fetchers[f1].partitions[(TOPIC, 0)]
    assert epoch == 1
    assert follower.needs_truncation


async def test_isr_shrinks_and_grows_by_cas_in_etcd(cluster: Cluster) -> None:
    leader = await create(cluster)
    f1, f2 = (n for n in cluster.nodes if n != leader.node_id)
    assert (await produce(leader, 1, batch())).error is None  # LEO 3

    def isr() -> tuple[int, ...]:
        found = cluster.state()
        assert found is not None
        return found[0].isr

    # f1 keeps up, f2 never fetches: after replica_lag_time_max_ms f2 leaves
    async def keep_up() -> None:
        while True:
            fetch_at(leader, f1, leader.logs.get(TOPIC, 0).log_end_offset, 0)
            await trio.sleep(0.02)

    async with trio.open_nursery() as n:
        n.start_soon(keep_up)
        await until(lambda: f2 not in isr(), "the lagging follower leaves the ISR")
        assert set(isr()) == {leader.node_id, f1}
        # the shrink counted: the watermark moved without f2
        await until(lambda: leader.logs.get(TOPIC, 0).high_watermark == 3, "HW without f2")
        n.cancel_scope.cancel()
    # f1 stops fetching and falls behind a new batch: with
    # min_insync_replicas 2 (RF 3) acks=all is then refused
    assert (await produce(leader, 1, batch())).error is None  # LEO 6
    await until(lambda: isr() == (leader.node_id,), "the ISR is the leader alone")
    # the leader counts the shrink once its CAS was answered, a moment after
    # etcd has it: wait for that, or the write may pass the check and then
    # find the ISR too small (NOT_ENOUGH_REPLICAS_AFTER_APPEND)
    state = leader.replicas.replicas[(TOPIC, 0)].leader
    await until(lambda: state is not None and set(state.isr) == {leader.node_id}, "counted")
    out = await produce(leader, -1, batch())
    assert isinstance(out.error, NotEnoughReplicasError)
    assert leader.logs.get(TOPIC, 0).log_end_offset == 6  # nothing appended
    # f2 catches up to the log end: it rejoins (it reached the watermark)
    fetch_at(leader, f2, 6, 0)
    await until(lambda: f2 in isr(), "the caught-up follower rejoins")
    raw = await leader.member.client.get(leader.member.keys.partition(TOPIC, 0))  # type: ignore[union-attr]
    assert raw is not None
    stored = json.loads(raw.value)
    assert stored["leader_epoch"] == 0
    assert stored["leader"] == leader.node_id
    assert (await produce(leader, 1, batch())).error is None


async def test_a_replica_whose_local_topic_is_still_being_created_is_taken_up_later(
    cluster: Cluster,
) -> None:
    """The broker that handled CreateTopics creates its local copy right
    after publishing the topic; when the controller's placement reaches its
    replica manager first, the manager's own create finds the topic pending
    (TOPIC_ALREADY_EXISTS). It must try again, not wait for the next change
    of the cluster metadata (found by the cluster 'unclean' scenario: the
    leader never took up its partition and nothing was acknowledged)."""
    # broker 2 is the partition's preferred leader (assign_replicas): while
    # it has not taken up its replica nobody changes the partition's state
    node = cluster.nodes[2]

    def sees_all() -> bool:  # its view must count three live brokers for RF 3
        view = node.member.snapshot()
        return view is not None and len(view.brokers) == len(cluster.nodes)

    await until(sees_all, "every broker registered, as broker 2 sees it")
    node.logs._pending.add(TOPIC)  # a CreateTopics' local create under way
    try:
        await node.member.create_topic(TOPIC, 1, 3, {})
        await until(
            lambda: node.replicas.view is not None and (TOPIC, 0) in node.replicas.view.partitions,
            "broker 2's replica manager applied the placement (and failed)",
        )
        assert cluster.roles()[2] == "-"
        assert cluster.state()[0].leader == 2  # type: ignore[index]
    finally:
        node.logs._pending.discard(TOPIC)
    await node.logs.create_topic(TOPIC, 1)  # the CreateTopics' create completes
    state, _ = cluster.state()  # type: ignore[misc]
    await until(
        lambda: all(
            cluster.roles()[n] == ("leader" if n == state.leader else "follower")
            for n in state.replicas
        ),
        "every replica takes its role, broker 2's without another metadata change",
    )


async def test_a_single_replica_acks_all_at_once(cluster: Cluster) -> None:
    leader = await create(cluster, rf=1)
    # brokers that hold no replica send clients to the leader; a topic the
    # cluster does not have is unknown
    for other in (n for n in cluster.nodes.values() if n is not leader):
        await until(lambda o=other: sees_partition(o), "the broker sees the partition")
        assert TOPIC not in other.logs.topics()
        assert isinstance((await produce(other, -1, batch())).error, NotLeaderOrFollowerError)
    (unknown,) = produce_service.append(
        leader.ctx, INFO, [produce_service.Write("nope", 0, batch())], acks=-1
    )
    assert isinstance(unknown.error, UnknownTopicOrPartitionError)
    out = await produce(leader, -1, batch())
    assert out.error is None
    assert out.base_offset == 0
    plog = leader.logs.get(TOPIC, 0)
    assert plog.high_watermark == 3
    # acks=0 (flush sync): nothing waits, the flush loop's fsync later moves
    # the watermark (through the log's end watcher)
    (zero,) = produce_service.append(
        leader.ctx, INFO, [produce_service.Write(TOPIC, 0, batch())], acks=0
    )
    assert zero.error is None
    assert plog.log_end_offset == 6
    assert plog.high_watermark == 3
    await plog.flush()
    assert plog.high_watermark == 6
