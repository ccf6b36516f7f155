"""The producer's sender task: batches out, acknowledgements in, retries.

Runs in the producer's nursery on the trio thread. It drains sealed batches
from the accumulator into per-partition queues, packs one batch per
partition into each Produce request, keeps up to ``max_in_flight`` requests
outstanding on the connection, and completes each batch from its response.

Rules:

1. Order. Requests go out from this one task, so each partition's batches
   reach the broker in queue order; responses come back in request order.
2. Idempotence (on by default with acks 1). The producer gets an id and epoch
   from the broker and numbers each partition's batches (the sequence of a
   batch's first record); the broker drops a batch it already has and
   answers with the original offsets, so a retry after a lost response
   never duplicates records.
3. Retries. A retriable failure (lost connection, timeout, storage
   unavailable) puts the batch back at its place in its partition queue and
   it is sent again, byte for byte, after ``retry_backoff``; later batches of
   that partition that the broker refuses for the gap are retried with it.
   A batch still failing ``delivery_timeout`` after it was created fails for
   good with the last error. While a partition has batches queued here, its
   open batch in the accumulator is not sealed for its linger but fills up
   to ``batch_bytes``: a partition that fell behind (a retry, a reconnect, a
   busy machine) catches up in full batches, not in one linger's worth of
   records per request.
4. Leaders. In a cluster each request goes to the leader of its
   partitions (``BrokerClient.leader_for``), one request per leader, the
   leaders taken in turn. A partition whose leader is unknown waits; an
   answer NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE or
   UNKNOWN_TOPIC_OR_PARTITION (a topic just created), or a broken
   connection, forgets the leader, and a refresher task asks for metadata
   again (at most once per ``retry_backoff``) and wakes the sender. The
   batch is retried as any retriable failure, byte for byte with its
   sequence numbers: the new leader, whose producer state came with the
   replicated log, recognises a batch the old one stored. Rule 1 holds
   across a leader change: a partition's batches still in flight to the
   old leader are answered (or failed) before any goes to the new one.
5. The direct path. While this task is parked with a request slot free
   and nothing queued (``_direct_ok``), the blocking producer's ``send`` may
   do this task's work for the batches it made due itself, on its own
   thread (:meth:`Sender.send_direct`): drain, number, encode, register the
   request exactly as ``_send_some`` does, and write it with
   ``BrokerConnection.send_from_thread``. Requests may be in flight (at
   2,000 records/s a record usually finds the previous one's answer still
   on its way): the direct request is pipelined behind them on the same
   connection, as ``_send_some`` would. ``gate`` (a threading lock) makes
   that exclusive with the trio side: this task clears ``_direct_ok`` under
   it whenever it wakes, the handling of an answer (``_response_arrived``,
   which changes the slots, the in-flight counts and the queues) holds it
   throughout, and everything a trio-side reader of this state needs
   (flush's ``unfinished``) takes it too. The batches an answer completes
   are completed after the gate is released and ``_direct_ok`` recomputed,
   so an application thread woken by its record's result finds the direct
   path open. Whatever the direct path cannot do without waiting (a busy
   write lock, a second batch of a partition, a partition still in flight
   on another connection) goes back to the accumulator's ready queue, in
   order, and the task is woken as before.
6. A gap the broker cannot explain (OUT_OF_ORDER_SEQUENCE_NUMBER with no
   earlier batch being retried, or UNKNOWN_PRODUCER_ID) bumps the producer
   epoch once every in-flight request has been answered; unsent batches are
   renumbered from 0 under the new epoch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from functools import partial
from typing import Any

import trio

from ..errors import (
    BrokerUnavailableError,
    ErrorCode,
    InvalidProducerEpochError,
    TailraceError,
    TimeoutError,
    error_for_code,
)
from ..protocol import (
    InitProducerIdRequest,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from ..transport.connection import BrokerConnection, PendingResponse
from ..transport.pool import BrokerClient
from .accumulator import Accumulator
from .batch import ProducerBatch

__all__ = ["Sender"]

log = logging.getLogger(__name__)

_SEQ_MOD = 2**31
_REQUEST_OVERHEAD = 4096


class Sender:
    def __init__(
        self,
        client: BrokerClient,
        accumulator: Accumulator,
        *,
        acks: int,
        idempotent: bool,
        max_in_flight: int,
        max_request_bytes: int,
        compression: int,
        compression_level: int,
        retry_backoff: float,
        delivery_timeout: float,
        request_timeout: float,
        magic: int = 1,
    ) -> None:
        self.client = client
        #: the record format batches are built in (1 native, 2 Kafka)
        self.magic = magic
        self.acc = accumulator
        self.acks = acks
        self.idempotent = idempotent and acks != 0
        self.max_request_bytes = max_request_bytes
        self.compression = compression
        self.compression_level = compression_level
        self.retry_backoff = retry_backoff
        self.delivery_timeout = delivery_timeout
        self.request_timeout = request_timeout
        self._slots = trio.Semaphore(max_in_flight)
        self._wake = trio.Event()
        self._queues: dict[tuple[str, int], deque[ProducerBatch]] = {}
        #: earliest trio time a partition may be sent to again (retry back-off)
        self._blocked_until: dict[tuple[str, int], float] = {}
        #: partitions with a batch being retried: gap errors there are expected
        self._rewinding: set[tuple[str, int]] = set()
        self._in_flight: dict[tuple[str, int], int] = {}
        #: the connection a partition's in-flight batches were sent on
        self._sent_on: dict[tuple[str, int], object] = {}
        self._sent: set[ProducerBatch] = set()
        self._requests_in_flight = 0
        #: requests awaiting their response: their connection and deadline
        self._awaiting: dict[PendingResponse, tuple[BrokerConnection, float]] = {}
        self._next_seq: dict[tuple[str, int], int] = {}
        self.producer_id = -1
        self.producer_epoch = -1
        self._epoch_bump_needed = False
        self._all_answered = trio.Event()
        self._all_answered.set()
        self.fatal_error: TailraceError | None = None
        #: set when a leader must be asked for again (see _refresh_leaders)
        self._refresh_wanted = trio.Event()
        #: the leader node served last (requests go to the leaders in turn)
        self._last_node: int | None = None
        #: rule 5: taken by send_direct (any thread, never waiting for it) and
        #: by the trio side around what it must not share with a direct send
        self.gate = threading.Lock()
        #: under gate: a direct send may run now (see _park)
        self._direct_ok = False
        #: under gate: this task waits in _park
        self._idle_parked = False
        #: trio.current_time() - time.perf_counter() (trio's system clock),
        #: so another thread can compute a trio deadline
        self._clock_offset = 0.0
        #: requests written by send_direct (observability, tests)
        self.direct_requests = 0
        #: while an answer is handled under gate: the batches it completed,
        #: completed once the gate is released (see _response_arrived)
        self._completions: list[tuple[ProducerBatch, int, BaseException | None]] | None = None

    def wakeup(self) -> None:
        """Make the sender look at the accumulator (trio thread only)."""
        self._wake.set()

    # --- main loop -------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send until the accumulator is closed and every batch completed."""
        self._clock_offset = trio.current_time() - time.perf_counter()
        task_status.started()
        async with trio.open_nursery() as watchdog:
            watchdog.start_soon(self._expire_requests)
            watchdog.start_soon(self._refresh_leaders)
            await self._run()
            watchdog.cancel_scope.cancel()

    async def _refresh_leaders(self) -> None:
        """Ask for metadata when a leader was forgotten or a queued partition
        has none, then wake the sender; at most once per retry back-off."""
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted = trio.Event()
            topics = sorted({t for (t, _p), q in self._queues.items() if q} | self._stale_topics())
            try:
                await self.client.refresh_metadata(topics or None)
            except (TailraceError, BrokerUnavailableError, TimeoutError) as exc:
                log.debug("metadata refresh failed, will retry: %s", exc)
                self._refresh_wanted.set()
            self._wake.set()
            await trio.sleep(self.retry_backoff)

    def _stale_topics(self) -> set[str]:
        return {t for (t, _p) in self._queues if self.client.leader_for(t, _p) == -1}

    def _leader_lost(self, tp: tuple[str, int]) -> None:
        self.client.invalidate(*tp)
        self._refresh_wanted.set()

    async def _run(self) -> None:
        while True:
            if self._slots.value:
                # Take batches only when one can go out: while every
                # request slot is busy, open batches keep filling (Kafka's
                # accumulator does the same), so a producer with no
                # linger sends fewer, bigger batches instead of queueing
                # a one-record batch per send behind the slots.
                for batch in self.acc.drain(self._backlogged()):
                    queue = self._queues.setdefault((batch.topic, batch.partition), deque())
                    queue.append(batch)
            self._expire_queued()
            if self.idempotent and (self.producer_id < 0 or self._epoch_bump_needed):
                if self._epoch_bump_needed and self._requests_in_flight:
                    await self._all_answered.wait()
                    continue
                if not await self._init_producer_id():
                    if self._finished():
                        return
                    await self._wait_for_wake(trio.current_time() + self.retry_backoff)
                    continue
            if await self._send_some():
                continue
            if self._finished():
                return
            if not self._slots.value:
                await self._wait_for_wake(math.inf)  # an answer frees a slot
                continue
            await self._sleep_until_needed()

    def _finished(self) -> bool:
        return (
            self.acc.closed
            and not self._has_queued()
            and self._requests_in_flight == 0
            and not self.acc.pending_batches()
        )

    def _expire_queued(self) -> None:
        """Fail queued batches whose delivery timeout passed (oldest first)."""
        now = time.monotonic()
        for queue in self._queues.values():
            while queue and now - queue[0].created >= self.delivery_timeout:
                batch = queue.popleft()
                self._finish(
                    batch,
                    -1,
                    TimeoutError(
                        f"batch for {batch.topic}/{batch.partition} not acknowledged within "
                        f"delivery_timeout ({self.delivery_timeout:g} s)"
                    ),
                )

    def unfinished(self) -> list[ProducerBatch]:
        """Batches taken from the accumulator and not yet completed (call
        with ``gate`` held when a direct send may be running)."""
        return [*self._sent, *(b for q in self._queues.values() for b in q)]

    def abort(self, error: BaseException) -> None:
        """Fail every batch not yet acknowledged (a forced close)."""
        with self.gate:
            self._direct_ok = False
            drained = self.acc.drain()
        for batch in drained:
            self._finish(batch, -1, error)
        for queue in self._queues.values():
            while queue:
                self._finish(queue.popleft(), -1, error)

    def _has_queued(self) -> bool:
        return any(self._queues.values())

    def _backlogged(self) -> set[tuple[str, int]]:
        """Partitions with batches queued here: their open batch in the
        accumulator keeps filling past its linger (see Accumulator.drain)."""
        return {tp for tp, queue in self._queues.items() if queue}

    async def _sleep_until_needed(self) -> None:
        deadlines = []
        linger = self.acc.next_deadline(self._backlogged())
        if linger is not None:
            deadlines.append(trio.current_time() + max(0.0, linger - time.monotonic()))
        if self._has_queued():
            blocked = [self._blocked_until.get(tp, 0.0) for tp, q in self._queues.items() if q]
            deadlines.append(min(blocked))
        deadline = min(deadlines) if deadlines else math.inf
        if deadline <= trio.current_time():
            await trio.lowlevel.checkpoint()
            if self._has_queued() and self._requests_in_flight:
                # queued work waits for a free slot: wait for any answer
                await self._wait_for_wake(trio.current_time() + 0.05)
            return
        await self._park(deadline)

    def _direct_conditions(self) -> bool:
        """Whether a direct send (rule 5) may run while this task is parked."""
        return (
            self.acks != 0
            and not self.acc.closed
            and not self.client.routed
            and self._slots.value > 0
            and not self._has_queued()
            and not self._epoch_bump_needed
            and not (self.idempotent and self.producer_id < 0)
            and not self._refresh_wanted.is_set()
        )

    async def _park(self, deadline: float) -> None:
        """Wait for a wake-up or ``deadline``, letting send_direct act meanwhile."""
        with self.gate:
            self._direct_ok = self._direct_conditions()
            self._idle_parked = True
        try:
            await self._wait_for_wake(deadline)
        finally:
            with self.gate:
                self._direct_ok = False
                self._idle_parked = False

    def send_direct(self) -> bool:
        """Rule 5: send what the accumulator has due from the calling thread
        (not the trio thread), if this task is parked idle. True when
        everything due went out (or is handed to the connection: see
        ``BrokerConnection.send_from_thread``), False when the caller must
        wake this task as before (nothing done, or only part)."""
        if not self.gate.acquire(blocking=False):
            return False
        try:
            if not self._direct_ok or self.acc.closed:
                return False
            conn = self.client.ready_connection()
            if conn is None or not conn.thread_writable:
                return False
            batches = self.acc.drain()
            if not batches:
                return False  # a linger not yet over: the task keeps the clock
            taken: list[ProducerBatch] = []
            seen: set[tuple[str, int]] = set()
            total = _REQUEST_OVERHEAD
            for b in batches:
                # as _take_request: one batch per partition, within the size
                tp = (b.topic, b.partition)
                if tp in seen:
                    continue
                seen.add(tp)
                if self.idempotent and b.sequence < 0:
                    self._assign_sequence(tp, b)
                data = b.encode(self.compression, self.compression_level, self.magic)
                if taken and total + len(data) > self.max_request_bytes:
                    continue
                taken.append(b)
                total += len(data)
            for b in taken:
                tp = (b.topic, b.partition)
                if self._in_flight.get(tp, 0) and self._sent_on.get(tp) is not conn:
                    # still in flight on a connection that broke (its failure
                    # not handled yet): the task orders them (_take_request)
                    self.acc.requeue(batches)
                    return False
            rest = [b for b in batches if b not in taken]
            request = self._produce_request(taken)
            deadline = time.perf_counter() + self._clock_offset + self.request_timeout

            def register(pending: PendingResponse) -> None:
                # what _send_some does around conn.send, before a byte leaves
                self._slots.acquire_nowait()  # one is free (_direct_conditions)
                for b in taken:
                    b.attempts += 1
                    tp = (b.topic, b.partition)
                    self._in_flight[tp] = self._in_flight.get(tp, 0) + 1
                    self._sent.add(b)
                    self._sent_on[tp] = conn
                self._requests_in_flight += 1
                if self._all_answered.is_set():
                    self._all_answered = trio.Event()
                self._awaiting[pending] = (conn, deadline)
                pending.on_done(partial(self._response_arrived, taken))
                # still parked: the next record may follow it (a slot left)
                self._direct_ok = self._direct_conditions()

            if conn.send_from_thread(request, register) is None:
                self.acc.requeue(batches)  # the task sends them, in order
                return False
            self.direct_requests += 1
            if rest:
                self.acc.requeue(rest)
                return False
            return True
        finally:
            self.gate.release()

    async def _wait_for_wake(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._wake.wait()
        self._wake = trio.Event()

    # --- building and sending requests --------------------------------------

    def _take_request(
        self, conn: object, route: set[tuple[str, int]] | None = None
    ) -> list[ProducerBatch]:
        """One batch from the head of each sendable partition queue.

        A partition with batches still in flight on another connection (one
        that broke: their failure is not processed yet) is not sendable on
        ``conn``: a batch sent behind them on a new connection could reach
        the broker first, and the broker must see a partition's batches in
        sequence order (and at most five unacknowledged, the window it
        deduplicates)."""
        now = trio.current_time()
        taken: list[ProducerBatch] = []
        total = _REQUEST_OVERHEAD
        for tp, queue in self._queues.items():
            if not queue or self._blocked_until.get(tp, 0.0) > now:
                continue
            if route is not None and tp not in route:
                continue
            if self._in_flight.get(tp, 0) and self._sent_on.get(tp) is not conn:
                continue
            batch = queue[0]
            if self.idempotent and batch.sequence < 0:
                self._assign_sequence(tp, batch)
            data = batch.encode(self.compression, self.compression_level, self.magic)
            if taken and total + len(data) > self.max_request_bytes:
                break
            queue.popleft()
            self._sent.add(batch)  # at once: flush() must always find it
            taken.append(batch)
            total += len(data)
        return taken

    def _produce_request(self, batches: list[ProducerBatch]) -> ProduceRequest:
        """One Produce request carrying ``batches`` (encoded), grouped by topic."""
        topics: dict[str, list[ProducePartition]] = {}
        for b in batches:
            topics.setdefault(b.topic, []).append(
                ProducePartition(partition=b.partition, records=b.encoded)
            )
        return ProduceRequest(
            acks=self.acks,
            timeout_ms=int(self.request_timeout * 1000),
            topics=[ProduceTopic(name=t, partitions=ps) for t, ps in topics.items()],
        )

    def _next_route(self) -> tuple[int | None, set[tuple[str, int]] | None]:
        """The broker to send to next and the partitions to take for it:
        ``(None, None)`` for the bootstrap connection (one broker: every
        partition), else the next leader after the last one served with
        sendable partitions, ``(-1, None)`` when none has a known leader
        (a metadata refresh is asked for)."""
        if not self.client.routed:
            return None, None
        now = trio.current_time()
        by_node: dict[int, set[tuple[str, int]]] = {}
        for tp, queue in self._queues.items():
            if not queue or self._blocked_until.get(tp, 0.0) > now:
                continue
            leader = self.client.leader_for(*tp)
            if leader is None or leader < 0:
                self._blocked_until[tp] = now + self.retry_backoff
                self._refresh_wanted.set()
                continue
            by_node.setdefault(leader, set()).add(tp)
        if not by_node:
            return -1, None
        nodes = sorted(by_node)
        after = [n for n in nodes if self._last_node is not None and n > self._last_node]
        node = after[0] if after else nodes[0]
        self._last_node = node
        return node, by_node[node]

    def _assign_sequence(self, tp: tuple[str, int], batch: ProducerBatch) -> None:
        seq = self._next_seq.get(tp, 0)
        batch.producer_id = self.producer_id
        batch.producer_epoch = self.producer_epoch
        batch.sequence = seq
        self._next_seq[tp] = (seq + len(batch.records)) % _SEQ_MOD

    async def _send_some(self) -> bool:
        if not self._has_queued():
            return False
        if self._slots.value == 0:
            return False
        node, route = self._next_route()
        if route is None and node == -1:
            return False  # every sendable partition waits for its leader
        try:
            # a leader's connection in back-off fails at once (wait=False):
            # sleeping it out here would keep this loop from sending to the
            # new leader that the metadata refresh below names meanwhile
            conn = await self.client.connection(node=node, wait=node is None)
        except (BrokerUnavailableError, TimeoutError):
            until = trio.current_time() + self.retry_backoff
            for tp, queue in self._queues.items():
                if queue and (route is None or tp in route):
                    self._blocked_until[tp] = max(self._blocked_until.get(tp, 0.0), until)
                    if route is not None:
                        self._leader_lost(tp)
            return True
        batches = self._take_request(conn, route)
        if not batches:
            return False
        # Only this task takes slots and one was free above: take it without
        # a schedule point, so the request goes out in this step.
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        request = self._produce_request(batches)
        for b in batches:
            b.attempts += 1
            tp = (b.topic, b.partition)
            self._in_flight[tp] = self._in_flight.get(tp, 0) + 1
        self._requests_in_flight += 1
        self._all_answered = trio.Event() if self._all_answered.is_set() else self._all_answered
        for b in batches:
            self._sent_on[(b.topic, b.partition)] = conn
        try:
            pending = await conn.send(request)
        except (BrokerUnavailableError, TimeoutError) as exc:
            self._request_done(batches)
            self._retry_all(batches, exc, conn)
            return True
        if pending is None:  # acks 0: no response will come
            self._request_done(batches)
            for b in batches:
                self._finish(b, -1, None)
            return True
        # Completed by a callback in the step that reads the response (the
        # connection's reader): no task per request, no task switch between
        # the response and its records' completion. _expire_requests keeps
        # the request timeout.
        self._awaiting[pending] = (conn, trio.current_time() + self.request_timeout)
        pending.on_done(partial(self._response_arrived, batches))
        return True

    def _request_done(self, batches: list[ProducerBatch]) -> bool:
        """Free the request's slot; True when the sender was waiting for one."""
        waiting_for_slot = self._slots.value == 0
        self._slots.release()
        self._requests_in_flight -= 1
        for b in batches:
            tp = (b.topic, b.partition)
            self._in_flight[tp] -= 1
            self._sent.discard(b)
        if self._requests_in_flight == 0:
            self._all_answered.set()
        return waiting_for_slot

    async def _expire_requests(self) -> None:
        """The request timeout of the requests in flight: one task for all of
        them, sleeping until the earliest deadline (at most one
        request_timeout at a time while none is in flight: a request sent
        meanwhile has a later deadline than that wake-up)."""
        while True:
            now = trio.current_time()
            for pending, (conn, deadline) in list(self._awaiting.items()):
                if deadline <= now and pending in self._awaiting:
                    # settles it (and the connection's other requests): the
                    # callback, _response_arrived, forgets it and retries
                    conn.expire(pending, self.request_timeout)
                    self._awaiting.pop(pending, None)  # settled either way
            wake = min(
                # list(): a direct send (rule 5) may add one from its thread
                (deadline for _conn, deadline in list(self._awaiting.values())),
                default=now + self.request_timeout,
            )
            await trio.sleep_until(wake)

    def _response_arrived(self, batches: list[ProducerBatch], pending: PendingResponse) -> None:
        if self._completions is not None:
            # Settled while another answer is handled, on this thread, under
            # the gate already (that handling broke a connection, which
            # fails its other requests at once): handled here, in place, as
            # it always was; its batches complete with the outer answer's.
            self._handle_answer(batches, pending)
            return
        # Under gate (rule 5): a direct send may otherwise be taking a slot,
        # numbering a batch or counting one in flight on the caller's thread.
        completions: list[tuple[ProducerBatch, int, BaseException | None]] = []
        try:
            with self.gate:
                self._direct_ok = False
                self._completions = completions
                try:
                    self._handle_answer(batches, pending)
                finally:
                    self._completions = None
                    if self._idle_parked and not self._wake.is_set():
                        # still parked: the next record may go out directly
                        self._direct_ok = self._direct_conditions()
        finally:
            # outside the gate: the callbacks and the threads these wake
            # (a result() waiting to send the next record) may send directly
            for batch, base_offset, error in completions:
                self._complete(batch, base_offset, error)

    def _handle_answer(self, batches: list[ProducerBatch], pending: PendingResponse) -> None:
        conn, _deadline = self._awaiting.pop(pending, (None, 0.0))
        waiting_for_slot = False
        try:
            try:
                response = pending.result()
            except (BrokerUnavailableError, TimeoutError) as exc:
                waiting_for_slot = self._request_done(batches)
                self._retry_all(batches, exc, conn)
                return
            waiting_for_slot = self._request_done(batches)
            self._complete_from(batches, response)
        finally:
            # Wake the sender only when the answer gave it something to do: a
            # slot it was waiting for, batches queued here (a retry, a
            # backlog), a close or an epoch bump to finish. A lone record's
            # answer at a low rate gives it nothing: a task switch saved.
            if waiting_for_slot or self.acc.closed or self._epoch_bump_needed or self._has_queued():
                self._wake.set()

    def _complete_from(self, batches: list[ProducerBatch], response: Any) -> None:
        if response.error_code:
            error = error_for_code(response.error_code, response.error_message or "")
            for b in batches:
                self._handle_error(b, error)
            return
        results = {(t.name, p.partition): p for t in response.topics for p in t.partitions}
        for b in batches:
            result = results.get((b.topic, b.partition))
            if result is None:
                self._handle_error(b, TailraceError("the broker's response left this batch out"))
            elif result.error_code == 0:
                self._rewinding.discard((b.topic, b.partition))
                self._finish(b, result.base_offset, None)
            else:
                self._handle_error(b, error_for_code(result.error_code, result.error_message or ""))

    # --- outcomes ------------------------------------------------------------

    def _finish(self, batch: ProducerBatch, base_offset: int, error: BaseException | None) -> None:
        if (
            error is not None
            and self.idempotent
            and batch.sequence >= 0
            and batch.producer_epoch == self.producer_epoch
        ):
            # A numbered batch that fails for good leaves a gap the broker
            # waits for forever (every later batch of the partition would be
            # out of order): start the numbering again under a new epoch.
            self._epoch_bump_needed = True
        if self._completions is not None:
            self._completions.append((batch, base_offset, error))
        else:
            self._complete(batch, base_offset, error)

    def _complete(
        self, batch: ProducerBatch, base_offset: int, error: BaseException | None
    ) -> None:
        size = batch.reserved
        batch.complete(base_offset, error)
        batch.records = []
        self.acc.release(size)

    def _expired(self, batch: ProducerBatch) -> bool:
        return time.monotonic() - batch.created >= self.delivery_timeout

    def _retry_all(
        self, batches: list[ProducerBatch], error: BaseException, conn: BrokerConnection | None
    ) -> None:
        routed = self.client.routed
        if not routed and self.client.bootstrap_unanswered(conn):
            # the one broker the metadata named is not answering: ask the
            # next bootstrap broker who leads now (rule 4)
            self._refresh_wanted.set()
        for b in batches:
            if routed:  # the leader's connection broke or timed out: it may be gone
                self._leader_lost((b.topic, b.partition))
            self._retry(b, error)

    def _retry(self, batch: ProducerBatch, error: BaseException) -> None:
        if self._expired(batch) or (self.acc.closed and self.client.closed):
            self._finish(batch, -1, error)
            return
        tp = (batch.topic, batch.partition)
        queue = self._queues.setdefault(tp, deque())
        # keep sequence order: insert before the first batch with a higher one
        if batch.sequence >= 0:
            for i, other in enumerate(queue):
                if other.sequence < 0 or _seq_after(other.sequence, batch.sequence):
                    queue.insert(i, batch)
                    break
            else:
                queue.append(batch)
        else:
            queue.appendleft(batch)
        self._rewinding.add(tp)
        self._blocked_until[tp] = trio.current_time() + self.retry_backoff
        log.debug("retrying batch for %s/%s after %r", batch.topic, batch.partition, error)

    def _handle_error(self, batch: ProducerBatch, error: TailraceError) -> None:
        tp = (batch.topic, batch.partition)
        code = getattr(error, "code", None)
        if code in (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorCode.UNKNOWN_PRODUCER_ID):
            if code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER and (
                tp in self._rewinding or self._earlier_unacknowledged(batch)
            ):
                # An earlier batch is being retried, or is still in flight on
                # a connection that broke (its failure not processed yet, so
                # this batch went out first on a new one): retry in order. A
                # new epoch here would renumber batches that already landed.
                self._retry(batch, error)
                return
            # The broker lost track of us: renumber under a new epoch.
            self._epoch_bump_needed = True
            self._retry(batch, error)
            return
        if code in _LEADER_ERRORS:
            self._leader_lost(tp)
        if isinstance(error, InvalidProducerEpochError):
            self.fatal_error = error
            self._finish(batch, -1, error)
            return
        if error.retriable:
            self._retry(batch, error)
            return
        self._finish(batch, -1, error)

    def _earlier_unacknowledged(self, batch: ProducerBatch) -> bool:
        """Whether a batch of the same partition and epoch with an earlier
        sequence is in flight or queued for a retry."""
        tp = (batch.topic, batch.partition)
        for other in (*self._sent, *self._queues.get(tp, ())):
            if (
                other is not batch
                and (other.topic, other.partition) == tp
                and other.sequence >= 0
                and other.producer_epoch == batch.producer_epoch
                and _seq_after(batch.sequence, other.sequence)
            ):
                return True
        return False

    # --- producer id ---------------------------------------------------------

    async def _init_producer_id(self) -> bool:
        """One attempt to get (or bump) the producer id; False to retry later."""
        bump = self._epoch_bump_needed
        request = InitProducerIdRequest(
            producer_id=self.producer_id if bump else -1,
            producer_epoch=self.producer_epoch if bump else -1,
        )
        try:
            response = await self.client.request(request, timeout=self.request_timeout)
        except (BrokerUnavailableError, TimeoutError) as exc:
            log.debug("InitProducerId failed, will retry: %s", exc)
            return False
        if response.error_code:
            error = error_for_code(response.error_code, response.error_message or "")
            if error.retriable:
                return False
            # Nothing can be sent without an id: fail what waits, stay usable
            # for a later attempt.
            self.abort(error)
            return False
        self.producer_id = response.producer_id
        self.producer_epoch = response.producer_epoch
        self._epoch_bump_needed = False
        if bump:
            # Every partition starts again at sequence 0 under the new epoch.
            # A batch sent before may already be stored (its answer lost):
            # sent again under new numbers it would be stored twice, so it
            # fails with its outcome unknown; batches never sent are renumbered.
            self._next_seq.clear()
            self._rewinding.clear()
            for queue in self._queues.values():
                for b in list(queue):
                    if b.attempts:
                        queue.remove(b)
                        self._finish(b, -1, TailraceError(_UNKNOWN_OUTCOME))
                    else:
                        b.sequence = -1
                        b.encoded = None
        return True


#: Answers that mean the request went to the wrong broker (or too early):
#: refresh the partition's leader before the retry.
_LEADER_ERRORS = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.FENCED_LEADER_EPOCH,
    }
)

#: Why a batch sent before an epoch bump is not sent again: it may be stored.
_UNKNOWN_OUTCOME = (
    "the producer renumbered its batches under a new epoch after an earlier batch of "
    "this partition failed; this one had been sent before and may have been stored, "
    "so it is not sent again"
)


def _seq_after(a: int, b: int) -> bool:
    """True when sequence ``a`` comes after ``b`` (mod 2**31)."""
    return 0 < (a - b) % _SEQ_MOD < _SEQ_MOD // 2
