"""ListOffsets and InitProducerId (native front-end over :mod:`..services.offsets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.protocol import (
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopicResult,
    Request,
)

from ..server.connection import ConnectionInfo, Later
from ..services import offsets as service
from .errors import fill

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_init_producer_id", "handle_list_offsets"]


def handle_list_offsets(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: ListOffsetsRequest = request.body
    queries = service.list_offsets(
        ctx,
        info,
        [
            service.OffsetQuery(t.name, p.partition, p.timestamp)
            for t in body.topics
            for p in t.partitions
        ],
    )
    it = iter(queries)
    topics = []
    for t in body.topics:
        results = []
        for _ in t.partitions:
            q = next(it)
            result = ListOffsetsPartitionResult(
                partition=q.partition, offset=q.offset, timestamp=q.found_timestamp
            )
            fill(result, q.error)
            results.append(result)
        topics.append(ListOffsetsTopicResult(name=t.name, partitions=results))
    return ctx.encode(request, ListOffsetsResponse(topics=topics))


def handle_init_producer_id(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    service.check_init_producer_id(ctx, info)
    return Later(_init_producer_id, ctx, request)


async def _init_producer_id(ctx: BrokerContext, request: Request) -> bytes:
    body: InitProducerIdRequest = request.body
    pid, epoch = await service.init_producer_id(ctx, body.producer_id, body.producer_epoch)
    return ctx.encode(request, InitProducerIdResponse(producer_id=pid, producer_epoch=epoch))
