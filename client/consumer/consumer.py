"""Consumer: the blocking consumer for ordinary code.

Every call hops to the background trio thread that runs an AsyncConsumer;
``poll`` returns a whole batch of records per hop, so the hop costs little
per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import trio

from ..background import BackgroundTrio
from .async_consumer import AsyncConsumer
from .record import Record, RecordList, TopicPartition

__all__ = ["Consumer"]


class Consumer:
    """Reads records from assigned partitions::

    with Consumer("127.0.0.1:7420", auto_offset_reset="earliest") as consumer:
        consumer.assign([("events", 0)])
        for record in consumer.poll(timeout_ms=1000):
            print(record.offset, record.value)
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._consumer = AsyncConsumer(bootstrap, **config)
        self._closed = False
        self._loop = BackgroundTrio("tailrace-consumer", self._main)

    async def _main(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._consumer:
            self._stop = trio.Event()
            task_status.started()
            await self._stop.wait()

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
        if self._loop.alive:
            self._loop.run_sync_soon(self._stop.set)
        self._loop.join()
