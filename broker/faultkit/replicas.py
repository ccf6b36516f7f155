"""Replica checks for cluster scenarios: the oracle's history check says
nothing acknowledged was lost or duplicated as a consumer saw it; these say
the replicas of each partition agree with each other, byte for byte.

After the faults are healed and every replica has caught up, a partition's
replicas must hold the same batches: the same base and last offsets, the
same leader epoch stamped by the leader that appended them, the same bytes
(a follower copies the leader's batches as they are). Before that, they
must agree up to the high watermark: what lies above it may still be
truncated on a follower (rules 3 and 7 of issue 16, KIP-101).

Within one replica, leader epochs never decrease along the log (a batch is
stamped with the epoch of the leader that appended it, and epochs only
grow), offsets only increase, and batches do not overlap.

Across time, :class:`Monotonic` records what a scenario observed of each
partition (its high watermark, its leader epoch) and reports any value that
went backwards.

Everything is read from the files of stopped (or quiesced) replicas, with
every batch CRC-checked, as :func:`.oracle.read_partition_dir` does.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tailrace.client.errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError
from tailrace.client.records import validate_batch

__all__ = ["BatchId", "Monotonic", "ReplicaLog", "compare_replicas", "read_replica"]

_ANY_SIZE = 2**31 - 1
_BAD_BATCH = (InvalidRecordError, CorruptRecordError, RecordTooLargeError)


@dataclass(frozen=True, slots=True)
class BatchId:
    """What identifies a stored batch across replicas."""

    base_offset: int
    last_offset: int
    leader_epoch: int
    crc: int
    #: SHA-256 of the whole batch as stored, header included
    digest: bytes


@dataclass(slots=True)
class ReplicaLog:
    """One replica's batches, in log order, and what was wrong reading them."""

    name: str
    batches: list[BatchId] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def log_end(self) -> int:
        return self.batches[-1].last_offset + 1 if self.batches else 0


def read_replica(name: str, path: str) -> ReplicaLog:
    """Every batch of the partition directory ``path`` (one replica).

    Reading a segment stops at its first invalid batch; unless the rest of
    the segment is zero bytes (an untrimmed preallocation), that is a problem.
    """
    out = ReplicaLog(name)
    bases = sorted(int(n[:-4]) for n in os.listdir(path) if n.endswith(".log") and n[:-4].isdigit())
    for base in bases:
        log_path = os.path.join(path, f"{base:020d}.log")
        with open(log_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                continue
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        try:
            pos = 0
            while pos < size:
                try:
                    h = validate_batch(mm, pos, max_batch_bytes=_ANY_SIZE, end=size)
                except _BAD_BATCH as exc:
                    tail = mm[pos:size]
                    if tail.count(0) != len(tail):
                        out.problems.append(f"{name}: undecodable batch in {log_path}:{pos}: {exc}")
                    break
                digest = hashlib.sha256(mm[pos : pos + h.size]).digest()
                out.batches.append(
                    BatchId(h.base_offset, h.last_offset, h.leader_epoch, h.crc, digest)
                )
                pos += h.size
        finally:
            mm.close()
    _check_order(out)
    return out


def _check_order(log: ReplicaLog) -> None:
    prev: BatchId | None = None
    for b in log.batches:
        if prev is not None:
            if b.base_offset <= prev.last_offset:
                log.problems.append(
                    f"{log.name}: batch at offset {b.base_offset} overlaps the one ending at "
                    f"{prev.last_offset}"
                )
            if b.leader_epoch < prev.leader_epoch:
                log.problems.append(
                    f"{log.name}: leader epoch goes back from {prev.leader_epoch} to "
                    f"{b.leader_epoch} at offset {b.base_offset}"
                )
        prev = b


def compare_replicas(
    replicas: Mapping[str, str], *, up_to: int | None = None
) -> tuple[list[ReplicaLog], list[str]]:
    """Read each replica (name -> partition directory) and compare them.

    ``up_to``: compare only the batches that end below this offset (the
    high watermark, before the replicas caught up); None: the whole logs,
    which must then be identical (after healing and catching up).
    Returns the logs and the violations found (empty: they agree).
    """
    logs = [read_replica(name, path) for name, path in sorted(replicas.items())]
    problems = [p for log in logs for p in log.problems]
    if len(logs) < 2:
        return logs, problems
    reference = logs[0]

    def prefix(log: ReplicaLog) -> list[BatchId]:
        if up_to is None:
            return log.batches
        return [b for b in log.batches if b.last_offset < up_to]

    want = prefix(reference)
    for log in logs[1:]:
        have = prefix(log)
        for i, (a, b) in enumerate(zip(want, have, strict=False)):
            if a != b:
                problems.append(
                    f"{log.name} differs from {reference.name} at batch {i}: "
                    f"{_describe(b)} where {reference.name} has {_describe(a)}"
                )
                break
        else:
            if len(have) != len(want):
                longer, shorter = (log, reference) if len(have) > len(want) else (reference, log)
                problems.append(
                    f"{shorter.name} ends at offset {shorter.log_end if up_to is None else up_to}"
                    f" with {min(len(have), len(want))} batches; {longer.name} has "
                    f"{max(len(have), len(want))}"
                    + ("" if up_to is None else f" below offset {up_to}")
                )
    return logs, problems


def _describe(b: BatchId) -> str:
    return (
        f"offsets {b.base_offset}-{b.last_offset} epoch {b.leader_epoch} crc {b.crc:#010x} "
        f"sha256 {b.digest.hex()[:12]}"
    )


class Monotonic:
    """Values a scenario observes over time that must never go backwards:
    ``observe("leader_epoch", "t/0", 3)`` for a partition's epoch in etcd,
    ``observe("hw", "t/0@2", 120)`` for the high watermark broker 2 reports
    for t/0 (each replica's own: a follower's may trail the leader's)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}
        self.problems: list[str] = []

    def observe(self, what: str, where: str, value: int, *, source: str = "") -> None:
        key = (what, where)
        last = self._last.get(key)
        if last is not None and value < last:
            by = f" (seen by {source})" if source else ""
            self.problems.append(f"{what} of {where} went back from {last} to {value}{by}")
            return
        self._last[key] = value
