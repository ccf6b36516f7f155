"""Shared pieces of the reliability scenarios: in-process brokers that may
die of a fault, producers feeding the oracle, and its checks."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from harness import BrokerProcess, RunningBroker, broker_config

from tailrace.broker.app import Broker
from tailrace.broker.faultkit.oracle import ACKED, History, encode_value
from tailrace.broker.faultkit.workload import run_producer
from tailrace.broker.log.storage_io import StorageIO
from tailrace.client import AsyncAdmin, AsyncConsumer
from tailrace.client.errors import TailraceError
from tailrace.client.records import build_batch


@contextlib.asynccontextmanager
async def live_broker(
    data_dir: Path, io: StorageIO | None = None, **flags: Any
) -> AsyncIterator[RunningBroker]:
    """A broker in its own nursery; leaving the block shuts it down. A broker
    whose disk died under it (every syscall fails after a power cut) may
    fail its final close: that OSError is not the test's concern and is
    dropped here, anything else propagates."""
    b = Broker(broker_config(data_dir, **flags), io=io)
    failed: list[BaseException] = []

    async def serve(task_status: trio.TaskStatus[list] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await b.serve(task_status=task_status)
        except* OSError as group:  # the final close on a dead disk
            failed.append(group)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve)
        try:
            yield RunningBroker(b, listeners[0].address, data_dir)
        finally:
            b.shutdown()


async def create_topic(address: str, name: str, partitions: int, **config: Any) -> None:
    async with AsyncAdmin(address) as admin:
        await admin.create_topic(
            name, partitions=partitions, config={k: str(v) for k, v in config.items()} or None
        )


@contextlib.asynccontextmanager
async def producing(
    address: str,
    topic: str,
    history: History,
    *,
    producers: int,
    partitions: int,
    prefix: str = "p",
    **kw: Any,
) -> AsyncIterator[trio.Event]:
    """Run ``producers`` oracle producers until the block ends (the yielded
    Event may also be set to stop them earlier)."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for i in range(producers):
            await nursery.start(
                lambda task_status, i=i: run_producer(
                    address,
                    topic,
                    history,
                    f"{prefix}{i}",
                    partitions=partitions,
                    stop=stop,
                    task_status=task_status,
                    **kw,
                )
            )
        try:
            yield stop
        finally:
            stop.set()


async def run_committer(address: str, history: History, topic: str, commits: list[int]) -> None:
    """Commit, for group "g", one past the newest acknowledged offset of
    ``topic`` partition 0, again and again; ``commits`` gets every offset
    whose commit was acknowledged. Rides through broker restarts."""
    last = 0
    while True:
        try:
            async with AsyncConsumer(address, group_id="g", enable_auto_commit=False) as consumer:
                consumer.assign([(topic, 0)])
                while True:
                    acked = [
                        a.offset
                        for a in list(history.attempts.values())
                        if a.status == ACKED and a.partition == 0 and a.topic == topic
                    ]
                    target = max(acked, default=-1) + 1
                    if target > last:
                        await consumer.commit({(topic, 0): target})
                        last = target
                        commits.append(target)
                    await trio.sleep(0.02)
        except TailraceError:
            await trio.sleep(0.1)  # outcome unknown: the broker went away


async def committed_offset(address: str, topic: str) -> int | None:
    """Group "g"'s committed offset of ``topic`` partition 0."""
    async with AsyncConsumer(address, group_id="g", enable_auto_commit=False) as consumer:
        got = await consumer.committed((topic, 0))
    return None if got is None else got.offset


class Writer:
    """One idempotent producer (id, epoch 0) writing oracle values."""

    def __init__(self, pid: int, partitions: int) -> None:
        self.pid = pid
        self.name = f"w{pid}"
        self.value_seq = 0
        self.next_seq = dict.fromkeys(range(partitions), 0)
        #: partition -> [(batch bytes, value seqs)] appended, outcome unknown
        self.pending: dict[int, list[tuple[bytes, list[int]]]] = {p: [] for p in range(partitions)}

    def batch(self, partition: int, n: int, ts: int, pad: int) -> tuple[bytes, list[int]]:
        seqs = list(range(self.value_seq, self.value_seq + n))
        self.value_seq += n
        data = build_batch(
            [(ts + i, None, encode_value(self.name, s, pad), None) for i, s in enumerate(seqs)],
            producer_id=self.pid,
            producer_epoch=0,
            base_sequence=self.next_seq[partition],
        )
        self.next_seq[partition] += n
        return data, seqs


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


class FaultyBrokerProcess(BrokerProcess):
    """``python -m tailrace.broker.faultkit.faulty_broker``: the broker that
    exits at the ``after``-th hit of crash point ``point`` (see there)."""

    def __init__(
        self,
        data_dir: Path,
        point: str,
        after: int,
        listen: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
    ):
        super().__init__(data_dir, listen=listen, env=env)
        self.point = point
        self.after = after

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tailrace.broker.faultkit.faulty_broker",
            "--crash-point",
            self.point,
            "--crash-after",
            str(self.after),
            "--data-dir",
            str(self.data_dir),
            "--listen",
            str(self.listen),
        ]

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
        env.update(self.env or {})
        return env

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for the process to end by itself; its exit status."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._reap()
        return code
