"""``tailrace users add | remove | list``: the SCRAM users file.

These commands edit the users file directly (they do not talk to the
broker): the running broker picks each change up at the next authentication
(one ``stat`` per login), no restart. The file holds salted SCRAM
credentials only, never a password, and is written atomically with mode 0600.

The file is ``--users-file FILE``, else ``$TAILRACE_SECURITY_USERS_FILE``
(the variable the broker reads for ``security.users_file``), so one
environment serves both.

A password never goes on the command line (where ``ps`` and the shell
history would show it): ``users add`` asks for it twice on the terminal, or
reads one line from stdin with ``--password-stdin`` (for scripts:
``tailrace users add alice --password-stdin < alice.pass``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from ..security import users
from .common import CliError, UsageError
from .output import write_json

USERS_FILE_ENV = "TAILRACE_SECURITY_USERS_FILE"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "users",
        help="add, remove and list SASL users (the users file)",
        description=(
            "Manage the users file the broker authenticates SASL clients against "
            "(SCRAM-SHA-256 credentials). The broker picks changes up without a restart."
        ),
    )
    usub = p.add_subparsers(dest="users_command", metavar="ACTION")
    usub.required = True

    add = usub.add_parser(
        "add",
        help="add a user (or change a password with --replace)",
        description="Add a user. The password is asked for on the terminal, or read from "
        "stdin with --password-stdin; never give it as an argument.",
    )
    add.add_argument("name", help="the user name (the principal is User:NAME)")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    add.add_argument(
        "--replace", action="store_true", help="change the password of an existing user"
    )
    add.add_argument(
        "--iterations",
        type=int,
        default=users.DEFAULT_ITERATIONS,
        metavar="N",
        help=f"PBKDF2 iterations of the credential (default {users.DEFAULT_ITERATIONS})",
    )
    add.set_defaults(func=run_add)

    rm = usub.add_parser("remove", help="remove a user", description="Remove a user.")
    rm.add_argument("name")
    rm.set_defaults(func=run_remove)

    ls = usub.add_parser("list", help="list the user names", description="List the user names.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    for parser in (add, rm, ls):
        parser.add_argument(
            "--users-file", metavar="FILE", help=f"the users file (default: ${USERS_FILE_ENV})"
        )


def _path(args: argparse.Namespace) -> str:
    path = args.users_file or os.environ.get(USERS_FILE_ENV)
    if not path:
        raise UsageError(f"which users file? give --users-file FILE (or set {USERS_FILE_ENV})")
    return path


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return users.read_password(sys.stdin)
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on: pipe it with --password-stdin")
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise CliError("the two passwords differ; nothing was changed")
    return first


def run_add(args: argparse.Namespace) -> int:
    path = _path(args)
    password = _password(args)
    users.add_user(path, args.name, password, iterations=args.iterations, replace=args.replace)
    verb = "changed the password of" if args.replace else "added"
    sys.stdout.write(f"{verb} user {args.name} (principal User:{args.name})\n")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    users.remove_user(_path(args), args.name)
    sys.stdout.write(f"removed user {args.name}\n")
    return 0


def run_list(args: argparse.Namespace) -> int:
    names = users.list_users(_path(args))
    if args.json:
        write_json({"users": names}, sys.stdout)
    else:
        sys.stdout.write("".join(f"{name}\n" for name in names))
    return 0
