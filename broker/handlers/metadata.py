"""ApiVersions and Metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.protocol import (
    APIS,
    ApiVersionRange,
    ApiVersionsResponse,
    BrokerInfo,
    MetadataRequest,
    MetadataResponse,
    PartitionMetadata,
    Request,
    TopicMetadata,
)

from ..server.connection import ConnectionInfo, Later
from ..services import metadata as metadata_service
from ..services import topics
from .errors import fill

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_api_versions", "handle_metadata"]

BROKER_VERSION = "0.1.0"


def handle_api_versions(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    versions = [
        ApiVersionRange(api_key=int(k), min_version=s.min_version, max_version=s.max_version)
        for k, s in sorted(APIS.items())
    ]
    return ctx.encode(
        request, ApiVersionsResponse(api_versions=versions, broker_version=BROKER_VERSION)
    )


def handle_metadata(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: MetadataRequest = request.body
    if body.allow_auto_topic_creation and body.topics:
        missing = topics.topics_to_auto_create(ctx, info, body.topics)
        if missing:
            return Later(_create_then_describe, ctx, info, request, missing)
    return ctx.encode(request, describe(ctx, body.topics, info))


async def _create_then_describe(
    ctx: BrokerContext, info: ConnectionInfo, request: Request, missing: list[str]
) -> bytes:
    await topics.auto_create(ctx, missing)
    return ctx.encode(request, describe(ctx, request.body.topics, info))


def describe(
    ctx: BrokerContext, names: list[str] | None, info: ConnectionInfo | None = None
) -> MetadataResponse:
    """Metadata of ``names`` (every topic when None), from
    :func:`..services.metadata.describe` (what an authorizer hides:
    :func:`..services.topics.describe_topics`)."""
    view = metadata_service.describe(ctx, names, info)
    out = []
    for state in view.topics:
        meta = TopicMetadata(name=state.name, internal=state.internal)
        fill(meta, state.error)
        if state.partitions is not None:
            for p in state.partitions:
                pm = PartitionMetadata(
                    partition=p.partition,
                    leader_id=p.leader,
                    leader_epoch=p.leader_epoch,
                    replicas=list(p.replicas),
                    isr=list(p.isr),
                    offline_replicas=list(p.offline_replicas),
                    log_start_offset=p.log_start_offset,
                    high_watermark=p.high_watermark,
                    log_end_offset=p.log_end_offset,
                    size_bytes=p.size_bytes,
                    segment_count=p.segment_count,
                    dirty_bytes=p.dirty_bytes,
                    cleanable_bytes=p.cleanable_bytes,
                    last_clean_ms=p.last_clean_ms,
                )
                fill(pm, p.error)
                meta.partitions.append(pm)
        out.append(meta)
    brokers = [BrokerInfo(node_id=b.node_id, host=b.host, port=b.port) for b in view.brokers]
    return MetadataResponse(
        cluster_id=ctx.cluster_id, controller_id=view.controller_id, brokers=brokers, topics=out
    )
