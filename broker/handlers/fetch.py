"""Fetch (native front-end): an adapter over :mod:`..services.fetch`.

The service plans the reads (authorization, range check), waits when fewer
than ``min_bytes`` are readable (in the request's own task, so other
requests are unaffected), and reads file slices under the budgets; the
slices go from the page cache to the socket with sendfile in the
connection's writer, which releases them once written.

A long poll woken by an append is answered in the appending request's own
step when it can be (:class:`_WokenAnswer`): the response is built and
written there, before the producer's own answer, instead of one task
switch and one turn of the event loop later in the poll's task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgpack

from tailrace.client.protocol import (
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopicResult,
    Request,
    SendfileSlice,
)
from tailrace.client.protocol.frames import encode_frame_prefix

from ..metrics import definitions as metrics
from ..server.connection import ALREADY_WRITTEN, ConnectionInfo, Later, Streamed
from ..services import fetch as service
from .errors import fill
from .replication import handle_replica_fetch

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_fetch"]


def handle_fetch(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    if request.api_version:  # version 1: a follower's fetch
        return handle_replica_fetch(ctx, info, request)
    body: FetchRequest = request.body
    reads = [
        service.Read(t.name, p.partition, p.fetch_offset, p.max_bytes)
        for t in body.topics
        for p in t.partitions
    ]
    outcomes = service.plan(ctx, info, reads)
    if not service.must_wait(outcomes, body.min_bytes, body.max_wait_ms):
        return _respond(ctx, request, outcomes)
    return Later(_long_poll, ctx, info, request, outcomes)


async def _long_poll(
    ctx: BrokerContext, info: ConnectionInfo, request: Request, outcomes: list[service.ReadOutcome]
) -> object:
    body: FetchRequest = request.body
    answer = _WokenAnswer(ctx, info, request, outcomes) if info.answer_now is not None else None
    try:
        await service.wait(ctx, outcomes, body.min_bytes, body.max_wait_ms, on_wake=answer)
    except BaseException:
        if answer is not None:
            reply = answer.close()
            if isinstance(reply, Streamed):
                reply.release()
        raise
    if answer is not None:
        reply = answer.close()
        if reply is not None:
            return reply
    return _respond(ctx, request, outcomes)


class _WokenAnswer:
    """A long poll's answer from the step of the request that woke it.

    Queued by the wake-up (see :func:`service.wait`), run by
    :meth:`BrokerContext.run_woken_answers` once that request is done with
    the log. When enough is readable it builds the response and hands it to
    the connection (``info.answer_now``), which writes it at once if its
    writer is waiting for exactly this response; what is not written (all
    of it, or the part the socket did not take) is kept for the poll's task
    to return. The poll's task, woken by the same append, takes the reply
    with :meth:`close`; after that nothing more is done here.
    """

    __slots__ = ("ctx", "info", "outcomes", "reply", "request", "wanted")

    def __init__(
        self,
        ctx: BrokerContext,
        info: ConnectionInfo,
        request: Request,
        outcomes: list[service.ReadOutcome],
    ) -> None:
        self.ctx = ctx
        self.info = info
        self.request: Request | None = request
        self.outcomes = outcomes
        self.wanted = max(request.body.min_bytes, 1)
        #: what the poll's task returns instead of building a response
        self.reply: object = None

    def __call__(self) -> None:
        request = self.request
        if request is None or self.reply is not None or self.ctx.draining.is_set():
            return
        if service.available(self.outcomes) < self.wanted:
            return
        answer_now = self.info.answer_now
        if answer_now is not None:
            self.reply = answer_now(request, lambda: _respond(self.ctx, request, self.outcomes))
            if self.reply is ALREADY_WRITTEN:
                metrics.FETCH_ANSWERED_IN_PLACE.inc()

    def close(self) -> object:
        """The reply (or None: build one), and no further answers from here."""
        self.request = None
        reply, self.reply = self.reply, None
        return reply


def _respond(ctx: BrokerContext, request: Request, outcomes: list[service.ReadOutcome]) -> Streamed:
    body: FetchRequest = request.body
    service.read(outcomes, body.max_bytes)
    try:
        if request.api_version == 0 and all(o.error is None for o in outcomes):
            return _respond_plain(request, outcomes)
        return _respond_schema(ctx, request, outcomes)
    except BaseException:
        service.release(outcomes)
        raise


def _respond_schema(
    ctx: BrokerContext, request: Request, outcomes: list[service.ReadOutcome]
) -> Streamed:
    """The response built as message objects and encoded by the schema."""
    it = iter(outcomes)
    topics = []
    for t in request.body.topics:
        results = []
        for _ in t.partitions:
            o = next(it)
            result = FetchPartitionResult(
                partition=o.partition,
                high_watermark=o.high_watermark,
                log_start_offset=o.log_start_offset,
            )
            fill(result, o.error)
            if o.slice is not None:
                result.records = SendfileSlice(o.slice.length, o.slice)
            results.append(result)
        topics.append(FetchTopicResult(name=t.name, partitions=results))
    prefix, parts = ctx.encode_parts(request, FetchResponse(topics=topics))
    return Streamed(prefix, parts)


def _respond_plain(request: Request, outcomes: list[service.ReadOutcome]) -> Streamed:
    """``_respond`` when no partition has an error (the usual answer): the
    msgpack map is built here directly, with the keys and order of the
    schema's encoder for FetchResponse (``records_length`` after the other
    fields of a partition, its bytes in the records section in order),
    which costs a third of building the message objects and encoding them.
    tests/broker/test_fetch_response.py holds the two byte for byte equal."""
    it = iter(outcomes)
    topics = []
    parts: list = []
    total = 0
    for t in request.body.topics:
        partitions = []
        for _ in t.partitions:
            o = next(it)
            length = 0 if o.slice is None else o.slice.length
            partitions.append(
                {
                    "partition": o.partition,
                    "error_code": 0,
                    "error_message": None,
                    "high_watermark": o.high_watermark,
                    "log_start_offset": o.log_start_offset,
                    "records_length": length,
                }
            )
            parts.append(b"" if o.slice is None else SendfileSlice(length, o.slice))
            total += length
        topics.append({"name": t.name, "partitions": partitions})
    body = msgpack.packb({"error_code": 0, "error_message": None, "topics": topics})
    prefix = encode_frame_prefix(
        request.api_key, request.api_version, request.correlation_id, body, total
    )
    return Streamed(prefix, parts)
