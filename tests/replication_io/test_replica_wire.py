"""The leader's side of the replication requests on a real broker, over a
raw protocol connection: a follower fetch reads past the high watermark up
to the log end (a consumer's still stops at it), OffsetForLeaderEpoch
answers from the leader's epoch cache, stale and unknown epochs are fenced,
an offset past the log end is out of range, and the leader holds a fetch
that finds nothing new until an append."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from harness import broker_config
from replica_harness import FOLLOWER_ID, LeaderReplicas, batch

from tailrace.broker.app import Broker
from tailrace.client import AsyncAdmin
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    OffsetForLeaderEpochPartition,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochTopic,
    ReplicaFetchPartition,
    ReplicaFetchRequest,
    ReplicaFetchTopic,
)
from tailrace.client.records import iter_headers
from tailrace.client.transport.connection import BrokerConnection


@pytest.fixture
async def served(nursery: trio.Nursery, tmp_path: Path):
    b = Broker(broker_config(tmp_path / "leader"))
    listeners = await nursery.start(b.serve)
    address = listeners[0].address
    async with AsyncAdmin(address) as admin:
        await admin.create_topic("t", partitions=2)
    assert b.context is not None
    replicas = LeaderReplicas()
    b.context.replicas = replicas
    plog = b.context.manager.get("t", 0)
    await replicas.lead("t", 0, plog, epoch=0)
    await replicas.append("t", 0, [b"a", b"b"])  # 0-1
    await replicas.lead("t", 0, plog, epoch=3)
    await replicas.append("t", 0, [b"c"])  # 2
    await replicas.append("t", 0, [b"d", b"e", b"f"])  # 3-5
    conn = await BrokerConnection.connect(nursery, address, request_timeout=30)
    return replicas, plog, conn


def _fetch(offset: int, epoch: int, *, wait: int = 0, max_bytes: int = 1 << 20, partition=0):
    return ReplicaFetchRequest(
        replica_id=FOLLOWER_ID,
        max_wait_ms=wait,
        topics=[
            ReplicaFetchTopic(
                name="t",
                partitions=[
                    ReplicaFetchPartition(
                        partition=partition,
                        current_leader_epoch=epoch,
                        fetch_offset=offset,
                        max_bytes=max_bytes,
                    )
                ],
            )
        ],
    )


def _epochs(*asks: tuple[int, int]) -> OffsetForLeaderEpochRequest:
    return OffsetForLeaderEpochRequest(
        replica_id=FOLLOWER_ID,
        topics=[
            OffsetForLeaderEpochTopic(
                name="t",
                partitions=[
                    OffsetForLeaderEpochPartition(
                        partition=0, current_leader_epoch=current, leader_epoch=asked
                    )
                    for asked, current in asks
                ],
            )
        ],
    )


async def test_a_follower_reads_past_the_high_watermark_a_consumer_does_not(served) -> None:
    _replicas, plog, conn = served
    assert plog.high_watermark == 0
    assert plog.log_end_offset == 6
    (t,) = (await conn.request(_fetch(0, 3), 1)).topics
    (p,) = t.partitions
    assert (p.error_code, p.high_watermark, p.log_start_offset, p.log_end_offset) == (0, 0, 0, 6)
    headers = [h for _pos, h in iter_headers(bytes(p.records))]
    assert [(h.base_offset, h.leader_epoch) for h in headers] == [(0, 0), (2, 3), (3, 3)]

    consumer = FetchRequest(
        max_wait_ms=0,
        topics=[FetchTopic(name="t", partitions=[FetchPartition(partition=0, fetch_offset=0)])],
    )
    (t,) = (await conn.request(consumer)).topics
    assert (t.partitions[0].error_code, len(t.partitions[0].records)) == (0, 0)


async def test_budgets_stop_at_whole_batches_and_the_first_always_comes(served) -> None:
    _replicas, _plog, conn = served
    (t,) = (await conn.request(_fetch(2, 3, max_bytes=1), 1)).topics
    headers = [h for _pos, h in iter_headers(bytes(t.partitions[0].records))]
    assert [h.base_offset for h in headers] == [2]  # one batch, larger than the limit


async def test_offset_for_leader_epoch_answers_from_the_epoch_cache(served) -> None:
    _replicas, _plog, conn = served
    (t,) = (await conn.request(_epochs((0, 3), (1, 3), (2, 3), (3, 3), (7, 3), (-1, 3)))).topics
    answers = [(p.error_code, p.leader_epoch, p.end_offset) for p in t.partitions]
    assert answers == [
        (0, 0, 2),  # epoch 0 ends where 3 starts
        (0, 0, 2),  # never led: the largest below it
        (0, 0, 2),
        (0, 3, 6),  # the current epoch ends at the log end
        (0, -1, -1),  # above every known epoch: undefined
        (0, -1, -1),
    ]


async def test_stale_and_unknown_epochs_are_fenced(served) -> None:
    replicas, _plog, conn = served
    (t,) = (await conn.request(_fetch(0, 2), 1)).topics
    assert t.partitions[0].error_code == ErrorCode.FENCED_LEADER_EPOCH
    assert len(t.partitions[0].records) == 0
    (t,) = (await conn.request(_fetch(0, 4), 1)).topics
    assert t.partitions[0].error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    (t,) = (await conn.request(_epochs((3, 2), (3, 4)))).topics
    assert [p.error_code for p in t.partitions] == [
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
    ]
    assert replicas.positions == []  # a fenced fetch records no position
    # a partition this broker does not lead
    (t,) = (await conn.request(_fetch(0, 0, partition=1), 1)).topics
    assert t.partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_an_offset_past_the_log_end_is_out_of_range(served) -> None:
    _replicas, _plog, conn = served
    (t,) = (await conn.request(_fetch(7, 3), 1)).topics
    assert t.partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE


async def test_the_leader_holds_a_fetch_until_an_append(served) -> None:
    replicas, plog, conn = served
    pending = await conn.send(_fetch(6, 3, wait=60_000), 1)
    assert pending is not None
    # the fetch arrived (its position is recorded) and is held: no answer
    with trio.fail_after(30):
        while replicas.positions[-1:] != [6]:
            await replicas.changed.wait()
    assert not pending.done()
    await replicas.append("t", 0, [b"g"])
    (t,) = (await conn.wait(pending)).topics
    (p,) = t.partitions
    assert [h.base_offset for _pos, h in iter_headers(bytes(p.records))] == [6]
    # its position (6) moved the leader's watermark: the ISR is {1, 2}
    assert p.high_watermark == 6
    assert plog.high_watermark == 6
    assert batch([b"g"])[16:] == bytes(p.records)[16:]  # offset and epoch patched
