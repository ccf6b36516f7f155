"""``tailrace topics create | list | describe | alter | delete``.

Thin over :class:`tailrace.client.Admin`: every refusal (unknown topic,
invalid name or config, topic exists) is the broker's own message, shown as
one line with exit 1. ``list --json`` and ``describe --json`` print the
shapes documented in docs/operations.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from tailrace.client import TopicDescription

from .common import (
    UsageError,
    add_bootstrap_option,
    open_admin,
    parse_key_value,
    resolve_bootstrap,
    resolve_security,
)
from .common import setup_client_logging as _logging
from .output import human_size, table, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "topics",
        help="create, list, describe, alter and delete topics",
        description="Create, list, describe, alter and delete topics.",
    )
    tsub = p.add_subparsers(dest="topics_command", metavar="ACTION")
    tsub.required = True

    c = tsub.add_parser("create", help="create a topic", description="Create a topic.")
    c.add_argument("name", help="topic name: 1-249 characters from [A-Za-z0-9._-]")
    c.add_argument(
        "--partitions", type=int, metavar="N", help="partition count (default: the broker's)"
    )
    c.add_argument(
        "--replication-factor",
        type=int,
        metavar="R",
        help="copies of each partition on distinct brokers (cluster; default: "
        "cluster.default_replication_factor, capped at the live brokers; a single node: 1)",
    )
    c.add_argument(
        "--config",
        type=parse_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a topic setting (repeat for several), e.g. --config flush=none",
    )
    c.set_defaults(func=run_create)

    ls = tsub.add_parser("list", help="list topics", description="List topics.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    d = tsub.add_parser(
        "describe",
        help="partitions, offsets, sizes and configuration of a topic",
        description=(
            "Show each partition (log start, high watermark, log end, size, segments; in a "
            "cluster also its leader, leader epoch, replicas and in-sync replicas, the "
            "figures being the leader's) and every configuration key with its value and source."
        ),
    )
    d.add_argument("name")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=run_describe)

    a = tsub.add_parser(
        "alter",
        help="change topic settings",
        description=(
            "Set topic configuration keys (--config KEY=VALUE) or revert them to the "
            "broker default (--delete-config KEY), or grow the topic to more partitions "
            "(--partitions N; records stay where they are). Takes effect without a restart."
        ),
    )
    a.add_argument("name")
    a.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="the new partition count, above the current one",
    )
    a.add_argument(
        "--config",
        type=parse_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a key (repeat for several)",
    )
    a.add_argument(
        "--delete-config",
        action="append",
        default=[],
        metavar="KEY",
        help="revert a key to the broker default (repeat for several)",
    )
    a.set_defaults(func=run_alter)

    rm = tsub.add_parser(
        "delete", help="delete a topic and its data", description="Delete a topic and its data."
    )
    rm.add_argument("name")
    rm.set_defaults(func=run_delete)

    for parser in (c, ls, d, a, rm):
        add_bootstrap_option(parser)


def run_create(args: argparse.Namespace) -> int:
    _logging(args.debug)
    configs = dict(args.config)
    if args.partitions is not None and args.partitions < 1:
        raise UsageError("--partitions must be at least 1")
    rf = args.replication_factor
    if rf is not None and rf < 1:
        raise UsageError("--replication-factor must be at least 1")
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        count = admin.create_topic(args.name, args.partitions, configs, replication_factor=rf)
    plural = "partition" if count == 1 else "partitions"
    copies = "" if rf is None else f", replication factor {rf}"
    sys.stdout.write(f"created topic {args.name} ({count} {plural}{copies})\n")
    return 0


def run_list(args: argparse.Namespace) -> int:
    _logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        topics = admin.list_topics()
    if args.json:
        write_json({"topics": [_topic_summary(t) for t in topics]}, sys.stdout)
        return 0
    rows = [
        (t.name, len(t.partitions), human_size(sum(p.size_bytes for p in t.partitions)))
        for t in topics
    ]
    sys.stdout.write(table(["TOPIC", "PARTITIONS", "SIZE"], rows, [False, True, True]))
    return 0


def _topic_summary(t: TopicDescription) -> dict[str, Any]:
    return {
        "name": t.name,
        "internal": t.internal,
        "partitions": len(t.partitions),
        "size_bytes": sum(p.size_bytes for p in t.partitions),
    }


def run_describe(args: argparse.Namespace) -> int:
    _logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        desc = admin.describe_topic(args.name)
    if args.json:
        write_json(describe_json(desc), sys.stdout)
        return 0
    out = sys.stdout
    out.write(f"TOPIC {desc.name}" + (" (internal)" if desc.internal else "") + "\n\n")
    rows = [
        (
            p.partition,
            p.log_start_offset,
            p.high_watermark,
            p.log_end_offset,
            human_size(p.size_bytes),
            p.segment_count,
            p.error or "",
        )
        for p in desc.partitions
    ]
    headers = ["PARTITION", "LOG-START", "HIGH-WATERMARK", "LOG-END", "SIZE", "SEGMENTS"]
    numeric = [True] * 6
    if is_clustered(desc):
        # where each partition lives: before the offsets, which are the leader's
        headers[1:1] = ["LEADER", "EPOCH", "REPLICAS", "ISR"]
        numeric[1:1] = [True, True, False, False]
        rows = [(r[0], *placement(p), *r[1:]) for r, p in zip(rows, desc.partitions, strict=True)]
    policy = desc.configs.get("cleanup_policy")
    if policy is not None and "compact" in policy.value:
        # the cleaner's view: dirty share of the sealed bytes, last rewrite
        headers += ["DIRTY", "LAST-CLEAN"]
        numeric += [True, False]
        rows = [
            (
                *r[:-1],
                f"{p.dirty_ratio:.0%}",
                format_ms(p.last_clean_ms) if p.last_clean_ms >= 0 else "never",
                r[-1],
            )
            for r, p in zip(rows, desc.partitions, strict=True)
        ]
    if any(p.error for p in desc.partitions):
        headers.append("ERROR")
        numeric.append(False)
    else:
        rows = [r[: len(headers)] for r in rows]
    out.write(table(headers, rows, numeric))
    out.write("\n")
    configs = [
        (c.name, c.value, c.source + (", read-only" if c.read_only else ""))
        for c in sorted(desc.configs.values(), key=lambda c: c.name)
    ]
    out.write(table(["CONFIG", "VALUE", "SOURCE"], configs, [False, False, False]))
    return 0


def is_clustered(desc: TopicDescription) -> bool:
    """Whether the topic lives in a cluster (leader epochs, or a partition
    without a leader): a single node shows no placement columns."""
    return any(p.leader_epoch >= 0 or p.leader < 0 for p in desc.partitions)


def _nodes(nodes: tuple[int, ...], offline: tuple[int, ...] = ()) -> str:
    """``1,2,3``; a replica that is not alive is marked ``3(offline)``."""
    if not nodes:
        return "-"
    return ",".join(f"{n}(offline)" if n in offline else str(n) for n in nodes)


def placement(p: Any) -> tuple[str, str, str, str]:
    """LEADER, EPOCH, REPLICAS, ISR cells of a partition."""
    leader = "none" if p.leader < 0 else str(p.leader)
    epoch = "-" if p.leader_epoch < 0 else str(p.leader_epoch)
    return leader, epoch, _nodes(p.replicas, p.offline_replicas), _nodes(p.isr)


def format_ms(ms: int) -> str:
    """A wall-clock time in ms as UTC ISO 8601 to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_json(desc: TopicDescription) -> dict[str, Any]:
    return {
        "name": desc.name,
        "internal": desc.internal,
        "partitions": [
            {
                "partition": p.partition,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "log_end_offset": p.log_end_offset,
                "size_bytes": p.size_bytes,
                "segment_count": p.segment_count,
                "dirty_bytes": p.dirty_bytes,
                "cleanable_bytes": p.cleanable_bytes,
                "last_clean_ms": p.last_clean_ms,
                "leader": None if p.leader < 0 else p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": list(p.replicas),
                "isr": list(p.isr),
                "offline_replicas": list(p.offline_replicas),
                "error": p.error,
            }
            for p in desc.partitions
        ],
        "configs": {
            c.name: {"value": c.value, "source": c.source, "read_only": c.read_only}
            for c in sorted(desc.configs.values(), key=lambda c: c.name)
        },
    }


def run_alter(args: argparse.Namespace) -> int:
    _logging(args.debug)
    changes: dict[str, str | None] = dict(args.config)
    for key in args.delete_config:
        if key in changes:
            raise UsageError(f"{key} is both set (--config) and reverted (--delete-config)")
        changes[key] = None
    if not changes and args.partitions is None:
        raise UsageError(
            "nothing to change: give --config KEY=VALUE, --delete-config KEY or --partitions N"
        )
    done = [f"{k}={v}" if v is not None else f"{k} (default)" for k, v in changes.items()]
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        if changes:
            admin.alter_configs(args.name, changes)
        if args.partitions is not None:
            admin.create_partitions(args.name, args.partitions)
            done.append(f"partitions={args.partitions}")
    sys.stdout.write(f"altered topic {args.name}: {', '.join(done)}\n")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    _logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        admin.delete_topic(args.name)
    sys.stdout.write(f"deleted topic {args.name}\n")
    return 0
