"""Follower fetches (Fetch version 1) and OffsetForLeaderEpoch (native
front-end): adapters over :mod:`..services.replica_fetch`.

A follower fetch is planned when it arrives (authorization, fencing and
the follower's position, through ``ctx.replicas``), held in its own task
when no partition has anything past its fetch offset, and answered with
file slices that the connection's writer sends with sendfile, as consumer
fetches are (handlers/fetch.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.protocol import (
    EpochEndOffsetResult,
    EpochEndOffsetTopicResult,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
    ReplicaFetchPartitionResult,
    ReplicaFetchRequest,
    ReplicaFetchResponse,
    ReplicaFetchTopicResult,
    Request,
    SendfileSlice,
)

from ..server.connection import ConnectionInfo, Later, Streamed
from ..services import replica_fetch as service
from .errors import fill

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_offset_for_leader_epoch", "handle_replica_fetch"]


def handle_replica_fetch(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: ReplicaFetchRequest = request.body
    reads = [
        service.ReplicaRead(
            t.name, p.partition, p.fetch_offset, p.max_bytes, p.current_leader_epoch
        )
        for t in body.topics
        for p in t.partitions
    ]
    service.plan(ctx, info, body.replica_id, reads)
    if body.max_wait_ms <= 0 or service.has_data(reads):
        return _respond(ctx, request, reads)
    return Later(_long_poll, ctx, request, reads)


async def _long_poll(
    ctx: BrokerContext, request: Request, reads: list[service.ReplicaRead]
) -> Streamed:
    await service.wait(ctx, reads, request.body.max_wait_ms)
    return _respond(ctx, request, reads)


def _respond(ctx: BrokerContext, request: Request, reads: list[service.ReplicaRead]) -> Streamed:
    body: ReplicaFetchRequest = request.body
    service.read(reads, body.max_bytes)
    try:
        it = iter(reads)
        topics = []
        for t in body.topics:
            results = []
            for _ in t.partitions:
                r = next(it)
                result = ReplicaFetchPartitionResult(
                    partition=r.partition,
                    high_watermark=r.high_watermark,
                    log_start_offset=r.log_start_offset,
                    log_end_offset=r.log_end_offset,
                )
                fill(result, r.error)
                if r.slice is not None:
                    result.records = SendfileSlice(r.slice.length, r.slice)
                results.append(result)
            topics.append(ReplicaFetchTopicResult(name=t.name, partitions=results))
        prefix, parts = ctx.encode_parts(request, ReplicaFetchResponse(topics=topics))
    except BaseException:
        service.release(reads)
        raise
    return Streamed(prefix, parts)


def handle_offset_for_leader_epoch(
    ctx: BrokerContext, info: ConnectionInfo, request: Request
) -> bytes:
    body: OffsetForLeaderEpochRequest = request.body
    queries = [
        service.EpochQuery(t.name, p.partition, p.leader_epoch, p.current_leader_epoch)
        for t in body.topics
        for p in t.partitions
    ]
    service.offset_for_epoch(ctx, info, body.replica_id, queries)
    it = iter(queries)
    topics = []
    for t in body.topics:
        results = []
        for _ in t.partitions:
            q = next(it)
            result = EpochEndOffsetResult(partition=q.partition)
            fill(result, q.error)
            if q.error is None:
                result.leader_epoch = q.end_epoch
                result.end_offset = q.end_offset
            results.append(result)
        topics.append(EpochEndOffsetTopicResult(name=t.name, partitions=results))
    return ctx.encode(request, OffsetForLeaderEpochResponse(topics=topics))
