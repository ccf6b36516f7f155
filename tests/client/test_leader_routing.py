"""The native clients find partition leaders and follow them when they move.

Two stand-in brokers on real loopback sockets speak the native protocol
(the client's own sans-I/O server codec) and answer from one shared,
scripted cluster state: which node leads each partition, and the records
each holds. A broker asked about a partition it does not lead answers
NOT_LEADER_OR_FOLLOWER, as a real one does once replication runs; every
request each one receives is recorded, so the tests see where the clients
sent what.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from tailrace.client import AsyncAdmin, AsyncConsumer, AsyncProducer, TopicPartition
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import (
    NEED_DATA,
    ApiVersionsResponse,
    BrokerInfo,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopicResult,
    InitProducerIdResponse,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopicResult,
    MetadataRequest,
    MetadataResponse,
    PartitionMetadata,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopicResult,
    Request,
    ServerConnection,
    TopicMetadata,
    encode_response,
)

TOPIC = "orders"


@dataclass
class Cluster:
    """What the stand-ins answer from: addresses, leaders, logs."""

    addresses: dict[int, str] = field(default_factory=dict)
    #: partition -> (leader node, leader epoch)
    leaders: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: partition -> stored batches (base offset patched in)
    logs: dict[int, list[bytes]] = field(default_factory=dict)
    #: node -> (api name, partitions) of every request it received
    seen: dict[int, list[tuple[str, tuple[int, ...]]]] = field(default_factory=dict)
    #: node -> the produce batches it received: (partition, bytes as sent)
    produced: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    #: nodes that read requests and answer none (a paused process: its
    #: kernel still accepts connections)
    silent: set[int] = field(default_factory=set)
    #: the nodes metadata names (None: every one); a cluster broker names
    #: only the registered ones, which may be itself alone for a while
    named: set[int] | None = None

    def metadata(self, body: MetadataRequest) -> MetadataResponse:
        brokers = [
            BrokerInfo(node_id=n, host=a.rpartition(":")[0], port=int(a.rpartition(":")[2]))
            for n, a in sorted(self.addresses.items())
            if self.named is None or n in self.named
        ]
        parts = [
            PartitionMetadata(
                partition=p,
                leader_id=leader,
                leader_epoch=epoch,
                replicas=sorted(self.addresses),
                isr=sorted(self.addresses),
            )
            for p, (leader, epoch) in sorted(self.leaders.items())
        ]
        return MetadataResponse(
            cluster_id="standin",
            controller_id=min(self.addresses),
            brokers=brokers,
            topics=[TopicMetadata(name=TOPIC, partitions=parts)],
        )

    def answer(self, node: int, request: Request) -> Any:
        body = request.body
        if isinstance(body, MetadataRequest):
            self.seen[node].append(("metadata", ()))
            return self.metadata(body)
        if isinstance(body, ProduceRequest):
            return self.produce(node, body)
        if isinstance(body, FetchRequest):
            return self.fetch(node, body)
        if isinstance(body, ListOffsetsRequest):
            return self.list_offsets(node, body)
        if type(body).__name__ == "InitProducerIdRequest":
            self.seen[node].append(("init_producer_id", ()))
            return InitProducerIdResponse(producer_id=42, producer_epoch=3)
        assert type(body).__name__ == "ApiVersionsRequest", body
        return ApiVersionsResponse()

    def _leads(self, node: int, partition: int) -> bool:
        return self.leaders[partition][0] == node

    def produce(self, node: int, body: ProduceRequest) -> ProduceResponse:
        topics = []
        asked: list[int] = []
        for t in body.topics:
            results = []
            for p in t.partitions:
                asked.append(p.partition)
                data = bytes(p.records)
                self.produced[node].append((p.partition, data))
                if not self._leads(node, p.partition):
                    results.append(
                        ProducePartitionResult(
                            partition=p.partition,
                            error_code=int(ErrorCode.NOT_LEADER_OR_FOLLOWER),
                            error_message=f"node {node} does not lead it",
                        )
                    )
                    continue
                log = self.logs.setdefault(p.partition, [])
                base = len(log)  # one record per batch in these tests
                log.append(struct.pack(">q", base) + data[8:])
                results.append(ProducePartitionResult(partition=p.partition, base_offset=base))
            topics.append(ProduceTopicResult(name=t.name, partitions=results))
        self.seen[node].append(("produce", tuple(sorted(asked))))
        return ProduceResponse(topics=topics)

    def fetch(self, node: int, body: FetchRequest) -> FetchResponse:
        topics = []
        asked: list[int] = []
        for t in body.topics:
            results = []
            for p in t.partitions:
                asked.append(p.partition)
                if not self._leads(node, p.partition):
                    results.append(
                        FetchPartitionResult(
                            partition=p.partition, error_code=int(ErrorCode.NOT_LEADER_OR_FOLLOWER)
                        )
                    )
                    continue
                log = self.logs.get(p.partition, [])
                results.append(
                    FetchPartitionResult(
                        partition=p.partition,
                        high_watermark=len(log),
                        log_start_offset=0,
                        records=b"".join(log[p.fetch_offset :]),
                    )
                )
            topics.append(FetchTopicResult(name=t.name, partitions=results))
        self.seen[node].append(("fetch", tuple(sorted(asked))))
        return FetchResponse(topics=topics)

    def list_offsets(self, node: int, body: ListOffsetsRequest) -> ListOffsetsResponse:
        topics = []
        asked: list[int] = []
        for t in body.topics:
            results = []
            for p in t.partitions:
                asked.append(p.partition)
                if not self._leads(node, p.partition):
                    results.append(
                        ListOffsetsPartitionResult(
                            partition=p.partition, error_code=int(ErrorCode.NOT_LEADER_OR_FOLLOWER)
                        )
                    )
                    continue
                end = len(self.logs.get(p.partition, []))
                results.append(
                    ListOffsetsPartitionResult(
                        partition=p.partition, offset=0 if p.timestamp == -2 else end
                    )
                )
            topics.append(ListOffsetsTopicResult(name=t.name, partitions=results))
        self.seen[node].append(("list_offsets", tuple(sorted(asked))))
        return ListOffsetsResponse(topics=topics)

    def requests(self, node: int, api: str) -> list[tuple[int, ...]]:
        return [parts for name, parts in self.seen[node] if name == api]


async def _serve_one(cluster: Cluster, node: int, stream: trio.SocketStream) -> None:
    codec = ServerConnection()
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            codec.receive_data(data)
            if not data:
                return
            while (event := codec.next_event()) is not NEED_DATA:
                if not isinstance(event, Request):
                    return
                if node in cluster.silent:
                    continue
                body = event.body
                if isinstance(body, FetchRequest) and not any(
                    len(cluster.logs.get(p.partition, ())) > p.fetch_offset
                    for t in body.topics
                    for p in t.partitions
                ):
                    # a long poll with nothing to give: hold it a little
                    await trio.sleep(min(body.max_wait_ms, 50) / 1000)
                prefix, parts = encode_response(
                    event.api_key,
                    event.api_version,
                    event.correlation_id,
                    cluster.answer(node, event),
                )
                await stream.send_all(prefix + b"".join(bytes(p) for p in parts))


@asynccontextmanager
async def stand_ins(nodes: list[int]) -> AsyncIterator[Cluster]:
    cluster = Cluster()
    async with trio.open_nursery() as nursery:
        for node in nodes:
            cluster.seen[node] = []
            cluster.produced[node] = []
            listeners = await nursery.start(
                trio.serve_tcp,
                lambda s, node=node: _serve_one(cluster, node, s),
                0,
            )
            sockname = listeners[0].socket.getsockname()
            cluster.addresses[node] = f"127.0.0.1:{sockname[1]}"
        yield cluster
        nursery.cancel_scope.cancel()


def dead_address() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _header(batch: bytes) -> tuple[int, int, int]:
    """(producer id, producer epoch, base sequence) of a batch as sent."""
    return struct.unpack_from(">qhi", batch, 43)


async def test_a_producer_sends_each_partition_to_its_leader_and_follows_a_move() -> None:
    async with stand_ins([1, 2]) as cluster:
        cluster.leaders = {0: (1, 0), 1: (2, 0)}
        # the first bootstrap address is dead: the second one answers
        bootstrap = f"{dead_address()},{cluster.addresses[1]}"
        async with AsyncProducer(bootstrap, linger_ms=0, retry_backoff_ms=10) as producer:
            first = [await producer.send(TOPIC, b"a", partition=p) for p in (0, 1)]
            assert [(await f).offset for f in first] == [0, 0]
            assert {p for parts in cluster.requests(1, "produce") for p in parts} == {0}
            assert {p for parts in cluster.requests(2, "produce") for p in parts} == {1}

            # partition 0's leadership moves to node 2 (one epoch up): node 1
            # now refuses it; the producer learns the new leader and sends
            # the same batch there, sequence numbers kept
            cluster.leaders[0] = (2, 1)
            moved = await producer.send(TOPIC, b"b", partition=0)
            assert (await moved).offset == 1
        refused = [data for p, data in cluster.produced[1] if p == 0][-1]
        stored = [data for p, data in cluster.produced[2] if p == 0]
        assert stored == [refused]  # byte for byte: the retry dedups on the new leader
        assert _header(refused) == (42, 3, 1)  # the second record of partition 0
        # metadata (asked again after the refusal) and the producer id come
        # from the bootstrap broker
        assert len(cluster.requests(1, "metadata")) >= 2
        assert cluster.requests(1, "init_producer_id") == [()]
        assert not cluster.requests(2, "metadata")


@pytest.mark.parametrize("named_alone", [False, True], ids=["both-named", "only-it-named"])
async def test_a_producer_leaves_a_silent_bootstrap_broker_for_the_next_one(
    named_alone: bool,
) -> None:
    """A paused leader that is also the first bootstrap broker: its requests
    time out, and so would every metadata request sent to it (reconnecting
    finds it again, its kernel still accepts). The producer must ask the
    next bootstrap broker, learn the new leader and deliver there.

    ``only-it-named``: metadata named that broker alone (in a cluster only the
    registered brokers are named: the others were restarting), so the
    producer did not route by leader and sent everything on the bootstrap
    connection. Seen in a long fault run: acknowledgements stalled for the
    whole pause, new leaders in place within two seconds."""
    async with stand_ins([1, 2]) as cluster:
        cluster.leaders = {0: (1, 0)}
        cluster.named = {1} if named_alone else None
        bootstrap = f"{cluster.addresses[1]},{cluster.addresses[2]}"
        async with AsyncProducer(
            bootstrap,
            linger_ms=0,
            retry_backoff_ms=10,
            request_timeout_ms=300,
            delivery_timeout_ms=10_000,  # the record fails, not the test hangs
        ) as producer:
            assert (await (await producer.send(TOPIC, b"a", partition=0))).offset == 0
            cluster.silent.add(1)
            cluster.named = None
            cluster.leaders[0] = (2, 1)
            with trio.fail_after(30):  # bounds a hung test only
                moved = await producer.send(TOPIC, b"b", partition=0)
                assert (await moved).offset == 1
        assert cluster.requests(2, "metadata")  # asked the next bootstrap broker
        assert [p for p, _data in cluster.produced[2]] == [0]


async def test_leaving_a_silent_bootstrap_broker_with_two_requests_unanswered() -> None:
    """As above (metadata named the silent broker alone), with two requests
    unanswered on its connection: handling the first's timeout drops the
    connection, which fails the second at once, inside that handling. The
    second is handled there too (not waited for: the sender's lock is
    already held by that handling on the same thread) and both records go
    to the new leaders."""
    async with stand_ins([1, 2]) as cluster:
        cluster.leaders = {0: (1, 0), 1: (1, 0)}
        cluster.named = {1}
        bootstrap = f"{cluster.addresses[1]},{cluster.addresses[2]}"
        async with AsyncProducer(
            bootstrap,
            linger_ms=0,
            retry_backoff_ms=10,
            request_timeout_ms=300,
            delivery_timeout_ms=10_000,  # the record fails, not the test hangs
        ) as producer:
            assert (await (await producer.send(TOPIC, b"a", partition=0))).offset == 0
            cluster.silent.add(1)
            cluster.named = None
            cluster.leaders = {0: (2, 1), 1: (2, 1)}
            with trio.fail_after(30):  # bounds a hung test only
                first = await producer.send(TOPIC, b"b", partition=0)
                await trio.sleep(0.05)  # its request is on the wire, unanswered
                second = await producer.send(TOPIC, b"c", partition=1)
                assert (await first).offset == 1
                assert (await second).offset == 0
        assert sorted(p for p, _data in cluster.produced[2]) == [0, 1]


async def test_a_consumer_fetches_each_partition_from_its_leader_and_follows_a_move() -> None:
    async with stand_ins([1, 2]) as cluster:
        cluster.leaders = {0: (1, 0), 1: (2, 0)}
        async with AsyncProducer(cluster.addresses[2], linger_ms=0) as producer:
            for value in (b"p0-a", b"p1-a"):
                await producer.send(TOPIC, value, partition=int(value[1:2]))
            await producer.flush()
        bootstrap = f"{cluster.addresses[2]},{cluster.addresses[1]}"
        async with AsyncConsumer(bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
            got: list[bytes] = []
            with trio.fail_after(30):  # bounds a hung test only
                while len(got) < 2:
                    got += [r.value for r in await consumer.poll(100)]
            assert sorted(got) == [b"p0-a", b"p1-a"]
            assert {p for parts in cluster.requests(1, "fetch") for p in parts} == {0}
            assert {p for parts in cluster.requests(2, "fetch") for p in parts} == {1}
            assert {p for parts in cluster.requests(1, "list_offsets") for p in parts} == {0}

            # node 2 takes over partition 0 (its copy has the same records,
            # plus a new one): node 1 answers NOT_LEADER_OR_FOLLOWER, the
            # consumer asks for metadata and goes on from node 2
            cluster.leaders[0] = (2, 1)
            cluster.logs[0].append(struct.pack(">q", 1) + cluster.logs[0][0][8:])
            with trio.fail_after(30):
                while len(got) < 3:
                    got += [r.value for r in await consumer.poll(100)]
            assert got[2:] == [b"p0-a"]  # offset 1, read once, from node 2
            assert any(0 in parts for parts in cluster.requests(2, "fetch"))
            assert await consumer.position(TopicPartition(TOPIC, 0)) == 2


async def test_admin_asks_each_leader_for_offsets_and_shows_the_placement() -> None:
    async with stand_ins([1, 2]) as cluster:
        cluster.leaders = {0: (1, 4), 1: (2, 0)}
        cluster.logs = {0: [b""] * 3, 1: [b""] * 5}
        async with AsyncAdmin(cluster.addresses[1]) as admin:
            offsets = await admin.list_offsets({(TOPIC, 0): "latest", (TOPIC, 1): "latest"})
            assert offsets == {(TOPIC, 0): (3, -1), (TOPIC, 1): (5, -1)}
            parts = await admin.describe_topic_partitions(TOPIC)
        assert cluster.requests(1, "list_offsets") == [(0,)]
        assert cluster.requests(2, "list_offsets") == [(1,)]
        assert [(p.leader, p.leader_epoch, p.replicas, p.isr) for p in parts] == [
            (1, 4, (1, 2), (1, 2)),
            (2, 0, (1, 2), (1, 2)),
        ]


async def test_a_producer_leaves_a_dead_leader_without_sitting_out_its_back_off() -> None:
    """kill -9 of a leader: connecting to it is refused, again and again,
    and the reconnect back-off grows to about a second. Once metadata names
    the new leader the producer sends there. It used to sleep out the dead
    leader's back-off first (up to 1.2 s of every failover), so the answer
    came only after that back-off ended; now it comes before."""
    async with stand_ins([2]) as cluster:
        dead = dead_address()
        cluster.addresses[1] = dead  # registered, but its process is gone
        cluster.leaders = {0: (1, 0)}
        async with AsyncProducer(cluster.addresses[2], linger_ms=0, retry_backoff_ms=10) as p:
            handle = await p.send(TOPIC, b"a", partition=0)
            pool = p._core.client
            key = ("main", dead)
            # 50, 100, ... 800 ms, then 1 s (the pool has no event to wait on)
            with trio.fail_after(30):  # bounds a hung test only
                while pool._failures.get(key, 0) < 6:  # noqa: ASYNC110
                    await trio.sleep(0.02)
            back_off_ends = pool._next_attempt[key]
            cluster.leaders[0] = (2, 1)  # the controller's election
            with trio.fail_after(30):
                assert (await handle).offset == 0
            assert trio.current_time() < back_off_ends
        assert [part for part, _data in cluster.produced[2]] == [0]
