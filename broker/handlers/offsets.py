"""ListOffsets and InitProducerId."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import BrokerError, ClusterAuthorizationError, TopicAuthorizationError
from tailrace.client.protocol import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopicResult,
    Request,
)

from ..security.authz import READ, TOPIC
from ..server.connection import ConnectionInfo, Later

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_init_producer_id", "handle_list_offsets"]


def handle_list_offsets(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: ListOffsetsRequest = request.body
    topics = []
    authz = ctx.authz
    for t in body.topics:
        results = []
        topics.append(ListOffsetsTopicResult(name=t.name, partitions=results))
        denied = authz is not None and not authz.allowed(info, READ, TOPIC, t.name)
        for p in t.partitions:
            result = ListOffsetsPartitionResult(partition=p.partition)
            results.append(result)
            try:
                if denied:
                    raise TopicAuthorizationError(f"{info.principal} may not read {t.name!r}")
                plog = ctx.partition_for_fetch(info, t.name, p.partition)
                if p.timestamp == LATEST_TIMESTAMP:
                    result.offset = plog.high_watermark
                elif p.timestamp == EARLIEST_TIMESTAMP:
                    result.offset = plog.log_start_offset
                elif p.timestamp < 0:
                    result.error_code = 42
                    result.error_message = f"timestamp {p.timestamp} is neither -1, -2 nor a time"
                else:
                    found = plog.offset_for_timestamp(p.timestamp)
                    if found is not None:
                        result.offset, result.timestamp = found
            except BrokerError as exc:
                result.error_code = int(exc.code)
                result.error_message = exc.message
    return ctx.encode(request, ListOffsetsResponse(topics=topics))


def handle_init_producer_id(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    if ctx.authz is not None and not ctx.authz.may_write_some_topic(info):
        raise ClusterAuthorizationError(
            f"{info.principal} may not get a producer id (needs write on some topic)"
        )
    return Later(_init_producer_id, ctx, request)


async def _init_producer_id(ctx: BrokerContext, request: Request) -> bytes:
    body: InitProducerIdRequest = request.body
    pid, epoch = await ctx.producer_ids.init(body.producer_id, body.producer_epoch)
    return ctx.encode(request, InitProducerIdResponse(producer_id=pid, producer_epoch=epoch))
