"""The leader-epoch cache: which leader epoch wrote which range of offsets.

A partition's log is a sequence of leader epochs, each starting at an
offset: ``[(0, 0), (2, 140), (5, 300)]`` says epoch 0 wrote offsets 0-139,
epoch 2 wrote 140-299 and epoch 5 wrote from 300 to the log end. Two
replicas whose caches agree on an epoch's start and end hold the same
records there (only one leader writes in an epoch, and every batch it writes
carries the epoch in its header), which is what lets a follower find the
point where its log diverges from the leader's without trusting the high
watermark (KIP-101).

The rules are Kafka's ``LeaderEpochFileCache`` (storage module,
``org.apache.kafka.storage.internals.epoch``), kept line for line where
they decide something:

* ``assign(epoch, start)`` is a no-op when it changes nothing (same epoch as
  the latest, and a start not below the latest's); otherwise every entry
  whose epoch is >= ``epoch`` or whose start is >= ``start`` is removed
  first, so epochs and start offsets both stay strictly increasing.
* ``truncate_from_end(end)`` (the log was cut at ``end``) removes the entries
  starting at or after ``end``.
* ``truncate_from_start(start)`` (the log start moved up) removes entries
  starting at or before ``start`` and puts the last of them back starting
  at ``start``.
* ``end_offset_for(epoch, log_end)`` answers OffsetForLeaderEpoch, including
  the UNDEFINED cases (see the method).

This module does no I/O: the caller persists :meth:`LeaderEpochCache.entries`
with :mod:`tailrace.broker.log.epoch_checkpoint` whenever a mutating method
returns True.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "EpochEndOffset",
    "EpochEntry",
    "LeaderEpochCache",
]

#: Kafka's RecordBatch.NO_PARTITION_LEADER_EPOCH: no epoch is known.
UNDEFINED_EPOCH = -1
#: Kafka's UNDEFINED_EPOCH_OFFSET: no end offset is known.
UNDEFINED_EPOCH_OFFSET = -1


class EpochEntry(NamedTuple):
    """Leader ``epoch`` wrote its first record at ``start_offset``."""

    epoch: int
    start_offset: int


class EpochEndOffset(NamedTuple):
    """An OffsetForLeaderEpoch answer: the largest epoch <= the one asked
    that the log knows, and the offset where that epoch's records end
    (exclusive: the start of the next epoch, or the log end)."""

    epoch: int
    end_offset: int

    @property
    def undefined(self) -> bool:
        return self.end_offset == UNDEFINED_EPOCH_OFFSET


_UNDEFINED = EpochEndOffset(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


class LeaderEpochCache:
    """Epoch -> start offset, both strictly increasing. See the module docstring.

    Mutating methods return True when they changed the cache (the caller
    then writes the checkpoint).
    """

    __slots__ = ("_epochs", "_starts")

    def __init__(self, entries: Iterable[EpochEntry | tuple[int, int]] = ()) -> None:
        self._epochs: list[int] = []
        self._starts: list[int] = []
        for epoch, start in entries:
            if epoch < 0 or start < 0:
                raise ValueError(f"epoch entry ({epoch}, {start}) is negative")
            if self._epochs and (epoch <= self._epochs[-1] or start <= self._starts[-1]):
                raise ValueError(
                    f"epoch entry ({epoch}, {start}) does not follow "
                    f"({self._epochs[-1]}, {self._starts[-1]})"
                )
            self._epochs.append(epoch)
            self._starts.append(start)

    # ------------------------------------------------------------- reading

    def entries(self) -> list[EpochEntry]:
        return [EpochEntry(e, s) for e, s in zip(self._epochs, self._starts, strict=True)]

    def __len__(self) -> int:
        return len(self._epochs)

    def __bool__(self) -> bool:
        return bool(self._epochs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LeaderEpochCache):
            return NotImplemented
        return self._epochs == other._epochs and self._starts == other._starts

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self.entries()!r})"

    @property
    def latest_epoch(self) -> int:
        """The newest epoch, or UNDEFINED_EPOCH when the cache is empty."""
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    @property
    def latest_entry(self) -> EpochEntry | None:
        return EpochEntry(self._epochs[-1], self._starts[-1]) if self._epochs else None

    @property
    def earliest_entry(self) -> EpochEntry | None:
        return EpochEntry(self._epochs[0], self._starts[0]) if self._epochs else None

    def start_offset_of(self, epoch: int) -> int | None:
        """Where ``epoch`` starts, or None when the cache does not hold it."""
        i = bisect_left(self._epochs, epoch)
        if i < len(self._epochs) and self._epochs[i] == epoch:
            return self._starts[i]
        return None

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch that wrote ``offset`` (UNDEFINED_EPOCH below the first entry)."""
        i = bisect_right(self._starts, offset) - 1
        return self._epochs[i] if i >= 0 else UNDEFINED_EPOCH

    def previous_epoch(self, epoch: int) -> int:
        """The largest epoch below ``epoch``, or UNDEFINED_EPOCH."""
        i = bisect_left(self._epochs, epoch) - 1
        return self._epochs[i] if i >= 0 else UNDEFINED_EPOCH

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> EpochEndOffset:
        """Answer OffsetForLeaderEpoch(``requested_epoch``) as Kafka does.

        * ``requested_epoch`` is UNDEFINED_EPOCH: (UNDEFINED, UNDEFINED) -- a
          bootstrapping follower with no epochs.
        * it is the latest epoch: (it, ``log_end_offset``) -- the epoch still
          being written ends at the log end.
        * it is above every known epoch: (UNDEFINED, UNDEFINED).
        * it is below every known epoch: (``requested_epoch``, start of the
          first epoch) -- that data is gone from this log (retention), so the
          follower keeps nothing before the first known epoch.
        * otherwise: (the largest known epoch <= it, start of the next known
          epoch after it).
        """
        if requested_epoch == UNDEFINED_EPOCH:
            return _UNDEFINED
        epochs = self._epochs
        if epochs and epochs[-1] == requested_epoch:
            return EpochEndOffset(requested_epoch, log_end_offset)
        higher = bisect_right(epochs, requested_epoch)
        if higher == len(epochs):
            return _UNDEFINED
        floor = higher - 1
        if floor < 0:
            return EpochEndOffset(requested_epoch, self._starts[higher])
        return EpochEndOffset(epochs[floor], self._starts[higher])

    # ------------------------------------------------------------ mutating

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset`` (a leader taking
        over at its log end, or a follower appending the first batch of an
        epoch). Entries that conflict (epoch >= ``epoch`` or start >=
        ``start_offset``) are removed first. A negative epoch is ignored
        (batches from before epochs were stamped)."""
        if epoch < 0:
            return False
        if self._epochs:
            latest_epoch, latest_start = self._epochs[-1], self._starts[-1]
            if epoch == latest_epoch and start_offset >= latest_start:
                return False
        while self._epochs and (self._epochs[-1] >= epoch or self._starts[-1] >= start_offset):
            self._epochs.pop()
            self._starts.pop()
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        return True

    def truncate_from_end(self, end_offset: int) -> bool:
        """The log was truncated to end at ``end_offset``: drop the epochs
        that start at or after it."""
        if end_offset < 0 or not self._starts or self._starts[-1] < end_offset:
            return False
        while self._starts and self._starts[-1] >= end_offset:
            self._epochs.pop()
            self._starts.pop()
        return True

    def truncate_from_start(self, start_offset: int) -> bool:
        """The log start moved up to ``start_offset``: the epochs that start
        at or before it collapse into the last of them, now starting there."""
        i = bisect_right(self._starts, start_offset)
        if i == 0:
            return False
        keep = self._epochs[i - 1]
        if i == 1 and self._starts[0] == start_offset:
            return False
        del self._epochs[:i]
        del self._starts[:i]
        self._epochs.insert(0, keep)
        self._starts.insert(0, start_offset)
        return True

    def clear(self) -> bool:
        changed = bool(self._epochs)
        self._epochs.clear()
        self._starts.clear()
        return changed

    def copy(self) -> LeaderEpochCache:
        new = LeaderEpochCache()
        new._epochs = list(self._epochs)
        new._starts = list(self._starts)
        return new
