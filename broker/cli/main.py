"""Argument parsing, dispatch and the error rules of every ``tailrace`` subcommand.

Exit codes: 0 success, 1 an error from the broker or the data, 2 usage
(argparse, and :class:`~.common.UsageError`). An error is one line on
stderr, ``tailrace: <what went wrong>``; ``--debug`` lets the exception
through instead, traceback and all.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tailrace.client.errors import TailraceError

from . import (
    acls_cmd,
    bench_cmd,
    broker_cmd,
    cluster_cmd,
    completion_cmd,
    consume_cmd,
    dump_log_cmd,
    groups_cmd,
    offsets_cmd,
    produce_cmd,
    topics_cmd,
    users_cmd,
)
from .common import EXIT_ERROR, CliError

__all__ = ["main"]

#: Modules that each add one subcommand: ``register(subparsers)`` and the
#: function they set as ``func`` taking the parsed args, returning the exit code.
COMMANDS = [
    broker_cmd,
    topics_cmd,
    produce_cmd,
    consume_cmd,
    groups_cmd,
    offsets_cmd,
    acls_cmd,
    users_cmd,
    cluster_cmd,
    dump_log_cmd,
    bench_cmd,
    completion_cmd,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailrace",
        description="tailrace: a Kafka-style append-only log broker",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (`tailrace consume ... | head`): not an error.
        # Point stdout at /dev/null so the flush at exit does not fail again.
        _silence_stdout()
        return 0
    except Exception as exc:
        if args.debug:
            raise
        sys.stderr.write(f"tailrace: {describe_error(exc)}\n")
        return exc.exit_code if isinstance(exc, CliError) else EXIT_ERROR


def describe_error(exc: Exception) -> str:
    """The one line shown for ``exc``: the message alone for errors tailrace
    names (the broker's own words, or "cannot reach broker at ..."), the
    file and reason for OS errors, the type as well for anything else."""
    if isinstance(exc, CliError | TailraceError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return f"unexpected error: {type(exc).__name__}: {exc} (--debug shows the traceback)"


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
