"""ApiVersions and Metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import (
    BrokerError,
    InvalidTopicError,
    TopicAuthorizationError,
    UnknownTopicOrPartitionError,
)
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

from ..log.manager import validate_topic_name
from ..security.authz import DESCRIBE, TOPIC
from ..server.connection import ConnectionInfo, Later

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
    if body.allow_auto_topic_creation and body.topics and ctx.config.auto_create_topics:
        missing = [n for n in ctx.missing_topics(body.topics) if _valid(n)]
        if missing and ctx.authz is not None:
            missing = [n for n in missing if ctx.authz.may_create_topic(info, n)]
        if missing:
            return Later(_create_then_describe, ctx, info, request, missing)
    return ctx.encode(request, describe(ctx, body.topics, info))


async def _create_then_describe(
    ctx: BrokerContext, info: ConnectionInfo, request: Request, missing: list[str]
) -> bytes:
    await ctx.auto_create(missing)
    return ctx.encode(request, describe(ctx, request.body.topics, info))


def _valid(name: str) -> bool:
    try:
        validate_topic_name(name)
    except InvalidTopicError:
        return False
    return True


def describe(
    ctx: BrokerContext, names: list[str] | None, info: ConnectionInfo | None = None
) -> MetadataResponse:
    """Metadata of ``names`` (every topic when None). With an authorizer,
    every topic is listed only to a principal that may describe it; a topic
    asked for by name that it may not describe is answered with
    TOPIC_AUTHORIZATION_FAILED whether it exists or not (no existence leak)."""
    manager = ctx.manager
    topics = manager.topics()
    authz = ctx.authz if info is not None else None
    if names is None:
        wanted = sorted(topics)
        if authz is not None:
            wanted = [
                n for n in wanted if authz.allowed(info, DESCRIBE, TOPIC, n, log_denial=False)
            ]
    else:
        wanted = list(dict.fromkeys(names))
    out = []
    for name in wanted:
        if (
            names is not None
            and authz is not None
            and not authz.allowed(info, DESCRIBE, TOPIC, name)
        ):
            denied = TopicAuthorizationError(f"{info.principal} may not describe {name!r}")
            out.append(
                TopicMetadata(name=name, error_code=int(denied.code), error_message=denied.message)
            )
            continue
        topic = topics.get(name)
        if topic is None:
            error: BrokerError
            try:
                validate_topic_name(name)
                error = UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            except InvalidTopicError as exc:
                error = exc
            out.append(
                TopicMetadata(name=name, error_code=int(error.code), error_message=error.message)
            )
            continue
        partitions = []
        for p in range(topic.partitions):
            meta = PartitionMetadata(partition=p, leader_id=ctx.node_id)
            try:
                plog = manager.get(name, p)
            except BrokerError as exc:
                meta.error_code = int(exc.code)
                meta.error_message = exc.message
                partitions.append(meta)
                continue
            meta.log_start_offset = plog.log_start_offset
            meta.high_watermark = plog.high_watermark
            meta.log_end_offset = plog.log_end_offset
            meta.size_bytes = plog.size_bytes
            meta.segment_count = len(plog.segments)
            if plog.offline:
                meta.error_code = 56
                meta.error_message = "partition offline after a storage failure"
            partitions.append(meta)
        out.append(TopicMetadata(name=name, internal=name.startswith("__"), partitions=partitions))
    brokers = [BrokerInfo(node_id=ctx.node_id, host=b.host, port=b.port) for b in ctx.listeners[:1]]
    return MetadataResponse(
        cluster_id=ctx.cluster_id, controller_id=ctx.node_id, brokers=brokers, topics=out
    )
