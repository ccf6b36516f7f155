"""Shared pieces of the reliability scenarios: in-process brokers that may
die of a fault, producers feeding the oracle, and its checks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from harness import RunningBroker, broker_config

from tailrace.broker.app import Broker
from tailrace.broker.log.storage_io import StorageIO
from tailrace.broker.testing.oracle import History
from tailrace.broker.testing.workload import run_producer
from tailrace.client import AsyncAdmin


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
