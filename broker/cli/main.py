"""Argument parsing and dispatch for every ``tailrace`` subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench_cmd, broker_cmd, dump_log_cmd

__all__ = ["main"]

#: Modules that each add one subcommand: ``register(subparsers)`` and the
#: function they set as ``func`` taking the parsed args, returning the exit code.
COMMANDS = [broker_cmd, dump_log_cmd, bench_cmd]


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
        # stdout closed early (`tailrace consume ... | head`): not an error
        return 0


if __name__ == "__main__":
    sys.exit(main())
