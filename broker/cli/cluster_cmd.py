"""``tailrace cluster status [--etcd URL[,URL...]] [--prefix P] [--json]``.

Reads the cluster's metadata from etcd directly (no broker needs to be up):
the brokers (alive, address, broker epoch), the controller and its epoch,
and the under-replicated and offline partitions. Exit 0 when etcd answered,
1 when no etcd endpoint did (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import trio

from .output import table, write_json

ETCD_ENV = "TAILRACE_ETCD"
DEFAULT_ETCD = "http://127.0.0.1:2379"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster",
        help="a cluster's brokers, controller and partition health (from etcd)",
        description="Inspect a tailrace cluster through its etcd.",
    )
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION")
    csub.required = True
    s = csub.add_parser(
        "status",
        help="brokers, controller, under-replicated and offline partitions",
        description=(
            "Read the cluster's state from etcd: each broker (alive, address, broker epoch), "
            "the controller and its epoch, and every under-replicated or offline partition."
        ),
    )
    s.add_argument(
        "--etcd",
        metavar="URL[,URL...]",
        help=f"etcd client URLs (default ${ETCD_ENV}, else {DEFAULT_ETCD})",
    )
    s.add_argument(
        "--prefix", default="/tailrace", help="the cluster's etcd prefix (cluster.etcd_prefix)"
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    # imported here: only this command (and cluster mode) loads the etcd client
    from ..cluster.status import read_view, status_document
    from ..config import split_urls

    endpoints = split_urls(args.etcd or os.environ.get(ETCD_ENV) or DEFAULT_ETCD)
    view = trio.run(read_view, endpoints, args.prefix)
    doc = status_document(view)
    if args.json:
        write_json(doc, sys.stdout)
    else:
        sys.stdout.write(render(doc))
    return 0


def render(doc: dict[str, Any]) -> str:
    controller = doc["controller"]
    lines = [
        "controller: "
        + (
            f"broker {controller['node_id']} (controller epoch {controller['controller_epoch']})"
            if controller
            else "none"
        ),
        "",
    ]
    rows = [
        [
            b["node_id"],
            "yes" if b["alive"] else "no",
            b["address"],
            b["kafka_address"],
            b["broker_epoch"],
            "*" if b["controller"] else "",
        ]
        for b in doc["brokers"]
    ]
    lines.append(
        table(
            ["BROKER", "ALIVE", "ADDRESS", "KAFKA", "EPOCH", "CONTROLLER"],
            rows,
            [True, False, False, False, True, False],
        ).rstrip("\n")
    )
    lines.append("")
    lines.append(
        f"{doc['topics']} topic(s), {doc['partitions']} partition(s); "
        f"{len(doc['under_replicated'])} under-replicated, {len(doc['offline'])} offline"
    )
    for name in doc["unplaced_topics"]:
        lines.append(f"topic {name}: waiting for enough live brokers to place its replicas")
    for title, parts in (
        ("under-replicated", doc["under_replicated"]),
        ("offline", doc["offline"]),
    ):
        if not parts:
            continue
        lines.append("")
        lines.append(f"{title}:")
        lines.append(
            table(
                ["TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"],
                [
                    [
                        p["topic"],
                        p["partition"],
                        p["leader"],
                        p["leader_epoch"],
                        ",".join(map(str, p["replicas"])),
                        ",".join(map(str, p["isr"])),
                    ]
                    for p in parts
                ],
                [False, True, True, True, False, False],
            ).rstrip("\n")
        )
    return "\n".join(lines) + "\n"
