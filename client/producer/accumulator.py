"""Where sent records wait to become batches: thread-safe, bounded, no I/O.

``send()`` appends here from any thread (the blocking producer's callers) or
from the trio loop (the async producer); the sender task takes batches out.
One lock guards everything; the work done under it is a few list and dict
operations per record, nothing else.

Rules:

1. Each (topic, partition) has at most one open batch. A batch is sealed
   when it reaches ``batch_bytes``, when it has been open for ``linger``
   seconds (unless the sender still holds batches of its partition that
   have not gone out: then it keeps filling), or when the producer flushes;
   sealed batches queue in order.
2. Every record's bytes are reserved against ``buffer_bytes`` until its batch
   completes: a batch reserves in chunks (RESERVE_CHUNK), gives back what it
   did not use when sealed, and the rest when it completes. ``try_append``
   refuses (returns None) when a reservation does not fit; callers wait for
   space (``wait_for_space`` from threads, the ``space_freed`` hook from
   trio) up to ``max_block_ms``.
3. The sender is woken (the ``wakeup`` callable) only when it must act:
   a batch was sealed, or the first open batch appeared while nothing else
   was pending (so no linger deadline was armed).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Container

from ..errors import ClientClosedError
from .batch import ProducerBatch, RecordFuture

_new_future = tuple.__new__

#: Buffer bytes a batch reserves at a time (at most batch_bytes in all).
RESERVE_CHUNK = 64 * 1024

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
        #: topic -> partition -> the open batch
        self._open: dict[str, dict[int, ProducerBatch]] = {}
        self._open_count = 0
        self._ready: deque[ProducerBatch] = deque()
        self.buffered = 0
        self.closed = False
        self._flush_requests = 0
        #: called (on the sender's thread) whenever reserved bytes are released
        self.space_freed: Callable[[], None] | None = None

    # --- the send() side ------------------------------------------------

    def _reserve(self, batch: ProducerBatch, need: int) -> bool:
        # under the lock: grow the batch's reservation by at least ``need``,
        # by a whole chunk when the buffer has room for one (so the next
        # records take the fast path), else by exactly ``need`` (what
        # wait_for_space waits for: it must not wake a sender for a chunk
        # that still does not fit)
        extra = max(need, min(RESERVE_CHUNK, self.batch_bytes - batch.reserved))
        if self.buffered + extra > self.buffer_bytes and self.buffered:
            extra = need
            if self.buffered + extra > self.buffer_bytes:
                return False
        self.buffered += extra
        batch.reserved += extra
        return True

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
        """Add a record (the general path); None when the buffer has no room.

        Buffer bytes are reserved per batch in chunks of up to RESERVE_CHUNK,
        so the producer's per-record fast path (ProducerCore.make_try_send,
        which appends under this same lock) only compares the batch's size
        with its reservation.
        """
        wake = False
        with self._lock:
            if self.closed:
                raise ClientClosedError("the producer is closed")
            by_partition = self._open.get(topic)
            if by_partition is None:
                by_partition = self._open[topic] = {}
            batch = by_partition.get(partition)
            if batch is not None and batch.records and batch.size + size > self.batch_bytes:
                self._seal(batch)
                batch = None
                wake = True
            if batch is None:
                batch = ProducerBatch(topic, partition, timestamp)
                if not self._reserve(batch, size):
                    return None
                by_partition[partition] = batch
                self._open_count += 1
                wake = wake or (self._open_count == 1 and not self._ready)
            elif batch.size + size > batch.reserved and not self._reserve(
                batch, batch.size + size - batch.reserved
            ):
                return None
            records = batch.records
            index = len(records)
            records.append((timestamp - batch.base_timestamp, key, value, headers))
            batch.size += size
            if timestamp > batch.max_timestamp:
                batch.max_timestamp = timestamp
        if wake:
            self._wakeup()
        return _new_future(RecordFuture, (batch, index, timestamp))

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

    def _seal(self, batch: ProducerBatch) -> None:
        # under the lock: unused reservation goes back to the buffer
        del self._open[batch.topic][batch.partition]
        self._open_count -= 1
        unused = batch.reserved - batch.size
        if unused:
            self.buffered -= unused
            batch.reserved = batch.size
            self._space.notify_all()
        batch.sealed = True
        self._ready.append(batch)
        if self._on_seal is not None:
            self._on_seal(batch.topic, batch.partition)

    # --- the sender side --------------------------------------------------

    def drain(self, hold: Container[tuple[str, int]] = ()) -> list[ProducerBatch]:
        """Take every sealed batch, sealing open ones whose linger expired
        (all of them while a flush is pending or after close).

        ``hold``: (topic, partition)s whose earlier batches the sender still
        has waiting to go out (a retry's back-off, a broken connection, one
        batch per partition per request). Their open batch is not sealed for
        its linger: it could not go out before those anyway, and it keeps
        filling up to ``batch_bytes``, so a partition that fell behind catches
        up in full batches rather than one linger's worth of records each."""
        now = time.monotonic()
        with self._lock:
            if self._open_count:
                everything = self._flush_requests > 0 or self.closed
                linger = self.linger
                for batch in self._open_batches():
                    if everything or (
                        now - batch.created >= linger and (batch.topic, batch.partition) not in hold
                    ):
                        self._seal(batch)
            out = list(self._ready)
            self._ready.clear()
        return out

    def requeue(self, batches: list[ProducerBatch]) -> None:
        """Put drained batches back at the head of the ready queue, in their
        order (a direct send that could not take them: Sender.send_direct)."""
        with self._lock:
            self._ready.extendleft(reversed(batches))

    def next_deadline(self, hold: Container[tuple[str, int]] = ()) -> float | None:
        """time.monotonic() at which the oldest open batch's linger expires
        (batches ``hold`` keeps open, see drain, are not waited for)."""
        with self._lock:
            if self._ready or ((self._flush_requests or self.closed) and self._open_count):
                return 0.0
            created = [
                b.created for b in self._open_batches() if (b.topic, b.partition) not in hold
            ]
            if not created:
                return None
            return min(created) + self.linger

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
            return [*self._open_batches(), *self._ready]

    def _open_batches(self) -> list[ProducerBatch]:
        # under the lock
        return [b for by_partition in self._open.values() for b in by_partition.values()]

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
            for batch in self._open_batches():
                self._seal(batch)
            self._space.notify_all()
        self._wakeup()
