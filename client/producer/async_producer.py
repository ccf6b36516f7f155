"""AsyncProducer: the producer for trio code."""

from __future__ import annotations

import math
from contextlib import AsyncExitStack
from typing import Any

import trio

from ..errors import ClientClosedError
from .batch import RecordFuture
from .core import ProducerConfig, ProducerCore

__all__ = ["AsyncProducer"]


class AsyncProducer:
    """Sends records to tailrace from trio code::

        async with AsyncProducer("127.0.0.1:7420", linger_ms=5) as producer:
            handle = await producer.send("events", b"hello", key=b"user-1")
            metadata = await handle      # topic, partition, offset, timestamp

    ``send`` waits only when the buffer is full (back-pressure) and returns a
    handle at once otherwise; records are batched per partition and sent by
    a background task. ``flush()`` waits for everything sent so far;
    leaving the ``async with`` block flushes and closes.
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._core = ProducerCore(bootstrap, ProducerConfig(**config))
        self._try_send = self._core.make_try_send()
        self._stack: AsyncExitStack | None = None
        self._space = trio.Event()
        self._closed = False

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(self._core.run)
        except BaseException:
            await stack.aclose()
            raise
        self._core.acc.space_freed = self._space_freed
        self._stack = stack

    def _space_freed(self) -> None:
        self._space.set()
        self._space = trio.Event()

    async def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record; returns its handle (``await handle`` for the
        metadata). Waits up to ``max_block_ms`` when the buffer is full, then
        raises BufferFullError."""
        if self._stack is None or self._closed:
            raise ClientClosedError("the producer is not running")
        handle = self._try_send(topic, value, key, headers, partition, timestamp)
        if handle is not None:
            return handle
        core = self._core
        args = core.prepare(topic, value, key, headers, partition, timestamp)
        if args is None:
            with trio.fail_after(core.config.max_block_ms / 1000):
                await core.fetch_partition_count(topic)
            args = core.prepare(topic, value, key, headers, partition, timestamp)
            assert args is not None
        handle = core.append(args)
        if handle is not None:
            return handle
        with trio.move_on_after(core.config.max_block_ms / 1000):
            while True:
                await self._space.wait()
                handle = core.append(args)
                if handle is not None:
                    return handle
        raise core.buffer_full()

    def send_nowait(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Like send, but raises trio.WouldBlock instead of waiting (for a full
        buffer or a topic whose metadata is not known yet)."""
        core = self._core
        if self._stack is None or self._closed:
            raise ClientClosedError("the producer is not running")
        args = core.prepare(topic, value, key, headers, partition, timestamp)
        if args is None:
            raise trio.WouldBlock
        handle = core.append(args)
        if handle is None:
            raise trio.WouldBlock
        return handle

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged or failed."""
        await self._core.flush()

    async def close(self, timeout: float | None = None) -> None:
        """Send everything accepted, then stop. After ``timeout`` seconds,
        records still unacknowledged fail with ClientClosedError."""
        if self._closed:
            return
        self._closed = True
        core = self._core
        core.acc.close()
        if self._stack is None:
            return
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await core.finished.wait()
        finally:
            # Always, even when cancelled: the stack holds our nursery, which
            # must exit in the task that entered it.
            if not core.finished.is_set():
                core.abort(
                    ClientClosedError("the producer was closed before the broker acknowledged")
                )
            await self._stack.aclose()
