"""ApiVersions, Metadata, CreateTopics, CreatePartitions and DeleteTopics for Kafka clients.

Adapters over :mod:`..services.topics` (one creation policy, one
auto-creation rule, one description of topics for both front-ends).
Metadata comes from :mod:`..services.metadata`: on a single node this
broker is node 0 at the address of the Kafka listener the request came in
on, leader of every partition with leader epoch -1 (so clients do not
validate positions with OffsetForLeaderEpoch); in a cluster, the live
brokers at their Kafka listeners and each partition's leader, replicas and
ISR from etcd, with the partition's leader epoch (KIP-320).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.index import load_response_schema

from tailrace.client.errors import (
    BrokerError,
    InvalidConfigError,
    InvalidRequestError,
)

from ..log.config import LogConfig
from ..server.connection import ConnectionInfo, Later
from ..services import metadata as metadata_service
from ..services import topics as topics_service
from .codec import KafkaRequest
from .entities import ZERO, make
from .errors import kafka_error
from .versions import ADVERTISED

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext

__all__ = [
    "handle_api_versions",
    "handle_create_partitions",
    "handle_create_topics",
    "handle_delete_topics",
    "handle_metadata",
]


#: Metadata's "authorized operations not requested"
_NOT_REQUESTED = -(2**31)


def _response(request: KafkaRequest, values: dict[str, Any]) -> Any:
    cls = load_response_schema(request.api_key, request.api_version)
    return make(cls, {"throttle_time": ZERO, **values})


def handle_api_versions(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    return _response(
        request,
        {
            "error_code": kafka_error(None),
            "api_keys": [
                {"api_key": k, "min_version": lo, "max_version": hi}
                for k, (lo, hi) in sorted(ADVERTISED.items())
            ],
        },
    )


# --- Metadata -----------------------------------------------------------------------


def handle_metadata(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> object:
    body = request.body
    names = None if body.topics is None else [t.name for t in body.topics]
    # Metadata v1-3 predate the flag: those requests always auto-created
    if names and getattr(body, "allow_auto_topic_creation", True):
        missing = topics_service.topics_to_auto_create(ctx, info, names)
        if missing:
            return Later(_create_then_describe, ctx, info, request, names, missing)
    return _metadata(ctx, info, request, names)


async def _create_then_describe(
    ctx: BrokerContext,
    info: ConnectionInfo,
    request: KafkaRequest,
    names: list[str],
    missing: list[str],
) -> Any:
    await topics_service.auto_create(ctx, missing)
    return _metadata(ctx, info, request, names)


def _metadata(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest, names: list[str] | None
) -> Any:
    view = metadata_service.describe(ctx, names, info, kafka=True)
    topics = []
    for state in view.topics:
        parts = [
            {
                "error_code": kafka_error(p.error),
                "partition_index": p.partition,
                "leader_id": p.leader,
                # in a cluster the partition's leader epoch: clients send it
                # back in Fetch, ListOffsets and OffsetForLeaderEpoch, where
                # the leader fences it, and validate their positions after a
                # leader change (KIP-320); a single node says -1 (no epochs)
                "leader_epoch": p.leader_epoch if ctx.cluster is not None else -1,
                "replica_nodes": p.replicas,
                "isr_nodes": p.isr,
                "offline_replicas": p.offline_replicas,
            }
            for p in state.partitions or ()
        ]
        topics.append(
            {
                "error_code": kafka_error(state.error),
                "name": state.name,
                "is_internal": state.internal,
                "partitions": parts,
                "topic_authorized_operations": _NOT_REQUESTED,
            }
        )
    return _response(
        request,
        {
            "brokers": [
                {"node_id": b.node_id, "host": b.host, "port": b.port, "rack": None}
                for b in view.brokers
            ],
            "cluster_id": ctx.cluster_id,
            "controller_id": view.controller_id,
            "topics": topics,
            "cluster_authorized_operations": _NOT_REQUESTED,
        },
    )


# --- CreateTopics / DeleteTopics -------------------------------------------------------


def _config_key(name: str) -> str:
    """Kafka's dotted topic config names to tailrace's (``retention.ms`` ->
    ``retention_ms``); LogConfig refuses what it does not know."""
    return name.replace(".", "_")


def handle_create_topics(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Later:
    return Later(_create_topics, ctx, info, request)


async def _create_topics(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    body = request.body
    wanted: list[topics_service.NewTopic] = []
    refused: dict[int, BrokerError] = {}
    known = set(LogConfig.field_names())
    for i, t in enumerate(body.topics):
        configs = {_config_key(c.name): c.value for c in t.configs}
        new = topics_service.NewTopic(t.name, t.num_partitions, configs, t.replication_factor)
        wanted.append(new)
        if t.assignments:
            refused[i] = InvalidRequestError("manual replica assignments are not supported")
        else:
            unknown = [c.name for c in t.configs if _config_key(c.name) not in known]
            if unknown:
                refused[i] = InvalidConfigError(f"{unknown[0]}: unknown topic config")
    todo = [t for i, t in enumerate(wanted) if i not in refused]
    await topics_service.create_topics(ctx, info, todo, validate_only=body.validate_only)
    for i, error in refused.items():
        wanted[i].error = error
    return _response(
        request,
        {
            "topics": [
                {
                    "name": t.name,
                    "error_code": kafka_error(t.error),
                    "error_message": t.error.message if t.error is not None else None,
                }
                for t in wanted
            ]
        },
    )


def handle_create_partitions(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest
) -> Later:
    return Later(_create_partitions, ctx, info, request)


async def _create_partitions(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest
) -> Any:
    body = request.body
    grow = [t for t in body.topics if not t.assignments]
    done = dict(
        await topics_service.create_partitions(
            ctx, info, [(t.name, t.count) for t in grow], validate_only=body.validate_only
        )
    )
    manual = InvalidRequestError("manual replica assignments are not supported")
    results = []
    for t in body.topics:
        error = done.get(t.name) if not t.assignments else manual
        results.append(
            {
                "name": t.name,
                "error_code": kafka_error(error),
                "error_message": error.message if error is not None else None,
            }
        )
    return _response(request, {"results": results})


def handle_delete_topics(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Later:
    return Later(_delete_topics, ctx, info, request)


async def _delete_topics(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    done = await topics_service.delete_topics(ctx, info, list(request.body.topic_names))
    return _response(
        request,
        {"responses": [{"name": name, "error_code": kafka_error(err)} for name, err in done]},
    )
