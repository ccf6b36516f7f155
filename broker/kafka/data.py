"""Produce, Fetch, ListOffsets and InitProducerId for Kafka clients.

Adapters over :mod:`..services`: the same append, read planning, long poll,
offset lookups and producer ids the native front-end uses; only the kio
entities and the error mapping (:func:`.errors.kafka_error`) are Kafka's.

Fetch is the special case of the front-end: a partition whose batches are
all Kafka's format (magic 2) is written with sendfile straight from the
segment file; a slice holding native batches (magic 1) is down-converted on
the copy path, and the response's ``max_bytes`` counts the converted bytes.
``last_stable_offset`` is the high watermark (there are no transactions),
leader epochs are -1 and fetch sessions are declined (session id 0).
"""

from __future__ import annotations

import logging
import os
import struct
from typing import TYPE_CHECKING, Any

from kio.index import load_response_schema

from tailrace.client.errors import BrokerError, TransactionalIdAuthorizationError
from tailrace.client.protocol import SendfileSlice
from tailrace.client.records import down_convert

from ..server.connection import NO_REPLY, CloseConnection, ConnectionInfo, Later, Streamed
from ..services import fetch as fetch_service
from ..services import offsets as offsets_service
from ..services import produce as produce_service
from .codec import KafkaRequest, encode_response
from .entities import ZERO, error_body, make
from .errors import kafka_error
from .trace import enabled as trace_enabled
from .trace import trace_fetch_answer

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..log.partition import FileSlice

__all__ = ["handle_fetch", "handle_init_producer_id", "handle_list_offsets", "handle_produce"]

log = logging.getLogger(__name__)

_I32 = struct.Struct(">i")
#: Kafka's "no timestamp" for LogAppendTime under CreateTime
_NO_TIME = -1
_KAFKA_MAGIC = 2


def _ms(delta: Any) -> int:
    return int(delta.total_seconds() * 1000)


# --- Produce -------------------------------------------------------------------


