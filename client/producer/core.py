"""The producer's shared core: configuration, the per-record path, the tasks.

:class:`AsyncProducer` and the blocking :class:`Producer` are both this core;
they differ only in the thread their caller is on. ``prepare`` is the hot
path (one call per record): it coerces the value, key and headers, picks the
partition and appends to the accumulator, and does nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from time import time_ns as _time_ns
from typing import Any

import trio

from ..errors import (
    BufferFullError,
    ClientClosedError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)
from ..protocol import Limits
from ..records import (
    CODEC_GZIP,
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_SNAPPY,
    CODEC_ZSTD,
    HEADER_SIZE,
    MAGIC_KAFKA,
    MAGIC_NATIVE,
)
from ..security import SecurityConfig
from ..transport.auth import connection_options
from ..transport.pool import BrokerClient
from .accumulator import Accumulator
from .batch import ProducerBatch, RecordFuture
from .partitioner import StickyPartitioner, partition_for_key
from .sender import Sender

__all__ = ["ProducerConfig", "ProducerCore"]

_RECORD_OVERHEAD = 16  # bytes charged per record besides key and value (see try_send)


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """Producer settings (names follow Kafka's where one exists).

    * ``acks``: "all" (or -1, the default, as in Kafka) waits for the
      topic's flush mode on the leader and for every in-sync replica (a
      cluster: docs/replication.md; a single broker answers it as 1, and a
      broker older than cluster mode refuses it); 1 waits for the leader
      alone; 0 expects no answer.
    * ``linger_ms``: how long a batch waits for more records before it is sent.
    * ``batch_bytes``: a batch is sent once it holds this many bytes.
    * ``buffer_bytes``: bytes of records held before ``send`` blocks.
    * ``max_block_ms``: how long ``send`` waits for buffer space (and for a
      topic's metadata) before raising.
    * ``max_in_flight``: Produce requests outstanding on the connection.
    * ``compression``: None or "gzip" (per batch); with ``record_format``
      "kafka" also "snappy", "lz4" or "zstd".
    * ``record_format``: "native" (magic 1, msgpack records: the default) or
      "kafka" (magic 2, Kafka's RecordBatch v2: what Kafka clients write, so
      Kafka consumers of the topic are served the stored bytes without
      down-conversion). docs/format.md says why native is the default.
    * ``enable_idempotence``: number batches so retries never duplicate.
    * ``delivery_timeout_ms``: a record not acknowledged by then fails.
    * ``security``: TLS and SASL settings (:class:`SecurityConfig`); None
      for a plaintext listener without authentication.
    """

    acks: int | str = "all"
    linger_ms: float = 5
    batch_bytes: int = 512 * 1024
    buffer_bytes: int = 32 * 1024 * 1024
    max_block_ms: int = 60_000
    max_in_flight: int = 5
    max_request_bytes: int = 16 * 1024 * 1024 - 64 * 1024
    compression: str | None = None
    compression_level: int = 6
    record_format: str = "native"
    enable_idempotence: bool = True
    retry_backoff_ms: int = 100
    delivery_timeout_ms: int = 120_000
    request_timeout_ms: int = 30_000
    connect_timeout_ms: int = 10_000
    security: SecurityConfig | None = None

    def __post_init__(self) -> None:
        if self.security is not None and not isinstance(self.security, SecurityConfig):
            raise TypeError("security must be a tailrace.client.security.SecurityConfig")
        if self.acks == "all":
            object.__setattr__(self, "acks", -1)
        if self.acks not in (0, 1, -1):
            raise ValueError("acks must be 0, 1 or 'all' (-1)")
        if self.record_format not in _MAGICS:
            raise ValueError("record_format must be 'native' or 'kafka'")
        allowed = _CODECS if self.record_format == "kafka" else _NATIVE_CODECS
        if self.compression not in allowed:
            names = ", ".join(repr(c) for c in allowed if c is not None)
            raise ValueError(
                f"compression must be None or one of {names} with record_format "
                f"{self.record_format!r}"
            )
        for name in ("batch_bytes", "buffer_bytes", "max_in_flight", "max_request_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.linger_ms < 0 or self.max_block_ms < 0:
            raise ValueError("linger_ms and max_block_ms must not be negative")


#: record_format -> magic byte
_MAGICS = {"native": MAGIC_NATIVE, "kafka": MAGIC_KAFKA}
#: compression name -> codec id (Kafka's numbering, which native shares)
_CODECS: dict[str | None, int] = {
    None: CODEC_NONE,
    "none": CODEC_NONE,
    "gzip": CODEC_GZIP,
    "snappy": CODEC_SNAPPY,
    "lz4": CODEC_LZ4,
    "zstd": CODEC_ZSTD,
}
_NATIVE_CODECS = (None, "none", "gzip")


def _to_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, str or None, not {type(value).__name__}")


def _headers(headers: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> list:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for name, value in items:
        if not isinstance(name, str):
            raise TypeError("header names must be str")
        if value is not None and type(value) is not bytes:
            value = _to_bytes(value, f"header {name!r}")
        out.append((name, value))
    return out


class ProducerCore:
    def __init__(self, bootstrap: str, config: ProducerConfig) -> None:
        self.bootstrap = bootstrap
        self.config = config
        self.sticky = StickyPartitioner()
        self._sticky_current = self.sticky.current
        self.partition_counts: dict[str, int] = {}
        self._wake_sender = self._no_wake
        self.acc = Accumulator(
            batch_bytes=config.batch_bytes,
            linger=config.linger_ms / 1000,
            buffer_bytes=config.buffer_bytes,
            wakeup=self._wakeup,
            on_seal=self._sealed,
        )
        self.client: BrokerClient | None = None
        self.sender: Sender | None = None
        #: set when run() has finished (everything completed or aborted)
        self.finished = trio.Event()
        self.max_record_bytes = min(config.max_request_bytes, 8 * 1024 * 1024) - HEADER_SIZE - 64

    # --- wiring ------------------------------------------------------------

    @staticmethod
    def _no_wake() -> None:
        return None

    def _wakeup(self) -> None:
        self._wake_sender()

    def _sealed(self, topic: str, partition: int) -> None:
        count = self.partition_counts.get(topic)
        if count:
            self.sticky.batch_sealed(topic, partition, count)

    async def run(
        self,
        wake_from_any_thread: Any = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the connection and the sender until the accumulator is closed
        and every batch in it has completed."""
        config = self.config
        async with trio.open_nursery() as connections:
            self.client = BrokerClient(
                connections,
                self.bootstrap,
                limits=Limits(max_frame_bytes=64 * 1024 * 1024, max_body_bytes=16 << 20),
                request_timeout_ms=config.request_timeout_ms,
                connect_timeout_ms=config.connect_timeout_ms,
                **connection_options(config.security),
            )
            self.sender = Sender(
                self.client,
                self.acc,
                acks=int(config.acks),
                idempotent=config.enable_idempotence,
                max_in_flight=config.max_in_flight,
                max_request_bytes=config.max_request_bytes,
                compression=_CODECS[config.compression],
                compression_level=config.compression_level,
                magic=_MAGICS[config.record_format],
                retry_backoff=config.retry_backoff_ms / 1000,
                delivery_timeout=config.delivery_timeout_ms / 1000,
                request_timeout=config.request_timeout_ms / 1000,
            )
            self._wake_sender = wake_from_any_thread or self.sender.wakeup
            try:
                async with trio.open_nursery() as tasks:
                    await tasks.start(self.sender.run)
                    task_status.started()
                # the sender returned: closed, and every batch completed
            finally:
                self.finished.set()
            await self.client.aclose()
            connections.cancel_scope.cancel()

    def abort(self, error: BaseException) -> None:
        """Fail every record not yet acknowledged and drop the connection
        (trio thread; a close that ran out of time)."""
        if self.sender is not None:
            self.sender.abort(error)
        if self.client is not None:
            self.client.abort(str(error))

    # --- the per-record path ---------------------------------------------

    def make_try_send(self) -> Any:
        """Build the per-record fast path: ``try_send(topic, value, key=None,
        headers=None, partition=None, timestamp=None)`` for the common case
        (bytes value and key, no headers, a known topic, an open batch with
        room left in its buffer reservation). It returns the record's
        handle, or None whenever anything is unusual; the caller then takes
        the general path (``prepare`` + ``append``), which handles it or
        raises. One closure over locals, because in CPython most of what a
        send costs is calls and attribute lookups."""
        counts = self.partition_counts
        sticky = self._sticky_current
        acc = self.acc
        lock = acc._lock
        open_batches = acc._open
        max_bytes = self.max_record_bytes
        time_ns = _time_ns
        for_key = partition_for_key
        new_future = tuple.__new__

        def try_send(
            topic: str,
            value: Any,
            key: Any = None,
            headers: Any = None,
            partition: int | None = None,
            timestamp: int | None = None,
        ) -> RecordFuture | None:
            if headers or type(value) is not bytes:
                return None
            if key is None:
                size = 16 + len(value)
                if partition is None:
                    partition = sticky.get(topic)
                    if partition is None:
                        return None
                elif partition < 0 or partition >= counts.get(topic, 0):
                    return None
            elif type(key) is bytes:
                size = 16 + len(value) + len(key)
                count = counts.get(topic)
                if count is None:
                    return None
                if partition is None:
                    partition = for_key(key, count)
                elif partition < 0 or partition >= count:
                    return None
            else:
                return None
            if size > max_bytes:
                return None
            if timestamp is None:
                timestamp = time_ns() // 1_000_000
            lock.acquire()
            try:
                by_partition = open_batches.get(topic)
                if by_partition is None:
                    return None
                batch = by_partition.get(partition)
                if batch is None:
                    return None
                size += batch.size
                if size > batch.reserved:
                    return None
                batch.size = size
                records = batch.records
                index = len(records)
                records.append((timestamp - batch.base_timestamp, key, value, None))
                if timestamp > batch.max_timestamp:
                    batch.max_timestamp = timestamp
            finally:
                lock.release()
            return new_future(RecordFuture, (batch, index, timestamp))

        return try_send

    def make_try_send_many(self) -> Any:
        """Build the batch-level fast path: ``try_send_many(topic, values,
        start, key, partition)`` appends ``values[start:]`` (bytes, no
        headers, one key or None, one timestamp) to the partition's open
        batch, as many as its buffer reservation holds, in one C-level
        ``list.extend`` under the accumulator's lock: no Python code runs per
        record. Returns ``(count, handle of the last one appended)``, or
        ``(0, None)`` when it cannot take any (no open batch, a full
        reservation, anything unusual); the caller sends one record the
        general way then (which opens, seals and reserves) and tries again.
        ``values`` must be a list or tuple whose items are all ``bytes``
        (checked by the caller)."""
        counts = self.partition_counts
        sticky = self._sticky_current
        acc = self.acc
        lock = acc._lock
        open_batches = acc._open
        reserve = acc._reserve
        batch_bytes = acc.batch_bytes
        max_bytes = self.max_record_bytes
        time_ns = _time_ns
        for_key = partition_for_key
        new_future = tuple.__new__

        def try_send_many(
            topic: str,
            values: list[bytes] | tuple[bytes, ...],
            start: int,
            key: bytes | None,
            partition: int | None,
        ) -> tuple[int, RecordFuture | None]:
            overhead = _RECORD_OVERHEAD + (0 if key is None else len(key))
            if key is None and partition is None:
                partition = sticky.get(topic)
                if partition is None:
                    return 0, None
            else:
                count = counts.get(topic)
                if count is None:
                    return 0, None
                if partition is None:
                    partition = for_key(key, count)
                elif partition < 0 or partition >= count:
                    return 0, None
            timestamp = time_ns() // 1_000_000
            lock.acquire()
            try:
                by_partition = open_batches.get(topic)
                if by_partition is None:
                    return 0, None
                batch = by_partition.get(partition)
                if batch is None:
                    return 0, None
                if start >= len(values):
                    return 0, None
                # the first value's size estimates how many fit: the scan
                # below is bounded by what the batch can take, not by
                # len(values) (with 1 KiB values a call used to scan every
                # value left for each 64 KiB reservation it filled)
                first_size = len(values[start]) + overhead
                if first_size > max_bytes:
                    return 0, None  # the general path raises RecordTooLargeError
                room = batch.reserved - batch.size
                if room < first_size and batch.size + first_size <= batch_bytes:
                    # grow the reservation here, as the general path would,
                    # when the buffer has room now (never waits: reserve()
                    # says no and the caller takes the general path)
                    if not reserve(batch, first_size - room):
                        return 0, None
                    room = batch.reserved - batch.size
                rest = values[start : start + room // first_size + 1]
                # as many as fit even if all were the longest one: exact for
                # equal sizes, a little short otherwise (the rest comes next)
                longest = max(map(len, rest)) + overhead
                if longest > max_bytes:
                    return 0, None  # the general path raises RecordTooLargeError
                take = min(len(rest), room // longest)
                if take <= 0:
                    return 0, None
                chunk = rest[:take] if take < len(rest) else rest
                records = batch.records
                first = len(records)
                records.extend(
                    zip(
                        repeat(timestamp - batch.base_timestamp, take),
                        repeat(key),
                        chunk,
                        repeat(None),
                    )
                )
                batch.size += sum(map(len, chunk)) + take * overhead
                if timestamp > batch.max_timestamp:
                    batch.max_timestamp = timestamp
            finally:
                lock.release()
            return take, new_future(RecordFuture, (batch, first + take - 1, timestamp))

        return try_send_many

    def prepare(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Any,
        partition: int | None,
        timestamp: int | None,
    ) -> tuple[Any, ...] | None:
        """Coerce and place one record; returns the accumulator arguments, or
        None when the topic's partition count is not known yet."""
        if value is not None and type(value) is not bytes:
            value = _to_bytes(value, "value")
        if key is not None and type(key) is not bytes:
            key = _to_bytes(key, "key")
        if headers:
            headers = _headers(headers)
            hsize = sum(len(n) + (len(v) if v else 0) + 4 for n, v in headers)
        else:
            headers = None
            hsize = 0
        size = _RECORD_OVERHEAD + hsize
        if value is not None:
            size += len(value)
        if key is not None:
            size += len(key)
        if size > self.max_record_bytes:
            raise RecordTooLargeError(
                f"a record of {size} bytes cannot fit a batch of {self.max_record_bytes} bytes"
            )
        if timestamp is None:
            timestamp = _time_ns() // 1_000_000
        count = self.partition_counts.get(topic)
        if count is None:
            return None  # the caller fetches the topic's metadata and asks again
        if partition is None:
            partition = (
                self.sticky.partition(topic, count)
                if key is None
                else partition_for_key(key, count)
            )
        elif not 0 <= partition < count:
            raise UnknownTopicOrPartitionError(
                f"partition {partition} of {topic!r} does not exist ({count} partitions)"
            )
        return topic, partition, timestamp, key, value, headers, size

    async def fetch_partition_count(self, topic: str) -> int:
        if self.client is None:
            raise ClientClosedError("the producer is not running")
        info = await self.client.topic(topic, create=True)
        self.partition_counts[topic] = info.partitions
        return info.partitions

    def buffer_full(self) -> BufferFullError:
        config = self.config
        return BufferFullError(
            f"the producer buffer ({config.buffer_bytes} bytes) stayed full for "
            f"max_block_ms ({config.max_block_ms} ms)"
        )

    def append(self, args: tuple[Any, ...]) -> RecordFuture | None:
        return self.acc.try_append(*args)

    def unfinished(self) -> list[ProducerBatch]:
        """Every batch accepted and not yet completed (trio thread only)."""
        sender = self.sender
        if sender is None:
            return self.acc.pending_batches()
        with sender.gate:  # no direct send between the accumulator and the sender
            return self.acc.pending_batches() + sender.unfinished()

    async def flush(self) -> None:
        """Wait until every record accepted so far is acknowledged or failed."""
        pending = self.unfinished()
        self.acc.begin_flush()
        try:
            for batch in pending:
                await batch.wait_trio()
        finally:
            self.acc.end_flush()
