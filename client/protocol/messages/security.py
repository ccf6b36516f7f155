"""Security: SASL authentication and ACL administration.

Authentication (on listeners with ``authentication = "sasl"``) happens right
after connect, before any other API (ApiVersions is also allowed)::

    SaslHandshake(mechanism)            -> the mechanisms this listener offers
    SaslAuthenticate(auth_bytes) ...    -> the mechanism's answer, until done

SCRAM-SHA-256 takes two SaslAuthenticate round trips (client-first, then
client-final with the proof; the last answer carries the server signature
the client must verify); PLAIN takes one. A failure is answered with
SASL_AUTHENTICATION_FAILED after a delay, then the broker closes the
connection. docs/protocol.md, "Authentication", has the prose.

DescribeAcls, CreateAcls and DeleteAcls manage the broker's allow-only ACL
bindings (see "Authorization" in docs/protocol.md); creating and deleting
need ``alter`` on the cluster, describing needs ``describe`` on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..schema import I16, I64, BinSpec, Name, Str, StrSpec
from ._fields import f

#: A mechanism name ("SCRAM-SHA-256", "PLAIN").
Mechanism = Annotated[str, StrSpec(64)]
#: One SASL message: both mechanisms bound theirs to 1 KiB.
SaslBytes = Annotated[bytes, BinSpec(4096)]
#: ``User:<name>`` or ``*``; certificate subjects make long names.
Principal = Annotated[str, StrSpec(1100)]
#: operation, resource_type and pattern_type values.
Word = Annotated[str, StrSpec(16)]


# --- SaslHandshake ------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class SaslHandshakeRequest:
    """Picks the SASL mechanism of this connection. Allowed before
    authentication; the first step on a listener that requires SASL."""

    mechanism: Mechanism = f('"SCRAM-SHA-256" or "PLAIN"')


@dataclass(slots=True, kw_only=True)
class SaslHandshakeResponse:
    error_code: I16 = f(
        "UNSUPPORTED_SASL_MECHANISM (not offered on this listener), ILLEGAL_SASL_STATE "
        "(the listener does not use SASL, or the connection is already authenticated)",
        0,
    )
    error_message: Str | None = f("explanation of error_code", None)
    mechanisms: list[Mechanism] = f("the mechanisms this listener offers", factory=list)


# --- SaslAuthenticate -----------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class SaslAuthenticateRequest:
    """Carries one message of the chosen mechanism. Allowed before
    authentication, after SaslHandshake."""

    auth_bytes: SaslBytes = f("the mechanism's next client message")


@dataclass(slots=True, kw_only=True)
class SaslAuthenticateResponse:
    error_code: I16 = f(
        "SASL_AUTHENTICATION_FAILED (then the broker closes the connection), ILLEGAL_SASL_STATE",
        0,
    )
    error_message: Str | None = f("explanation of error_code", None)
    auth_bytes: SaslBytes = f(
        "the mechanism's answer (SCRAM: server-first, then server-final: ``v=`` on success, "
        "``e=`` on failure)",
        b"",
    )
    session_lifetime_ms: I64 = f("0: the session does not expire", 0)


# --- ACLs --------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class AclEntry:
    principal: Principal = f('"User:<name>" or "*" for every principal, anonymous included')
    operation: Word = f("read, write, create, delete, alter or describe")
    resource_type: Word = f("topic, group or cluster")
    resource_name: Name = f(
        'the name, "*" for every resource of the type; the cluster\'s is "tailrace-cluster"'
    )
    pattern_type: Word = f(
        '"literal" (the name exactly) or "prefixed" (names starting with it)', "literal"
    )


@dataclass(slots=True, kw_only=True)
class AclFilterEntry:
    """Selects bindings: each field given must match exactly; nil matches anything."""

    principal: Principal | None = f("principal, or nil", None)
    operation: Word | None = f("operation, or nil", None)
    resource_type: Word | None = f("resource type, or nil", None)
    resource_name: Name | None = f(
        "resource name (compared exactly, not as a pattern), or nil", None
    )
    pattern_type: Word | None = f("pattern type, or nil", None)


@dataclass(slots=True, kw_only=True)
class DescribeAclsRequest:
    """Lists ACL bindings. Needs ``describe`` on the cluster."""

    filter: AclFilterEntry = f("which bindings; an empty filter lists all", factory=AclFilterEntry)


@dataclass(slots=True, kw_only=True)
class DescribeAclsResponse:
    error_code: I16 = f("CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    bindings: list[AclEntry] = f("the matching bindings, sorted", factory=list)


@dataclass(slots=True, kw_only=True)
class CreateAclsRequest:
    """Grants bindings, durably (on disk before the answer), effective at once.
    Needs ``alter`` on the cluster."""

    creations: list[AclEntry] = f("bindings to add (existing ones are kept as they are)")


@dataclass(slots=True, kw_only=True)
class AclCreationResult:
    error_code: I16 = f("INVALID_REQUEST for a malformed binding, POLICY_VIOLATION, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)


@dataclass(slots=True, kw_only=True)
class CreateAclsResponse:
    error_code: I16 = f("CLUSTER_AUTHORIZATION_FAILED, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    results: list[AclCreationResult] = f("one per creation, in order", factory=list)


@dataclass(slots=True, kw_only=True)
class DeleteAclsRequest:
    """Revokes every binding each filter selects, durably, effective at once.
    Needs ``alter`` on the cluster."""

    filters: list[AclFilterEntry] = f("filters; an empty filter selects every binding")


@dataclass(slots=True, kw_only=True)
class DeleteAclsFilterResult:
    error_code: I16 = f("INVALID_REQUEST for a malformed filter, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    deleted: list[AclEntry] = f("the bindings this filter removed", factory=list)


@dataclass(slots=True, kw_only=True)
class DeleteAclsResponse:
    error_code: I16 = f("CLUSTER_AUTHORIZATION_FAILED, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    results: list[DeleteAclsFilterResult] = f("one per filter, in order", factory=list)


__all__ = [
    "AclCreationResult",
    "AclEntry",
    "AclFilterEntry",
    "CreateAclsRequest",
    "CreateAclsResponse",
    "DeleteAclsFilterResult",
    "DeleteAclsRequest",
    "DeleteAclsResponse",
    "DescribeAclsRequest",
    "DescribeAclsResponse",
    "SaslAuthenticateRequest",
    "SaslAuthenticateResponse",
    "SaslHandshakeRequest",
    "SaslHandshakeResponse",
]
