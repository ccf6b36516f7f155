"""Produce: authorize, look up, check one batch, append, count, wait.

The synchronous half (:func:`append`) runs in the connection's reader, in
request order: for each partition, authorization (write on the topic), the
internal-topic refusal, the partition lookup, the one-batch check and
``log.append`` (which validates the batch and writes it, or writes nothing
and raises). Each partition's outcome is a :class:`WriteOutcome` whose
``error`` is a ``BrokerError`` or None. Only when some partition's data is
not yet as durable as its topic's flush mode promises does the caller need
:func:`wait_durable` (group commit), which it runs in a task of its own.

Cluster mode (``ctx.replicas`` set): only the partition's leader appends
(NOT_LEADER_OR_FOLLOWER elsewhere); acks=all (-1) is refused before the
append while the ISR is below ``min_insync_replicas`` (NOT_ENOUGH_REPLICAS)
and answered once the replicated high watermark covers the batch
(NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below the minimum
meanwhile, NOT_LEADER_OR_FOLLOWER when the leadership moved first: both
after the append, so the outcome is indefinite and an idempotent retry is
stored once); acks=1 is answered once the batch is as durable on this
broker as the topic's flush mode says. A single node has no replicas and
treats acks=-1 as acks=1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import (
    BrokerError,
    InvalidRecordError,
    RequestTimedOutError,
    TopicAuthorizationError,
)
from tailrace.client.records import LENGTH_PREFIX

from ..metrics import definitions as metrics
from ..security.authz import TOPIC, WRITE
from .topics import is_internal, partition_for_produce

if TYPE_CHECKING:
    from ..cluster.replicas import Leadership
    from ..handlers.context import BrokerContext
    from ..log.partition import AppendResult, PartitionLog
    from ..server.connection import ConnectionInfo

__all__ = ["Write", "WriteOutcome", "append", "needs_wait", "wait_durable"]


@dataclass(slots=True)
class Write:
    """One partition's records (exactly one batch) of a produce request."""

    topic: str
    partition: int
    records: bytes | memoryview | None


@dataclass(slots=True)
class WriteOutcome:
    topic: str
    partition: int
    error: BrokerError | None = None
    base_offset: int = -1
    log_append_time: int = -1
    log_start_offset: int = -1
    duplicate: bool = False
    #: set while the append still waits for durability
    plog: PartitionLog | None = None
    appended: AppendResult | None = None
    #: cluster mode: the leadership the append was checked against, while
    #: the answer waits on it (acks=all: the high watermark)
    lead: Leadership | None = None
    acks: int = 1


def append(
    ctx: BrokerContext, info: ConnectionInfo, writes: list[Write], acks: int = 1
) -> list[WriteOutcome]:
    """Append each write; one outcome per write, in order. Outcomes with
    ``plog`` set are appended but not yet durable (see :func:`wait_durable`)."""
    outcomes: list[WriteOutcome] = []
    replicas = ctx.replicas
    records_in = bytes_in = 0
    authz = ctx.authz
    denied: dict[str, bool] = {}
    for w in writes:
        out = WriteOutcome(w.topic, w.partition)
        outcomes.append(out)
        try:
            if authz is not None:
                no = denied.get(w.topic)
                if no is None:
                    no = denied[w.topic] = not authz.allowed(info, WRITE, TOPIC, w.topic)
                if no:
                    raise TopicAuthorizationError(f"{info.principal} may not write to {w.topic!r}")
            lead = None
            if replicas is not None and not is_internal(w.topic):
                # first: a partition this broker does not host is the leader's
                lead = replicas.leader_for_append(w.topic, w.partition, acks)
            plog = partition_for_produce(ctx, w.topic, w.partition)
            records = w.records
            if records is None:
                raise InvalidRecordError("a partition's records are missing (null)")
            if len(records) >= 12:
                _, batch_length = LENGTH_PREFIX.unpack_from(records)
                if batch_length + 12 != len(records):
                    raise InvalidRecordError(
                        "a partition's records must be exactly one batch "
                        f"({len(records)} bytes given, the first batch has {batch_length + 12})"
                    )
            appended = plog.append(records)
        except BrokerError as exc:
            out.error = exc
            metrics.count_partition_error("produce", int(exc.code))
            continue
        if not appended.duplicate:
            records_in += appended.last_offset - appended.base_offset + 1
            bytes_in += len(records)
        out.base_offset = appended.base_offset
        out.log_append_time = appended.log_append_time
        out.log_start_offset = appended.log_start_offset
        out.duplicate = appended.duplicate
        if lead is not None:
            assert replicas is not None
            replicas.appended(lead)
            if replicas.must_wait(lead, appended, acks):
                out.plog, out.appended, out.lead, out.acks = plog, appended, lead, acks
            continue
        if plog.high_watermark <= appended.last_offset:
            out.plog = plog
            out.appended = appended
    if records_in:
        metrics.PRODUCED_RECORDS.inc(records_in)
        metrics.PRODUCED_BYTES.inc(bytes_in)
    return outcomes


def needs_wait(outcomes: list[WriteOutcome]) -> bool:
    return any(o.plog is not None for o in outcomes)


async def wait_durable(outcomes: list[WriteOutcome], timeout: float) -> None:
    """Wait (at most ``timeout`` seconds) until every appended outcome is as
    durable as its topic promises; a failure or the timeout becomes that
    outcome's error."""
    waits = [o for o in outcomes if o.plog is not None]
    done: set[int] = set()

    async def one(out: WriteOutcome) -> None:
        assert out.plog is not None
        assert out.appended is not None
        try:
            if out.lead is not None:
                await out.lead.manager.wait_acked(out.lead, out.appended, out.acks)
            else:
                await out.plog.wait_durable(out.appended)
        except BrokerError as exc:
            out.error = exc
            out.base_offset = -1
            metrics.count_partition_error("produce", int(exc.code))
        done.add(id(out))

    with trio.move_on_after(max(timeout, 0.0)) as scope:
        if len(waits) == 1:
            await one(waits[0])
        else:
            async with trio.open_nursery() as nursery:
                for w in waits:
                    nursery.start_soon(one, w)
    if scope.cancelled_caught:
        for out in waits:
            assert out.plog is not None
            assert out.appended is not None
            if out.error is None and id(out) not in done:
                out.error = RequestTimedOutError(
                    f"not durable within timeout_ms {int(timeout * 1000)}; the batch was "
                    "appended and a retry with idempotence will not duplicate it"
                )
                metrics.count_partition_error("produce", int(out.error.code))
    for out in waits:
        out.plog = None
        out.appended = None
        out.lead = None
