"""Scenarios 4 and 5: a failing fsync (fsyncgate) and a full disk, injected
through the StorageIO seam under a live broker with oracle producers.

fsync EIO: the first fdatasync of one partition that fails takes it offline
for good (Linux may have dropped the dirty pages: a retry that succeeds
proves nothing). The batch is not acknowledged; producers and consumers of
that partition get STORAGE_ERROR; nothing on it is acknowledged afterwards,
although the seam would let the next fsync succeed; other partitions carry
on. A restart recovers the partition and every acknowledged record.

Disk full: fallocate fails with ENOSPC for one partition. Producers get
STORAGE_FULL (retriable: they keep retrying), nothing is written, reads keep
working, other partitions carry on, and once space is back the retries land:
every acknowledged record is there exactly once. An ENOSPC or EIO from a
write the log did not expect to fail (an index entry into preallocated
space) takes the partition offline like a failed fsync.
"""

from __future__ import annotations

import errno
import logging

import pytest
import trio
from rel_helpers import create_topic, live_broker, producing
from rel_profile import record_result, size

from tailrace.broker.faultkit.faults import FaultyIO
from tailrace.broker.faultkit.oracle import ACKED, History, check, encode_value
from tailrace.broker.faultkit.workload import read_topic
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from tailrace.client.records import build_batch
from tailrace.client.transport import BrokerConnection

PARTITIONS = 3
PRODUCER = {"delivery_timeout_ms": 60_000, "request_timeout_ms": 2_000, "retry_backoff_ms": 20}


class Raw:
    """Single-record produces on a raw connection, logged in the history
    (a refusal that guarantees nothing was written counts as definite)."""

    instances = 0

    def __init__(self, conn: BrokerConnection, history: History) -> None:
        self.conn = conn
        self.history = history
        self.seq = 0
        Raw.instances += 1
        self.name = f"raw{Raw.instances}"

    async def produce(self, partition: int, pad: int = 0) -> int:
        seq = self.seq
        self.seq += 1
        self.history.sent(self.name, seq, "t", partition)
        response = await self.conn.request(
            ProduceRequest(
                acks=1,
                timeout_ms=5_000,
                topics=[
                    ProduceTopic(
                        name="t",
                        partitions=[
                            ProducePartition(
                                partition=partition,
                                records=build_batch(
                                    [(1, None, encode_value(self.name, seq), None)]
                                ),
                            )
                        ],
                    )
                ],
            )
        )
        p = response.topics[0].partitions[0]
        if p.error_code == ErrorCode.NONE:
            self.history.acked(self.name, seq, partition, p.base_offset)
        else:
            definite = p.error_code == ErrorCode.STORAGE_FULL
            self.history.failed(self.name, seq, f"error code {p.error_code}", definite=definite)
        return p.error_code


async def _raw_fetch(conn: BrokerConnection, partition: int) -> tuple[int, bytes]:
    response = await conn.request(
        FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=1 << 20,
            topics=[
                FetchTopic(
                    name="t",
                    partitions=[
                        FetchPartition(partition=partition, fetch_offset=0, max_bytes=1 << 20)
                    ],
                )
            ],
        )
    )
    p = response.topics[0].partitions[0]
    return p.error_code, bytes(p.records)


async def _until_offline(plog) -> None:
    with trio.fail_after(30):
        while not plog.offline:
            await plog.hw_event.wait()  # also set when the partition goes offline


def _acked_on(history: History, partition: int) -> list[int]:
    return [
        a.offset
        for a in list(history.attempts.values())
        if a.status == ACKED and a.partition == partition
    ]


