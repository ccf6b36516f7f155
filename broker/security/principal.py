"""Principals: who a connection is, as the authorizer sees it.

A principal is a string ``"<type>:<name>"``; tailrace has one type, ``User``.
The broker derives it from what the connection proved, never from anything
the client merely claims in a request (Kafka CVE-2018-1288):

* after SASL (SCRAM or PLAIN): ``User:<user name>``, :func:`sasl_principal`;
* on a mutual-TLS listener without SASL: ``User:<subject DN>``, the peer
  certificate's subject as an RFC 4514 string (most specific part first:
  ``User:CN=alice,O=acme,C=DE``), :func:`tls_principal`;
* on a plaintext listener without SASL: :data:`ANONYMOUS`.

User names (for the users file and SASL) are 1 to :data:`MAX_USERNAME_BYTES`
bytes of UTF-8, printable (no control, format or separator characters other
than the ASCII space), without leading or trailing spaces; ``ANONYMOUS`` is
reserved. Note that a SASL user called ``CN=alice,O=acme`` and a certificate
with that subject map to the same principal: name SASL users accordingly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tailrace.client.errors import AuthenticationError, InvalidRequestError

__all__ = [
    "ANONYMOUS",
    "MAX_PRINCIPAL_NAME_BYTES",
    "MAX_USERNAME_BYTES",
    "USER_TYPE",
    "check_name",
    "sasl_principal",
    "tls_principal",
    "validate_principal",
    "validate_username",
]

USER_TYPE = "User"
ANONYMOUS = "User:ANONYMOUS"
MAX_USERNAME_BYTES = 255
#: Longest name part of a principal (certificate subjects run longer than user names).
MAX_PRINCIPAL_NAME_BYTES = 1024

# Python's long attribute names -> RFC 4514 section 3 short names. Others
# (e.g. emailAddress) keep the name the ssl module gives them.
_SHORT_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def check_name(value: object, what: str, max_bytes: int) -> str:
    """Return ``value`` if it is a printable string of 1 to ``max_bytes``
    UTF-8 bytes without surrounding spaces; raise :class:`InvalidRequestError`."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidRequestError(f"{what} must not be empty")
    if len(value) > max_bytes or len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidRequestError(f"{what} is longer than {max_bytes} bytes")
    if not value.isprintable():
        raise InvalidRequestError(f"{what} {value!r} contains non-printable characters")
    if value != value.strip(" "):
        raise InvalidRequestError(f"{what} {value!r} has leading or trailing spaces")
    return value


def validate_username(name: object) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`InvalidRequestError`."""
    name = check_name(name, "a user name", MAX_USERNAME_BYTES)
    if name == "ANONYMOUS":
        raise InvalidRequestError("the user name ANONYMOUS is reserved")
    return name


def validate_principal(principal: object) -> str:
    """Return ``principal`` if it is ``*`` or ``User:<name>``, else raise
    :class:`InvalidRequestError`."""
    if principal == "*":
        return principal
    if not isinstance(principal, str) or not principal.startswith(USER_TYPE + ":"):
        raise InvalidRequestError(f"a principal must be '*' or 'User:<name>', not {principal!r}")
    check_name(principal[len(USER_TYPE) + 1 :], "a principal's name", MAX_PRINCIPAL_NAME_BYTES)
    return principal


def sasl_principal(username: str) -> str:
    """The principal of a user who authenticated with SASL."""
    return f"{USER_TYPE}:{username}"


def _escape_dn_value(value: str) -> str:
    """RFC 4514 section 2.4 escaping of an attribute value."""
    out = []
    for i, c in enumerate(value):
        if c in ',+"\\<>;' or (c == "#" and i == 0) or (c == " " and i in (0, len(value) - 1)):
            out.append("\\" + c)
        elif c == "\x00":
            out.append("\\00")
        else:
            out.append(c)
    return "".join(out)


def tls_principal(peercert: Mapping[str, Any]) -> str:
    """The principal of a mutual-TLS peer, from ``SSLObject.getpeercert()``.

    The ssl module gives the subject as relative distinguished names in
    certificate order (least specific first), each a tuple of
    ``(attribute, value)`` pairs. RFC 4514 writes them in reverse, ``,``
    between RDNs and ``+`` inside a multi-valued one. A missing or empty
    subject (a listener that did not require a verified certificate, or a
    SAN-only certificate) raises :class:`AuthenticationError`.
    """
    subject = peercert.get("subject") if isinstance(peercert, Mapping) else None
    if not subject:
        raise AuthenticationError("the TLS peer presented no certificate subject to name it by")
    rdns = []
    for rdn in reversed(subject):
        rdns.append(
            "+".join(
                f"{_SHORT_NAMES.get(attr, attr)}={_escape_dn_value(value)}" for attr, value in rdn
            )
        )
    return f"{USER_TYPE}:{','.join(rdns)}"
