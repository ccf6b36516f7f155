"""Replication between real ``tailrace broker`` processes over a real etcd:
an RF=3 topic, acks=all writes to its leader, kill -9 of the leader, and
every acknowledged record read back from the new leader."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from cluster_harness import BrokerCluster

from tailrace.broker.cluster.state import NO_LEADER, PartitionState
from tailrace.broker.cluster.status import read_view
from tailrace.client import Admin
from tailrace.client.protocol import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from tailrace.client.records import LENGTH_PREFIX, iter_records, validate_batch
from tailrace.client.records.native import build_batch
from tailrace.client.transport.connection import BrokerConnection

pytestmark = pytest.mark.slow

TOPIC = "orders"


def partition_state(cluster: BrokerCluster) -> PartitionState | None:
    view = trio.run(read_view, cluster.etcd.endpoints, "/tailrace")
    found = view.partitions.get((TOPIC, 0))
    return found[0] if found is not None else None


def wait_state(cluster: BrokerCluster, ok: Any, what: str) -> PartitionState:
    for _ in range(600):  # the bound only stops a hung test
        state = partition_state(cluster)
        if state is not None and ok(state):
            return state
        trio.run(trio.sleep, 0.1)
    raise AssertionError(f"never reached: {what}; last state {partition_state(cluster)}")


async def produce_acks_all(address: str, values: list[bytes]) -> list[tuple[int, bytes]]:
    """One acks=all produce per value; (offset, value) of each acknowledged one."""
    acked = []
    async with trio.open_nursery() as nursery:
        conn = await BrokerConnection.connect(nursery, address)
        for i, value in enumerate(values):
            data = build_batch([(1_700_000_000_000 + i, None, value, None)])
            response = await conn.request(
                ProduceRequest(
                    acks=-1,
                    timeout_ms=20_000,
                    topics=[
                        ProduceTopic(
                            name=TOPIC, partitions=[ProducePartition(partition=0, records=data)]
                        )
                    ],
                )
            )
            result = response.topics[0].partitions[0]
            assert result.error_code == 0, (result.error_code, result.error_message)
            acked.append((result.base_offset, value))
        nursery.cancel_scope.cancel()
    return acked


def decode(buf: bytes) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record in whole batches."""
    out = []
    pos = 0
    while pos + 12 <= len(buf):
        _, length = LENGTH_PREFIX.unpack_from(buf, pos)
        end = pos + 12 + length
        if end > len(buf):
            break
        h = validate_batch(buf, pos, max_batch_bytes=1 << 24, end=end)
        out.extend((offset, value) for offset, _ts, _k, value, _h in iter_records(buf, h, pos))
        pos = end
    return out


async def read_all(address: str, end: int) -> dict[int, bytes]:
    """Consume from offset 0 until ``end`` (the reads stop below the HW)."""
    got: dict[int, bytes] = {}
    async with trio.open_nursery() as nursery:
        conn = await BrokerConnection.connect(nursery, address)
        with trio.fail_after(60):
            while len(got) < end:
                response = await conn.request(
                    FetchRequest(
                        max_wait_ms=200,
                        min_bytes=1,
                        max_bytes=1 << 20,
                        topics=[
                            FetchTopic(
                                name=TOPIC,
                                partitions=[FetchPartition(partition=0, fetch_offset=len(got))],
                            )
                        ],
                    )
                )
                part = response.topics[0].partitions[0]
                if part.error_code:  # e.g. the new leader is not leading yet
                    await trio.sleep(0.1)
                    continue
                for offset, value in decode(bytes(part.records or b"")):
                    if offset >= len(got) and value is not None:
                        got[offset] = value
        nursery.cancel_scope.cancel()
    return got


def test_kill_9_of_the_leader_keeps_every_acknowledged_record(cluster: BrokerCluster) -> None:
    for n in (1, 2, 3):
        cluster.start_broker(n)
    cluster.wait_status(lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers")
    with Admin(cluster.brokers[1].address) as admin:
        admin.create_topic(TOPIC, 1)  # the default replication factor: 3
    state = wait_state(cluster, lambda s: s.leader != NO_LEADER, "a leader")
    assert len(state.replicas) == 3
    assert state.leader_epoch == 0
    old = state.leader
    leader = cluster.brokers[old]
    for n in state.replicas:
        if n != old:
            cluster.brokers[n].wait_for_line(rf"following .*topic={TOPIC}")
    leader.wait_for_line(rf"leading .*topic={TOPIC}")

    values = [b"record-%03d" % i for i in range(50)]
    acked = trio.run(produce_acks_all, leader.address, values)
    assert [o for o, _ in acked] == list(range(50))

    cluster.kill(old)  # kill -9 through its handle: its lease expires
    new_state = wait_state(
        cluster, lambda s: s.leader not in (old, NO_LEADER), "a new leader from the ISR"
    )
    assert new_state.leader_epoch == 1
    assert old not in new_state.isr
    got = trio.run(read_all, cluster.brokers[new_state.leader].address, len(acked))
    assert [got[o] for o, _ in acked] == [v for _, v in acked]
