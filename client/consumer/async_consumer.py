"""AsyncConsumer: read assigned partitions from any offset, inside trio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import ClientClosedError
from ..protocol import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, Limits
from ..transport.pool import BrokerClient
from .fetcher import Fetcher
from .record import Record, RecordList, TopicPartition

__all__ = ["AsyncConsumer", "ConsumerConfig"]


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Consumer settings (names follow Kafka's where one exists).

    * ``auto_offset_reset``: where a partition without a position starts,
      and where one whose offset left the log goes: "earliest", "latest", or
      "none" (raise OffsetOutOfRangeError).
    * ``fetch_min_bytes`` / ``fetch_max_wait_ms``: the long-poll: the broker
      answers once this many bytes are ready or this much time passed.
    * ``fetch_max_bytes`` / ``max_partition_fetch_bytes``: soft limits per
      fetch and per partition (a bigger first batch still comes).
    * ``max_buffer_bytes``: fetched-but-unconsumed bytes kept at most.
    * ``max_poll_records``: records one poll returns at most.
    """

    auto_offset_reset: str = "latest"
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    fetch_max_bytes: int = 50 * 1024 * 1024
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    max_buffer_bytes: int = 64 * 1024 * 1024
    max_poll_records: int = 10_000
    request_timeout_ms: int = 30_000
    connect_timeout_ms: int = 10_000
    retry_backoff_ms: int = 100

    def __post_init__(self) -> None:
        if self.auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError("auto_offset_reset must be 'earliest', 'latest' or 'none'")
        for name in (
            "fetch_max_bytes",
            "max_partition_fetch_bytes",
            "max_buffer_bytes",
            "max_poll_records",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def _tp(item: Any) -> TopicPartition:
    topic, partition = item
    if not isinstance(topic, str) or not isinstance(partition, int):
        raise TypeError("partitions are (topic: str, partition: int) pairs")
    return TopicPartition(topic, partition)


class AsyncConsumer:
    """Reads records from assigned partitions, trio-native::

        async with AsyncConsumer("127.0.0.1:7420", auto_offset_reset="earliest") as c:
            c.assign([("events", 0)])
            async for record in c:
                ...

    The next fetch is in flight while records are being used; every batch's
    CRC-32C is checked before a record of it is returned. After a broker
    restart the consumer reconnects and resumes at its position.
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self.bootstrap = bootstrap
        self.config = ConsumerConfig(**config)
        self._stack: AsyncExitStack | None = None
        self._client: BrokerClient | None = None
        self._fetcher: Fetcher | None = None
        self._closed = False

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.config
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._client = BrokerClient(
                nursery,
                self.bootstrap,
                limits=Limits(
                    max_frame_bytes=cfg.fetch_max_bytes + (16 << 20), max_body_bytes=16 << 20
                ),
                request_timeout_ms=cfg.request_timeout_ms,
                connect_timeout_ms=cfg.connect_timeout_ms,
            )
            self._fetcher = Fetcher(
                self._client,
                auto_offset_reset=cfg.auto_offset_reset,
                fetch_min_bytes=cfg.fetch_min_bytes,
                fetch_max_wait_ms=cfg.fetch_max_wait_ms,
                fetch_max_bytes=cfg.fetch_max_bytes,
                max_partition_fetch_bytes=cfg.max_partition_fetch_bytes,
                max_buffer_bytes=cfg.max_buffer_bytes,
                retry_backoff=cfg.retry_backoff_ms / 1000,
            )
            await nursery.start(self._fetcher.run)
            stack.callback(nursery.cancel_scope.cancel)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    @property
    def _f(self) -> Fetcher:
        if self._fetcher is None or self._closed:
            raise ClientClosedError("the consumer is not running")
        return self._fetcher

    # --- assignment and positions ----------------------------------------------

    def assign(self, partitions: Iterable[Any]) -> None:
        """Read exactly these (topic, partition) pairs (replacing any before)."""
        self._f.assign([_tp(p) for p in partitions])

    def assignment(self) -> set[TopicPartition]:
        return set(self._f.partitions)

    def seek(self, partition: Any, offset: int) -> None:
        """The next record returned for ``partition`` has ``offset``."""
        self._f.seek(_tp(partition), offset)

    async def seek_to_beginning(self, partitions: Iterable[Any] | None = None) -> None:
        await self._seek_to(partitions, EARLIEST_TIMESTAMP)

    async def seek_to_end(self, partitions: Iterable[Any] | None = None) -> None:
        await self._seek_to(partitions, LATEST_TIMESTAMP)

    async def _seek_to(self, partitions: Iterable[Any] | None, which: int) -> None:
        f = self._f
        tps = list(f.partitions) if partitions is None else [_tp(p) for p in partitions]
        offsets = await f.list_offsets({tp: which for tp in tps})
        for tp, (offset, _ts) in offsets.items():
            f.seek(tp, offset)

    async def offsets_for_times(
        self, timestamps: dict[Any, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        """For each partition, the (offset, timestamp) of the first record at
        or after the timestamp (ms), or None when there is none."""
        query = {_tp(k): v for k, v in timestamps.items()}
        for tp, ts in query.items():
            if ts < 0:
                raise ValueError(f"timestamp for {tp.topic}/{tp.partition} must not be negative")
        found = await self._f.list_offsets(query)
        return {tp: (None if found[tp][0] < 0 else found[tp]) for tp in query}

    async def seek_to_time(self, timestamps: dict[Any, int]) -> None:
        """Seek each partition to its first record at or after the timestamp
        (to the end when there is none)."""
        found = await self.offsets_for_times(timestamps)
        missing = [tp for tp, v in found.items() if v is None]
        for tp, v in found.items():
            if v is not None:
                self._f.seek(tp, v[0])
        if missing:
            await self.seek_to_end(missing)

    async def position(self, partition: Any) -> int:
        """The offset of the next record ``poll`` will return for ``partition``."""
        tp = _tp(partition)
        state = self._f.partitions.get(tp)
        if state is None:
            raise ValueError(f"{tp.topic}/{tp.partition} is not assigned")
        if state.position is None:
            await self._f.resolve_positions()
        assert state.position is not None
        return state.position

    def highwater(self, partition: Any) -> int:
        """The partition's high watermark from the last fetch (-1 if none yet)."""
        state = self._f.partitions.get(_tp(partition))
        return -1 if state is None else state.high_watermark

    # --- reading -------------------------------------------------------------------

    async def poll(self, timeout_ms: float = 1000, max_records: int | None = None) -> RecordList:
        """Records from the assigned partitions, waiting up to ``timeout_ms``
        for the first; empty when none came in time. The result is a
        read-only sequence of :class:`Record` (see RecordList)."""
        f = self._f
        limit = self.config.max_poll_records if max_records is None else max_records
        await f.resolve_positions()
        records = f.take(limit)
        if records:
            return records
        with trio.move_on_after(max(timeout_ms, 0) / 1000):
            while True:
                await f.wait_for_data()
                await f.resolve_positions()
                records = f.take(limit)
                if records:
                    return records
                await trio.lowlevel.checkpoint()
        return RecordList()

    def __aiter__(self) -> AsyncIterator[Record]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Record]:
        while True:
            for record in await self.poll(timeout_ms=1000):
                yield record

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            await self._client.aclose()
        if self._stack is not None:
            await self._stack.aclose()
