"""A leader and a follower for tests of the replication wire and the
follower's fetcher, made of real parts: a real broker on loopback port 0
whose ``ctx.replicas`` is :class:`LeaderReplicas` (the replica manager's
leader side over the partition's real PartitionLog and the real sans-I/O
:class:`LeaderState`), and follower logs that are real PartitionLogs in
tmp_path. What is not here is the cluster store: the tests set each
side's epoch by hand, as the replica manager would from etcd."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import trio

from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.broker.replication import (
    EpochEndOffset,
    FollowerState,
    LeaderState,
    PartitionState,
)
from tailrace.broker.replication.ports import FollowerFetch
from tailrace.client.errors import (
    BrokerError,
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
)
from tailrace.client.records import build_batch

LEADER_ID, FOLLOWER_ID = 1, 2


def batch(values: list[bytes]) -> bytes:
    return build_batch([(1_000 + i, None, v, None) for i, v in enumerate(values)])


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class LeaderReplicas:
    """``ctx.replicas`` for a broker leading some partitions: fences, records
    follower positions in a LeaderState and raises the log's replicated high
    watermark from it, as the replica manager does."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, int], tuple[PartitionLog, LeaderState]] = {}
        #: every BrokerError follower_fetch and offset_for_epoch raised
        self.refused: list[BrokerError] = []
        #: every follower fetch offset recorded, in order
        self.positions: list[int] = []
        self.changed = trio.Event()

    def check_readable(self, topic: str, partition: int, current_leader_epoch: int = -1) -> None:
        if (topic, partition) not in self.parts:
            raise NotLeaderOrFollowerError(f"not the leader of {topic}-{partition}")
        self.parts[(topic, partition)][1].check_epoch(current_leader_epoch)

    def served_high_watermark(self, topic: str, partition: int) -> int:
        return self.parts[(topic, partition)][1].served_high_watermark()

    async def lead(
        self, topic: str, partition: int, plog: PartitionLog, epoch: int, isr=(1, 2)
    ) -> LeaderState:
        """Lead ``plog`` in ``epoch`` (replicated mode, epoch durable first)."""
        if not plog.replicated:
            plog.set_replicated(True)
        start = await plog.become_leader(epoch)
        state = PartitionState(
            replicas=(LEADER_ID, FOLLOWER_ID), leader=LEADER_ID, leader_epoch=epoch, isr=isr
        )
        leader = LeaderState(
            state,
            version=1,
            replica_id=LEADER_ID,
            epoch_start_offset=start,
            high_watermark=min(plog.high_watermark, start),
            now_ms=_now_ms(),
            replica_lag_time_max_ms=30_000,
            min_insync_replicas=1,
        )
        self.parts[(topic, partition)] = (plog, leader)
        return leader

    async def append(self, topic: str, partition: int, values: list[bytes]) -> int:
        """Append a batch as a produce would (durable as the flush mode
        says), advance the watermark; returns the new log end."""
        plog, leader = self.parts[(topic, partition)]
        await plog.wait_durable(plog.append(batch(values)))
        if leader.update_high_watermark(plog.durable_offset):
            plog.set_replicated_high_watermark(leader.high_watermark)
        return plog.log_end_offset

    def _signal(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def follower_fetch(
        self,
        topic: str,
        partition: int,
        replica_id: int,
        fetch_offset: int,
        current_leader_epoch: int,
    ) -> FollowerFetch:
        try:
            entry = self.parts.get((topic, partition))
            if entry is None:
                raise NotLeaderOrFollowerError(f"not the leader of {topic}-{partition}")
            plog, leader = entry
            leo = plog.log_end_offset
            try:
                advanced = leader.on_follower_fetch(
                    replica_id,
                    fetch_offset,
                    current_leader_epoch,
                    _now_ms(),
                    leo,
                    plog.durable_offset,
                )
            except ValueError as exc:
                if fetch_offset > leo:
                    raise OffsetOutOfRangeError(str(exc)) from None
                raise NotLeaderOrFollowerError(str(exc)) from None
        except BrokerError as exc:
            self.refused.append(exc)
            self._signal()
            raise
        if advanced:
            plog.set_replicated_high_watermark(leader.high_watermark)
        self.positions.append(fetch_offset)
        self._signal()
        return FollowerFetch(plog, plog.high_watermark, plog.log_end_offset)

    def offset_for_epoch(
        self, topic: str, partition: int, epoch: int, current_leader_epoch: int
    ) -> EpochEndOffset:
        try:
            entry = self.parts.get((topic, partition))
            if entry is None:
                raise NotLeaderOrFollowerError(f"not the leader of {topic}-{partition}")
            plog, leader = entry
            return leader.offset_for_epoch(
                plog.epoch_cache, plog.log_end_offset, epoch, current_leader_epoch
            )
        except BrokerError as exc:
            self.refused.append(exc)
            raise
        finally:
            self._signal()


def open_follower_log(path: Path, flush: str = "sync") -> PartitionLog:
    plog = PartitionLog.open(str(path), LogConfig.from_mapping({"flush": flush}))
    plog.set_replicated(True)
    return plog


def follower_state(leader_epoch: int, replica_id: int = FOLLOWER_ID) -> FollowerState:
    state = FollowerState(replica_id)
    state.on_state(
        PartitionState(
            replicas=(LEADER_ID, replica_id),
            leader=LEADER_ID,
            leader_epoch=leader_epoch,
            isr=(LEADER_ID, replica_id),
        )
    )
    return state


async def wait_until(plog: PartitionLog, ready: Callable[[], bool], seconds: float = 30) -> None:
    """Until ``ready()``, re-checked whenever ``plog``'s end or high
    watermark moves (no polling). ``seconds`` only bounds a hang; it asserts
    no timing."""
    with trio.fail_after(seconds):
        while not ready():
            woken = trio.Event()
            plog.watch_end(woken.set)
            plog.watch_hw(woken.set)
            try:
                if ready():
                    return
                await woken.wait()
            finally:
                plog.unwatch_end(woken.set)
                plog.unwatch_hw(woken.set)


async def wait_for(
    replicas: LeaderReplicas, ready: Callable[[], bool], seconds: float = 30
) -> None:
    """Until ``ready()``, re-checked at each request the leader's replica
    manager sees."""
    with trio.fail_after(seconds):
        while not ready():
            await replicas.changed.wait()


def log_bytes(plog: PartitionLog) -> bytes:
    """Every byte of the log from its start to its end, through read()."""
    out = bytearray()
    offset = plog.log_start_offset
    while True:
        s = plog.read(offset, 1 << 30, up_to=plog.log_end_offset)
        if s is None:
            return bytes(out)
        with s:
            out += s.read_bytes()
            offset = s.next_position.offset
