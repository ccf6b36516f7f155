"""``tailrace groups list | describe G | reset-offsets G --topic T ... | delete G``.

Thin over the group methods of :class:`tailrace.client.Admin`: refusals
(unknown group, a group with members, an offset past the log end) are the
broker's own messages, one line, exit 1. ``list --json`` and
``describe --json`` print the shapes documented in docs/operations.md.

``reset-offsets`` acts at once (``--dry-run`` shows the new offsets and
changes nothing); it is refused while the group has members, so stop its
consumers first. ``--topic T`` resets every partition of T, ``--topic
T:0,2`` only those.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tailrace.client.admin import GroupDescription

from .common import (
    UsageError,
    add_bootstrap_option,
    open_admin,
    resolve_bootstrap,
    resolve_security,
)
from .common import setup_client_logging as _logging
from .output import table, write_json
from .times import parse_time_ms


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "groups",
        help="list, describe, reset and delete consumer groups",
        description="List, describe, reset the offsets of, and delete consumer groups.",
    )
    gsub = p.add_subparsers(dest="groups_command", metavar="ACTION")
    gsub.required = True

    ls = gsub.add_parser(
        "list", help="list consumer groups", description="List consumer groups and their state."
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    d = gsub.add_parser(
        "describe",
        help="members, assignment, committed offsets and lag of a group",
        description=(
            "Show a group's state, and per partition its committed offset, log end "
            "(high watermark), lag and the member consuming it; then the members."
        ),
    )
    d.add_argument("group")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=run_describe)

    r = gsub.add_parser(
        "reset-offsets",
        help="move a group's committed offsets (group must be inactive)",
        description=(
            "Set the committed offsets of a group without members for a topic's "
            "partitions. A group that does not exist yet is created with them."
        ),
    )
    r.add_argument("group")
    r.add_argument(
        "--topic",
        required=True,
        metavar="T[:P,P...]",
        help="the topic, optionally with the partitions to reset (default: all)",
    )
    to = r.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the log start of each partition")
    to.add_argument("--to-latest", action="store_true", help="the log end of each partition")
    to.add_argument("--to-offset", type=int, metavar="N", help="offset N of each partition")
    to.add_argument(
        "--to-time",
        metavar="ISO",
        help="the first record at or after this time (ISO 8601; no zone means UTC); "
        "the log end where there is none",
    )
    r.add_argument("--dry-run", action="store_true", help="show the new offsets, change nothing")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(func=run_reset)

    rm = gsub.add_parser(
        "delete",
        help="delete a group and its committed offsets",
        description="Delete a consumer group without members, with its committed offsets.",
    )
    rm.add_argument("group")
    rm.set_defaults(func=run_delete)

    for parser in (ls, d, r, rm):
        add_bootstrap_option(parser)


def run_list(args: argparse.Namespace) -> int:
    _logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        groups = admin.list_groups()
    if args.json:
        write_json(
            {
                "groups": [
                    {
                        "group_id": g.group_id,
                        "state": g.state,
                        "members": g.member_count,
                        "group_epoch": g.group_epoch,
                    }
                    for g in groups
                ]
            },
            sys.stdout,
        )
        return 0
    rows = [(g.group_id, g.state, g.member_count) for g in groups]
    sys.stdout.write(table(["GROUP", "STATE", "MEMBERS"], rows, [False, False, True]))
    return 0


def run_describe(args: argparse.Namespace) -> int:
    _logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        desc = admin.describe_group(args.group)
    if args.json:
        write_json(describe_json(desc), sys.stdout)
        return 0
    out = sys.stdout
    out.write(
        f"GROUP {desc.group_id}  STATE {desc.state}  EPOCH {desc.group_epoch}  "
        f"MEMBERS {len(desc.members)}\n\n"
    )
    rows = [
        (o.topic, o.partition, o.committed_offset, o.log_end_offset, o.lag, o.member_id)
        for o in desc.offsets
    ]
    out.write(
        table(
            ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"],
            rows,
            [False, True, True, True, True, False],
        )
    )
    if desc.members:
        out.write("\n")
        members = [
            (
                m.member_id,
                m.instance_id,
                m.client_host,
                m.client_id,
                m.member_epoch,
                ",".join(f"{t}/{p}" for t, p in m.assignment) or None,
            )
            for m in desc.members
        ]
        out.write(
            table(
                ["MEMBER", "INSTANCE", "HOST", "CLIENT-ID", "EPOCH", "PARTITIONS"],
                members,
                [False, False, False, False, True, False],
            )
        )
    return 0


def describe_json(desc: GroupDescription) -> dict[str, Any]:
    return {
        "group_id": desc.group_id,
        "state": desc.state,
        "group_epoch": desc.group_epoch,
        "assignment_epoch": desc.assignment_epoch,
        "members": [
            {
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "member_epoch": m.member_epoch,
                "subscribed_topics": m.subscribed_topics,
                "assignment": [{"topic": t, "partition": p} for t, p in m.assignment],
                "pending_revocation": [
                    {"topic": t, "partition": p} for t, p in m.pending_revocation
                ],
                "target_assignment": [{"topic": t, "partition": p} for t, p in m.target_assignment],
            }
            for m in desc.members
        ],
        "offsets": [
            {
                "topic": o.topic,
                "partition": o.partition,
                "committed_offset": o.committed_offset,
                "log_end_offset": o.log_end_offset,
                "lag": o.lag,
                "member_id": o.member_id,
                "metadata": o.metadata,
                "commit_timestamp": o.commit_timestamp_ms if o.commit_timestamp_ms >= 0 else None,
                "error": o.error,
            }
            for o in desc.offsets
        ],
    }


def parse_topic_partitions(text: str) -> tuple[str, list[int] | None]:
    """``T`` or ``T:0,2`` -> (topic, partitions or None for all)."""
    topic, sep, rest = text.partition(":")
    if not topic:
        raise UsageError(f"--topic {text!r}: expected T or T:P,P")
    if not sep:
        return topic, None
    try:
        partitions = sorted({int(p) for p in rest.split(",")})
    except ValueError:
        raise UsageError(f"--topic {text!r}: partitions are numbers, e.g. {topic}:0,2") from None
    if not partitions or partitions[0] < 0:
        raise UsageError(f"--topic {text!r}: partitions are numbers >= 0")
    return topic, partitions


def run_reset(args: argparse.Namespace) -> int:
    _logging(args.debug)
    topic, partitions = parse_topic_partitions(args.topic)
    to: Any
    if args.to_earliest:
        to = "earliest"
    elif args.to_latest:
        to = "latest"
    elif args.to_offset is not None:
        if args.to_offset < 0:
            raise UsageError("--to-offset must not be negative")
        to = ("offset", args.to_offset)
    else:
        try:
            to = ("time", parse_time_ms(args.to_time))
        except ValueError as exc:
            raise UsageError(f"--to-time: {exc}") from None
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        offsets = admin.reset_offsets(args.group, topic, to, partitions, dry_run=args.dry_run)
    if args.json:
        write_json(
            {
                "group_id": args.group,
                "topic": topic,
                "dry_run": args.dry_run,
                "offsets": [{"partition": p, "offset": o} for p, o in sorted(offsets.items())],
            },
            sys.stdout,
        )
        return 0
    rows = [(topic, p, o) for p, o in sorted(offsets.items())]
    sys.stdout.write(table(["TOPIC", "PARTITION", "NEW-OFFSET"], rows, [False, True, True]))
    if args.dry_run:
        sys.stderr.write("dry run: nothing changed\n")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    _logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        admin.delete_group(args.group)
    sys.stdout.write(f"deleted group {args.group}\n")
    return 0
