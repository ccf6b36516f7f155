"""SASL PLAIN (RFC 4616): one message carrying the password itself.

Layout (UTF-8)::

    [authzid] NUL authcid NUL passwd

``authzid`` is the identity to act as, ``authcid`` the user name, ``passwd``
the password. The password crosses the wire as is, so the broker offers
PLAIN only on TLS or loopback listeners (that check belongs to the listener,
not here).

Rules:

1. A message is at most :data:`MAX_MESSAGE_SIZE` bytes, checked before it is
   decoded. It must be UTF-8 with exactly two NULs, a non-empty user name and
   a non-empty password; anything else raises :class:`SaslAuthenticationError`.
2. ``authzid`` must be empty or equal to the user name: tailrace has no proxy
   authorization (the same rule as SCRAM's ``a=``).
3. The server never sees a stored password: :func:`authenticate_plain`
   checks the password against the user's SCRAM credential (same salt and
   iterations), in constant time, and spends the same work on an unknown
   user as on a known one so that timing does not tell which names exist.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from ..errors import InvalidConfigError, SaslAuthenticationError
from .scram import CredentialLookup, ScramCredential

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MECHANISM",
    "PlainCredentials",
    "authenticate_plain",
    "build_plain_message",
    "parse_plain_message",
]

MECHANISM = "PLAIN"
MAX_MESSAGE_SIZE = 1024

# Checked against when the user is unknown, so that a miss costs a full
# password derivation too. Its password is random and never leaves here.
_DECOY = ScramCredential.from_password(secrets.token_urlsafe(24))


@dataclass(frozen=True)
class PlainCredentials:
    """A parsed PLAIN message."""

    username: str
    password: str = field(repr=False)
    authzid: str = ""


def build_plain_message(username: str, password: str, authzid: str = "") -> bytes:
    """The client's PLAIN message. Bad arguments raise :class:`InvalidConfigError`."""
    if not username or not password:
        raise InvalidConfigError("SASL PLAIN needs a user name and a password")
    if "\x00" in username + password + authzid:
        raise InvalidConfigError("SASL PLAIN fields must not contain NUL")
    message = f"{authzid}\x00{username}\x00{password}".encode()
    if len(message) > MAX_MESSAGE_SIZE:
        raise InvalidConfigError(f"the SASL PLAIN message is over {MAX_MESSAGE_SIZE} bytes")
    return message


def parse_plain_message(data: bytes) -> PlainCredentials:
    """Parse a PLAIN message; malformed input raises :class:`SaslAuthenticationError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SaslAuthenticationError(
            f"PLAIN: the message must be bytes, not {type(data).__name__}"
        )
    if len(data) > MAX_MESSAGE_SIZE:
        raise SaslAuthenticationError(
            f"PLAIN: the message is {len(data)} bytes, over the {MAX_MESSAGE_SIZE}-byte limit"
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise SaslAuthenticationError("PLAIN: the message is not UTF-8") from None
    parts = text.split("\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SaslAuthenticationError("PLAIN: expected authzid NUL username NUL password")
    authzid, username, password = parts
    if authzid and authzid != username:
        raise SaslAuthenticationError(
            "PLAIN: an authorization identity other than the user is not supported"
        )
    return PlainCredentials(username=username, password=password, authzid=authzid)


def authenticate_plain(data: bytes, lookup: CredentialLookup) -> str:
    """Parse a PLAIN message and check its password against ``lookup``'s
    credential. Returns the user name; raises :class:`SaslAuthenticationError`
    for a malformed message, an unknown user or a wrong password (the last
    two with the same message)."""
    credentials = parse_plain_message(data)
    credential = lookup(credentials.username)
    known = credential is not None
    valid = (credential or _DECOY).verify_password(credentials.password)
    if not (valid and known):
        raise SaslAuthenticationError("PLAIN: invalid user name or password")
    return credentials.username
