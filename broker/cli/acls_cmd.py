"""``tailrace acls add | remove | list``: the broker's ACLs, over the wire.

ACLs are kept by the broker (durably, effective at once, no restart), so
these commands talk to it (CreateAcls, DeleteAcls, DescribeAcls) with the
usual ``--bootstrap`` and security options; adding and removing need
``alter`` on the cluster (a super user has it), listing ``describe``.

A resource is ``--topic NAME``, ``--group NAME`` or ``--cluster``; with
``--prefixed`` the name matches every resource starting with it, and
``*`` (literal) matches every resource of the type. ``remove`` deletes every
binding matching all the options given; removing everything takes
``--all``, so that a forgotten option cannot wipe the ACLs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tailrace.client import Acl

from .common import (
    UsageError,
    add_bootstrap_option,
    open_admin,
    resolve_bootstrap,
    resolve_security,
    setup_client_logging,
)
from .output import table, write_json

OPERATIONS = ["read", "write", "create", "delete", "alter", "describe", "cluster_action"]
CLUSTER_NAME = "tailrace-cluster"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "acls",
        help="grant, revoke and list ACLs (the broker enforces them)",
        description=(
            "Grant, revoke and list the broker's ACLs: which principal (User:NAME, or * for "
            "everyone) may do which operation on which topic, group or the cluster. "
            "Changes are durable and take effect at once."
        ),
    )
    asub = p.add_subparsers(dest="acls_command", metavar="ACTION")
    asub.required = True

    add = asub.add_parser(
        "add",
        help="grant operations on a resource to a principal",
        description="Grant each --operation on the resource to --principal.",
    )
    add.add_argument(
        "--principal", required=True, metavar="PRINCIPAL", help="User:NAME, or * for everyone"
    )
    add.add_argument(
        "--operation",
        required=True,
        action="append",
        choices=OPERATIONS,
        help="what may be done (repeat for several); read, write, alter and delete imply describe",
    )
    _resource_options(add, required=True)
    add.set_defaults(func=run_add)

    rm = asub.add_parser(
        "remove",
        help="revoke the ACLs matching the options",
        description="Revoke every ACL matching all the options given (--all: every ACL).",
    )
    rm.add_argument("--principal", metavar="PRINCIPAL")
    rm.add_argument("--operation", choices=OPERATIONS)
    _resource_options(rm, required=False)
    rm.add_argument("--all", action="store_true", help="revoke every ACL")
    rm.set_defaults(func=run_remove)

    ls = asub.add_parser(
        "list", help="list ACLs", description="List the ACLs matching the options (all by default)."
    )
    ls.add_argument("--principal", metavar="PRINCIPAL")
    ls.add_argument("--operation", choices=OPERATIONS)
    _resource_options(ls, required=False)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    for parser in (add, rm, ls):
        add_bootstrap_option(parser)


def _resource_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--topic", metavar="NAME", help="a topic (* for every topic)")
    group.add_argument("--group", metavar="NAME", help="a consumer group (* for every group)")
    group.add_argument("--cluster", action="store_true", help="the cluster itself")
    parser.add_argument(
        "--prefixed", action="store_true", help="NAME is a prefix: every name starting with it"
    )


def _resource(args: argparse.Namespace) -> dict[str, str | None]:
    """resource_type, resource_name and pattern_type from the options (None: any)."""
    if args.cluster:
        if args.prefixed:
            raise UsageError("--prefixed does not apply to --cluster")
        return {
            "resource_type": "cluster",
            "resource_name": CLUSTER_NAME,
            "pattern_type": "literal",
        }
    for kind in ("topic", "group"):
        name = getattr(args, kind)
        if name is not None:
            pattern = "prefixed" if args.prefixed else "literal"
            return {"resource_type": kind, "resource_name": name, "pattern_type": pattern}
    if args.prefixed:
        raise UsageError("--prefixed needs --topic or --group")
    return {"resource_type": None, "resource_name": None, "pattern_type": None}


def _describe(acl: Acl) -> str:
    name = "the cluster" if acl.resource_type == "cluster" else acl.resource_name
    where = "" if acl.resource_type == "cluster" else f"{acl.resource_type} "
    prefix = " (prefix)" if acl.pattern_type == "prefixed" else ""
    return f"{acl.principal} {acl.operation} on {where}{name}{prefix}"


def run_add(args: argparse.Namespace) -> int:
    setup_client_logging(args.debug)
    resource = _resource(args)
    acls = [
        Acl(
            principal=args.principal,
            operation=op,
            resource_type=str(resource["resource_type"]),
            resource_name=str(resource["resource_name"]),
            pattern_type=str(resource["pattern_type"]),
        )
        for op in dict.fromkeys(args.operation)
    ]
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        admin.create_acls(acls)
    for acl in acls:
        sys.stdout.write(f"granted {_describe(acl)}\n")
    return 0


def _filter(args: argparse.Namespace) -> dict[str, Any]:
    return {"principal": args.principal, "operation": args.operation, **_resource(args)}


def run_remove(args: argparse.Namespace) -> int:
    setup_client_logging(args.debug)
    fields = _filter(args)
    if args.all and any(v is not None for v in fields.values()):
        raise UsageError("--all removes every ACL: give it alone")
    if not args.all and all(v is None for v in fields.values()):
        raise UsageError("say which ACLs to remove (--principal, --topic, ...) or --all")
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        removed = admin.delete_acls(**fields)
    for acl in removed:
        sys.stdout.write(f"revoked {_describe(acl)}\n")
    sys.stdout.write(f"removed {len(removed)} ACL{'' if len(removed) == 1 else 's'}\n")
    return 0


def run_list(args: argparse.Namespace) -> int:
    setup_client_logging(args.debug)
    with open_admin(resolve_bootstrap(args), resolve_security(args)) as admin:
        acls = admin.describe_acls(**_filter(args))
    if args.json:
        write_json(
            {
                "acls": [
                    {
                        "principal": a.principal,
                        "operation": a.operation,
                        "resource_type": a.resource_type,
                        "resource_name": a.resource_name,
                        "pattern_type": a.pattern_type,
                    }
                    for a in acls
                ]
            },
            sys.stdout,
        )
        return 0
    rows = [
        (a.principal, a.operation, a.resource_type, a.resource_name, a.pattern_type) for a in acls
    ]
    sys.stdout.write(
        table(["PRINCIPAL", "OPERATION", "RESOURCE", "NAME", "PATTERN"], rows, [False] * 5)
    )
    return 0
