"""Producers that feed an oracle History, and a consumer that reads a topic back.

:func:`run_producer` is one idempotent :class:`AsyncProducer` writing
``encode_value(name, seq)`` for seq = 0, 1, 2, ... round-robin over the
topic's partitions (partition = seq mod partitions, so every partition sees
every producer and order is checkable per producer and partition) until
``stop`` is set, optionally at a fixed rate. Each outcome goes to the
History from the record's done-callback, at the moment it arrives.

:func:`read_topic` consumes a topic from the log start to the log end of
each partition (asked with ListOffsets first) and returns the same
:class:`~.oracle.PartitionRead` shape the disk reader gives; an error while
reading (a CorruptRecordError naming offsets, say) is recorded as a problem
of that partition, never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio

from tailrace.client import AsyncAdmin, AsyncConsumer, AsyncProducer
from tailrace.client.errors import TailraceError

from .oracle import History, PartitionRead, encode_value

__all__ = ["ProducerStats", "read_topic", "run_producer"]


class ProducerStats:
    """Latencies (send to ack, seconds) and counts of one producer task."""

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.latencies: list[tuple[float, float]] = []  # (ack time, latency)


async def run_producer(
    address: str,
    topic: str,
    history: History,
    name: str,
    *,
    partitions: int,
    stop: trio.Event,
    rate: float | None = None,
    pad: int = 0,
    config: dict[str, Any] | None = None,
    stats: ProducerStats | None = None,
    close_timeout: float = 30.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write values until ``stop`` is set (see the module docstring), then
    close the producer (records unacknowledged after ``close_timeout``
    become unknown). ``rate`` is records per second (None: as fast as the
    producer's buffer allows). Stop it with ``stop``, not by cancelling."""
    cfg = {"linger_ms": 2, "delivery_timeout_ms": 60_000, "request_timeout_ms": 5_000}
    cfg.update(config or {})
    clock = history.clock
    # The producer is closed by the same task that opened it, never from
    # inside another cancel scope (its nursery must exit where it entered).
    async with AsyncProducer(address, **cfg) as producer:
        task_status.started()
        seq = 0
        interval = 1.0 / rate if rate else 0.0
        next_at = trio.current_time()
        while not stop.is_set():
            partition = seq % partitions
            history.sent(name, seq, topic, partition)
            sent_at = clock()
            try:
                handle = await producer.send(
                    topic, encode_value(name, seq, pad), partition=partition
                )
            except TailraceError as exc:
                # never handed to the producer: certainly not in the log
                history.failed(name, seq, f"not sent: {exc}", definite=True)
                seq += 1
                with trio.move_on_after(0.01):
                    await stop.wait()
                continue
            handle.add_done_callback(_recorder(history, name, seq, sent_at, stats))
            seq += 1
            if stats is not None:
                stats.sent += 1
            if interval:
                next_at += interval
                delay = next_at - trio.current_time()
                if delay > 0:
                    with trio.move_on_after(delay):
                        await stop.wait()
                elif seq % 64 == 0:
                    await trio.lowlevel.checkpoint()
            elif seq % 64 == 0:
                await trio.lowlevel.checkpoint()
        await producer.close(close_timeout)


def _recorder(history: History, name: str, seq: int, sent_at: float, stats: ProducerStats | None):
    def done(handle: Any) -> None:
        error = handle[0].error
        if error is None:
            meta = handle.result(0)
            history.acked(name, seq, meta.partition, meta.offset)
            if stats is not None:
                now = history.clock()
                stats.acked += 1
                stats.latencies.append((now, now - sent_at))
        else:
            history.failed(name, seq, error)

    return done


async def read_topic(
    address: str,
    topic: str,
    partitions: Iterable[int] | None = None,
    *,
    timeout: float = 60.0,
) -> list[PartitionRead]:
    """Consume every partition of ``topic`` from its start to its current
    end, one partition at a time (so an error is that partition's)."""
    async with AsyncAdmin(address) as admin:
        ends = await admin.topic_offsets(topic)
    wanted = sorted(ends) if partitions is None else sorted(partitions)
    return [await _read_partition(address, topic, p, *ends[p], timeout) for p in wanted]


async def _read_partition(
    address: str, topic: str, partition: int, start: int, end: int, timeout: float
) -> PartitionRead:
    r = PartitionRead(topic, partition, log_start=start, log_end=end)
    if end <= start:
        return r
    async with AsyncConsumer(address, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, partition)])
        next_offset = start
        with trio.move_on_after(timeout):
            while next_offset < end:
                try:
                    batch = await consumer.poll(timeout_ms=500)
                except TailraceError as exc:
                    r.problems.append(
                        f"reading failed after offset {next_offset - 1}: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    return r
                for rec in batch:
                    if rec.offset < end:
                        r.records.append((rec.offset, rec.value))
                    next_offset = rec.offset + 1
        if next_offset < end:
            r.problems.append(
                f"read stopped after {timeout:g} s at offset {next_offset}, log end {end}"
            )
    return r
