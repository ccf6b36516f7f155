"""``tailrace dump-log PATH [--records] [--json]``."""

from __future__ import annotations

import argparse
import sys

from ..log.dump import dump_log


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dump-log",
        help="print the batches of a segment file (.log, .index, .timeindex, .snapshot)",
        description=(
            "Print each batch of a segment file: position, size, offsets, record count, "
            "timestamps and CRC verdict. Stops at the first invalid batch and exits 1."
        ),
    )
    p.add_argument("path", help="a segment file")
    p.add_argument("--records", action="store_true", help="also print every record")
    p.add_argument("--json", action="store_true", help="print a JSON array instead of lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return dump_log(args.path, records=args.records, as_json=args.json, out=sys.stdout)
    except OSError as exc:
        sys.stderr.write(f"tailrace dump-log: {args.path}: {exc.strerror or exc}\n")
        return 1
