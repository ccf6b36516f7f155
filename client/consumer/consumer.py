"""Consumer: the blocking consumer for ordinary code.

Every call hops to the background trio thread that runs an AsyncConsumer,
except the common ``poll``: when nothing needs the loop first (no rebalance
or auto commit pending, every position known), it takes the records the
fetcher has already buffered on the caller's own thread, and when there are
none it waits for the fetcher's ``data_ready`` event there. A poll then
costs no hop to the trio thread and back (a wake-up of each thread: at a low
rate, most of what consuming a record costs); the fetcher keeps fetching on
the trio thread meanwhile. Anything else goes through the loop as before,
and so does a poll with many large values buffered: the trio thread decodes
them (see ``Fetcher.loop_should_take``: its malloc arena keeps the memory
that the main thread's would hand back and fault in again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import trio

from ..background import BackgroundTrio
from ..errors import ClientClosedError
from .async_consumer import AsyncConsumer, RebalanceCallback
from .committer import CommitHandle, OffsetAndMetadata
from .record import Record, RecordList, TopicPartition

__all__ = ["Consumer"]


class Consumer:
    """Reads records from assigned partitions::

        with Consumer("127.0.0.1:7420", auto_offset_reset="earliest") as consumer:
            consumer.assign([("events", 0)])
            for record in consumer.poll(timeout_ms=1000):
                print(record.offset, record.value)

    or as a member of a consumer group::

        with Consumer("127.0.0.1:7420", group_id="billing") as consumer:
            consumer.subscribe(["events"])
            for record in consumer:
                ...

    Rebalance callbacks (``subscribe(..., on_revoked=fn)``) are plain
    functions; they run on a worker thread while ``poll`` waits for them, so
    they may call this consumer (``commit()``, ``position()``, ``seek()``).
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._consumer = AsyncConsumer(bootstrap, **config)
        self._closed = False
        self._loop = BackgroundTrio.hosting(
            "tailrace-consumer", self._consumer, on_exit=self._loop_ended
        )

    def _loop_ended(self) -> None:
        # a poll waiting on this thread for data must not wait out its timeout
        fetcher = self._consumer._fetcher
        if fetcher is not None:
            fetcher.data_ready.set()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call_sync(self, fn: Any, *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._loop.run(call)

    def assign(self, partitions: Iterable[Any]) -> None:
        self._call_sync(self._consumer.assign, list(partitions))

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        on_assigned: Callable[[set[TopicPartition]], Any] | None = None,
        on_revoked: Callable[[set[TopicPartition]], Any] | None = None,
        on_lost: Callable[[set[TopicPartition]], Any] | None = None,
    ) -> None:
        """Join the group reading ``topics`` (see AsyncConsumer.subscribe)."""
        self._call_sync(
            lambda: self._consumer.subscribe(
                list(topics),
                on_assigned=_in_thread(on_assigned),
                on_revoked=_in_thread(on_revoked),
                on_lost=_in_thread(on_lost),
            )
        )

    def subscription(self) -> set[str]:
        return self._call_sync(self._consumer.subscription)

    @property
    def member_id(self) -> str:
        return self._consumer.member_id

    def commit(self, offsets: Mapping[Any, Any] | None = None) -> None:
        """Commit (by default every assigned partition's position) and wait
        until the broker made it durable."""
        self._loop.run(self._consumer.commit, offsets)

    def commit_async(self, offsets: Mapping[Any, Any] | None = None) -> CommitHandle:
        """Commit without waiting: the handle has ``result(timeout)``,
        ``done()`` and ``add_done_callback(fn)``."""
        return self._call_sync(self._consumer.commit_async, offsets)

    def committed(self, partition: Any) -> OffsetAndMetadata | None:
        """The group's committed offset for ``partition`` (None if none)."""
        return self._loop.run(self._consumer.committed, partition)

    def assignment(self) -> set[TopicPartition]:
        return self._call_sync(self._consumer.assignment)

    def seek(self, partition: Any, offset: int) -> None:
        self._call_sync(self._consumer.seek, partition, offset)

    def seek_to_beginning(self, partitions: Iterable[Any] | None = None) -> None:
        self._loop.run(
            self._consumer.seek_to_beginning, None if partitions is None else list(partitions)
        )

    def seek_to_end(self, partitions: Iterable[Any] | None = None) -> None:
        self._loop.run(self._consumer.seek_to_end, None if partitions is None else list(partitions))

    def seek_to_time(self, timestamps: dict[Any, int]) -> None:
        self._loop.run(self._consumer.seek_to_time, timestamps)

    def offsets_for_times(
        self, timestamps: dict[Any, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        return self._loop.run(self._consumer.offsets_for_times, timestamps)

    def position(self, partition: Any) -> int:
        return self._loop.run(self._consumer.position, partition)

    def highwater(self, partition: Any) -> int:
        return self._call_sync(self._consumer.highwater, partition)

    def poll(self, timeout_ms: float = 1000, max_records: int | None = None) -> RecordList:
        """Records from the assigned partitions (a read-only sequence, see
        RecordList); empty when none came in time."""
        if self._closed:
            raise ClientClosedError("the consumer is closed")
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000
        records = self._poll_here(deadline, max_records)
        if records is not None:
            return records
        remaining_ms = max(0.0, deadline - time.monotonic()) * 1000
        return self._loop.run(self._consumer.poll, remaining_ms, max_records)

    def _poll_here(self, deadline: float, max_records: int | None) -> RecordList | None:
        """The poll on the caller's thread (see the module doc): records, an
        empty list at ``deadline``, or None when the loop must do it."""
        consumer = self._consumer
        fetcher = consumer._fetcher
        loop = self._loop
        if fetcher is None or not loop.alive:
            return None
        limit = consumer.config.max_poll_records if max_records is None else max_records
        ready = fetcher.data_ready
        while True:
            if consumer._attention or consumer._closed or not fetcher.positions_known():
                return None
            if fetcher.loop_should_take(limit):
                return None  # many large values: decoded on the trio thread
            records = fetcher.take_from_thread(limit, loop.run_sync_soon)
            if records:
                return records
            # after the take (which cleared data_ready on an empty buffer): a
            # rebalance or commit flagged meanwhile set data_ready after
            # flagging, so it is seen here or ends the wait below at once
            if consumer._attention or not loop.alive:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return RecordList()
            fetcher.poll_waiting = True
            try:
                ready.wait(remaining)
            finally:
                fetcher.poll_waiting = False

    def __iter__(self) -> Iterator[Record]:
        while True:
            yield from self.poll(timeout_ms=1000)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.stop()


def _in_thread(fn: Callable[[set[TopicPartition]], Any] | None) -> RebalanceCallback | None:
    """Run a blocking callback on a worker thread, so it may call back into
    the consumer (which hops to the trio thread) without a deadlock."""
    if fn is None:
        return None

    async def call(partitions: set[TopicPartition]) -> None:
        await trio.to_thread.run_sync(fn, partitions)

    return call
