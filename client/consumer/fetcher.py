"""The consumer's fetcher: keeps the next fetch in flight while records are used.

State per assigned partition: the *position* (next offset the user gets),
the *fetch offset* (next offset to ask the broker for: the position plus
whatever is already buffered) and an *epoch* bumped by every seek, so a
response to a fetch sent before the seek is recognised and dropped.

The fetcher task sends one Fetch for every partition whose fetch offset is
known, as long as the buffered bytes stay under ``max_buffer_bytes``; when
the response arrives it buffers each partition's raw records and sends the
next one at once, so the network works while the user decodes. The
buffering is done by the connection's reader in the step that reads the
response (``on_response``), a task switch before the fetch loop resumes to
send the next one. Decoding happens in ``take()``, called by poll, not here.

Leaders. In a cluster (metadata naming several brokers) each partition is
fetched from its leader: one fetch loop per leader, each with its own
connection and its own fetch in flight, started by the supervising task
(:meth:`Fetcher.run`) for every leader that assigned partitions have and
ending when none is left. A partition whose leader is unknown waits while
the supervisor refreshes metadata (at most once per ``retry_backoff``); an
answer NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE or FENCED_LEADER_EPOCH,
or a broken connection, forgets the leader. A response is applied to a
partition only while its fetch offset is still the one asked for, so a
late answer from a former leader never duplicates records. A single
broker has one loop on the bootstrap connection, as before.

Threads. Everything here runs on the consumer's trio thread except
``take_from_thread`` (and ``positions_known``), which the blocking
``Consumer.poll`` calls on the application's own thread: taking records
that are already buffered needs no I/O, so it does not hop to the trio
thread and back (each hop is a thread wake-up on both sides, the costliest
thing a low-rate consumer does). The state both threads touch (the chunks,
the partitions' positions) is guarded by ``_lock``; ``data_ready`` is a
``threading.Event`` set whenever poll has news (records, an error, an
interrupt) and cleared when the buffer is empty, for a waiting application
thread. When such a poll waits (``poll_waiting``), the fetch loop lets it
take what arrived before it goes on (:meth:`Fetcher._hand_over`). Large
values in bulk are the exception: poll leaves their decoding to the trio
thread (:meth:`Fetcher.loop_should_take`).
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial

import trio

from ..errors import (
    BrokerError,
    BrokerUnavailableError,
    ErrorCode,
    LeaderNotAvailableError,
    OffsetOutOfRangeError,
    TailraceError,
    TimeoutError,
    error_for_code,
)
from ..protocol import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from ..transport.connection import PendingResponse
from ..transport.pool import BrokerClient
from .record import RecordList, TopicPartition, decode_batches

__all__ = ["Fetcher", "PartitionState"]

log = logging.getLogger(__name__)

#: Fetches long-poll: they get a connection of their own (see BrokerClient).
FETCH_LANE = "fetch"

#: How often list_offsets asks again for a partition whose leader moved.
_LEADER_ATTEMPTS = 4

#: Partition answers that mean the leader moved (or is not there yet).
_LEADER_ERRORS = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.FENCED_LEADER_EPOCH,
    }
)


@dataclass
class _Chunk:
    tp: TopicPartition
    epoch: int
    data: memoryview
    next_offset: int  # the offset the next record from this chunk must have


#: how long the trio thread stands aside for a waiting blocking poll to take
#: what just arrived (see Fetcher._hand_over); the poll's thread wakes well
#: within it on an ordinary machine
HAND_OVER_S = 0.001

#: A blocking poll leaves the decoding to the trio thread when it would decode
#: at least this much and the records are large (Fetcher.loop_should_take).
LOOP_TAKE_BYTES = 1 << 20

#: CPython's small-object allocator serves objects up to this size; a larger
#: value's bytes object comes from malloc.
SMALL_OBJECT_BYTES = 512


class PartitionState:
    __slots__ = ("epoch", "error", "fetch_offset", "high_watermark", "position")

    def __init__(self) -> None:
        self.position: int | None = None
        self.fetch_offset: int | None = None
        self.epoch = 0
        self.high_watermark = -1
        self.error: TailraceError | None = None


class Fetcher:
    def __init__(
        self,
        client: BrokerClient,
        *,
        auto_offset_reset: str,
        fetch_min_bytes: int,
        fetch_max_wait_ms: int,
        fetch_max_bytes: int,
        max_partition_fetch_bytes: int,
        max_buffer_bytes: int,
        retry_backoff: float,
    ) -> None:
        self.client = client
        self.auto_offset_reset = auto_offset_reset
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.retry_backoff = retry_backoff
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self._chunks: deque[_Chunk] = deque()
        self._buffered = 0
        self._data_arrived = trio.Event()
        #: the same news for a poll waiting on another thread (take_from_thread)
        self.data_ready = threading.Event()
        #: set by a blocking poll while it waits on data_ready (its thread)
        self.poll_waiting = False
        #: set by take_from_thread once it holds the records (see _hand_over)
        self._taken = threading.Event()
        #: guards _chunks, _buffered and the partitions against take_from_thread
        self._lock = threading.RLock()
        #: the running fetch loops: route (leader node id, None for the
        #: bootstrap connection) -> the event that wakes it
        self._loops: dict[int | None, trio.Event] = {}
        #: wakes the supervisor (run): a loop ended, leaders changed
        self._supervise = trio.Event()
        #: the fetch loops waiting for buffer space or positions (not fetching)
        self._parked: set[int | None] = set()
        self._fetch_scopes: dict[int | None, trio.CancelScope] = {}
        #: set by a consumer with a group: (partitions) -> their committed offsets
        self.committed_lookup: (
            Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]] | None
        ) = None

    # --- assignment and positions (called from the consumer, trio thread) ----

    def assign(self, tps: list[TopicPartition]) -> None:
        wanted = set(tps)
        with self._lock:
            for tp in list(self.partitions):
                if tp not in wanted:
                    del self.partitions[tp]
            for tp in tps:
                self.partitions.setdefault(tp, PartitionState())
            self._drop_chunks(lambda c: c.tp not in wanted)
        self._restart_fetch()

    def add(self, tps: Iterable[TopicPartition]) -> None:
        """Start reading ``tps`` too (positions resolved on the next poll)."""
        with self._lock:
            for tp in tps:
                self.partitions.setdefault(tp, PartitionState())
        self._restart_fetch()

    def remove(self, tps: Iterable[TopicPartition]) -> None:
        """Stop reading ``tps`` and drop what is buffered for them. The fetch
        in flight carries on (its data for them is ignored on arrival), so
        the other partitions do not pause."""
        doomed = set(tps)
        with self._lock:
            for tp in doomed:
                self.partitions.pop(tp, None)
            self._drop_chunks(lambda c: c.tp in doomed)

    def positions(self) -> dict[TopicPartition, int]:
        """The position of every partition that has one."""
        with self._lock:
            return {tp: s.position for tp, s in self.partitions.items() if s.position is not None}

    def positions_known(self) -> bool:
        """Whether every assigned partition has a position (any thread): then
        a poll needs no I/O before it can take records."""
        with self._lock:
            return all(s.position is not None for s in self.partitions.values())

    def seek(self, tp: TopicPartition, offset: int) -> None:
        state = self.partitions.get(tp)
        if state is None:
            raise ValueError(f"{tp.topic}/{tp.partition} is not assigned")
        if offset < 0:
            raise ValueError("offsets are not negative")
        with self._lock:
            state.epoch += 1
            state.position = offset
            state.fetch_offset = offset
            state.error = None
            self._drop_chunks(lambda c: c.tp == tp)
        self._restart_fetch()

    def _drop_chunks(self, doomed) -> None:
        # under the lock
        keep = deque()
        for c in self._chunks:
            if doomed(c):
                self._buffered -= len(c.data)
            else:
                keep.append(c)
        self._chunks = keep

    def _restart_fetch(self) -> None:
        """A long-polling fetch for the old positions is pointless now: drop
        it and its connection (the next fetch goes out at once on a new one
        instead of queueing behind the old one's answer)."""
        if self._fetch_scopes:
            for scope in self._fetch_scopes.values():
                scope.cancel()
            self.client.drop(FETCH_LANE, "positions changed")
        self._wake()

    def _wake(self) -> None:
        """Wake every fetch loop and the supervisor (trio thread)."""
        for event in self._loops.values():
            event.set()
        self._supervise.set()

    async def resolve_positions(self) -> None:
        """Give every partition without a position one, per auto_offset_reset."""
        missing = [tp for tp, s in self.partitions.items() if s.position is None]
        if not missing:
            return
        if self.committed_lookup is not None:
            # A group's committed offsets come first (auto_offset_reset only
            # for partitions the group never committed).
            committed = await self.committed_lookup(missing)
            with self._lock:
                for tp, offset in committed.items():
                    state = self.partitions.get(tp)
                    if state is not None and state.position is None:
                        state.position = state.fetch_offset = offset
            missing = [tp for tp in missing if tp not in committed]
            self._wake()
            if not missing:
                return
        if self.auto_offset_reset == "none":
            raise OffsetOutOfRangeError(
                f"no position for {', '.join(f'{t}/{p}' for t, p in missing)} and "
                "auto_offset_reset is 'none': seek first"
            )
        ts = EARLIEST_TIMESTAMP if self.auto_offset_reset == "earliest" else LATEST_TIMESTAMP
        offsets = await self.list_offsets({tp: ts for tp in missing})
        with self._lock:
            for tp, (offset, _ts) in offsets.items():
                state = self.partitions.get(tp)
                if state is not None and state.position is None:
                    state.position = state.fetch_offset = offset
        self._wake()

    async def list_offsets(
        self, query: dict[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """Offsets for ``query`` (partition -> timestamp), each asked of its
        leader (in a cluster: one request per leader). A partition whose
        leader moved is asked again after a metadata refresh, a few times
        with a growing back-off, before its error is raised."""
        out: dict[TopicPartition, tuple[int, int]] = {}
        todo = dict(query)
        for attempt in range(_LEADER_ATTEMPTS):
            moved: dict[TopicPartition, BrokerError] = {}
            for node, tps in (await self._routes_for(list(todo), refresh=attempt > 0)).items():
                by_topic: dict[str, list[ListOffsetsPartition]] = {}
                for tp in tps:
                    by_topic.setdefault(tp.topic, []).append(
                        ListOffsetsPartition(partition=tp.partition, timestamp=todo[tp])
                    )
                asked = [ListOffsetsTopic(name=t, partitions=ps) for t, ps in by_topic.items()]
                response = await self.client.request(ListOffsetsRequest(topics=asked), node=node)
                if response.error_code:
                    raise error_for_code(response.error_code, response.error_message or "")
                for t in response.topics:
                    for p in t.partitions:
                        tp = TopicPartition(t.name, p.partition)
                        if p.error_code in _LEADER_ERRORS:
                            self.client.invalidate(t.name, p.partition)
                            moved[tp] = error_for_code(p.error_code, p.error_message or "")
                        elif p.error_code:
                            raise error_for_code(p.error_code, p.error_message or "")
                        else:
                            out[tp] = (p.offset, p.timestamp)
            if not moved:
                return out
            if attempt == _LEADER_ATTEMPTS - 1:
                raise next(iter(moved.values()))
            todo = {tp: todo[tp] for tp in moved}
            await trio.sleep(self.retry_backoff * 2**attempt)
        return out

    async def _routes_for(
        self, tps: list[TopicPartition], *, refresh: bool = False
    ) -> dict[int | None, list[TopicPartition]]:
        """``tps`` by where their requests go (see BrokerClient.leader_for),
        after a metadata refresh when asked, when a topic's metadata is not
        known yet, or when a leader is unknown; raises LeaderNotAvailableError
        (retriable) when one still is."""
        topics = sorted({tp.topic for tp in tps})
        if (
            refresh
            or any(t not in self.client.topics for t in topics)
            or (self.client.routed and any(self._route(tp) == -1 for tp in tps))
        ):
            await self.client.refresh_metadata(topics)
        routes: dict[int | None, list[TopicPartition]] = {}
        for tp in tps:
            node = self._route(tp)
            if node == -1:
                raise LeaderNotAvailableError(f"{tp.topic}/{tp.partition} has no known leader")
            routes.setdefault(node, []).append(tp)
        return routes

    def _route(self, tp: TopicPartition) -> int | None:
        return self.client.leader_for(tp.topic, tp.partition)

    # --- the fetch loops ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise: a fetch loop for every leader of an assigned partition,
        metadata refreshed while one has none."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                # woken in the step that cancelled us (a loop ending by the
                # cancellation wakes it): start nothing then
                await trio.lowlevel.checkpoint_if_cancelled()
                self._supervise = trio.Event()
                with self._lock:
                    routes = {
                        self._route(tp) for tp, s in self.partitions.items() if s.error is None
                    }
                for node in routes - {-1}:
                    if node not in self._loops:
                        self._loops[node] = trio.Event()
                        nursery.start_soon(self._fetch_loop, node)
                with self._lock:
                    unknown = any(
                        tp.topic not in self.client.topics
                        for tp, s in self.partitions.items()
                        if s.error is None
                    )
                if -1 in routes or self.client.stale or unknown:
                    topics = sorted({tp.topic for tp in self.partitions})
                    with trio.move_on_after(self.retry_backoff):
                        if unknown:
                            # a topic's leaders were never asked for (an
                            # assign() needs no metadata): ask now
                            with contextlib.suppress(
                                BrokerError, BrokerUnavailableError, TimeoutError
                            ):
                                await self.client.refresh_metadata(topics)
                        else:
                            await self.client.refresh_if_stale(topics)
                    with trio.move_on_after(self.retry_backoff):
                        await self._supervise.wait()
                    continue
                await self._supervise.wait()

    async def _fetch_loop(self, node: int | None) -> None:
        """Fetch the partitions routed to ``node`` until none is."""
        try:
            while True:
                with self._lock:  # take_from_thread reads _parked under it
                    if not any(
                        self._route(tp) == node and s.error is None
                        for tp, s in self.partitions.items()
                    ):
                        return
                    request, asked = self._build_request(node)
                    if request is None:
                        self._parked.add(node)
                if request is None:
                    try:
                        await self._loops[node].wait()
                    finally:
                        self._parked.discard(node)
                    self._loops[node] = trio.Event()
                    continue
                response = None
                absorbed: list[bool] = []
                try:
                    with trio.CancelScope() as self._fetch_scopes[node]:
                        response = await self.client.request(
                            request,
                            timeout=self.client.request_timeout + self.fetch_max_wait_ms / 1000,
                            lane=FETCH_LANE,
                            node=node,
                            on_response=partial(self._absorb_on_arrival, asked, absorbed),
                        )
                except (BrokerUnavailableError, TimeoutError) as exc:
                    log.debug("fetch failed, retrying: %s", exc)
                    if node is not None:
                        self.client.invalidate_node(node)  # it may be gone
                        self._supervise.set()
                    with trio.move_on_after(self.retry_backoff):
                        await self._loops[node].wait()
                    self._loops[node] = trio.Event()
                    continue
                finally:
                    self._fetch_scopes.pop(node, None)
                if response is None:  # cancelled by a seek or assignment change
                    self._loops[node] = trio.Event()
                    continue
                if absorbed:
                    for outcome in absorbed:
                        if isinstance(outcome, BaseException):
                            raise outcome
                    news = any(absorbed)
                else:  # not through the connection (a stand-in client)
                    news = self._absorb(response, asked)
                    if news:
                        self._hand_over()
                if news and not self._taken.is_set():
                    # Let a poll on the trio thread take these records before
                    # the next fetch is built and written (a record's latency
                    # is until poll returns it; the next fetch is a step
                    # later). Not needed when a blocking poll took them.
                    await trio.lowlevel.checkpoint()
        finally:
            del self._loops[node]
            self._supervise.set()

    def _build_request(
        self, node: int | None
    ) -> tuple[FetchRequest | None, dict[TopicPartition, tuple[int, int]]]:
        """The fetch for the partitions routed to ``node``, and per partition
        the (epoch, fetch offset) it asks for."""
        if self._buffered >= self.max_buffer_bytes:
            return None, {}
        topics: dict[str, list[FetchPartition]] = {}
        epochs = {}
        for tp, state in self.partitions.items():
            if state.fetch_offset is None or state.error is not None:
                continue
            if self._route(tp) != node:
                continue
            topics.setdefault(tp.topic, []).append(
                FetchPartition(
                    partition=tp.partition,
                    fetch_offset=state.fetch_offset,
                    max_bytes=self.max_partition_fetch_bytes,
                )
            )
            epochs[tp] = (state.epoch, state.fetch_offset)
        if not topics:
            return None, {}
        request = FetchRequest(
            max_wait_ms=self.fetch_max_wait_ms,
            min_bytes=self.fetch_min_bytes,
            max_bytes=self.fetch_max_bytes,
            topics=[FetchTopic(name=t, partitions=ps) for t, ps in topics.items()],
        )
        return request, epochs

    def _absorb(self, response, epochs: dict[TopicPartition, tuple[int, int]]) -> bool:
        """Buffer a fetch response's records; True when poll has news."""
        with self._lock:
            arrived = self._absorb_locked(response, epochs)
            if arrived:
                self._taken.clear()
                self._data_arrived.set()
                self.data_ready.set()
        return arrived

    def _absorb_on_arrival(
        self,
        asked: dict[TopicPartition, tuple[int, int]],
        absorbed: list,
        pending: PendingResponse,
    ) -> None:
        """Buffer a fetch response in the step of the connection's reader
        that read it (``on_response``), and hand it to a waiting blocking
        poll there: the fetch loop's task resumes a step later, which the
        records need not wait for. Appends to ``absorbed`` whether poll has
        news, or the exception the loop raises (never into the reader)."""
        try:
            response = pending.result()
        except Exception:
            return  # the request's failure reaches the fetch loop as before
        try:
            news = self._absorb(response, asked)
        except Exception as exc:
            absorbed.append(exc)
            return
        absorbed.append(news)
        if news:
            self._hand_over()

    def _hand_over(self) -> None:
        """Records just arrived for a blocking poll waiting on its own
        thread: stand aside until it took them (at most ``HAND_OVER_S``).

        The poll's thread, woken by ``data_ready``, needs the interpreter
        lock, which this thread would otherwise hold while it goes on to
        build and write the next fetch, through several turns of the event
        loop: the wake-up waited for all of that (about 300 µs a record at a
        low rate on the 2-core test machine, the consumer's largest hop).
        Blocking here on a threading event releases the lock at once; the
        poll's take sets the event. It blocks the trio loop, for the
        consumer's own tasks only, and for a bounded time."""
        if self.poll_waiting:
            self._taken.wait(HAND_OVER_S)

    def _absorb_locked(self, response, epochs: dict[TopicPartition, tuple[int, int]]) -> bool:
        if response.error_code:
            error = error_for_code(response.error_code, response.error_message or "")
            for tp in epochs:
                state = self.partitions.get(tp)
                if state is not None and not error.retriable:
                    state.error = error
            return True
        arrived = False
        for t in response.topics:
            for p in t.partitions:
                tp = TopicPartition(t.name, p.partition)
                state = self.partitions.get(tp)
                if state is None or epochs.get(tp) != (state.epoch, state.fetch_offset):
                    # unassigned or sought since the request was sent, or
                    # moved on by another leader's answer
                    continue
                if p.high_watermark >= 0:
                    state.high_watermark = p.high_watermark
                if p.error_code:
                    self._partition_error(tp, state, p.error_code, p.error_message)
                    arrived = True
                    continue
                data = p.records
                if not data:
                    continue
                # The fetch offset moves past the whole batches received.
                end_offset = _last_offset(data)
                if end_offset is None or end_offset < state.fetch_offset:
                    continue
                self._chunks.append(_Chunk(tp, state.epoch, data, state.fetch_offset))
                self._buffered += len(data)
                state.fetch_offset = end_offset + 1
                arrived = True
        return arrived

    def _partition_error(
        self, tp: TopicPartition, state: PartitionState, code: int, message: str | None
    ) -> None:
        error = error_for_code(code, message or "")
        if code == ErrorCode.OFFSET_OUT_OF_RANGE and self.auto_offset_reset != "none":
            # Positions are re-resolved by the consumer on its next poll.
            log.info(
                "%s/%s: offset %s out of range, resetting to %s",
                tp.topic,
                tp.partition,
                state.fetch_offset,
                self.auto_offset_reset,
            )
            state.position = state.fetch_offset = None
            state.epoch += 1
            self._drop_chunks(lambda c: c.tp == tp)
            return
        if code in _LEADER_ERRORS:
            self.client.invalidate(tp.topic, tp.partition)  # the supervisor asks again
            self._supervise.set()
            return
        if error.retriable and code not in (
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            ErrorCode.CORRUPT_MESSAGE,
        ):
            return  # the next fetch tries again
        # A topic that does not exist (or was deleted) will not come back by
        # waiting on one broker, nor will data the broker found corrupt on its
        # disk (the error names the offsets): tell the user rather than retry
        # silently.
        state.error = error

    # --- the poll side -----------------------------------------------------------

    async def wait_for_data(self) -> None:
        await self._data_arrived.wait()

    def interrupt(self) -> None:
        """Wake a poll waiting in wait_for_data (it finds no records and
        looks at what else needs doing), on whichever thread it waits."""
        self._data_arrived.set()
        self.data_ready.set()

    def take(self, max_records: int) -> RecordList:
        """Decode buffered records (up to ``max_records``), advancing positions
        (trio thread).

        Raises a partition's error (CorruptRecordError, OffsetOutOfRange with
        auto_offset_reset 'none', authorization...) when its turn comes.
        """
        with self._lock:
            records = self._take(max_records)
        if self._buffered < self.max_buffer_bytes:
            self._wake()
        return records

    def loop_should_take(self, max_records: int) -> bool:
        """Whether a blocking poll of up to ``max_records`` should have the
        trio thread decode what is buffered (one hop there and back) rather
        than decode it itself.

        True when the poll would decode at least ``LOOP_TAKE_BYTES`` (that
        much buffered, and ``max_records`` records of the first batch's
        average size come to that much) and the first batch's records
        average more than ``SMALL_OBJECT_BYTES``: their
        values then come from malloc, which serves each thread from an
        arena of its own. The application's main thread uses the heap's
        main arena. That arena hands the memory freed at its top back to
        the system (glibc trims it), and the next poll faults it in again,
        page by page. The trio thread's arena keeps its pages. Consuming
        64 KiB values on the caller's thread took 1.7 times the page faults
        and ran at half the speed of the trio thread's decode
        (docs/benchmarks.md, "Large values decoded on the trio thread").
        Small records, a few large ones (a consumer that keeps up) and
        polls of a few records each stay on the caller's thread, where no
        wake-up of the trio thread is paid."""
        with self._lock:
            if self._buffered < LOOP_TAKE_BYTES or not self._chunks:
                return False
            data = self._chunks[0].data
            if len(data) < 27:
                return False
            (length,) = struct.unpack_from(">i", data, 8)
            (delta,) = struct.unpack_from(">i", data, 23)  # last_offset_delta
            if length < 0 or delta < 0:
                return False  # corrupt: the decode on the caller's thread says so
            average = (length + 12) / (delta + 1)
            if average <= SMALL_OBJECT_BYTES or average * max_records < LOOP_TAKE_BYTES:
                return False
            # the poll will not take them here: a fetch loop standing aside
            # for it (_hand_over) goes on at once
            self._taken.set()
            return True

    def take_from_thread(
        self, max_records: int, run_on_loop: Callable[[Callable[[], object]], None]
    ) -> RecordList:
        """``take`` on another thread than the trio loop's (the blocking
        consumer's caller). ``run_on_loop(fn)`` schedules ``fn`` on the loop;
        it is used only when the fetch loop waits for the buffer space this
        take freed (a full buffer), not per call."""
        with self._lock:
            records = self._take(max_records)
            wake = bool(self._parked) and self._buffered < self.max_buffer_bytes
            self._taken.set()
        if wake:
            run_on_loop(self._wake)
        return records

    def _take(self, max_records: int) -> RecordList:
        # under the lock
        parts: list[tuple] = []
        taken = 0
        for tp, state in self.partitions.items():
            if state.error is not None and not any(c.tp == tp for c in self._chunks):
                raise state.error  # stays until the user seeks or reassigns
        while self._chunks and taken < max_records:
            chunk = self._chunks[0]
            state = self.partitions.get(chunk.tp)
            if state is None or chunk.epoch != state.epoch:
                self._chunks.popleft()
                self._buffered -= len(chunk.data)
                continue
            start = state.position if state.position is not None else chunk.next_offset
            try:
                used, next_offset, count = decode_batches(
                    chunk.tp.topic,
                    chunk.tp.partition,
                    chunk.data,
                    start,
                    parts,
                    max_records - taken,
                )
                taken += count
            except TailraceError as exc:
                if parts:
                    break  # return the good records first; the next poll raises
                # Drop what is buffered for the partition and stop fetching
                # it; the position stays on the bad batch and the error is
                # raised again by every poll until the user seeks past it.
                self._drop_chunks(lambda c, bad=chunk.tp: c.tp == bad)
                state.fetch_offset = state.position
                state.epoch += 1
                state.error = exc
                raise
            state.position = next_offset
            if used >= len(chunk.data) or next_offset > _last_offset(chunk.data):
                self._chunks.popleft()
                self._buffered -= len(chunk.data)
            else:
                chunk.data = chunk.data[used:]
                self._buffered -= used
        if not self._chunks:
            self.data_ready.clear()
            if self._data_arrived.is_set():
                # a set Event has no waiters left to lose: safe to replace
                # from either thread
                self._data_arrived = trio.Event()
        return RecordList(parts)

    def has_data(self) -> bool:
        return bool(self._chunks) or any(s.error is not None for s in self.partitions.values())


def _last_offset(data: memoryview) -> int | None:
    """Last offset of the last whole batch in ``data`` (header walk only)."""
    pos = 0
    end = len(data)
    last = None
    while end - pos >= 61:
        base, length = struct.unpack_from(">qi", data, pos)
        size = length + 12
        if size < 61 or pos + size > end:
            break
        (delta,) = struct.unpack_from(">i", data, pos + 23)
        last = base + delta
        pos += size
    return last
