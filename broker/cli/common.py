"""What every client subcommand shares: finding the broker, failing fast, errors.

* ``--bootstrap HOST:PORT`` on every client subcommand, falling back to the
  ``TAILRACE_BOOTSTRAP`` environment variable, then ``127.0.0.1:7420``.
* :func:`check_broker` makes one connection and one ApiVersions round trip
  before a command builds its real clients. The client libraries retry an
  unreachable broker until their request timeout (30 s and more), which is
  right for a long-lived application and wrong for an operator at a prompt:
  the command should say at once that nothing listens there.
* :class:`CliError` (exit 1) and :class:`UsageError` (exit 2) are how command
  code reports a failure it detected itself; ``main`` turns them, and the
  client libraries' TailraceError, into one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from tailrace.client import Admin
from tailrace.client.errors import TailraceError, raise_for_code
from tailrace.client.protocol import ApiVersionsRequest, MetadataRequest
from tailrace.client.transport.connection import BrokerConnection, split_address

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_BOOTSTRAP",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "UsageError",
    "add_bootstrap_option",
    "check_broker",
    "open_admin",
    "parse_key_value",
    "resolve_bootstrap",
    "setup_client_logging",
]

DEFAULT_BOOTSTRAP = "127.0.0.1:7420"
BOOTSTRAP_ENV = "TAILRACE_BOOTSTRAP"

EXIT_OK = 0
EXIT_ERROR = 1  # an error from the broker or the data
EXIT_USAGE = 2  # the command line is wrong (argparse uses 2 as well)

#: How long the reachability check waits for a connection and its answer.
PROBE_TIMEOUT_S = 5.0


class CliError(Exception):
    """A failure a command detected itself; shown as one line, exit 1."""

    exit_code = EXIT_ERROR


class UsageError(CliError):
    """The arguments (or the environment standing in for them) are wrong: exit 2."""

    exit_code = EXIT_USAGE


def add_bootstrap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help=f"the broker (default: ${BOOTSTRAP_ENV}, else {DEFAULT_BOOTSTRAP})",
    )


def resolve_bootstrap(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    """``--bootstrap``, else ``$TAILRACE_BOOTSTRAP``, else the default; checked
    for the HOST:PORT shape so a typo is a usage error, not a hang."""
    env = os.environ if environ is None else environ
    address = getattr(args, "bootstrap", None) or env.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    try:
        split_address(address)
    except ValueError as exc:
        source = "--bootstrap" if getattr(args, "bootstrap", None) else BOOTSTRAP_ENV
        raise UsageError(f"{source}: {exc}") from None
    return address


def check_broker(
    bootstrap: str,
    topic: str | None = None,
    *,
    auto_create: bool = False,
    timeout: float = PROBE_TIMEOUT_S,
) -> int:
    """Raise BrokerUnavailableError ("cannot reach broker at ADDR: reason")
    unless a tailrace broker answers at ``bootstrap`` within ``timeout``.

    With ``topic``, also ask for its metadata (the same connection) and
    return its partition count, raising the broker's error (unknown topic,
    invalid name) when there is no such topic; otherwise return 0. With
    ``auto_create``, a broker running with auto_create_topics creates a
    missing topic first (produce wants that; the Producer's own metadata
    requests never ask for it).
    """

    async def probe() -> int:
        # Errors are kept and raised outside the nursery, which would wrap
        # them in an ExceptionGroup.
        failure: TailraceError | None = None
        async with trio.open_nursery() as nursery:
            try:
                conn = await BrokerConnection.connect(
                    nursery, bootstrap, connect_timeout=timeout, request_timeout=timeout
                )
            except TailraceError as exc:
                failure = exc
            else:
                try:
                    await conn.request(ApiVersionsRequest(client_name="tailrace-cli"))
                    if topic is not None:
                        response = await conn.request(
                            MetadataRequest(topics=[topic], allow_auto_topic_creation=auto_create)
                        )
                except TailraceError as exc:
                    failure = exc
                finally:
                    await conn.aclose()
        if failure is not None:
            raise failure
        if topic is None:
            return 0
        raise_for_code(response.error_code, response.error_message or "")
        (t,) = response.topics
        raise_for_code(t.error_code, t.error_message or "")
        return len(t.partitions)

    return trio.run(probe)


@contextmanager
def open_admin(bootstrap: str) -> Iterator[Admin]:
    """A blocking Admin client, after checking the broker is there."""
    check_broker(bootstrap)
    with Admin(bootstrap) as admin:
        yield admin


def parse_key_value(text: str) -> tuple[str, str]:
    """argparse type for ``KEY=VALUE`` (the value may itself contain '=')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def setup_client_logging(debug: bool) -> None:
    """Client-library log lines go to stderr: everything with --debug,
    otherwise warnings and worse, prefixed so they read as tailrace's.

    Only when nobody configured logging yet: called from a program (or a
    test) that has its own handlers, the command leaves them alone."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("tailrace: %(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
