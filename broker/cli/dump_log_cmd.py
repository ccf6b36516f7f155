"""``tailrace dump-log PATH [--records] [--json]``.

Exit codes follow the CLI's rule: 0 the file is sound; 1 it is damaged
(the walk stops at the first invalid batch or index entry and says where)
or cannot be read (missing, no permission: like any other command's
missing input); 2 PATH is not a kind of file dump-log reads (usage).
"""

from __future__ import annotations

import argparse
import sys

from ..log.dump import dump_log
from ..log.files import INDEX_SUFFIX, LOG_SUFFIX, SNAPSHOT_SUFFIX, TIMEINDEX_SUFFIX
from .common import EXIT_ERROR, EXIT_USAGE, UsageError

SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX, SNAPSHOT_SUFFIX)


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
    if not args.path.endswith(SUFFIXES):
        raise UsageError(f"{args.path}: not a .log, .index, .timeindex or .snapshot file")
    # Open once here so a missing or unreadable file is the CLI's one-line
    # error with exit 1 (dump_log itself reports it as 2).
    with open(args.path, "rb"):
        pass
    rc = dump_log(args.path, records=args.records, as_json=args.json, out=sys.stdout)
    return EXIT_ERROR if rc == EXIT_USAGE else rc
