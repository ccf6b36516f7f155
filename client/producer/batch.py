"""A batch being built or in flight, and the per-record handle send() returns.

A record's handle is two references (its batch and its index), so send()
stays cheap; the batch carries the one result every record of it shares
(base offset or exception), and completion wakes whoever waits, whichever
thread they are on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack
import trio

from ..errors import TimeoutError
from ..records import COMPRESSION_GZIP, MAGIC_KAFKA, compress_gzip, encode_batch
from ..records.kafka import build_deltas

__all__ = ["ProducerBatch", "RecordFuture", "RecordMetadata"]

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


class RecordMetadata(NamedTuple):
    """Where a record landed. ``offset`` is -1 when sent with acks 0."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class ProducerBatch:
    """Records for one partition; sealed, encoded, sent, then completed once."""

    __slots__ = (
        "_callbacks",
        "_lock",
        "_thread_event",
        "_trio_event",
        "attempts",
        "base_offset",
        "base_timestamp",
        "count",
        "created",
        "done",
        "encoded",
        "error",
        "max_timestamp",
        "partition",
        "producer_epoch",
        "producer_id",
        "records",
        "reserved",
        "sealed",
        "sequence",
        "size",
        "topic",
    )

    def __init__(self, topic: str, partition: int, base_timestamp: int) -> None:
        self.topic = topic
        self.partition = partition
        #: (timestamp_delta, key, value, headers) per record: the msgpack form
        self.records: list[tuple] = []
        #: records in the batch (kept once ``records`` is freed by encode)
        self.count = 0
        self.size = 0
        #: buffer bytes held for this batch (>= size); released on completion
        self.reserved = 0
        self.base_timestamp = base_timestamp
        self.max_timestamp = base_timestamp
        self.created = time.monotonic()
        self.sealed = False
        self.encoded: bytes | None = None
        self.producer_id = -1
        self.producer_epoch = -1
        self.sequence = -1
        self.attempts = 0
        self.base_offset = -1
        self.error: BaseException | None = None
        self.done = False
        self._lock = threading.Lock()
        self._thread_event: threading.Event | None = None
        self._trio_event: Any = None
        self._callbacks: list[Callable[[], None]] | None = None

    def encode(self, compression: int, compression_level: int, magic: int = 1) -> bytes:
        """The batch's bytes (built once; retries resend the same bytes), in
        the native format (magic 1) or Kafka's (magic 2, ``compression`` any
        Kafka codec id).

        The records are kept until the batch completes: a producer-epoch bump
        renumbers unsent batches and must encode them again."""
        if self.encoded is None and magic == MAGIC_KAFKA:
            self.encoded = bytes(
                build_deltas(
                    self.base_timestamp,
                    self.records,
                    compression=compression,
                    producer_id=self.producer_id,
                    producer_epoch=self.producer_epoch,
                    base_sequence=self.sequence,
                )
            )
            self.count = len(self.records)
        if self.encoded is None:
            records = self.records
            body = _packb(records)
            if compression == COMPRESSION_GZIP:
                body = compress_gzip(body, compression_level)
            self.encoded = encode_batch(
                body,
                len(self.records),
                self.base_timestamp,
                self.max_timestamp,
                compression=compression,
                producer_id=self.producer_id,
                producer_epoch=self.producer_epoch,
                base_sequence=self.sequence,
            )
            self.count = len(records)
        return self.encoded

    def complete(self, base_offset: int, error: BaseException | None = None) -> None:
        """Record the outcome and wake every waiter. Idempotent."""
        with self._lock:
            if self.done:
                return
            self.base_offset = base_offset
            self.error = error
            self.done = True
            thread_event, trio_event = self._thread_event, self._trio_event
            callbacks, self._callbacks = self._callbacks, None
        if thread_event is not None:
            thread_event.set()
        if trio_event is not None:
            trio_event.set()
        if callbacks:
            for cb in callbacks:
                cb()

    def wait_thread(self, timeout: float | None) -> bool:
        """Block the calling (non-trio) thread until done."""
        if self.done:
            return True
        with self._lock:
            if self.done:
                return True
            if self._thread_event is None:
                self._thread_event = threading.Event()
            event = self._thread_event
        return event.wait(timeout)

    async def wait_trio(self) -> None:
        """Wait inside the trio loop that completes the batch."""
        if self.done:
            return
        with self._lock:
            if self.done:
                return
            if self._trio_event is None:
                self._trio_event = trio.Event()
            event = self._trio_event
        await event.wait()

    def add_callback(self, cb: Callable[[], None]) -> None:
        with self._lock:
            if not self.done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(cb)
                return
        cb()


class RecordFuture(tuple):
    """The handle of one sent record, in the manner of concurrent.futures.

    ``result(timeout)`` blocks (from ordinary threads) until the broker
    acknowledged the record and returns its :class:`RecordMetadata`, or
    raises the error that failed it. Inside trio, ``await handle`` or
    ``await handle.wait()`` does the same without blocking the loop.

    A (batch, index, timestamp) tuple: built with one C call per record.
    """

    __slots__ = ()

    def done(self) -> bool:
        return self[0].done

    def _metadata(self) -> RecordMetadata:
        b, index, timestamp = self
        if b.error is not None:
            raise b.error
        offset = -1 if b.base_offset < 0 else b.base_offset + index
        return RecordMetadata(b.topic, b.partition, offset, timestamp)

    def result(self, timeout: float | None = None) -> RecordMetadata:
        if not self[0].wait_thread(timeout):
            raise TimeoutError(f"record not acknowledged within {timeout} s")
        return self._metadata()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self[0].wait_thread(timeout):
            raise TimeoutError(f"record not acknowledged within {timeout} s")
        return self[0].error

    def add_done_callback(self, fn: Callable[[RecordFuture], Any]) -> None:
        """Call ``fn(handle)`` once the record is acknowledged or failed (from
        the producer's thread; keep it short)."""
        self[0].add_callback(lambda: fn(self))

    async def wait(self) -> RecordMetadata:
        await self[0].wait_trio()
        return self._metadata()

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait().__await__()

    def __repr__(self) -> str:
        b = self[0]
        state = "pending" if not b.done else ("failed" if b.error else "done")
        return f"<RecordFuture {b.topic}/{b.partition} {state}>"

    # a handle is an identity, not a value
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__
