"""Where sent records wait to become batches: thread-safe, bounded, no I/O.

``send()`` appends here from any thread (the blocking producer's callers) or
from the trio loop (the async producer); the sender task takes batches out.
One lock guards everything; the work done under it is a few list and dict
operations per record, nothing else.

Rules:

1. Each (topic, partition) has at most one open batch. A batch is sealed
   when it reaches ``batch_bytes``, when it has been open for ``linger``
   seconds, or when the producer flushes; sealed batches queue in order.
2. Every record's bytes are reserved against ``buffer_bytes`` until its batch
   completes. ``try_append`` refuses (returns None) when the reservation does
   not fit; callers wait for space (``wait_for_space`` from threads, the
   ``space_freed`` hook from trio) up to ``max_block_ms``.
3. The sender is woken (the ``wakeup`` callable) only when it must act:
   a batch was sealed, or the first open batch appeared while nothing else
   was pending (so no linger deadline was armed).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import ClientClosedError
from .batch import ProducerBatch, RecordFuture

__all__ = ["Accumulator"]


class Accumulator:
    def __init__(
        self,
        *,
        batch_bytes: int,
        linger: float,
        buffer_bytes: int,
        wakeup: Callable[[], None],
        on_seal: Callable[[str, int], None] | None = None,
    ) -> None:
        self.batch_bytes = batch_bytes
        self.linger = linger
        self.buffer_bytes = buffer_bytes
        self._wakeup = wakeup
        self._on_seal = on_seal
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._open: dict[tuple[str, int], ProducerBatch] = {}
        self._ready: deque[ProducerBatch] = deque()
        self.buffered = 0
        self.closed = False
        self._flush_requests = 0
        #: called (on the sender's thread) whenever reserved bytes are released
        self.space_freed: Callable[[], None] | None = None

    # --- the send() side ------------------------------------------------

    def try_append(
        self,
        topic: str,
        partition: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: list | None,
        size: int,
    ) -> RecordFuture | None:
        """Add a record; None when the buffer has no room for ``size`` bytes."""
        wake = False
        with self._lock:
            if self.closed:
                raise ClientClosedError("the producer is closed")
            if self.buffered + size > self.buffer_bytes and self.buffered:
                return None
            self.buffered += size
            tp = (topic, partition)
            batch = self._open.get(tp)
            if batch is None:
                batch = self._open[tp] = ProducerBatch(topic, partition, timestamp)
                wake = len(self._open) == 1 and not self._ready
            elif batch.size + size > self.batch_bytes:
                self._seal(tp, batch)
                batch = self._open[tp] = ProducerBatch(topic, partition, timestamp)
                wake = True
            records = batch.records
            index = len(records)
            records.append((timestamp - batch.base_timestamp, key, value, headers))
            batch.size += size
            if timestamp > batch.max_timestamp:
                batch.max_timestamp = timestamp
            if batch.size >= self.batch_bytes:
                self._seal(tp, batch)
                wake = True
        if wake:
            self._wakeup()
        return RecordFuture(batch, index, timestamp)

    def wait_for_space(self, size: int, timeout: float) -> bool:
        """Block the calling thread until ``size`` bytes fit (or the buffer is
        empty); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._space:
            while self.buffered and self.buffered + size > self.buffer_bytes and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._space.wait(remaining)
        return True

    def _seal(self, tp: tuple[str, int], batch: ProducerBatch) -> None:
        # under the lock
        del self._open[tp]
        batch.sealed = True
        self._ready.append(batch)
        if self._on_seal is not None:
            self._on_seal(batch.topic, batch.partition)

    # --- the sender side --------------------------------------------------

    def drain(self) -> list[ProducerBatch]:
        """Take every sealed batch, sealing open ones whose linger expired
        (all of them while a flush is pending or after close)."""
        now = time.monotonic()
        with self._lock:
            if self._open:
                everything = self._flush_requests > 0 or self.closed
                linger = self.linger
                for tp, batch in list(self._open.items()):
                    if everything or now - batch.created >= linger:
                        self._seal(tp, batch)
            out = list(self._ready)
            self._ready.clear()
        return out

    def next_deadline(self) -> float | None:
        """time.monotonic() at which the oldest open batch's linger expires."""
        with self._lock:
            if self._ready or ((self._flush_requests or self.closed) and self._open):
                return 0.0
            if not self._open:
                return None
            return min(b.created for b in self._open.values()) + self.linger

    def release(self, size: int) -> None:
        """Give back the bytes of a completed batch."""
        with self._space:
            self.buffered -= size
            self._space.notify_all()
        if self.space_freed is not None:
            self.space_freed()

    def pending_batches(self) -> list[ProducerBatch]:
        """Open and sealed-but-undrained batches (for flush)."""
        with self._lock:
            return [*self._open.values(), *self._ready]

    def begin_flush(self) -> None:
        with self._lock:
            self._flush_requests += 1
        self._wakeup()

    def end_flush(self) -> None:
        with self._lock:
            self._flush_requests -= 1

    def close(self) -> None:
        """Refuse new records; everything open becomes ready to send."""
        with self._space:
            self.closed = True
            self._space.notify_all()
        self._wakeup()
