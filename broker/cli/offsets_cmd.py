"""``tailrace offsets TOPIC [--json]``: earliest and latest offset per partition.

"earliest" is the log start offset (the first record still kept), "latest"
the high watermark (the offset the next record will get); a consumer
``--from-beginning`` reads ``latest - earliest`` records from a partition.
Both come from ListOffsets, the request consumers use to reset positions.
"""

from __future__ import annotations

import argparse
import sys

from .common import (
    add_bootstrap_option,
    open_admin,
    resolve_bootstrap,
    resolve_security,
    setup_client_logging,
)
from .output import table, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "offsets",
        help="earliest and latest offsets of each partition of a topic",
        description=(
            "Print each partition's earliest offset (log start) and latest offset "
            "(high watermark: the offset of the next record)."
        ),
    )
    p.add_argument("topic")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_bootstrap_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_client_logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        offsets = admin.topic_offsets(args.topic)
    parts = sorted(offsets.items())
    if args.json:
        write_json(
            {
                "topic": args.topic,
                "partitions": [
                    {"partition": p, "earliest": lo, "latest": hi} for p, (lo, hi) in parts
                ],
            },
            sys.stdout,
        )
        return 0
    rows = [(p, lo, hi, hi - lo) for p, (lo, hi) in parts]
    sys.stdout.write(
        table(["PARTITION", "EARLIEST", "LATEST", "RECORDS"], rows, [True, True, True, True])
    )
    return 0
