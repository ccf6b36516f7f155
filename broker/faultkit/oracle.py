"""The oracle of every fault test: what was written, what was read, what broke.

Writing. Each producer writes values that name it and number it:
``encode_value(producer, seq)`` gives ``b"<producer>:<seq>:"`` (padded with
dots to a chosen size), so a value read back says who wrote it and when. A
:class:`History` (thread-safe) logs every send and its outcome:

* ``acked``: the broker acknowledged it, at this partition and offset;
* ``failed``: it failed with a non-retriable broker error, so the broker
  refused it and it must not be in the log (a *definite* failure);
* ``unknown``: it failed otherwise (a timeout, a lost connection, a storage
  error after retries, the producer closed) or never completed: it may or
  may not be in the log, and either is correct.

A power cut (or a kill) is noted with :meth:`History.cut`: outcomes that
arrive after it are not acknowledgements a real client could have seen
before the machine died, so they count as unknown.

Reading. :func:`read_partition_dir` reads a partition's files from disk
without the broker's code paths (its own walk over every batch, CRC checked):
records, and structural problems (an undecodable byte range that is not a
zero tail, an offset gap or overlap between batches or segments, an offset
index entry that does not point at a batch start holding that offset, a time
index entry that breaks its invariant). A consumer-side read (workload.py)
gives the same :class:`PartitionRead` shape.

Checking. :func:`check` compares the two and returns a :class:`Report` that
counts and lists (the first few of each kind, with producer, sequence,
partition and offsets) every:

* lost value: acknowledged, not in the log (unless ``may_lose`` allows it,
  e.g. interval mode's window before a power cut: counted apart);
* duplicate: a value present more than once;
* reordering: one producer's values in a partition not in sequence order;
* misplaced value: found at another partition or offset than acknowledged;
* definitely-failed value present;
* unexpected value: not written by this history (garbage served as data);
* offset gap, and every structural problem the reader found.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import struct
import threading
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from tailrace.client.errors import (
    BrokerError,
    CorruptRecordError,
    InvalidRecordError,
    RecordTooLargeError,
)
from tailrace.client.records import iter_records, validate_batch

from ..log.cleaner import CHECKPOINT_FILE as CLEANER_CHECKPOINT
from ..log.cleaner import CleanerCheckpoint

__all__ = [
    "ACKED",
    "FAILED",
    "PENDING",
    "UNKNOWN",
    "Attempt",
    "History",
    "PartitionRead",
    "Report",
    "audit_data_dir",
    "check",
    "decode_value",
    "encode_value",
    "is_definite_failure",
    "read_partition_dir",
    "read_topic_dir",
]

ACKED = "acked"
FAILED = "failed"
UNKNOWN = "unknown"
PENDING = "pending"

#: Violations listed per kind in a report (all are counted).
SHOWN = 5
_ANY_SIZE = 2**31 - 1
_BAD_BATCH = (InvalidRecordError, CorruptRecordError, RecordTooLargeError)
_INDEX_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")

Key = tuple[str, int]


def encode_value(producer: str, seq: int, pad: int = 0) -> bytes:
    """``b"<producer>:<seq>:"`` padded with dots to ``pad`` bytes."""
    head = f"{producer}:{seq}:".encode()
    return head + b"." * (pad - len(head)) if pad > len(head) else head


def decode_value(value: bytes | None) -> Key | None:
    """(producer, seq) of a value made by encode_value, else None."""
    if not value:
        return None
    parts = bytes(value).split(b":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    try:
        return parts[0].decode("ascii"), int(parts[1])
    except UnicodeDecodeError:
        return None


def is_definite_failure(error: BaseException) -> bool:
    """The broker refused the record for good (nothing was appended): a
    non-retriable broker error. Everything else leaves the outcome unknown."""
    return isinstance(error, BrokerError) and not error.retriable


@dataclass(slots=True)
class Attempt:
    producer: str
    seq: int
    topic: str
    partition: int
    sent_at: float
    status: str = PENDING
    offset: int = -1
    done_at: float | None = None
    error: str | None = None


class History:
    """Every value sent and what became of it. Safe to use from threads
    (blocking producers' callbacks) and trio tasks alike."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.attempts: dict[Key, Attempt] = {}
        self.cut_at: float | None = None
        self.late = 0
        #: called (no arguments, in the completing thread) after each outcome:
        #: lets a trio test wait for progress instead of polling
        self.listeners: list[Callable[[], None]] = []
        #: acknowledged values per (topic, partition), kept as they come
        self.acked_in: dict[tuple[str, int], int] = defaultdict(int)
        #: values sent and not completed yet, kept as they come (counts()
        #: walks every attempt: too slow for a predicate checked per outcome)
        self.pending = 0
        self._lock = threading.Lock()

    def sent(self, producer: str, seq: int, topic: str, partition: int) -> None:
        with self._lock:
            key = (producer, seq)
            if key in self.attempts:
                raise ValueError(f"value {key} sent twice: values must be unique")
            self.attempts[key] = Attempt(producer, seq, topic, partition, self.clock())
            self.pending += 1

    def _complete(self, producer: str, seq: int) -> Attempt | None:
        a = self.attempts[(producer, seq)]
        if a.status != PENDING:
            raise ValueError(f"value {(producer, seq)} completed twice")
        self.pending -= 1
        now = self.clock()
        a.done_at = now
        if self.cut_at is not None and now >= self.cut_at:
            self.late += 1
            a.status = UNKNOWN
            a.error = "completed after the cut"
            return None
        return a

    def acked(self, producer: str, seq: int, partition: int, offset: int) -> None:
        with self._lock:
            a = self._complete(producer, seq)
            if a is not None:
                a.status = ACKED
                a.partition = partition
                a.offset = offset
                self.acked_in[(a.topic, partition)] += 1
        self._notify()

    def failed(
        self, producer: str, seq: int, error: BaseException | str, *, definite: bool | None = None
    ) -> None:
        """Log a failure: definite (must not be in the log) when ``definite``
        says so or, left None, for a non-retriable broker error."""
        with self._lock:
            a = self._complete(producer, seq)
            if a is not None:
                if definite is None:
                    definite = isinstance(error, BaseException) and is_definite_failure(error)
                a.status = FAILED if definite else UNKNOWN
                a.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()

    async def until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait (in trio, whose thread completes the records) until
        ``predicate()`` holds, re-checking after each outcome."""
        with trio.fail_after(timeout):
            while not predicate():
                event = trio.Event()
                self.listeners.append(event.set)
                try:
                    if not predicate():
                        await event.wait()
                finally:
                    self.listeners.remove(event.set)

    def cut(self, at: float | None = None) -> float:
        """The machine died now: later outcomes are unknown. Returns the time."""
        with self._lock:
            self.cut_at = self.clock() if at is None else at
            return self.cut_at

    def finish(self) -> None:
        """Whatever is still pending is unknown."""
        with self._lock:
            for a in self.attempts.values():
                if a.status == PENDING:
                    a.status = UNKNOWN
                    a.error = "never completed"
            self.pending = 0

    def counts(self) -> dict[str, int]:
        out = {ACKED: 0, FAILED: 0, UNKNOWN: 0, PENDING: 0}
        with self._lock:
            for a in self.attempts.values():
                out[a.status] += 1
        return out

    def dump(self, path: str) -> None:
        """One JSON object per attempt (tools keep it next to a failed run)."""
        with self._lock, open(path, "w") as f:
            for a in self.attempts.values():
                f.write(
                    json.dumps(
                        [
                            a.producer,
                            a.seq,
                            a.topic,
                            a.partition,
                            a.sent_at,
                            a.status,
                            a.offset,
                            a.done_at,
                            a.error,
                        ]
                    )
                    + "\n"
                )

    @classmethod
    def load(cls, path: str) -> History:
        h = cls()
        with open(path) as f:
            for line in f:
                a = Attempt(*json.loads(line))
                h.attempts[(a.producer, a.seq)] = a
        return h


@dataclass
class PartitionRead:
    """What one partition holds, read back (from disk or through a consumer)."""

    topic: str
    partition: int
    #: (offset, value) in log order
    records: list[tuple[int, bytes | None]] = field(default_factory=list)
    log_start: int = 0
    log_end: int = 0
    batches: int = 0
    segments: int = 0
    #: structural problems found while reading (each one is a violation)
    problems: list[str] = field(default_factory=list)
    #: harmless observations (an untrimmed zero tail)
    notes: list[str] = field(default_factory=list)


def read_topic_dir(data_dir: str, topic: str) -> list[PartitionRead]:
    """Read every partition directory of ``topic`` under ``data_dir``."""
    top = os.path.join(data_dir, topic)
    parts = sorted(int(n) for n in os.listdir(top) if n.isdigit())
    return [read_partition_dir(os.path.join(top, str(p)), topic, p) for p in parts]


def read_partition_dir(path: str, topic: str = "?", partition: int = -1) -> PartitionRead:
    """Read a partition's segments and indexes straight from the files.

    Run it on a stopped broker's directory (or after recovery). Every batch
    is CRC-checked; reading a segment stops at the first invalid batch,
    which is a problem unless everything from there on is zero bytes (an
    untrimmed preallocation, noted).
    """
    out = PartitionRead(topic, partition)
    bases = sorted(int(n[:-4]) for n in os.listdir(path) if n.endswith(".log") and n[:-4].isdigit())
    out.segments = len(bases)
    expected: int | None = None
    for base in bases:
        if expected is None:
            out.log_start = expected = base
        elif base != expected:
            kind = "gap" if base > expected else "overlap"
            out.problems.append(
                f"offset {kind}: segment {base} follows data ending at offset {expected - 1}"
            )
            expected = base
        expected = _read_segment(path, base, out)
    out.log_end = out.log_start if expected is None else expected
    return out


def _read_segment(path: str, base: int, out: PartitionRead) -> int:
    log_path = os.path.join(path, f"{base:020d}.log")
    starts: dict[int, int] = {}  # position -> base offset
    max_ts_after: list[tuple[int, int]] = []  # (last offset, running max ts)
    expected = base
    with open(log_path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            _check_indexes(path, base, starts, max_ts_after, out)
            return expected
        mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    try:
        pos = 0
        running = -(2**63)
        while pos < size:
            try:
                h = validate_batch(mm, pos, max_batch_bytes=_ANY_SIZE, end=size)
            except _BAD_BATCH as exc:
                tail = mm[pos:size]
                if tail.count(0) == len(tail):
                    out.notes.append(f"{log_path}: {size - pos} zero bytes after the data")
                else:
                    out.problems.append(
                        f"undecodable bytes in {log_path} at byte {pos} (after offset "
                        f"{expected - 1}): {exc}"
                    )
                break
            if h.base_offset != expected:
                kind = "gap" if h.base_offset > expected else "overlap"
                out.problems.append(
                    f"offset {kind} in {log_path} at byte {pos}: batch starts at "
                    f"{h.base_offset}, expected {expected}"
                )
            starts[pos] = h.base_offset
            try:
                records = list(iter_records(mm, h, pos))
            except _BAD_BATCH as exc:
                out.problems.append(f"records of batch at {log_path}:{pos} do not decode: {exc}")
                records = [
                    (h.base_offset + i, h.base_timestamp, None, None, None)
                    for i in range(h.record_count)
                ]
            for offset, ts, _key, value, _headers in records:
                out.records.append((offset, value))
                running = max(running, ts)
            max_ts_after.append((h.last_offset, running))
            out.batches += 1
            expected = h.next_offset
            pos += h.size
    finally:
        mm.close()
    _check_indexes(path, base, starts, max_ts_after, out)
    return expected


def _check_indexes(
    path: str,
    base: int,
    starts: dict[int, int],
    max_ts_after: list[tuple[int, int]],
    out: PartitionRead,
) -> None:
    index_path = os.path.join(path, f"{base:020d}.index")
    try:
        with open(index_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        out.notes.append(f"{index_path} is missing")
        data = b""
    usable = len(data) - len(data) % _INDEX_ENTRY.size
    for i, (rel, pos) in enumerate(_INDEX_ENTRY.iter_unpack(data[:usable])):
        if rel == 0 and pos == 0 and not data[i * 8 :].strip(b"\0"):
            out.notes.append(f"{index_path}: zero (preallocated) entries from #{i}")
            break
        if starts.get(pos) != base + rel:
            out.problems.append(
                f"index entry #{i} ({rel}, {pos}) of {index_path} does not point at the "
                f"start of the batch holding offset {base + rel}"
            )
    time_path = os.path.join(path, f"{base:020d}.timeindex")
    try:
        with open(time_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    usable = len(data) - len(data) % _TIME_ENTRY.size
    ends = [last for last, _ts in max_ts_after]
    prev_ts = None
    for i, (ts, rel) in enumerate(_TIME_ENTRY.iter_unpack(data[:usable])):
        if ts == 0 and rel == 0 and not data[i * 12 :].strip(b"\0"):
            break
        if prev_ts is not None and ts <= prev_ts:
            out.problems.append(f"time index entry #{i} of {time_path} does not increase")
        prev_ts = ts
        # every record at or below base+rel must have a timestamp <= ts
        j = bisect_right(ends, base + rel) - 1
        if j >= 0 and max_ts_after[j][1] > ts:
            out.problems.append(
                f"time index entry #{i} ({ts}, {rel}) of {time_path}: a record at or below "
                f"offset {base + rel} has timestamp {max_ts_after[j][1]}"
            )


@dataclass
class Report:
    """What :func:`check` found. ``ok`` is True when nothing was violated."""

    attempted: int = 0
    acked: int = 0
    failed: int = 0
    unknown: int = 0
    records_read: int = 0
    partitions: int = 0
    unknown_present: int = 0
    lost_allowed: int = 0
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    KINDS = (
        "lost",
        "duplicated",
        "reordered",
        "misplaced",
        "failed present",
        "unexpected",
        "offset gap",
        "structure",
    )

    def add(self, kind: str, text: str) -> None:
        self.violations[kind].append(text)

    def count(self, kind: str) -> int:
        return len(self.violations.get(kind, ()))

    @property
    def lost(self) -> int:
        return self.count("lost")

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "attempted": self.attempted,
            "acked": self.acked,
            "failed": self.failed,
            "unknown": self.unknown,
            "unknown_present": self.unknown_present,
            "records_read": self.records_read,
            "partitions": self.partitions,
            "lost_allowed": self.lost_allowed,
            **{k: self.count(k) for k in self.KINDS},
        }

    def __str__(self) -> str:
        lines = [
            f"oracle: {self.attempted} values sent ({self.acked} acked, {self.failed} failed, "
            f"{self.unknown} unknown of which {self.unknown_present} present); "
            f"{self.records_read} records read from {self.partitions} partition(s); "
            + ", ".join(f"{k} {self.count(k)}" for k in self.KINDS)
            + (f"; {self.lost_allowed} lost within the allowed window" if self.lost_allowed else "")
        ]
        for kind in self.KINDS:
            items = self.violations.get(kind, [])
            if items:
                lines.append(f"  {kind} ({len(items)}), first {min(len(items), SHOWN)}:")
                lines += [f"    {t}" for t in items[:SHOWN]]
        return "\n".join(lines)


def check(
    history: History,
    reads: Iterable[PartitionRead],
    *,
    may_lose: Callable[[Attempt], bool] | None = None,
) -> Report:
    """Compare what was sent with what was read back (see the module docstring)."""
    reads = list(reads)
    report = Report(partitions=len(reads))
    attempts = history.attempts
    present: dict[Key, list[tuple[str, int, int]]] = defaultdict(list)
    order: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
    for r in reads:
        for problem in r.problems:
            report.add("structure", f"{r.topic}-{r.partition}: {problem}")
        prev = None
        for offset, value in r.records:
            report.records_read += 1
            if prev is not None and offset != prev + 1:
                report.add(
                    "offset gap",
                    f"{r.topic}-{r.partition}: offset {offset} follows {prev}",
                )
            prev = offset
            key = decode_value(value)
            if key is None or key not in attempts:
                shown = repr(bytes(value[:40])) if value else repr(value)
                report.add(
                    "unexpected",
                    f"{r.topic}-{r.partition} offset {offset}: {shown} was never sent",
                )
                continue
            present[key].append((r.topic, r.partition, offset))
            order[(key[0], r.topic, r.partition)].append((offset, key[1]))
    for a in attempts.values():
        report.attempted += 1
        key = (a.producer, a.seq)
        found = present.get(key, [])
        if a.status == ACKED:
            report.acked += 1
            if not found:
                if may_lose is not None and may_lose(a):
                    report.lost_allowed += 1
                else:
                    report.add(
                        "lost",
                        f"{a.producer}:{a.seq} acked at {a.topic}-{a.partition} offset {a.offset}",
                    )
            elif (a.topic, a.partition, a.offset) not in found:
                report.add(
                    "misplaced",
                    f"{a.producer}:{a.seq} acked at {a.topic}-{a.partition} offset {a.offset}, "
                    f"found at {found}",
                )
        elif a.status == FAILED:
            report.failed += 1
            if found:
                report.add(
                    "failed present", f"{a.producer}:{a.seq} failed ({a.error}) but is at {found}"
                )
        else:
            report.unknown += 1
            if found:
                report.unknown_present += 1
        if len(found) > 1:
            report.add("duplicated", f"{a.producer}:{a.seq} is stored {len(found)} times: {found}")
    for (producer, topic, partition), items in order.items():
        items.sort()
        for (o1, s1), (o2, s2) in itertools.pairwise(items):
            if s2 < s1:
                report.add(
                    "reordered",
                    f"{producer} in {topic}-{partition}: seq {s2} at offset {o2} after "
                    f"seq {s1} at offset {o1}",
                )
                break
    return report


#: Files a data directory may hold at its top level besides topic directories.
_TOP_LEVEL = {"~lock", "~clean-shutdown", "~recovery-points", "~producer-ids", "~cluster-id"}
_PARTITION_SUFFIXES = (".log", ".index", ".timeindex", ".snapshot")


def audit_data_dir(data_dir: str) -> list[str]:
    """Leftovers and half-made things in a data directory (of a stopped
    broker that opened it since its last crash): staging or deleting topic
    directories, temp and .deleted files, a topic without its config or
    with missing or extra partition directories, a segment missing its
    index files, an index without its segment, an empty segment that is not
    the last, unknown files. Returns one line per problem."""
    problems: list[str] = []
    for name in sorted(os.listdir(data_dir)):
        full = os.path.join(data_dir, name)
        if name.startswith("~"):
            if name not in _TOP_LEVEL:
                problems.append(f"leftover {full}")
            continue
        if not os.path.isdir(full):
            problems.append(f"unknown file {full}")
            continue
        try:
            with open(os.path.join(full, "topic.json")) as f:
                partitions = json.load(f)["partitions"]
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"topic {name} has no usable topic.json: {exc}")
            continue
        entries = set(os.listdir(full)) - {"topic.json"}
        wanted = {str(p) for p in range(partitions)}
        for missing in sorted(wanted - entries):
            problems.append(f"topic {name} lacks partition directory {missing}")
        for extra in sorted(entries - wanted):
            problems.append(f"unexpected {os.path.join(full, extra)}")
        for p in sorted(wanted & entries):
            problems += _audit_partition(os.path.join(full, p))
    return problems


#: a partition's small files besides segments and snapshots: the log start
#: DeleteRecords set, the leader-epoch checkpoint, a truncation marker
_PARTITION_FILES = frozenset({"log-start-offset", "leader-epoch-checkpoint", "truncation"})


def _audit_partition(path: str) -> list[str]:
    problems = []
    by_base: dict[str, set[str]] = defaultdict(set)
    # the log cleaner's checkpoint (cleaner.py); segments below its
    # gaps_below may be empty (compacted away)
    gaps_below = 0
    for name in os.listdir(path):
        if name == CLEANER_CHECKPOINT:
            try:
                with open(os.path.join(path, name), "rb") as f:
                    gaps_below = CleanerCheckpoint.from_bytes(f.read()).gaps_below
            except (OSError, ValueError, KeyError) as exc:
                problems.append(f"unreadable {os.path.join(path, name)}: {exc}")
            continue
        if name in _PARTITION_FILES:
            continue
        stem, dot, suffix = name.partition(".")
        if (
            not dot
            or len(stem) != 20
            or not stem.isdigit()
            or "." + suffix not in _PARTITION_SUFFIXES
        ):
            problems.append(f"leftover or unknown file {os.path.join(path, name)}")
            continue
        by_base[stem].add("." + suffix)
    logs = sorted(b for b, s in by_base.items() if ".log" in s)
    for base, suffixes in sorted(by_base.items()):
        if suffixes == {".snapshot"}:
            continue
        if ".log" not in suffixes:
            problems.append(f"index without its segment: {path}/{base} {sorted(suffixes)}")
        elif not {".index", ".timeindex"} <= suffixes:
            problems.append(f"segment {path}/{base}.log lacks index files ({sorted(suffixes)})")
    for base in logs[:-1]:
        if int(base) < gaps_below:
            continue
        if os.path.getsize(os.path.join(path, base + ".log")) == 0:
            problems.append(f"empty segment {path}/{base}.log is not the last one")
    return problems
