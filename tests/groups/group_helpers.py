"""Helpers for the consumer-group tests: brokers with short session
timeouts, a raw protocol client, and heartbeat/commit request builders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from harness import RunningBroker, broker_config

from tailrace.broker.app import Broker
from tailrace.client import AsyncAdmin
from tailrace.client.protocol import (
    ConsumerGroupHeartbeatRequest,
    OffsetCommitPartition,
    OffsetCommitRequest,
    OffsetCommitTopic,
    TopicPartitions,
)
from tailrace.client.transport.pool import BrokerClient

#: Broker settings for group tests: sessions as short as 100 ms are allowed.
FAST = {"groups__session_timeout_min_ms": 100, "groups__heartbeat_interval_ms": 200}


async def start_broker(nursery: trio.Nursery, data_dir: Path, **flags: Any) -> RunningBroker:
    b = Broker(broker_config(data_dir, **{**FAST, **flags}))
    listeners = await nursery.start(b.serve)
    return RunningBroker(b, listeners[0].address, data_dir)


async def create_topic(address: str, name: str, partitions: int, **config: Any) -> None:
    async with AsyncAdmin(address) as admin:
        await admin.create_topic(name, partitions=partitions, config=config or None)


@asynccontextmanager
async def wire(address: str) -> AsyncIterator[BrokerClient]:
    """A raw client: ``await client.request(SomeRequest(...))``."""
    async with trio.open_nursery() as nursery:
        client = BrokerClient(nursery, address, request_timeout_ms=10_000)
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


def tps(assignment: list[TopicPartitions] | None) -> set[tuple[str, int]]:
    return {(t.topic, p) for t in assignment or () for p in t.partitions}


def owned(pairs: set[tuple[str, int]]) -> list[TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(pairs):
        by_topic.setdefault(topic, []).append(p)
    return [TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def join(group: str, topics: list[str], **kw: Any) -> ConsumerGroupHeartbeatRequest:
    return ConsumerGroupHeartbeatRequest(
        group_id=group, subscribed_topics=topics, session_timeout_ms=kw.pop("session", 5000), **kw
    )


def beat(group: str, response: Any, holding: set[tuple[str, int]], **kw: Any) -> Any:
    """The next heartbeat of the member that got ``response``, owning ``holding``."""
    return ConsumerGroupHeartbeatRequest(
        group_id=group,
        member_id=response.member_id,
        member_epoch=response.member_epoch,
        owned_partitions=owned(holding),
        session_timeout_ms=kw.pop("session", 5000),
        **kw,
    )


def commit(group: str, offsets: dict[tuple[str, int], int], member: Any = None, epoch=None):
    by_topic: dict[str, list[OffsetCommitPartition]] = {}
    for (topic, p), offset in offsets.items():
        by_topic.setdefault(topic, []).append(OffsetCommitPartition(partition=p, offset=offset))
    return OffsetCommitRequest(
        group_id=group,
        member_id="" if member is None else member.member_id,
        member_epoch=(-1 if member is None else member.member_epoch) if epoch is None else epoch,
        topics=[OffsetCommitTopic(name=t, partitions=ps) for t, ps in by_topic.items()],
    )


def partition_errors(response: Any) -> dict[tuple[str, int], int]:
    return {(t.name, p.partition): p.error_code for t in response.topics for p in t.partitions}
