"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for Kafka
clients: adapters over :mod:`..services.configs`.

Resource types are Kafka's (2 topic, 4 broker). Topic settings are named
Kafka's way, dotted (``retention_ms`` is ``retention.ms``); the broker's
settings keep their names (``limits.max_batch_bytes``) and are read-only.
Sources map to Kafka's ConfigSource: a topic override is
DYNAMIC_TOPIC_CONFIG (1), a broker default from its configuration
STATIC_BROKER_CONFIG (4), a built-in default DEFAULT_CONFIG (5).
AlterConfigs replaces a topic's whole set of overrides (keys it does not
name revert to the default), as Kafka's does; IncrementalAlterConfigs sets
(0) or deletes (1) keys one by one (APPEND and SUBTRACT apply to list
settings, which tailrace has none of: INVALID_CONFIG).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.index import load_response_schema

from tailrace.client.errors import BrokerError, InvalidConfigError, InvalidRequestError

from ..server.connection import ConnectionInfo, Later
from ..services import configs as service
from .codec import KafkaRequest
from .entities import ZERO, make
from .errors import kafka_error

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext

__all__ = ["handle_alter_configs", "handle_describe_configs", "handle_incremental_alter_configs"]

TOPIC = 2
BROKER = 4
_SOURCES = {"topic": 1, "broker": 4, "default": 5}
_SET, _DELETE = 0, 1


def kafka_name(key: str) -> str:
    return key.replace("_", ".")


def tailrace_key(name: str) -> str:
    return name.replace(".", "_")


def _response(request: KafkaRequest, values: dict[str, Any]) -> Any:
    cls = load_response_schema(request.api_key, request.api_version)
    return make(cls, {"throttle_time": ZERO, **values})


def _result(res: Any, error: BrokerError | None, **more: Any) -> dict[str, Any]:
    return {
        "error_code": kafka_error(error),
        "error_message": error.message if error is not None else None,
        "resource_type": res.resource_type,
        "resource_name": res.resource_name,
        **more,
    }


def handle_describe_configs(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    results = []
    for res in request.body.resources:
        try:
            if res.resource_type == TOPIC:
                values = service.topic_configs(ctx, info, res.resource_name)
                for v in values:
                    v.name = kafka_name(v.name)
            elif res.resource_type == BROKER:
                values = service.broker_configs(ctx, info)
            else:
                raise InvalidRequestError(
                    f"resource type {res.resource_type}: only topics (2) and the broker (4)"
                )
        except BrokerError as exc:
            results.append(_result(res, exc, configs=()))
            continue
        if res.configuration_keys is not None:
            wanted = set(res.configuration_keys)
            values = [v for v in values if v.name in wanted]
        results.append(
            _result(
                res,
                None,
                configs=[
                    {
                        "name": v.name,
                        "value": v.value,
                        "read_only": v.read_only,
                        "config_source": _SOURCES[v.source],
                        "is_sensitive": False,
                        "synonyms": (),
                        "config_type": 0,  # UNKNOWN: the values are strings here
                        "documentation": v.doc or None,
                    }
                    for v in values
                ],
            )
        )
    return _response(request, {"results": results})


def handle_alter_configs(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Later:
    return Later(_alter, ctx, info, request, False)


def handle_incremental_alter_configs(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest
) -> Later:
    return Later(_alter, ctx, info, request, True)


async def _alter(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest, incremental: bool
) -> Any:
    body = request.body
    responses = []
    for res in body.resources:
        error: BrokerError | None = None
        try:
            if res.resource_type != TOPIC:
                service.refuse_broker_alter(ctx, info)
            set_keys, delete_keys = _changes(ctx, res, incremental)
            await service.alter_topic(
                ctx,
                info,
                res.resource_name,
                set_keys,
                delete_keys,
                validate_only=body.validate_only,
            )
        except BrokerError as exc:
            error = exc
        responses.append(_result(res, error))
    return _response(request, {"responses": responses})


def _changes(ctx: BrokerContext, res: Any, incremental: bool) -> tuple[dict[str, str], list[str]]:
    set_keys: dict[str, str] = {}
    delete_keys: list[str] = []
    for c in res.configs:
        key = tailrace_key(c.name)
        operation = c.config_operation if incremental else _SET
        if operation == _DELETE or c.value is None:
            delete_keys.append(key)
        elif operation == _SET:
            set_keys[key] = c.value
        else:
            raise InvalidConfigError(
                f"{c.name}: operation {operation} (APPEND/SUBTRACT) applies to list settings; "
                "this topic setting is not one"
            )
    if not incremental:  # AlterConfigs: the request is the whole set of overrides
        current = ctx.manager.topic(res.resource_name).overrides
        delete_keys += [k for k in current if k not in set_keys and k not in delete_keys]
    return set_keys, delete_keys
