"""The Kafka front-end's handler table and dispatcher.

A handler is ``handler(ctx, info, request)`` with a
:class:`~.codec.KafkaRequest`; it returns a kio response entity of the
request's API and version, ``Later(fn, ...)`` whose awaited result is such
an entity, ``NO_REPLY`` (acks 0), or an already framed ``Streamed`` (Fetch
with sendfile slices). Raising a BrokerError answers with a response that
carries only that error where the API has a top-level error code; otherwise
the connection is closed (Kafka's way). The group APIs' handlers come from
:mod:`.groups` (``GROUP_HANDLERS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tailrace.client.errors import BrokerError

from ..server.connection import NO_REPLY, ConnectionInfo, Later, Streamed
from .acls import handle_create_acls, handle_delete_acls, handle_describe_acls
from .admin import (
    handle_api_versions,
    handle_create_partitions,
    handle_create_topics,
    handle_delete_topics,
    handle_metadata,
)
from .codec import KafkaBadRequest, KafkaRequest, encode_response, response_class
from .configs import (
    handle_alter_configs,
    handle_describe_configs,
    handle_incremental_alter_configs,
)
from .data import handle_fetch, handle_init_producer_id, handle_list_offsets, handle_produce
from .entities import error_body
from .errors import kafka_code
from .groups import GROUP_HANDLERS
from .log_bounds import handle_delete_records, handle_offset_for_leader_epoch
from .sasl import handle_sasl_authenticate, handle_sasl_handshake
from .trace import enabled as trace_enabled
from .trace import trace_answer, trace_request
from .versions import ADVERTISED, KafkaApi

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext

__all__ = ["HANDLERS", "error_response_body", "make_dispatch"]

HANDLERS: dict[int, Callable[..., Any]] = {
    KafkaApi.PRODUCE: handle_produce,
    KafkaApi.FETCH: handle_fetch,
    KafkaApi.LIST_OFFSETS: handle_list_offsets,
    KafkaApi.METADATA: handle_metadata,
    KafkaApi.API_VERSIONS: handle_api_versions,
    KafkaApi.CREATE_TOPICS: handle_create_topics,
    KafkaApi.DELETE_TOPICS: handle_delete_topics,
    KafkaApi.INIT_PRODUCER_ID: handle_init_producer_id,
    KafkaApi.DELETE_RECORDS: handle_delete_records,
    KafkaApi.OFFSET_FOR_LEADER_EPOCH: handle_offset_for_leader_epoch,
    KafkaApi.CREATE_PARTITIONS: handle_create_partitions,
    KafkaApi.DESCRIBE_CONFIGS: handle_describe_configs,
    KafkaApi.DESCRIBE_ACLS: handle_describe_acls,
    KafkaApi.CREATE_ACLS: handle_create_acls,
    KafkaApi.DELETE_ACLS: handle_delete_acls,
    KafkaApi.ALTER_CONFIGS: handle_alter_configs,
    KafkaApi.INCREMENTAL_ALTER_CONFIGS: handle_incremental_alter_configs,
    KafkaApi.SASL_HANDSHAKE: handle_sasl_handshake,
    KafkaApi.SASL_AUTHENTICATE: handle_sasl_authenticate,
}

HANDLERS.update(GROUP_HANDLERS)  # the consumer-group APIs, a module of their own

missing = sorted(set(ADVERTISED) - set(HANDLERS))
if missing:  # pragma: no cover - a table edited by hand
    raise RuntimeError(f"advertised Kafka APIs without a handler: {missing}")


def error_response_body(request: KafkaRequest | KafkaBadRequest, exc: BrokerError) -> Any:
    """A response entity carrying only ``exc``, or None (the API has no
    top-level error code: the connection is closed instead)."""
    if type(request) is not KafkaRequest:
        return None
    return error_body(response_class(request.api_key, request.api_version), kafka_code(exc))


def make_dispatch(ctx: BrokerContext) -> Callable[[ConnectionInfo, Any], object]:
    """The dispatcher of Kafka connections: handler, then framing. With the
    request trace on (trace.py: the broker at DEBUG), each request and its
    answer are logged."""

    def dispatch(info: ConnectionInfo, request: KafkaRequest) -> object:
        handler = HANDLERS.get(request.api_key)
        if handler is None:  # the codec admits only advertised APIs
            raise BrokerError(f"no handler for Kafka api_key {request.api_key}")
        try:
            if trace_enabled() and type(request) is KafkaRequest:
                started = trace_request(info, request)
                return _finish(request, handler(ctx, info, request), started, True)
            return _finish(request, handler(ctx, info, request))
        finally:
            ctx.run_woken_answers()  # native long polls its appends woke (app.py)

    return dispatch


def _finish(
    request: KafkaRequest, reply: Any, started: float | None = None, traced: bool = False
) -> object:
    kind = type(reply)
    if kind is bytes or kind is Streamed or reply is NO_REPLY:
        return reply
    if kind is Later:
        return Later(_finish_later, request, reply, started, traced, barrier=reply.barrier)
    if traced:
        trace_answer(request, reply, started)
    return encode_response(request, reply)


async def _finish_later(
    request: KafkaRequest, later: Later, started: float | None, traced: bool
) -> object:
    return _finish(request, await later.fn(*later.args), started, traced)
