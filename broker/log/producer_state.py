"""Idempotent-producer state of one partition: dedup and sequence checks.

Per producer id the partition keeps the producer epoch and the metadata of
its last 5 batches (Kafka's NUM_BATCHES_TO_RETAIN, matching a producer's
limit of 5 in-flight requests): first and last sequence, first and last
offset. On append of a batch with ``producer_id >= 0``:

* an epoch older than the known one -> InvalidProducerEpochError;
* same epoch, and first/last sequence equal to a retained batch -> a
  duplicate (a retry whose ack was lost): nothing is appended and the
  original offsets are returned;
* same epoch, sequence == last sequence + 1 -> appended;
* same epoch, any other sequence -> OutOfOrderSequenceError;
* a newer epoch must start at sequence 0 (else OutOfOrderSequenceError);
* an unknown producer id (never seen, or expired) must start at sequence 0,
  else UnknownProducerIdError: the broker has no state to check the sequence
  against, and the producer should reset its sequence under a new epoch.
  (Kafka's older brokers answer the same; a gap would be the wrong name.)

Sequences are i32 and wrap from 2**31-1 to 0 as in Kafka. A producer is
forgotten ``producer_id_expiration_ms`` after the max timestamp of its last
batch (Kafka measures on batch timestamps too).

The state is rebuilt at open from a snapshot file plus a replay of the batch
headers after the snapshot's offset (headers carry producer id, epoch, base
sequence and record count, so no record is decoded).

Snapshot file ``<offset>.snapshot`` (big-endian)::

    offset size field
    0      4    magic           b"TRPS"
    4      2    version         u16, 1
    6      4    crc             u32 CRC-32C of every byte from offset 10 on
    10     8    offset          i64 the state covers every batch below this
                                    offset and none at or above it
    18     4    producer_count  u32
    22     ..   producers, each:
                  0  8 producer_id     i64
                  8  2 epoch           i16
                  10 8 last_timestamp  i64 max timestamp of its last batch
                  18 1 batch_count     u8, 1..5
                  19 .. batches, each 24 bytes:
                        first_seq i32, last_seq i32,
                        first_offset i64, last_offset i64
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import crc32c

from tailrace.client.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)

if TYPE_CHECKING:
    from tailrace.client.records import BatchHeader

__all__ = [
    "BATCHES_TO_RETAIN",
    "ProducerBatch",
    "ProducerEntry",
    "ProducerStateManager",
    "next_sequence",
]

BATCHES_TO_RETAIN = 5
SEQUENCE_MAX = 2**31 - 1

_MAGIC = b"TRPS"
_VERSION = 1
_FILE_HEADER = struct.Struct(">4sHI")  # magic, version, crc
_BODY_HEADER = struct.Struct(">qI")  # offset, producer_count
_PRODUCER = struct.Struct(">qhqB")  # producer_id, epoch, last_timestamp, batch_count
_BATCH = struct.Struct(">iiqq")  # first_seq, last_seq, first_offset, last_offset


def next_sequence(seq: int, increment: int) -> int:
    """``seq + increment`` wrapping past 2**31-1 to 0 (Kafka's incrementSequence)."""
    if seq > SEQUENCE_MAX - increment:
        return increment - (SEQUENCE_MAX - seq) - 1
    return seq + increment


class ProducerBatch(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


class ProducerEntry:
    """Epoch, last batches and last timestamp of one producer id."""

    __slots__ = ("batches", "epoch", "last_timestamp")

    def __init__(self, epoch: int, batches: list[ProducerBatch], last_timestamp: int) -> None:
        self.epoch = epoch
        self.batches = batches
        self.last_timestamp = last_timestamp


class ProducerStateManager:
    """The producer table of one partition (see the module docstring)."""

    def __init__(self, expiration_ms: int) -> None:
        self.expiration_ms = expiration_ms
        self.producers: dict[int, ProducerEntry] = {}
        #: Bumped on every change; snapshots are skipped when it did not move.
        self.version = 0

    def __len__(self) -> int:
        return len(self.producers)

    def check(self, headers: Iterable[BatchHeader]) -> ProducerBatch | None:
        """Check an append's batches; raise on a violation, return the
        original (first, last) offsets when the whole append is a duplicate,
        None when it may be appended. Changes nothing."""
        pending: dict[int, tuple[int, int]] = {}
        duplicate: ProducerBatch | None = None
        new = 0
        for h in headers:
            pid = h.producer_id
            if pid < 0:
                new += 1
                continue
            epoch, seq = h.producer_epoch, h.base_sequence
            if epoch < 0 or seq < 0:
                raise InvalidRecordError(
                    f"producer {pid}: epoch {epoch} and base sequence {seq} must be >= 0"
                )
            last_seq = next_sequence(seq, h.record_count - 1)
            entry = self.producers.get(pid)
            if pid in pending:
                cur_epoch, expected = pending[pid]
            elif entry is not None:
                cur_epoch, expected = entry.epoch, next_sequence(entry.batches[-1].last_seq, 1)
            else:
                cur_epoch, expected = -1, 0
            if epoch < cur_epoch:
                raise InvalidProducerEpochError(
                    f"producer {pid}: epoch {epoch} is older than the current epoch {cur_epoch}"
                )
            if entry is not None and pid not in pending and epoch == entry.epoch:
                dup = _find_duplicate(entry, seq, last_seq)
                if dup is not None:
                    if duplicate is not None:  # several duplicates: span them all
                        dup = duplicate._replace(last_seq=dup.last_seq, last_offset=dup.last_offset)
                    duplicate = dup
                    continue
            if cur_epoch < 0:
                if seq != 0:
                    raise UnknownProducerIdError(
                        f"producer {pid} is unknown here (never seen or expired) and its "
                        f"batch starts at sequence {seq}, not 0"
                    )
            elif epoch > cur_epoch:
                if seq != 0:
                    raise OutOfOrderSequenceError(
                        f"producer {pid}: new epoch {epoch} starts at sequence {seq}, not 0"
                    )
            elif seq != expected:
                raise OutOfOrderSequenceError(
                    f"producer {pid} epoch {epoch}: sequence {seq}, expected {expected}"
                )
            pending[pid] = (epoch, next_sequence(last_seq, 1))
            new += 1
        if duplicate is not None and new:
            raise OutOfOrderSequenceError(
                "the append mixes duplicate batches with new ones; send them separately"
            )
        return duplicate

    def record(self, headers: Iterable[BatchHeader], base_offset: int) -> None:
        """Apply an appended run of batches starting at ``base_offset``."""
        offset = base_offset
        for h in headers:
            last = offset + h.last_offset_delta
            if h.producer_id >= 0:
                self.replay(h, offset)
            offset = last + 1

    def replay(self, h: BatchHeader, base_offset: int) -> None:
        """Apply one batch (append path and recovery replay)."""
        batch = ProducerBatch(
            h.base_sequence,
            next_sequence(h.base_sequence, h.last_offset_delta),
            base_offset,
            base_offset + h.last_offset_delta,
        )
        entry = self.producers.get(h.producer_id)
        if entry is None or entry.epoch != h.producer_epoch:
            self.producers[h.producer_id] = ProducerEntry(
                h.producer_epoch, [batch], h.max_timestamp
            )
        else:
            entry.batches.append(batch)
            if len(entry.batches) > BATCHES_TO_RETAIN:
                del entry.batches[0]
            if h.max_timestamp > entry.last_timestamp:
                entry.last_timestamp = h.max_timestamp
        self.version += 1

    def expire(self, now_ms: int) -> int:
        """Forget producers idle for producer_id_expiration_ms; returns how many."""
        cutoff = now_ms - self.expiration_ms
        dead = [pid for pid, e in self.producers.items() if e.last_timestamp <= cutoff]
        for pid in dead:
            del self.producers[pid]
        if dead:
            self.version += 1
        return len(dead)

    # --- snapshots -------------------------------------------------------------

    def snapshot_bytes(self, offset: int) -> bytes:
        """Serialize the current state as covering every batch below ``offset``."""
        parts = [_BODY_HEADER.pack(offset, len(self.producers))]
        for pid, e in self.producers.items():
            parts.append(_PRODUCER.pack(pid, e.epoch, e.last_timestamp, len(e.batches)))
            parts.extend(_BATCH.pack(*b) for b in e.batches)
        body = b"".join(parts)
        return _FILE_HEADER.pack(_MAGIC, _VERSION, crc32c.crc32c(body)) + body

    @classmethod
    def from_snapshot(cls, data: bytes, expiration_ms: int) -> tuple[ProducerStateManager, int]:
        """Parse a snapshot; returns (state, offset). ValueError when damaged."""
        if len(data) < _FILE_HEADER.size + _BODY_HEADER.size:
            raise ValueError("snapshot is too short")
        magic, version, crc = _FILE_HEADER.unpack_from(data, 0)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a version {_VERSION} producer snapshot")
        body = memoryview(data)[_FILE_HEADER.size :]
        if crc32c.crc32c(body) != crc:
            raise ValueError("snapshot CRC-32C mismatch")
        offset, count = _BODY_HEADER.unpack_from(body, 0)
        pos = _BODY_HEADER.size
        state = cls(expiration_ms)
        for _ in range(count):
            if pos + _PRODUCER.size > len(body):
                raise ValueError("snapshot is truncated")
            pid, epoch, last_ts, n = _PRODUCER.unpack_from(body, pos)
            pos += _PRODUCER.size
            if not 1 <= n <= BATCHES_TO_RETAIN or pos + n * _BATCH.size > len(body):
                raise ValueError("snapshot has a bad batch count")
            batches = [
                ProducerBatch(*_BATCH.unpack_from(body, pos + i * _BATCH.size)) for i in range(n)
            ]
            pos += n * _BATCH.size
            state.producers[pid] = ProducerEntry(epoch, batches, last_ts)
        if pos != len(body):
            raise ValueError("snapshot has trailing bytes")
        return state, offset


def _find_duplicate(entry: ProducerEntry, first_seq: int, last_seq: int) -> ProducerBatch | None:
    for b in entry.batches:
        if b.first_seq == first_seq and b.last_seq == last_seq:
            return b
    return None
