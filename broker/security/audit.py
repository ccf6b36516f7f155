"""The audit log: one line per security event, on the ``tailrace.audit`` logger.

Operators route it with ordinary logging configuration (its own file,
syslog...). Each line is ``key=value`` pairs separated by spaces, starting
with ``event=``::

    event=auth_failure listener=external peer=10.0.0.7:51234 mechanism=SCRAM-SHA-256 \
username=alice reason="invalid proof"
    event=authz_denied principal=User:bob operation=write resource_type=topic \
name=orders peer=10.0.0.8:40022

Rules: values made only of printable characters other than space, ``"``,
``=`` and ``\\`` are written bare; any other value is written as a JSON
string (quoted, with control and non-ASCII characters escaped), so a user
name sent by an attacker can neither forge a second line nor a field. A
missing value is ``-``. Values are cut to :data:`MAX_VALUE_CHARS` characters
(with ``...``) so one request cannot flood the log. Authentication failures
log at WARNING, authorization denials at INFO (Kafka's levels: denials are
routine on a busy broker).
"""

from __future__ import annotations

import json
import logging

__all__ = ["MAX_VALUE_CHARS", "auth_failure", "authz_denied", "format_event", "logger"]

logger = logging.getLogger("tailrace.audit")

MAX_VALUE_CHARS = 256
_UNSAFE = frozenset(' "=\\')


def _value(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "..."
    if text and text.isprintable() and not _UNSAFE.intersection(text):
        return text
    return json.dumps(text)


def format_event(event: str, **fields: object) -> str:
    """One audit line: ``event=<event>`` then the fields in the order given."""
    return " ".join(
        [f"event={_value(event)}", *(f"{key}={_value(value)}" for key, value in fields.items())]
    )


def auth_failure(
    listener: str, peer: str, mechanism: str | None, username: str | None, reason: str
) -> None:
    """Record a refused authentication (bad credentials, malformed exchange, timeout)."""
    logger.warning(
        "%s",
        format_event(
            "auth_failure",
            listener=listener,
            peer=peer,
            mechanism=mechanism,
            username=username,
            reason=reason,
        ),
    )


def authz_denied(principal: str, operation: str, resource_type: str, name: str, peer: str) -> None:
    """Record a request the authorizer refused."""
    logger.info(
        "%s",
        format_event(
            "authz_denied",
            principal=principal,
            operation=operation,
            resource_type=resource_type,
            name=name,
            peer=peer,
        ),
    )
