"""Produce (native front-end): an adapter over :mod:`..services.produce`.

The synchronous half runs in the connection's reader, in request order (the
service validates and appends); only if some partition's data is not yet as
durable as its topic's flush mode promises does the handler return ``Later``
to wait for the fsync (group commit) in a task of its own; with flush
``none`` and ``interval`` the response is encoded at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgpack

from tailrace.client.errors import BrokerError, InvalidRequestError
from tailrace.client.protocol import (
    APIS,
    ApiKey,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopicResult,
    Request,
)
from tailrace.client.protocol.frames import encode_frame_prefix

from ..server.connection import NO_REPLY, CloseConnection, ConnectionInfo, Later
from ..services import produce as service
from ..services import topics
from .errors import fill

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_produce"]

log = logging.getLogger(__name__)


def handle_produce(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: ProduceRequest = request.body
    if body.acks not in (0, 1, -1):
        raise InvalidRequestError(f"acks must be 0, 1 or -1 (all), not {body.acks}")
    missing = topics.topics_to_auto_create(ctx, info, [t.name for t in body.topics])
    if missing:
        # Later requests on this connection may write to the same topics:
        # hold them (barrier) until the topics exist, so order is kept.
        return Later(_create_then_produce, ctx, info, request, missing, barrier=True)
    return _produce(ctx, info, request)


async def _create_then_produce(
    ctx: BrokerContext, info: ConnectionInfo, request: Request, missing: list[str]
) -> object:
    try:
        await topics.auto_create(ctx, missing)
    except BrokerError as exc:
        log.warning("auto-creating %s failed: %s", ", ".join(missing), exc)
    reply = _produce(ctx, info, request)
    if type(reply) is Later:
        return await reply.fn(*reply.args)
    return reply


def _produce(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: ProduceRequest = request.body
    writes = [
        service.Write(t.name, p.partition, p.records) for t in body.topics for p in t.partitions
    ]
    outcomes = service.append(ctx, info, writes, body.acks)
    if body.acks == 0:
        failed = [f"{o.topic}/{o.partition}: {o.error.message}" for o in outcomes if o.error]
        if failed:
            # Nobody reads an acks-0 response: closing is how the producer learns.
            raise CloseConnection("acks=0 produce failed: " + "; ".join(failed[:3]))
        return NO_REPLY
    if not service.needs_wait(outcomes):
        return _encode(ctx, request, outcomes)
    return Later(_wait_durable, ctx, request, outcomes, body.timeout_ms / 1000)


async def _wait_durable(
    ctx: BrokerContext, request: Request, outcomes: list[service.WriteOutcome], timeout: float
) -> bytes:
    try:
        await service.wait_durable(outcomes, timeout)
    finally:
        ctx.run_woken_answers()  # the long polls this sync woke (see Broker._dispatch)
    return _encode(ctx, request, outcomes)


#: the versions whose response is ProduceResponse (see _encode)
_PLAIN_VERSIONS = frozenset(
    v
    for v in range(APIS[ApiKey.PRODUCE].min_version, APIS[ApiKey.PRODUCE].max_version + 1)
    if APIS[ApiKey.PRODUCE].response_type(v) is ProduceResponse
)


def _encode(ctx: BrokerContext, request: Request, outcomes: list[service.WriteOutcome]) -> bytes:
    """The response's frame. Every partition appended (the usual answer):
    its msgpack map is built here directly, with the keys and order of the
    schema's encoder for ProduceResponse, which costs a third of building
    the message objects and encoding them (the broker's own values need no
    checking). Anything else, an error included, goes through the schema.
    tests/broker/test_produce_response.py holds the two byte for byte equal."""
    if request.api_version not in _PLAIN_VERSIONS or any(o.error is not None for o in outcomes):
        return ctx.encode(request, _response(request.body, outcomes))
    it = iter(outcomes)
    topics = []
    for t in request.body.topics:
        partitions = []
        for p in t.partitions:
            o = next(it)
            partitions.append(
                {
                    "partition": p.partition,
                    "error_code": 0,
                    "error_message": None,
                    "base_offset": o.base_offset,
                    "log_append_time_ms": o.log_append_time,
                    "log_start_offset": o.log_start_offset,
                    "duplicate": o.duplicate,
                }
            )
        topics.append({"name": t.name, "partitions": partitions})
    body = msgpack.packb({"error_code": 0, "error_message": None, "topics": topics})
    return encode_frame_prefix(
        request.api_key, request.api_version, request.correlation_id, body, 0
    )


def _response(body: ProduceRequest, outcomes: list[service.WriteOutcome]) -> ProduceResponse:
    it = iter(outcomes)
    topics_out = []
    for t in body.topics:
        results = []
        for p in t.partitions:
            o = next(it)
            result = ProducePartitionResult(
                partition=p.partition,
                base_offset=o.base_offset,
                log_append_time_ms=o.log_append_time,
                log_start_offset=o.log_start_offset,
                duplicate=o.duplicate,
            )
            fill(result, o.error)
            results.append(result)
        topics_out.append(ProduceTopicResult(name=t.name, partitions=results))
    return ProduceResponse(topics=topics_out)
