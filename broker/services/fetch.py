"""Fetch: plan the reads, wait for data (long poll), read under budgets.

Reading makes :class:`~..log.partition.FileSlice` references (fd,
position, length) and nothing else: a front-end writes them with sendfile
(or converts them on the copy path) and releases them once written.

Budgets: each partition reads at most its ``max_bytes`` and the whole
response at most ``max_bytes``, except that the first batch of the first
partition with data always comes whole, so a consumer can always make
progress past a batch larger than its limits. A front-end that converts
what it reads (:data:`Convert`) has the budget counted in converted bytes.

Long poll: when fewer than ``min_bytes`` are readable, :func:`wait` waits for
any of the partitions' high-watermark events, the broker draining, or the
deadline, whichever is first; there is no polling loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import BrokerError, TopicAuthorizationError

from ..metrics import definitions as metrics
from ..security.authz import READ, TOPIC
from .topics import partition_for_fetch

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..log.partition import FileSlice, PartitionLog
    from ..server.connection import ConnectionInfo

__all__ = ["Read", "ReadOutcome", "available", "plan", "read", "wait"]


@dataclass(slots=True)
class Read:
    topic: str
    partition: int
    offset: int
    max_bytes: int
    #: the leader epoch of the reader's metadata (Kafka Fetch v9+), -1: unsaid
    current_leader_epoch: int = -1


@dataclass(slots=True)
class ReadOutcome:
    topic: str
    partition: int
    offset: int
    max_bytes: int
    error: BrokerError | None = None
    high_watermark: int = -1
    log_start_offset: int = -1
    plog: PartitionLog | None = None
    #: what :func:`read` found: a file slice (zero copy), or converted bytes
    slice: FileSlice | None = None
    data: bytes | None = None


#: ``convert(slice) -> bytes | None``: None keeps the slice as it is
#: (sendfile); bytes replace it (the slice is then released by read()).
Convert = Callable[["FileSlice"], "bytes | None"]


def plan(ctx: BrokerContext, info: ConnectionInfo, reads: list[Read]) -> list[ReadOutcome]:
    """Authorize and look up each partition, range-check its offset (now,
    not after a wait). A failed partition has ``error`` set and no ``plog``."""
    outcomes = []
    authz = ctx.authz
    denied: dict[str, bool] = {}
    for r in reads:
        out = ReadOutcome(r.topic, r.partition, r.offset, r.max_bytes)
        outcomes.append(out)
        try:
            if authz is not None:
                no = denied.get(r.topic)
                if no is None:
                    no = denied[r.topic] = not authz.allowed(info, READ, TOPIC, r.topic)
                if no:
                    raise TopicAuthorizationError(f"{info.principal} may not read {r.topic!r}")
            if ctx.replicas is not None:  # consumers read at the leader only
                ctx.replicas.check_readable(r.topic, r.partition, r.current_leader_epoch)
            plog = partition_for_fetch(ctx, r.topic, r.partition)
            out.high_watermark = plog.high_watermark
            out.log_start_offset = plog.log_start_offset
            plog.position_of(r.offset)
        except BrokerError as exc:
            out.error = exc
            metrics.count_partition_error("fetch", int(exc.code))
            continue
        out.plog = plog
    return outcomes


def available(outcomes: list[ReadOutcome]) -> int:
    """Readable bytes over the planned partitions (each capped by its own
    max_bytes); a failed partition counts as plenty (answer at once)."""
    total = 0
    for out in outcomes:
        plog = out.plog
        if plog is None:
            if out.error is not None:
                return 1 << 62
            continue
        try:
            total += min(plog.available_bytes(plog.position_of(out.offset)), max(out.max_bytes, 1))
        except BrokerError:
            return 1 << 62  # an error is worth answering at once
    return total


def must_wait(outcomes: list[ReadOutcome], min_bytes: int, max_wait_ms: int) -> bool:
    """Whether a long poll is needed before :func:`read`."""
    if max_wait_ms <= 0 or available(outcomes) >= max(min_bytes, 1):
        return False
    metrics.FETCH_LONG_POLLS.inc()
    return True


async def wait(
    ctx: BrokerContext,
    outcomes: list[ReadOutcome],
    min_bytes: int,
    max_wait_ms: int,
    on_wake: Callable[[], object] | None = None,
) -> None:
    """Until ``min_bytes`` are readable, the broker drains or
    ``max_wait_ms`` passes.

    ``on_wake``, when given, is queued with :meth:`BrokerContext.answer_soon`
    at every wake-up besides waking this task: the front-end may answer
    from the waking request's step (it checks for itself that enough is
    readable, and that this task has not gone on), saving the task switch."""
    deadline = trio.current_time() + max_wait_ms / 1000
    logs = [o.plog for o in outcomes if o.plog is not None]
    wanted = max(min_bytes, 1)
    # This task starts some time after plan() looked: check again before
    # waiting. The wake-up is registered with every partition before the
    # check and stays registered across the loop (no checkpoint between a
    # check and a registration), so an append is never missed. An append
    # wakes this task directly, in the append's own step (PartitionLog.
    # watch_hw): no waiter tasks. A draining broker wakes every partition's
    # watchers.
    woken = trio.Event()
    wake = _waker(ctx, woken, on_wake)
    for plog in logs:
        plog.watch_hw(wake)
    try:
        while (
            available(outcomes) < wanted
            and trio.current_time() < deadline
            and not ctx.draining.is_set()
        ):
            with trio.move_on_at(deadline):
                await woken.wait()
            woken = trio.Event()
            for plog in logs:
                plog.unwatch_hw(wake)
            wake = _waker(ctx, woken, on_wake)
            for plog in logs:
                plog.watch_hw(wake)
    finally:
        for plog in logs:
            plog.unwatch_hw(wake)


def _waker(
    ctx: BrokerContext, woken: trio.Event, on_wake: Callable[[], object] | None
) -> Callable[[], object]:
    if on_wake is None:
        return woken.set

    def wake() -> None:
        if not woken.is_set():
            woken.set()
            ctx.answer_soon(on_wake)

    return wake


def read(outcomes: list[ReadOutcome], max_bytes: int, convert: Convert | None = None) -> None:
    """Read each planned partition into its outcome (``slice`` or ``data``)
    under the budgets; refreshes high watermarks and log starts. On an
    exception every slice taken so far is released."""
    remaining = max(max_bytes, 0)
    first = True
    try:
        for out in outcomes:
            plog = out.plog
            if plog is None:
                continue
            try:
                out.high_watermark = plog.high_watermark
                out.log_start_offset = plog.log_start_offset
                if not first and remaining <= 0:
                    continue
                limit = max(min(out.max_bytes, remaining), 0)
                fslice = plog.read(out.offset, limit)
            except BrokerError as exc:
                out.error = exc
                metrics.count_partition_error("fetch", int(exc.code))
                continue
            if fslice is None:
                continue
            size = fslice.length
            if convert is not None:
                try:
                    data = convert(fslice)
                except BrokerError as exc:
                    fslice.release()
                    out.error = exc
                    metrics.count_partition_error("fetch", int(exc.code))
                    continue
                except BaseException:
                    fslice.release()
                    raise
                if data is not None:
                    fslice.release()
                    size = len(data)
                    if not first and size > remaining:
                        continue
                    out.data = data
                    remaining -= size
                    first = False
                    continue
            if not first and size > remaining:
                fslice.release()  # only the response's first batch may overshoot
                continue
            out.slice = fslice
            remaining -= size
            first = False
    except BaseException:
        release(outcomes)
        raise


def release(outcomes: list[ReadOutcome]) -> None:
    for out in outcomes:
        if out.slice is not None:
            out.slice.release()
            out.slice = None
