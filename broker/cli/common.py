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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import trio

from tailrace.client import Admin
from tailrace.client.errors import (
    BrokerUnavailableError,
    InvalidConfigError,
    TailraceError,
    raise_for_code,
)
from tailrace.client.protocol import ApiVersionsRequest, MetadataRequest
from tailrace.client.security import SASL_MECHANISMS, SecurityConfig
from tailrace.client.transport.auth import connection_options
from tailrace.client.transport.connection import BrokerConnection
from tailrace.client.transport.pool import split_bootstrap

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_BOOTSTRAP",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "UsageError",
    "add_bootstrap_option",
    "add_security_options",
    "check_broker",
    "open_admin",
    "parse_key_value",
    "resolve_bootstrap",
    "resolve_security",
    "setup_client_logging",
]

DEFAULT_BOOTSTRAP = "127.0.0.1:7420"
BOOTSTRAP_ENV = "TAILRACE_BOOTSTRAP"
#: option (args attribute) -> the environment variable standing in for it
SECURITY_ENV = {
    "tls": "TAILRACE_TLS",
    "ca_file": "TAILRACE_CA_FILE",
    "cert_file": "TAILRACE_CERT_FILE",
    "key_file": "TAILRACE_KEY_FILE",
    "sasl_mechanism": "TAILRACE_SASL_MECHANISM",
    "username": "TAILRACE_USERNAME",
    "password_file": "TAILRACE_PASSWORD_FILE",
}

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
    """``--bootstrap`` and the security options every client subcommand takes."""
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,HOST:PORT...]",
        help=f"the broker, or several brokers of a cluster (default: ${BOOTSTRAP_ENV}, "
        f"else {DEFAULT_BOOTSTRAP})",
    )
    add_security_options(parser)


def add_security_options(parser: argparse.ArgumentParser) -> None:
    """--tls, --ca-file, --cert-file, --key-file, --sasl-mechanism,
    --username, --password-file (see :func:`resolve_security`)."""
    group = parser.add_argument_group(
        "security", "how to reach a TLS or authenticating listener (or the TAILRACE_* variables)"
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="connect with TLS, verifying the broker against the system CAs "
        "(or --ca-file) [$TAILRACE_TLS]",
    )
    group.add_argument(
        "--ca-file",
        metavar="FILE",
        help="CA certificate(s) the broker's must chain to (implies --tls) [$TAILRACE_CA_FILE]",
    )
    group.add_argument(
        "--cert-file",
        metavar="FILE",
        help="client certificate for mutual TLS (implies --tls) [$TAILRACE_CERT_FILE]",
    )
    group.add_argument(
        "--key-file", metavar="FILE", help="key of --cert-file, if not in it [$TAILRACE_KEY_FILE]"
    )
    group.add_argument(
        "--sasl-mechanism",
        choices=list(SASL_MECHANISMS),
        help="authenticate with SASL (PLAIN only over TLS or loopback) [$TAILRACE_SASL_MECHANISM]",
    )
    group.add_argument("--username", metavar="NAME", help="SASL user [$TAILRACE_USERNAME]")
    group.add_argument(
        "--password-file",
        metavar="FILE",
        help="file holding the SASL password (never on the command line) [$TAILRACE_PASSWORD_FILE]",
    )


def resolve_security(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> SecurityConfig | None:
    """The security options (flags, else their TAILRACE_* variables) as a
    SecurityConfig, or None for plaintext without authentication. Missing or
    contradictory options are a usage error (exit 2)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option, variable in SECURITY_ENV.items():
        value = getattr(args, option, None)
        if value is None or value is False:
            value = env.get(variable) or None
        values[option] = value
    tls = values["tls"]
    if isinstance(tls, str):
        if tls.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise UsageError(f"TAILRACE_TLS={tls!r} is not true or false")
        tls = tls.strip().lower() in ("1", "true", "yes", "on")
    if not any(values[k] for k in SECURITY_ENV):
        return None
    mechanism = values["sasl_mechanism"]
    if mechanism is not None and mechanism not in SASL_MECHANISMS:
        raise UsageError(
            f"TAILRACE_SASL_MECHANISM={mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
        )
    if mechanism is not None and not (values["username"] and values["password_file"]):
        raise UsageError(f"--sasl-mechanism {mechanism} needs --username and --password-file")
    if mechanism is None and (values["username"] or values["password_file"]):
        raise UsageError("--username and --password-file need --sasl-mechanism")
    try:
        return SecurityConfig(
            tls=bool(tls),
            ssl_cafile=values["ca_file"],
            ssl_certfile=values["cert_file"],
            ssl_keyfile=values["key_file"],
            sasl_mechanism=mechanism,
            username=values["username"],
            password_file=values["password_file"],
        )
    except InvalidConfigError as exc:
        raise UsageError(exc.message) from None


def resolve_bootstrap(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    """``--bootstrap``, else ``$TAILRACE_BOOTSTRAP``, else the default; checked
    for the HOST:PORT[,HOST:PORT...] shape so a typo is a usage error, not a
    hang."""
    env = os.environ if environ is None else environ
    address = getattr(args, "bootstrap", None) or env.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    try:
        split_bootstrap(address)
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
    security: SecurityConfig | None = None,
) -> int:
    """Raise BrokerUnavailableError ("cannot reach broker at ADDR: reason")
    unless a tailrace broker answers at ``bootstrap`` within ``timeout``
    (several addresses: the first that answers; the error is the last one's).

    With ``topic``, also ask for its metadata (the same connection) and
    return its partition count, raising the broker's error (unknown topic,
    invalid name) when there is no such topic; otherwise return 0. With
    ``auto_create``, a broker running with auto_create_topics creates a
    missing topic first (produce wants that; the Producer's own metadata
    requests never ask for it). With ``security``, the connection does TLS
    and authenticates first, so a refused certificate or password is
    reported here, at once.
    """
    options = connection_options(security)

    async def probe() -> int:
        # Errors are kept and raised outside the nursery, which would wrap
        # them in an ExceptionGroup.
        failure: TailraceError | None = None
        async with trio.open_nursery() as nursery:
            try:
                conn = await BrokerConnection.connect(
                    nursery,
                    bootstrap,
                    connect_timeout=timeout,
                    request_timeout=timeout,
                    ssl_context=options.get("ssl_context"),
                )
            except TailraceError as exc:
                failure = exc
            else:
                try:
                    await conn.request(ApiVersionsRequest(client_name="tailrace-cli"))
                    if "authenticate" in options:
                        await options["authenticate"](conn)
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

    addresses = split_bootstrap(bootstrap)
    for address in addresses[:-1]:
        try:
            return check_broker(
                address, topic, auto_create=auto_create, timeout=timeout, security=security
            )
        except BrokerUnavailableError:
            continue
    bootstrap = addresses[-1]
    return trio.run(probe)


@contextmanager
def open_admin(bootstrap: str, security: SecurityConfig | None = None) -> Iterator[Admin]:
    """A blocking Admin client, after checking the broker is there (and
    accepts our TLS and credentials)."""
    check_broker(bootstrap, security=security)
    with Admin(bootstrap, security=security) as admin:
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
