"""``tailrace consume TOPIC [--from-beginning | --offset N | --from-time ISO] ...``.

Reads every partition of the topic (or ``--partition N``) and writes each
record to stdout: its value alone on a line (``--format value``, the raw
bytes, a null value as an empty line) or one JSON object per line
(``--format json``, shape in docs/operations.md and :func:`record_json`).

Where it starts: the end of each partition, so only records produced after
the command started (default); the log start (``--from-beginning``); offset
N of every partition read (``--offset N``); the first record at or after a
time (``--from-time``, see times.py for the accepted forms).

When it stops: after ``--max-messages N`` records; once ``--timeout-ms MS``
pass without a new record; otherwise at Ctrl-C or SIGTERM, which finish the
records in hand (see interrupt.py). Every end is exit 0 with the summary
``consumed N records`` on stderr.

With ``--group G`` the command is a member of consumer group G: it
subscribes (the broker assigns it partitions, shared with other members),
starts from the group's committed offsets (``--from-beginning`` only where
the group has none; otherwise the end), and commits the offsets of what it
printed: periodically, before the group moves a partition to another
member, and before exiting. With ``--partition N`` it reads that partition
alone, outside the group's assignment, still starting from and committing
to the group's offsets.

The command is three parts: :func:`open_reader` / :func:`open_group_reader`
decide what is read and from where, :func:`copy_records` is the loop, the
same for both, and its ``on_written`` hook sees each batch once it is on
stdout (what :class:`GroupCommits` commits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from tailrace.client import Consumer, Record, SecurityConfig

from .common import (
    CliError,
    UsageError,
    add_bootstrap_option,
    check_broker,
    resolve_bootstrap,
    resolve_security,
    setup_client_logging,
)
from .interrupt import StopOnSignal, threads_without_signals
from .output import bytes_field
from .progress import Progress
from .times import parse_time_ms

#: Longest one poll waits: how quickly Ctrl-C and --timeout-ms are noticed.
POLL_TICK_MS = 250
#: With --group: how often printed offsets are committed while consuming.
COMMIT_INTERVAL_S = 5.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "consume",
        help="print records of a topic",
        description=(
            "Print the records of a topic, one per line, following the log until "
            "interrupted (Ctrl-C exits 0 with a summary on stderr)."
        ),
    )
    p.add_argument("topic")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the log start (default: only records produced from now on)",
    )
    start.add_argument(
        "--offset", type=int, metavar="N", help="start at offset N of every partition read"
    )
    start.add_argument(
        "--from-time",
        metavar="ISO",
        help="start at the first record at or after this time "
        "(ISO 8601, e.g. 2026-11-25T10:00:00Z; no zone means UTC)",
    )
    p.add_argument("--partition", type=int, metavar="N", help="read only partition N")
    p.add_argument(
        "--group",
        metavar="G",
        help="read as a member of consumer group G: start from its committed offsets "
        "(--from-beginning only where it has none) and commit what was printed",
    )
    p.add_argument("--max-messages", type=int, metavar="N", help="exit after N records")
    p.add_argument(
        "--timeout-ms",
        type=int,
        metavar="MS",
        help="exit once MS milliseconds pass without a new record",
    )
    p.add_argument(
        "--format",
        choices=["value", "json"],
        default="value",
        help="value: the value alone (default); json: one JSON object per record",
    )
    add_bootstrap_option(p)
    p.set_defaults(func=run)


# --- where reading starts -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """``kind`` is "end", "beginning", "offset" (``value`` = the offset) or
    "time" (``value`` = ms since the epoch)."""

    kind: str
    value: int = 0


def start_from_args(args: argparse.Namespace) -> Start:
    if args.from_beginning:
        return Start("beginning")
    if args.offset is not None:
        if args.offset < 0:
            raise UsageError("--offset must not be negative")
        return Start("offset", args.offset)
    if args.from_time is not None:
        try:
            return Start("time", parse_time_ms(args.from_time))
        except ValueError as exc:
            raise UsageError(f"--from-time: {exc}") from None
    return Start("end")


class Reader(Protocol):
    """What :func:`copy_records` needs of a consumer."""

    def poll(self, timeout_ms: float = ..., max_records: int | None = ...) -> Sequence[Record]: ...


@contextmanager
def open_reader(
    bootstrap: str,
    topic: str,
    partitions: Sequence[int],
    start: Start,
    security: SecurityConfig | None = None,
) -> Iterator[Consumer]:
    """A consumer assigned ``partitions`` of ``topic`` and positioned at
    ``start``. A position that falls out of the log while following (retention
    overtook a slow reader, the topic was recreated) moves to the log start,
    so nothing still kept is skipped; an explicit ``--offset`` outside the
    log is an error instead (auto_offset_reset "none")."""
    reset = "none" if start.kind == "offset" else "earliest"
    with threads_without_signals():  # Ctrl-C goes to the main thread
        consumer = Consumer(bootstrap, auto_offset_reset=reset, security=security)
    with consumer:
        tps = [(topic, p) for p in partitions]
        consumer.assign(tps)
        if start.kind == "end":
            consumer.seek_to_end(tps)
        elif start.kind == "beginning":
            consumer.seek_to_beginning(tps)
        elif start.kind == "offset":
            for tp in tps:
                consumer.seek(tp, start.value)
        elif start.kind == "time":
            consumer.seek_to_time(dict.fromkeys(tps, start.value))
        else:
            raise AssertionError(start.kind)
        yield consumer


class GroupCommits:
    """What ``consume --group`` printed, per partition, and committing it.

    Only printed records count: ``written`` sees each batch once it is on
    stdout. The offsets are committed every COMMIT_INTERVAL_S (without
    waiting), before the group takes a partition away (``revoked``, inside
    the poll: so the next owner starts after the last printed record), and
    at exit (``commit``, waiting until the broker made them durable)."""

    def __init__(self) -> None:
        self.consumer: Consumer | None = None
        self.printed: dict[tuple[str, int], int] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self._next = time.monotonic() + COMMIT_INTERVAL_S

    def written(self, records: Sequence[Record]) -> None:
        for r in records:
            self.printed[(r.topic, r.partition)] = r.offset + 1
        if time.monotonic() >= self._next and self.consumer is not None:
            self._next = time.monotonic() + COMMIT_INTERVAL_S
            changed = self._changed(self.printed)
            if changed:
                self.consumer.commit_async(changed)
                self.committed.update(changed)

    def revoked(self, partitions: set) -> None:
        self._commit({tp: o for tp, o in self.printed.items() if tp in partitions})

    def commit(self) -> None:
        self._commit(self.printed)

    def _changed(self, offsets: dict) -> dict:
        return {tp: o for tp, o in offsets.items() if self.committed.get(tp) != o}

    def _commit(self, offsets: dict) -> None:
        changed = self._changed(offsets)
        if changed and self.consumer is not None:
            self.consumer.commit(changed)
            self.committed.update(changed)


@contextmanager
def open_group_reader(
    bootstrap: str,
    topic: str,
    partition: int | None,
    start: Start,
    group: str,
    security: SecurityConfig | None = None,
) -> Iterator[tuple[Consumer, GroupCommits]]:
    """A member of ``group`` reading ``topic`` (every partition the group
    assigns it; with ``partition``, that one alone, outside the group's
    assignment), starting at the group's committed offsets, else the log
    start (--from-beginning) or end."""
    commits = GroupCommits()
    reset = "earliest" if start.kind == "beginning" else "latest"
    with threads_without_signals():
        consumer = Consumer(
            bootstrap,
            group_id=group,
            auto_offset_reset=reset,
            enable_auto_commit=False,
            security=security,
        )
    with consumer:
        commits.consumer = consumer
        if partition is None:
            consumer.subscribe([topic], on_revoked=commits.revoked)
        else:
            consumer.assign([(topic, partition)])
        yield consumer, commits


# --- output ---------------------------------------------------------------------


def record_json(r: Record) -> dict[str, Any]:
    """The ``--format json`` object of one record (documented shape)."""
    obj: dict[str, Any] = {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
    }
    obj.update(bytes_field("key", r.key))
    obj.update(bytes_field("value", r.value))
    obj["headers"] = [{"key": name, **bytes_field("value", v)} for name, v in (r.headers or ())]
    return obj


def _write_values(out: BinaryIO, records: Sequence[Record]) -> None:
    out.write(b"".join([(r.value or b"") + b"\n" for r in records]))


def _write_json_lines(out: BinaryIO, records: Sequence[Record]) -> None:
    text = "".join(
        json.dumps(record_json(r), ensure_ascii=False, separators=(",", ":")) + "\n"
        for r in records
    )
    out.write(text.encode("utf-8"))


WRITERS: dict[str, Callable[[BinaryIO, Sequence[Record]], None]] = {
    "value": _write_values,
    "json": _write_json_lines,
}


# --- the loop -------------------------------------------------------------------


def copy_records(
    reader: Reader,
    write: Callable[[Sequence[Record]], None],
    *,
    max_messages: int | None,
    timeout_ms: int | None,
    stop: StopOnSignal,
    progress: Progress,
    on_written: Callable[[Sequence[Record]], None] | None = None,
) -> int:
    """Poll and write until a stop condition; returns the records written.

    Every batch is written (and flushed by ``write``) before the stop flag
    is looked at again, so an interrupted run has printed whole records,
    and exactly those ``on_written`` saw.
    """
    count = 0
    idle_since = time.monotonic()
    while stop.requested is None:
        wait_ms = POLL_TICK_MS
        if timeout_ms is not None:
            left = timeout_ms - (time.monotonic() - idle_since) * 1000
            if left <= 0:
                break
            wait_ms = min(wait_ms, left)
        want = None if max_messages is None else max_messages - count
        records = reader.poll(timeout_ms=wait_ms, max_records=want)
        if not records:
            continue
        write(records)
        count += len(records)
        if on_written is not None:
            on_written(records)
        progress.update(count)
        idle_since = time.monotonic()
        if max_messages is not None and count >= max_messages:
            break
    return count


def run(args: argparse.Namespace) -> int:
    setup_client_logging(args.debug)
    bootstrap = resolve_bootstrap(args)
    security = resolve_security(args)
    if args.max_messages is not None and args.max_messages < 1:
        raise UsageError("--max-messages must be at least 1")
    if args.timeout_ms is not None and args.timeout_ms < 0:
        raise UsageError("--timeout-ms must not be negative")
    if args.partition is not None and args.partition < 0:
        raise UsageError("--partition must not be negative")
    start = start_from_args(args)
    if args.group is not None and start.kind in ("offset", "time"):
        raise UsageError(
            "--group starts at the group's committed offsets: --offset and --from-time do "
            "not apply (move them with: tailrace groups reset-offsets)"
        )

    with threads_without_signals():
        count = check_broker(bootstrap, args.topic, security=security)
    if args.partition is not None:
        if args.partition >= count:
            raise CliError(
                f"partition {args.partition} of {args.topic!r} does not exist ({count} partitions)"
            )
        partitions = [args.partition]
    else:
        partitions = list(range(count))

    out = sys.stdout.buffer
    writer = WRITERS[args.format]

    def write(records: Sequence[Record]) -> None:
        writer(out, records)
        out.flush()

    # a bar only when records go to a file or pipe and a person watches stderr
    progress = Progress(sys.stderr, enabled=False if sys.stdout.isatty() else None)
    consumed = 0
    try:
        if args.group is not None:
            with (
                StopOnSignal() as stop,
                open_group_reader(
                    bootstrap, args.topic, args.partition, start, args.group, security
                ) as (
                    c,
                    commits,
                ),
            ):
                consumed = copy_records(
                    c,
                    write,
                    max_messages=args.max_messages,
                    timeout_ms=args.timeout_ms,
                    stop=stop,
                    progress=progress,
                    on_written=commits.written,
                )
                commits.commit()
        else:
            with (
                StopOnSignal() as stop,
                open_reader(bootstrap, args.topic, partitions, start, security) as c,
            ):
                consumed = copy_records(
                    c,
                    write,
                    max_messages=args.max_messages,
                    timeout_ms=args.timeout_ms,
                    stop=stop,
                    progress=progress,
                )
    finally:
        progress.close()
    sys.stderr.write(f"consumed {consumed} record{'' if consumed == 1 else 's'}\n")
    return 0
