"""``tailrace produce TOPIC [--key-separator SEP] [--partition N] [--acks 0|1|all] [--file PATH]``.

One record per input line, read as bytes from stdin or ``--file``: the
trailing newline (b"\\n") is removed and nothing else, so an empty line is a
record with an empty value and a line ending in "\\r\\n" keeps its "\\r".
With ``--key-separator SEP`` each line splits at the first SEP into key and
value; a line without SEP is an error (exit 1), reported with its line
number after the lines before it have been sent.

The command exits only after every record is acknowledged (``flush``), then
reports ``produced N records to TOPIC`` on stderr. A record the broker
refuses makes the command stop reading and exit 1 with the broker's reason;
the summary still says how many were acknowledged. Ctrl-C stops reading,
waits for what was already sent, reports it and exits 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from typing import BinaryIO

from tailrace.client import Producer, RecordFuture, SecurityConfig

from .common import (
    CliError,
    UsageError,
    add_bootstrap_option,
    check_broker,
    resolve_bootstrap,
    resolve_security,
    setup_client_logging,
)
from .interrupt import threads_without_signals
from .progress import Progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "produce",
        help="send one record per input line",
        description=(
            "Send one record per line of stdin (or --file), waiting until every record "
            "is acknowledged. The count goes to stderr."
        ),
    )
    p.add_argument("topic")
    p.add_argument(
        "--key-separator",
        metavar="SEP",
        help="split each line at the first SEP into key and value (e.g. ':' or $'\\t')",
    )
    p.add_argument("--partition", type=int, metavar="N", help="send every record to partition N")
    p.add_argument(
        "--acks",
        choices=["0", "1", "all"],
        default="all",
        help="all: wait for the leader and every in-sync replica (default; a single "
        "broker: as 1); 1: for the leader alone; 0: do not wait",
    )
    p.add_argument("--file", metavar="PATH", help="read lines from PATH instead of stdin")
    add_bootstrap_option(p)
    p.set_defaults(func=run)


class _Acks:
    """Counts acknowledged records and keeps the first failure.

    Futures wait in a queue and are looked at from the oldest, a few
    thousand at a time, once done: two cheap calls per record, where a
    done-callback per record (a closure, a lock, a call from the producer's
    thread) cost more than everything else the command does per line.
    Only futures not yet looked at are held, so memory stays bounded by
    what the producer itself holds unacknowledged.
    """

    REAP_EVERY = 4096

    def __init__(self) -> None:
        self.acked = 0
        self.error: BaseException | None = None
        self._pending: deque[RecordFuture] = deque()

    def add(self, future: RecordFuture) -> None:
        pending = self._pending
        pending.append(future)
        if len(pending) >= self.REAP_EVERY:
            self.reap()

    def reap(self) -> None:
        """Tally every future at the head of the queue that is done."""
        pending = self._pending
        while pending and pending[0].done():
            error = pending.popleft().exception(0)
            if error is None:
                self.acked += 1
            elif self.error is None:
                self.error = error


def run(args: argparse.Namespace) -> int:
    setup_client_logging(args.debug)
    bootstrap = resolve_bootstrap(args)
    security = resolve_security(args)
    sep = None
    if args.key_separator is not None:
        sep = args.key_separator.encode()
        if not sep:
            raise UsageError("--key-separator must not be empty")
    if args.partition is not None and args.partition < 0:
        raise UsageError("--partition must not be negative")

    source: BinaryIO
    if args.file is not None:
        source = open(args.file, "rb")  # noqa: SIM115 (closed in the finally below)
        total = os.fstat(source.fileno()).st_size
    else:
        source = sys.stdin.buffer
        total = None
    try:
        with threads_without_signals():
            partitions = check_broker(bootstrap, args.topic, auto_create=True, security=security)
        if args.partition is not None and args.partition >= partitions:
            raise CliError(
                f"partition {args.partition} of {args.topic!r} does not exist "
                f"({partitions} partitions)"
            )
        # a progress bar only for a file or a pipe: on a terminal the person
        # typing the lines is the progress
        interactive = args.file is None and source.isatty()
        progress = Progress(sys.stderr, total_bytes=total, enabled=False if interactive else None)
        return _produce(args, bootstrap, security, source, sep, progress)
    finally:
        if source is not sys.stdin.buffer:
            source.close()


def _produce(
    args: argparse.Namespace,
    bootstrap: str,
    security: SecurityConfig | None,
    source: BinaryIO,
    sep: bytes | None,
    progress: Progress,
) -> int:
    topic, partition = args.topic, args.partition
    acks = _Acks()
    sent = 0
    read_bytes = 0
    failure: Exception | None = None
    interrupted = False
    with threads_without_signals():  # Ctrl-C must interrupt our read of stdin
        producer = Producer(
            bootstrap, acks="all" if args.acks == "all" else int(args.acks), security=security
        )
    try:
        send = producer.send
        track = acks.add
        try:
            for lineno, line in enumerate(source, 1):
                read_bytes += len(line)
                if line.endswith(b"\n"):
                    line = line[:-1]
                key = None
                if sep is not None:
                    key, found, value = line.partition(sep)
                    if not found:
                        failure = CliError(
                            f"line {lineno} has no key separator {args.key_separator!r}"
                        )
                        break
                else:
                    value = line
                track(send(topic, value, key=key, partition=partition))
                sent += 1
                if acks.error is not None:
                    break  # the broker refuses: stop reading more
                progress.update(sent, read_bytes)
        except KeyboardInterrupt:
            interrupted = True
        producer.flush()
    except Exception as exc:  # a send refused before it was queued
        failure = exc
    finally:
        progress.close()
        producer.close()
    acks.reap()  # closed: every future is done
    plural = "record" if acks.acked == 1 else "records"
    note = " (interrupted)" if interrupted else ""
    sys.stderr.write(f"produced {acks.acked} {plural} to {topic}{note}\n")
    if acks.error is not None:
        raise acks.error
    if failure is not None:
        raise failure
    return 130 if interrupted else 0
