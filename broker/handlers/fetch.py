"""Fetch (native front-end): an adapter over :mod:`..services.fetch`.

The service plans the reads (authorization, range check), waits when fewer
than ``min_bytes`` are readable (in the request's own task, so other
requests are unaffected), and reads file slices under the budgets; the
slices go from the page cache to the socket with sendfile in the
connection's writer, which releases them once written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.protocol import (
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopicResult,
    Request,
    SendfileSlice,
)

from ..server.connection import ConnectionInfo, Later, Streamed
from ..services import fetch as service
from .errors import fill
from .replication import handle_replica_fetch

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_fetch"]


def handle_fetch(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    if request.api_version:  # version 1: a follower's fetch
        return handle_replica_fetch(ctx, info, request)
    body: FetchRequest = request.body
    reads = [
        service.Read(t.name, p.partition, p.fetch_offset, p.max_bytes)
        for t in body.topics
        for p in t.partitions
    ]
    outcomes = service.plan(ctx, info, reads)
    if not service.must_wait(outcomes, body.min_bytes, body.max_wait_ms):
        return _respond(ctx, request, outcomes)
    return Later(_long_poll, ctx, request, outcomes)


async def _long_poll(
    ctx: BrokerContext, request: Request, outcomes: list[service.ReadOutcome]
) -> Streamed:
    body: FetchRequest = request.body
    await service.wait(ctx, outcomes, body.min_bytes, body.max_wait_ms)
    return _respond(ctx, request, outcomes)


def _respond(ctx: BrokerContext, request: Request, outcomes: list[service.ReadOutcome]) -> Streamed:
    body: FetchRequest = request.body
    service.read(outcomes, body.max_bytes)
    try:
        it = iter(outcomes)
        topics = []
        for t in body.topics:
            results = []
            for _ in t.partitions:
                o = next(it)
                result = FetchPartitionResult(
                    partition=o.partition,
                    high_watermark=o.high_watermark,
                    log_start_offset=o.log_start_offset,
                )
                fill(result, o.error)
                if o.slice is not None:
                    result.records = SendfileSlice(o.slice.length, o.slice)
                results.append(result)
            topics.append(FetchTopicResult(name=t.name, partitions=results))
        prefix, parts = ctx.encode_parts(request, FetchResponse(topics=topics))
    except BaseException:
        service.release(outcomes)
        raise
    return Streamed(prefix, parts)
