"""Fetch: file slices out, long poll when there is not enough to send.

Reading makes :class:`FileSlice` references (fd, position, length) and
nothing else: the bytes go from the page cache to the socket with sendfile in
the connection's writer, which releases the slices once written.

Budgets: each partition reads at most its ``max_bytes`` and the whole
response at most ``max_bytes``, except that the first batch of the first
partition with data always comes whole, so a consumer can always make
progress past a batch larger than its limits.

Long poll: when fewer than ``min_bytes`` are readable, the request waits (in
its own task, so later requests on other connections are unaffected) for any
of its partitions' high watermarks to move (``PartitionLog.watch_hw``: the
append wakes the waiting task itself), the broker draining (which wakes every
partition's watchers), or ``max_wait_ms``, whichever is first; there is no
polling loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import BrokerError, TopicAuthorizationError
from tailrace.client.protocol import (
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopicResult,
    Request,
    SendfileSlice,
)

from ..metrics import definitions as metrics
from ..security.authz import READ, TOPIC
from ..server.connection import ConnectionInfo, Later, Streamed

if TYPE_CHECKING:
    from ..log.partition import PartitionLog
    from .context import BrokerContext

__all__ = ["handle_fetch"]

_Plan = list[tuple[FetchPartitionResult, "PartitionLog | None", int, int]]


def handle_fetch(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: FetchRequest = request.body
    topics: list[FetchTopicResult] = []
    plan: _Plan = []
    errors = False
    authz = ctx.authz
    for t in body.topics:
        results = []
        topics.append(FetchTopicResult(name=t.name, partitions=results))
        denied = authz is not None and not authz.allowed(info, READ, TOPIC, t.name)
        for p in t.partitions:
            result = FetchPartitionResult(partition=p.partition)
            results.append(result)
            try:
                if denied:
                    raise TopicAuthorizationError(f"{info.principal} may not read {t.name!r}")
                plog = ctx.partition_for_fetch(info, t.name, p.partition)
                result.high_watermark = plog.high_watermark
                result.log_start_offset = plog.log_start_offset
                plog.position_of(p.fetch_offset)  # range check now, not after a wait
            except BrokerError as exc:
                result.error_code = int(exc.code)
                result.error_message = exc.message
                metrics.count_partition_error("fetch", result.error_code)
                errors = True
                plan.append((result, None, 0, 0))
                continue
            plan.append((result, plog, p.fetch_offset, p.max_bytes))
    response = FetchResponse(topics=topics)
    if errors or body.max_wait_ms <= 0 or _available(plan) >= max(body.min_bytes, 1):
        return _respond(ctx, request, response, plan, body.max_bytes)
    metrics.FETCH_LONG_POLLS.inc()
    return Later(_long_poll, ctx, request, response, plan, body)


def _available(plan: _Plan) -> int:
    total = 0
    for _result, plog, offset, max_bytes in plan:
        if plog is None:
            continue
        try:
            total += min(plog.available_bytes(plog.position_of(offset)), max(max_bytes, 1))
        except BrokerError:
            return 1 << 62  # an error is worth answering at once
    return total


async def _long_poll(
    ctx: BrokerContext, request: Request, response: FetchResponse, plan: _Plan, body: FetchRequest
) -> Streamed:
    deadline = trio.current_time() + body.max_wait_ms / 1000
    logs = [plog for _, plog, _, _ in plan if plog is not None]
    wanted = max(body.min_bytes, 1)
    # This task starts some time after handle_fetch looked: check again
    # before waiting. The wake-up is registered with every partition before
    # the check and stays registered across the loop (no checkpoint between
    # a check and a registration), so an append is never missed. An append
    # wakes this task directly, in the append's own step: no waiter tasks.
    woken = trio.Event()
    wake = woken.set
    for plog in logs:
        plog.watch_hw(wake)
    try:
        while (
            _available(plan) < wanted
            and trio.current_time() < deadline
            and not ctx.draining.is_set()
        ):
            with trio.move_on_at(deadline):
                await woken.wait()
            woken = trio.Event()
            for plog in logs:
                plog.unwatch_hw(wake)
            wake = woken.set
            for plog in logs:
                plog.watch_hw(wake)
    finally:
        for plog in logs:
            plog.unwatch_hw(wake)
    return _respond(ctx, request, response, plan, body.max_bytes)


def _respond(
    ctx: BrokerContext, request: Request, response: FetchResponse, plan: _Plan, max_bytes: int
) -> Streamed:
    slices = []
    remaining = max(max_bytes, 0)
    first = True
    try:
        for result, plog, offset, part_max in plan:
            if plog is None:
                continue
            try:
                result.high_watermark = plog.high_watermark
                result.log_start_offset = plog.log_start_offset
                if not first and remaining <= 0:
                    continue
                limit = max(min(part_max, remaining), 0)
                fslice = plog.read(offset, limit)
            except BrokerError as exc:
                result.error_code = int(exc.code)
                result.error_message = exc.message
                metrics.count_partition_error("fetch", result.error_code)
                continue
            if fslice is None:
                continue
            if not first and fslice.length > remaining:
                fslice.release()  # only the response's first batch may overshoot
                continue
            slices.append(fslice)
            result.records = SendfileSlice(fslice.length, fslice)
            remaining -= fslice.length
            first = False
        prefix, parts = ctx.encode_parts(request, response)
    except BaseException:
        for s in slices:
            s.release()
        raise
    return Streamed(prefix, parts)