def handle_produce(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> object:
    body = request.body
    writes = [
        produce_service.Write(t.name, p.index, p.records)
        for t in body.topic_data
        for p in t.partition_data
    ]
    if body.transactional_id is not None:
        refused = TransactionalIdAuthorizationError(
            "transactions are not supported by this broker (docs/kafka.md)"
        )
        outcomes = [produce_service.WriteOutcome(w.topic, w.partition, refused) for w in writes]
    else:
        outcomes = produce_service.append(ctx, info, writes, body.acks)
    if body.acks == 0:
        failed = [f"{o.topic}/{o.partition}: {o.error.message}" for o in outcomes if o.error]
        if failed:
            # Kafka's rule: an acks=0 producer learns of a failure by the close
            raise CloseConnection("acks=0 produce failed: " + "; ".join(failed[:3]))
        return NO_REPLY
    if not produce_service.needs_wait(outcomes):
        return _produce_response(request, outcomes)
    return Later(_wait_durable, request, outcomes, _ms(body.timeout) / 1000)


async def _wait_durable(
    request: KafkaRequest, outcomes: list[produce_service.WriteOutcome], timeout: float
) -> Any:
    await produce_service.wait_durable(outcomes, timeout)
    return _produce_response(request, outcomes)


def _produce_response(request: KafkaRequest, outcomes: list[produce_service.WriteOutcome]) -> Any:
    it = iter(outcomes)
    topics = []
    for t in request.body.topic_data:
        parts = []
        for _ in t.partition_data:
            o = next(it)
            parts.append(
                {
                    "index": o.partition,
                    "error_code": kafka_error(o.error),
                    "base_offset": o.base_offset,
                    # CreateTime topics: Kafka answers -1 (null here)
                    "log_append_time": None,
                    "log_start_offset": o.log_start_offset,
                    "record_errors": (),
                    "error_message": o.error.message if o.error is not None else None,
                }
            )
        topics.append({"name": t.name, "partition_responses": parts})
    cls = load_response_schema(request.api_key, request.api_version)
    return make(cls, {"responses": topics, "throttle_time": ZERO})


# --- Fetch -------------------------------------------------------------------------


def handle_fetch(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> object:
    body = request.body
    reads = [
        fetch_service.Read(
            t.topic,
            p.partition,
            p.fetch_offset,
            p.partition_max_bytes,
            getattr(p, "current_leader_epoch", -1),  # v9+
        )
        for t in body.topics
        for p in t.partitions
    ]
    outcomes = fetch_service.plan(ctx, info, reads)
    if not fetch_service.must_wait(outcomes, body.min_bytes, _ms(body.max_wait)):
        return _fetch_response(ctx, request, outcomes)
    return Later(_long_poll, ctx, request, outcomes)


async def _long_poll(
    ctx: BrokerContext, request: KafkaRequest, outcomes: list[fetch_service.ReadOutcome]
) -> object:
    body = request.body
    await fetch_service.wait(ctx, outcomes, body.min_bytes, _ms(body.max_wait))
    return _fetch_response(ctx, request, outcomes)


#: the most native bytes one partition of a fetch response converts (at
#: least one whole batch). Converted bytes sit in memory until the client
#: has read them: this bounds one partition's share, and the broker-wide
#: budget (copy_budget.py) the sum over every response not yet written. A
#: reader gets the rest in its next fetch. Records stored in Kafka's
#: format are sent from the file and are not capped.
DOWN_CONVERSION_MAX_BYTES = 1 << 20


def _fetch_response(
    ctx: BrokerContext, request: KafkaRequest, outcomes: list[fetch_service.ReadOutcome]
) -> Streamed:
    body = request.body
    budget = ctx.kafka_copy_budget
    converted = 0

    def convert(fslice: FileSlice) -> bytes | None:
        # under the down-conversion budget (copy_budget.py): nothing is
        # converted once it is spent (the partition answers no records)
        nonlocal converted
        if fslice.magics() == {_KAFKA_MAGIC}:
            return None
        if budget.available <= 0:
            return b""
        data = down_convert(fslice.read_bytes(DOWN_CONVERSION_MAX_BYTES))
        budget.take(len(data))
        converted += len(data)
        return data

    try:
        # the budget is checked per partition in convert(); Kafka-format
        # batches (sendfile, nothing held) keep the fetch's whole max_bytes
        fetch_service.read(outcomes, body.max_bytes, convert)
    except BaseException:
        budget.give(converted)
        raise
    token = os.urandom(12)
    slices: list[FileSlice] = []
    try:
        it = iter(outcomes)
        topics = []
        for t in body.topics:
            parts = []
            for _ in t.partitions:
                o = next(it)
                if o.slice is not None:
                    records: bytes | None = token + _I32.pack(len(slices))
                    slices.append(o.slice)
                else:
                    records = o.data if o.data is not None else b""
                parts.append(
                    {
                        "partition_index": o.partition,
                        "error_code": kafka_error(o.error),
                        "high_watermark": o.high_watermark,
                        "last_stable_offset": o.high_watermark,
                        "log_start_offset": o.log_start_offset,
                        "aborted_transactions": (),
                        "preferred_read_replica": -1,
                        "records": records,
                    }
                )
            topics.append({"topic": t.topic, "partitions": parts})
        cls = load_response_schema(request.api_key, request.api_version)
        entity = make(
            cls,
            {
                "throttle_time": ZERO,
                "error_code": kafka_error(None),
                "session_id": 0,
                "responses": topics,
            },
        )
        frame = encode_response(request, entity)
        reply = _splice(frame, token, slices)
    except BaseException:
        budget.give(converted)
        fetch_service.release(outcomes)
        raise
    reply.on_release = lambda: budget.give(converted)
    if trace_enabled():
        trace_fetch_answer(request, outcomes)
    return reply


def _splice(frame: bytes, token: bytes, slices: list[FileSlice]) -> Streamed:
    """Replace each placeholder (16 bytes after its i32 length) by its file
    slice: the prefix, then bytes and SendfileSlice parts in wire order."""
    if not slices:
        return Streamed(frame, [])
    parts: list[Any] = []
    chunks: list[bytes] = []
    pos = 0
    view = memoryview(frame)
    extra = 0
    for i, fslice in enumerate(slices):
        at = frame.find(token + _I32.pack(i), pos)
        assert at >= 4, "a fetch placeholder went missing"
        chunks.append(view[pos : at - 4].tobytes())
        chunks.append(_I32.pack(fslice.length))
        parts.append(b"".join(chunks))
        chunks = []
        parts.append(SendfileSlice(fslice.length, fslice))
        extra += fslice.length - 16
        pos = at + 16
    tail = view[pos:].tobytes()
    if tail:
        parts.append(tail)
    first = bytearray(parts[0])
    _I32.pack_into(first, 0, len(frame) - 4 + extra)
    return Streamed(bytes(first), parts[1:])


# --- ListOffsets ---------------------------------------------------------------------


def handle_list_offsets(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    body = request.body
    queries = offsets_service.list_offsets(
        ctx,
        info,
        [
            offsets_service.OffsetQuery(
                t.name, p.partition_index, p.timestamp, getattr(p, "current_leader_epoch", -1)
            )
            for t in body.topics
            for p in t.partitions
        ],
    )
    it = iter(queries)
    topics = []
    for t in body.topics:
        parts = []
        for _ in t.partitions:
            q = next(it)
            parts.append(
                {
                    "partition_index": q.partition,
                    "error_code": kafka_error(q.error),
                    "timestamp": q.found_timestamp,
                    "offset": q.offset,
                    "leader_epoch": -1,
                }
            )
        topics.append({"name": t.name, "partitions": parts})
    cls = load_response_schema(request.api_key, request.api_version)
    return make(cls, {"throttle_time": ZERO, "topics": topics})


# --- InitProducerId ----------------------------------------------------------------


def handle_init_producer_id(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest
) -> object:
    body = request.body
    cls = load_response_schema(request.api_key, request.api_version)
    if body.transactional_id is not None:
        error: BrokerError = TransactionalIdAuthorizationError(
            "transactions are not supported by this broker (docs/kafka.md)"
        )
        return error_body(cls, int(kafka_error(error)))
    try:
        offsets_service.check_init_producer_id(ctx, info)
    except BrokerError as exc:
        return error_body(cls, int(kafka_error(exc)))
    # v3+ may name the producer to bump its epoch; v0-2 always start anew
    pid = getattr(body, "producer_id", -1)
    epoch = getattr(body, "producer_epoch", -1)
    return Later(_init_producer_id, ctx, cls, pid, epoch)


async def _init_producer_id(ctx: BrokerContext, cls: type, pid: int, epoch: int) -> Any:
    try:
        pid, epoch = await offsets_service.init_producer_id(ctx, pid, epoch)
    except BrokerError as exc:
        return error_body(cls, int(kafka_error(exc)))
    return make(
        cls,
        {
            "throttle_time": ZERO,
            "error_code": kafka_error(None),
            "producer_id": pid,
            "producer_epoch": epoch,
        },
    )
