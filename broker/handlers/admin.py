"""CreateTopics, DeleteTopics, DescribeConfigs and AlterConfigs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import (
    BrokerError,
    InvalidConfigError,
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

from ..config import SETTINGS
from ..log.config import LogConfig
from ..security.authz import ALTER, CLUSTER, CLUSTER_NAME, DESCRIBE, TOPIC
from ..server.connection import ConnectionInfo, Later
from ..services import topics
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

_TOPIC_DOCS = {s.key: s.doc for s in SETTINGS if s.section == "topic_defaults"}
_TOPIC_DOCS["max_batch_bytes"] = next(s.doc for s in SETTINGS if s.name == "limits.max_batch_bytes")


_refuse_internal = topics.refuse_internal
_check = topics.check_allowed
_fail = fill


def handle_create_topics(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    return Later(_create_topics, ctx, info, request)


async def _create_topics(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: CreateTopicsRequest = request.body
    done = await topics.create_topics(
        ctx,
        info,
        [topics.NewTopic(t.name, t.partitions, t.configs) for t in body.topics],
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
                _check(ctx, info, DESCRIBE, TOPIC, res.name)
                entries = _topic_entries(ctx, res.name)
            elif res.resource_type == "broker":
                _check(ctx, info, DESCRIBE, CLUSTER, CLUSTER_NAME)
                entries = _broker_entries(ctx)
            else:
                raise InvalidRequestError(
                    f"resource_type {res.resource_type!r} is not 'topic' or 'broker'"
                )
        except BrokerError as exc:
            _fail(result, exc)
            continue
        if res.keys is not None:
            wanted = set(res.keys)
            entries = [e for e in entries if e.name in wanted]
        result.configs = entries
    return ctx.encode(request, DescribeConfigsResponse(resources=out))


def _topic_entries(ctx: BrokerContext, name: str) -> list[ConfigEntry]:
    topic = ctx.manager.topic(name)
    sources = ctx.config.sources
    entries = []
    for key in LogConfig.field_names():
        if key in topic.overrides:
            source = "topic"
        else:
            setting = (
                "limits.max_batch_bytes" if key == "max_batch_bytes" else f"topic_defaults.{key}"
            )
            source = "broker" if sources.get(setting, "default") != "default" else "default"
        entries.append(
            ConfigEntry(
                name=key,
                value=str(getattr(topic.config, key)),
                source=source,
                doc=_TOPIC_DOCS.get(key, ""),
            )
        )
    return entries


def _broker_entries(ctx: BrokerContext) -> list[ConfigEntry]:
    entries = []
    for setting in SETTINGS:
        value = ctx.config.values[setting.name]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        source = ctx.config.sources.get(setting.name, "default")
        entries.append(
            ConfigEntry(
                name=setting.name,
                value=text,
                source="default" if source == "default" else "broker",
                read_only=True,
                doc=setting.doc,
            )
        )
    entries.append(
        ConfigEntry(
            name="listeners",
            value=",".join(lc.describe() for lc in ctx.config.listeners),
            source="broker",
            read_only=True,
            doc="where the broker listens",
        )
    )
    return entries


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
                _check(ctx, info, ALTER, CLUSTER, CLUSTER_NAME)
                raise InvalidRequestError(
                    "only topic configuration can be altered; broker settings come from "
                    "its configuration file, environment and flags"
                )
            _check(ctx, info, ALTER, TOPIC, res.name)
            _refuse_internal(res.name, "alter")
            topic = ctx.manager.topic(res.name)
            set_keys = {k: v for k, v in res.configs.items() if v is not None}
            delete_keys = [k for k, v in res.configs.items() if v is None]
            if body.validate_only:
                over = {k: v for k, v in topic.overrides.items() if k not in delete_keys}
                over.update(set_keys)
                ctx.manager.defaults.with_overrides(over)
                unknown = [k for k in delete_keys if k not in LogConfig.field_names()]
                if unknown:
                    raise InvalidConfigError(f"{unknown[0]}: unknown log config key")
                continue
            await ctx.manager.alter_topic_config(res.name, set_keys, delete_keys)
        except BrokerError as exc:
            _fail(result, exc)
    return ctx.encode(request, AlterConfigsResponse(resources=out))
