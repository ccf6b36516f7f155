"""CreateTopics, DeleteTopics, DescribeConfigs and AlterConfigs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import (
    BrokerError,
    InvalidRequestError,
)
from tailrace.client.protocol import (
    AlterConfigResult,
    AlterConfigsRequest,
    AlterConfigsResponse,
    ConfigEntry,
    ConfigResourceResult,
    CreatedTopic,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    Request,
    TopicResult,
)

from ..server.connection import ConnectionInfo, Later
from ..services import configs, topics
from .errors import fill

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = [
    "handle_alter_configs",
    "handle_create_partitions",
    "handle_create_topics",
    "handle_delete_topics",
    "handle_describe_configs",
]


def handle_create_topics(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    return Later(_create_topics, ctx, info, request)


async def _create_topics(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: CreateTopicsRequest = request.body
    done = await topics.create_topics(
        ctx,
        info,
        [
            topics.NewTopic(t.name, t.partitions, t.configs, t.replication_factor)
            for t in body.topics
        ],
        validate_only=body.validate_only,
    )
    results = []
    for t in done:
        result = CreatedTopic(name=t.name, partitions=t.partitions)
        fill(result, t.error)
        results.append(result)
    return ctx.encode(request, CreateTopicsResponse(topics=results))


def handle_delete_topics(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    return Later(_delete_topics, ctx, info, request)


async def _delete_topics(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: DeleteTopicsRequest = request.body
    results = []
    for name, error in await topics.delete_topics(ctx, info, body.topics):
        result = TopicResult(name=name)
        fill(result, error)
        results.append(result)
    return ctx.encode(request, DeleteTopicsResponse(topics=results))


def handle_create_partitions(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    return Later(_create_partitions, ctx, info, request)


async def _create_partitions(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: CreatePartitionsRequest = request.body
    results = []
    done = await topics.create_partitions(
        ctx, info, [(t.name, t.count) for t in body.topics], validate_only=body.validate_only
    )
    for name, error in done:
        result = TopicResult(name=name)
        fill(result, error)
        results.append(result)
    return ctx.encode(request, CreatePartitionsResponse(topics=results))


def handle_describe_configs(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: DescribeConfigsRequest = request.body
    out = []
    for res in body.resources:
        result = ConfigResourceResult(resource_type=res.resource_type, name=res.name)
        out.append(result)
        try:
            if res.resource_type == "topic":
                values = configs.topic_configs(ctx, info, res.name)
            elif res.resource_type == "broker":
                values = configs.broker_configs(ctx, info)
            else:
                raise InvalidRequestError(
                    f"resource_type {res.resource_type!r} is not 'topic' or 'broker'"
                )
        except BrokerError as exc:
            fill(result, exc)
            continue
        if res.keys is not None:
            wanted = set(res.keys)
            values = [v for v in values if v.name in wanted]
        result.configs = [
            ConfigEntry(
                name=v.name, value=v.value, source=v.source, read_only=v.read_only, doc=v.doc
            )
            for v in values
        ]
    return ctx.encode(request, DescribeConfigsResponse(resources=out))


def handle_alter_configs(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    return Later(_alter_configs, ctx, info, request)


async def _alter_configs(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: AlterConfigsRequest = request.body
    out = []
    for res in body.resources:
        result = AlterConfigResult(resource_type=res.resource_type, name=res.name)
        out.append(result)
        try:
            if res.resource_type != "topic":
                configs.refuse_broker_alter(ctx, info)
            await configs.alter_topic(
                ctx,
                info,
                res.name,
                {k: v for k, v in res.configs.items() if v is not None},
                [k for k, v in res.configs.items() if v is None],
                validate_only=body.validate_only,
            )
        except BrokerError as exc:
            fill(result, exc)
    return ctx.encode(request, AlterConfigsResponse(resources=out))
