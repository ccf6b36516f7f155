"""Produce: raw batches from the frame into partition logs, acked per flush mode.

The synchronous half runs in the connection's reader, in request order:
look the partition up, check that its entry is exactly one batch, and
``log.append`` it (which validates the batch and writes it, or writes nothing
and raises). Only if some partition's data is not yet as durable as its
topic's flush mode promises does the handler return ``Later`` to wait for
the fsync (group commit) in a task of its own; with flush ``none`` and
``interval`` the response is encoded at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import (
    BrokerError,
    InvalidRecordError,
    InvalidRequestError,
    RequestTimedOutError,
    TopicAuthorizationError,
)
from tailrace.client.protocol import (
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopicResult,
    Request,
)
from tailrace.client.records import LENGTH_PREFIX

from ..log.manager import validate_topic_name
from ..metrics import definitions as metrics
from ..security.authz import TOPIC, WRITE
from ..server.connection import NO_REPLY, CloseConnection, ConnectionInfo, Later

if TYPE_CHECKING:
    from ..log.partition import AppendResult, PartitionLog
    from .context import BrokerContext

__all__ = ["handle_produce"]

log = logging.getLogger(__name__)


def handle_produce(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: ProduceRequest = request.body
    if body.acks not in (0, 1):
        raise InvalidRequestError(f"acks must be 0 or 1, not {body.acks}")
    if ctx.config.auto_create_topics:
        missing = ctx.missing_topics([t.name for t in body.topics])
        if missing and ctx.authz is not None:
            missing = [n for n in missing if ctx.authz.may_create_topic(info, n)]
        if missing:
            # Later requests on this connection may write to the same topics:
            # hold them (barrier) until the topics exist, so order is kept.
            return Later(_create_then_produce, ctx, info, request, missing, barrier=True)
    return _produce(ctx, info, request)


async def _create_then_produce(
    ctx: BrokerContext, info: ConnectionInfo, request: Request, missing: list[str]
) -> object:
    try:
        await ctx.auto_create([n for n in missing if _valid_name(n)])
    except BrokerError as exc:
        log.warning("auto-creating %s failed: %s", ", ".join(missing), exc)
    reply = _produce(ctx, info, request)
    if type(reply) is Later:
        return await reply.fn(*reply.args)
    return reply


def _valid_name(name: str) -> bool:
    try:
        validate_topic_name(name)
    except BrokerError:
        return False
    return True


def _produce(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: ProduceRequest = request.body
    topics: list[ProduceTopicResult] = []
    waits: list[tuple[PartitionLog, AppendResult, ProducePartitionResult]] = []
    failed: list[str] = []
    records_in = bytes_in = 0
    authz = ctx.authz
    for t in body.topics:
        results = []
        topics.append(ProduceTopicResult(name=t.name, partitions=results))
        denied = authz is not None and not authz.allowed(info, WRITE, TOPIC, t.name)
        for p in t.partitions:
            result = ProducePartitionResult(partition=p.partition)
            results.append(result)
            try:
                if denied:
                    raise TopicAuthorizationError(f"{info.principal} may not write to {t.name!r}")
                plog = ctx.partition_for_produce(info, t.name, p.partition)
                records = p.records
                if len(records) >= 12:
                    _, batch_length = LENGTH_PREFIX.unpack_from(records)
                    if batch_length + 12 != len(records):
                        raise InvalidRecordError(
                            "a partition's records must be exactly one batch "
                            f"({len(records)} bytes given, the first batch has {batch_length + 12})"
                        )
                appended = plog.append(records)
            except BrokerError as exc:
                result.error_code = int(exc.code)
                result.error_message = exc.message
                failed.append(f"{t.name}/{p.partition}: {exc.message}")
                metrics.count_partition_error("produce", result.error_code)
                continue
            if not appended.duplicate:
                records_in += appended.last_offset - appended.base_offset + 1
                bytes_in += len(records)
            result.base_offset = appended.base_offset
            result.log_append_time_ms = appended.log_append_time
            result.log_start_offset = appended.log_start_offset
            result.duplicate = appended.duplicate
            if plog.high_watermark <= appended.last_offset:
                waits.append((plog, appended, result))
    if records_in:
        metrics.PRODUCED_RECORDS.inc(records_in)
        metrics.PRODUCED_BYTES.inc(bytes_in)
    if body.acks == 0:
        if failed:
            # Nobody reads an acks-0 response: closing is how the producer learns.
            raise CloseConnection("acks=0 produce failed: " + "; ".join(failed[:3]))
        return NO_REPLY
    response = ProduceResponse(topics=topics)
    if not waits:
        return ctx.encode(request, response)
    return Later(_wait_durable, ctx, request, response, waits, body.timeout_ms / 1000)


async def _wait_durable(
    ctx: BrokerContext,
    request: Request,
    response: ProduceResponse,
    waits: list[tuple[PartitionLog, AppendResult, ProducePartitionResult]],
    timeout: float,
) -> bytes:
    async def one(
        plog: PartitionLog, appended: AppendResult, result: ProducePartitionResult
    ) -> None:
        try:
            await plog.wait_durable(appended)
        except BrokerError as exc:
            result.error_code = int(exc.code)
            result.error_message = exc.message
            result.base_offset = -1
            metrics.count_partition_error("produce", result.error_code)

    with trio.move_on_after(max(timeout, 0.0)) as scope:
        if len(waits) == 1:
            await one(*waits[0])
        else:
            async with trio.open_nursery() as nursery:
                for w in waits:
                    nursery.start_soon(one, *w)
    if scope.cancelled_caught:
        for plog, appended, result in waits:
            if result.error_code == 0 and plog.high_watermark <= appended.last_offset:
                error = RequestTimedOutError(
                    f"not durable within timeout_ms {int(timeout * 1000)}; the batch was "
                    "appended and a retry with idempotence will not duplicate it"
                )
                result.error_code = int(error.code)
                result.error_message = error.message
                metrics.count_partition_error("produce", result.error_code)
    return ctx.encode(request, response)
