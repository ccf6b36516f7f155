"""Producer: the blocking, thread-safe producer for ordinary code.

The async core runs on a background trio thread; ``send`` appends to the
thread-safe accumulator straight from the caller's thread (no thread hop per
record) and wakes the sender only when a batch is ready. When the sender is
idle (nothing in flight, nothing queued) a batch that is due (linger 0) is
written by ``send`` itself, on the caller's thread (``Sender.send_direct``):
a lone record leaves without waking the trio thread; its answer is read there.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from ..background import BackgroundTrio
from ..errors import ClientClosedError, TimeoutError
from .batch import RecordFuture
from .core import ProducerConfig, ProducerCore

__all__ = ["Producer"]


class Producer:
    """Sends records to tailrace; safe to share between threads::

        with Producer("127.0.0.1:7420", linger_ms=5) as producer:
            future = producer.send("events", b"hello", key=b"user-1")
            print(future.result(timeout=10).offset)

    ``send`` returns a future-like handle at once (``result(timeout)``,
    ``done()``, ``add_done_callback``); it blocks only while the buffer is
    full, up to ``max_block_ms``. ``flush()`` waits for every record sent so
    far; ``close()`` (or leaving the ``with`` block) flushes and stops.
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._core = ProducerCore(bootstrap, ProducerConfig(**config))
        self._try_send = self._core.make_try_send()
        self._try_send_many = self._core.make_try_send_many()
        self._loop: BackgroundTrio | None = None
        self._closed = False
        self._loop = BackgroundTrio("tailrace-producer", self._main)

    async def _main(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._core.run(wake_from_any_thread=self._wake, task_status=task_status)

    def _wake(self) -> None:
        loop, sender = self._loop, self._core.sender
        if loop is None or sender is None:
            return
        if loop.in_loop_thread():
            sender.wakeup()
        elif not sender.send_direct():
            # the sender was busy, or the batch not due: its thread takes it
            loop.run_sync_soon(sender.wakeup)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record and return its handle."""
        if self._closed:
            raise ClientClosedError("the producer is closed")
        handle = self._try_send(topic, value, key, headers, partition, timestamp)
        if handle is not None:
            return handle
        core = self._core
        args = core.prepare(topic, value, key, headers, partition, timestamp)
        if args is None:
            self._run(core.fetch_partition_count, topic, timeout=core.config.max_block_ms / 1000)
            args = core.prepare(topic, value, key, headers, partition, timestamp)
            assert args is not None
        handle = core.append(args)
        while handle is None:
            if not core.acc.wait_for_space(args[-1], core.config.max_block_ms / 1000):
                raise core.buffer_full()
            handle = core.append(args)
        return handle

    def send_many(
        self,
        topic: str,
        values: list[bytes] | tuple[bytes, ...],
        key: bytes | None = None,
        partition: int | None = None,
    ) -> list[RecordFuture]:
        """Queue many records in one call: ``values`` (a list or tuple of
        bytes) with the same key (or none), no headers, one timestamp, all
        to one partition (``partition``, the key's, or the sticky one). They
        are appended to the open batch in C-level slices, not one Python
        call per record, so this is several times cheaper per record than
        ``send``; order, batching, idempotence and back-pressure are the
        same.

        Returns handles of some of the records (one per slice appended;
        each batch's last record is among them): every record succeeded
        when every handle did, and a failed record's batch fails its handle.
        """
        if self._closed:
            raise ClientClosedError("the producer is closed")
        if type(values) not in (list, tuple):
            raise TypeError("values must be a list or tuple of bytes")
        if values and set(map(type, values)) != {bytes}:
            raise TypeError("send_many takes bytes values (use send for str or None)")
        if key is not None and type(key) is not bytes:
            raise TypeError("key must be bytes or None")
        handles: list[RecordFuture] = []
        try_many = self._try_send_many
        i, n = 0, len(values)
        while i < n:
            took, handle = try_many(topic, values, i, key, partition)
            if took:
                handles.append(handle)
                i += took
                continue
            # opens (or seals and reopens) the batch, waits for buffer space,
            # learns the topic: then the rest goes the fast way again
            handles.append(self.send(topic, values[i], key=key, partition=partition))
            i += 1
        return handles

    def _run(self, fn: Any, *args: Any, timeout: float | None = None) -> Any:
        assert self._loop is not None
        limit = math.inf if timeout is None else timeout

        async def bounded() -> Any:
            with trio.fail_after(limit):
                return await fn(*args)

        try:
            return self._loop.run(bounded)
        except trio.TooSlowError:
            raise TimeoutError(f"gave up after {timeout:g} s") from None

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record sent so far is acknowledged or failed."""
        if self._closed:
            return
        self._run(self._core.flush, timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Send everything accepted, then stop the background thread. After
        ``timeout`` seconds, records still unacknowledged fail with
        ClientClosedError."""
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        assert loop is not None
        core = self._core
        core.acc.close()
        if not loop.join(timeout):
            error = ClientClosedError("the producer was closed before the broker acknowledged")
            loop.run_sync_soon(lambda: core.abort(error))
            loop.join()