@pytest.mark.parametrize("method", ["fdatasync", "fsync", "pwrite"])
async def test_a_failed_sync_or_write_takes_the_partition_offline_until_restart(
    tmp_path, nursery, caplog, method
):
    """fdatasync EIO (fsyncgate), fsync EIO (a sealed segment's sync after
    a roll), or ENOSPC from an index write the log never expects to fail,
    on partition 1."""
    caplog.set_level(logging.CRITICAL)
    data = tmp_path / "data"
    io = FaultyIO()
    history = History()
    rounds = size(1, 10)
    for round_ in range(rounds):
        async with live_broker(data, io=io) as b:
            if round_ == 0:
                await create_topic(
                    b.address, "t", PARTITIONS, index_interval_bytes=256, segment_bytes=60_000
                )
            plog = b.broker.manager.get("t", 1)
            raw = Raw(await BrokerConnection.connect(nursery, b.address), history)
            async with producing(
                b.address,
                "t",
                history,
                producers=2,
                partitions=PARTITIONS,
                prefix=f"r{round_}-",
                pad=60,
                config=PRODUCER,
                close_timeout=1,
            ):
                await history.until(lambda: history.acked_in[("t", 1)] > 200)
                code = errno.ENOSPC if method == "pwrite" else errno.EIO
                io.fail(method, code, match="/t/1/", times=1)
                await _until_offline(plog)
                # fdatasync failed: the HW stays where the last good sync left
                # it. A write failed: a sync already running may still finish
                # and ack what it covered, but nothing at or past the log end.
                limit = plog.log_end_offset if method == "pwrite" else plog.high_watermark
                before = history.acked_in[("t", 0)]
                await history.until(lambda n=before: history.acked_in[("t", 0)] > n + 200)
                assert await raw.produce(1) == ErrorCode.STORAGE_ERROR
                assert (await _raw_fetch(raw.conn, 1))[0] == ErrorCode.STORAGE_ERROR
                assert await raw.produce(0) == ErrorCode.NONE
            assert plog.high_watermark <= limit, "the HW of an offline partition moved on"
            late = [o for o in _acked_on(history, 1) if o >= limit]
            assert not late, f"acknowledged on the offline partition: offsets {late[:5]}"
        assert io.injected[method] == round_ + 1
        # restart with the same (healthy again) seam: the partition recovers
        async with live_broker(data, io=io) as b:
            plog = b.broker.manager.get("t", 1)
            assert not plog.offline
            raw = Raw(await BrokerConnection.connect(nursery, b.address), history)
            assert await raw.produce(1) == ErrorCode.NONE
            if round_ == rounds - 1:
                history.finish()
                report = check(history, await read_topic(b.address, "t"))
                assert report.ok, str(report)
    record_result(
        f"{method} fails ({'ENOSPC' if method == 'pwrite' else 'EIO'})",
        runs=rounds,
        faults=rounds,
        records_checked=report.records_read,
        acked=report.acked,
        lost=report.lost,
    )


async def test_a_full_disk_refuses_writes_keeps_reads_and_resumes(tmp_path, nursery, caplog):
    caplog.set_level(logging.CRITICAL)
    data = tmp_path / "data"
    io = FaultyIO()
    history = History()
    rounds = size(2, 20)
    async with live_broker(data, io=io) as b:
        # small preallocation steps: the disk fills up at a step boundary soon
        await create_topic(b.address, "t", PARTITIONS, preallocate_bytes=16384)
        plog = b.broker.manager.get("t", 1)
        raw = Raw(await BrokerConnection.connect(nursery, b.address), history)
        async with producing(
            b.address,
            "t",
            history,
            producers=2,
            partitions=PARTITIONS,
            pad=100,
            rate=3000,  # a steady load: the backlog of a full partition stays short
            config=PRODUCER,
            close_timeout=30,
        ):
            for _ in range(rounds):
                await history.until(lambda: history.acked_in[("t", 1)] > 100)
                io.fail("fallocate", errno.ENOSPC, match="/t/1/")
                # a full disk: the next growth of t-1 fails
                with trio.fail_after(30):
                    while (code := await raw.produce(1, pad=4000)) == ErrorCode.NONE:
                        pass
                assert code == ErrorCode.STORAGE_FULL
                stuck = history.acked_in[("t", 1)]
                before = history.acked_in[("t", 0)]
                await history.until(lambda n=before: history.acked_in[("t", 0)] > n + 100)
                code, records = await _raw_fetch(raw.conn, 1)
                assert code == ErrorCode.NONE
                assert records  # reads keep working
                assert not plog.offline
                io.clear("fallocate")  # space freed
                await history.until(lambda n=stuck: history.acked_in[("t", 1)] > n + 100)
        history.finish()
        report = check(history, await read_topic(b.address, "t"))
    assert report.ok, str(report)
    assert report.unknown == 0, "every record was acknowledged once space came back"
    record_result(
        "disk full (ENOSPC from fallocate)",
        runs=rounds,
        faults=io.injected["fallocate"],
        records_checked=report.records_read,
        acked=report.acked,
        lost=report.lost,
    )
