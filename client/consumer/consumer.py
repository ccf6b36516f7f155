"""Consumer: the blocking consumer for ordinary code.

Every call hops to the background trio thread that runs an AsyncConsumer;
``poll`` returns a whole batch of records per hop, so the hop costs little
per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import trio

from ..background import BackgroundTrio
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
        self._loop = BackgroundTrio.hosting("tailrace-consumer", self._consumer)

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
        return self._loop.run(self._consumer.poll, timeout_ms, max_records)

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
