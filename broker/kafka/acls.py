"""DescribeAcls, CreateAcls and DeleteAcls (v1) for Kafka clients: adapters
over :mod:`..services.acls`, the same store the native admin and
``tailrace acls`` manage.

tailrace's ACLs are allow-only, per principal, without hosts, on topics,
groups and the cluster, literal or prefixed. Kafka's numbering maps onto
them: resource types 2 topic, 3 group, 4 cluster; patterns 3 literal, 4
prefixed; operations 3 read, 4 write, 5 create, 6 delete, 7 alter, 8
describe, 9 cluster_action (2, ALL, grants them all; cluster_action only on
the cluster); permission 3 allow. A creation outside
that (DENY, a host other than ``*``, another resource type or operation)
fails alone with INVALID_REQUEST; a filter naming something tailrace never
stores (DENY, a transactional id) matches nothing; MATCH filters are
refused (INVALID_REQUEST).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.index import load_response_schema

from tailrace.client.errors import BrokerError, InvalidRequestError

from ..security.acl import AclBinding, AclFilter
from ..server.connection import ConnectionInfo, Later
from ..services import acls as service
from .codec import KafkaRequest
from .entities import ZERO, make
from .errors import kafka_error

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext

__all__ = ["handle_create_acls", "handle_delete_acls", "handle_describe_acls"]

ANY = 1
_RESOURCES = {2: "topic", 3: "group", 4: "cluster"}
_PATTERNS = {3: "literal", 4: "prefixed"}
_OPERATIONS = {
    3: "read",
    4: "write",
    5: "create",
    6: "delete",
    7: "alter",
    8: "describe",
    9: "cluster_action",
}
ALL_OPERATIONS = 2
MATCH = 2
ALLOW, DENY = 3, 2


def _kafka(table: dict[int, str], value: str) -> int:
    return next(k for k, v in table.items() if v == value)


def _bindings(c: Any) -> list[AclBinding]:
    """A CreateAcls creation as tailrace bindings (ALL: one per operation)."""
    if c.permission_type != ALLOW:
        raise InvalidRequestError("only ALLOW ACLs exist here (tailrace's ACLs are allow-only)")
    if c.host != "*":
        raise InvalidRequestError(f"host {c.host!r}: ACLs here apply from any host ('*')")
    if c.resource_type not in _RESOURCES:
        raise InvalidRequestError(f"resource type {c.resource_type}: topics, groups or the cluster")
    if c.resource_pattern_type not in _PATTERNS:
        raise InvalidRequestError(f"pattern type {c.resource_pattern_type}: literal or prefixed")
    if c.operation == ALL_OPERATIONS:
        operations = [
            op
            for op in _OPERATIONS.values()
            if op != "cluster_action" or _RESOURCES[c.resource_type] == "cluster"
        ]
    elif c.operation in _OPERATIONS:
        operations = [_OPERATIONS[c.operation]]
    else:
        raise InvalidRequestError(f"operation {c.operation} is not one tailrace grants")
    return [
        AclBinding(
            c.principal,
            op,
            _RESOURCES[c.resource_type],
            c.resource_name,
            _PATTERNS[c.resource_pattern_type],
        )
        for op in operations
    ]


def _filter(f: Any) -> AclFilter | None:
    """A Kafka ACL filter as a tailrace one; None: it matches nothing here."""
    if f.pattern_type_filter == MATCH:
        raise InvalidRequestError("MATCH pattern filters are not supported: use ANY or a type")
    if f.permission_type == DENY or f.host_filter not in (None, "*"):
        return None
    fields: dict[str, Any] = {
        "principal": f.principal_filter,
        "resource_name": f.resource_name_filter,
    }
    for name, value, table in (
        ("resource_type", f.resource_type_filter, _RESOURCES),
        ("pattern_type", f.pattern_type_filter, _PATTERNS),
        ("operation", f.operation, _OPERATIONS),
    ):
        if (value in (ANY, ALL_OPERATIONS) and name == "operation") or value == ANY:
            continue
        if value not in table:
            return None
        fields[name] = table[value]
    return AclFilter(**fields)


def _described(b: AclBinding) -> dict[str, Any]:
    return {
        "principal": b.principal,
        "host": "*",
        "operation": _kafka(_OPERATIONS, b.operation.value),
        "permission_type": ALLOW,
    }


def _response(request: KafkaRequest, values: dict[str, Any]) -> Any:
    cls = load_response_schema(request.api_key, request.api_version)
    return make(cls, {"throttle_time": ZERO, **values})


def handle_describe_acls(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    try:
        selector = _filter(request.body)
        bindings = [] if selector is None else service.describe(ctx, info, selector)
    except BrokerError as exc:
        return _response(
            request,
            {"error_code": kafka_error(exc), "error_message": exc.message, "resources": ()},
        )
    grouped: dict[tuple[str, str, str], list[AclBinding]] = {}
    for b in bindings:
        key = (b.resource_type.value, b.resource_name, b.pattern_type.value)
        grouped.setdefault(key, []).append(b)
    resources = [
        {
            "resource_type": _kafka(_RESOURCES, rtype),
            "resource_name": name,
            "pattern_type": _kafka(_PATTERNS, pattern),
            "acls": [_described(b) for b in group],
        }
        for (rtype, name, pattern), group in grouped.items()
    ]
    return _response(
        request, {"error_code": kafka_error(None), "error_message": None, "resources": resources}
    )


def handle_create_acls(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Later:
    return Later(_create, ctx, info, request)


async def _create(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    errors: list[BrokerError | None] = []
    valid: list[tuple[int, list[AclBinding]]] = []
    for i, c in enumerate(request.body.creations):
        try:
            valid.append((i, _bindings(c)))
            errors.append(None)
        except BrokerError as exc:
            errors.append(exc)
    if valid:
        try:
            await service.create(ctx, info, [b for _, group in valid for b in group])
        except BrokerError as exc:  # refused or over the cap: nothing was added
            for i, _ in valid:
                errors[i] = exc
    results = [
        {"error_code": kafka_error(e), "error_message": e.message if e else None} for e in errors
    ]
    return _response(request, {"results": results})


def handle_delete_acls(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Later:
    return Later(_delete, ctx, info, request)


async def _delete(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    results = []
    for f in request.body.filters:
        try:
            selector = _filter(f)
            removed = [] if selector is None else await service.delete(ctx, info, selector)
        except BrokerError as exc:
            results.append(
                {"error_code": kafka_error(exc), "error_message": exc.message, "matching_acls": ()}
            )
            continue
        results.append(
            {
                "error_code": kafka_error(None),
                "error_message": None,
                "matching_acls": [
                    {
                        "error_code": kafka_error(None),
                        "error_message": None,
                        "resource_type": _kafka(_RESOURCES, b.resource_type.value),
                        "resource_name": b.resource_name,
                        "pattern_type": _kafka(_PATTERNS, b.pattern_type.value),
                        **_described(b),
                    }
                    for b in removed
                ],
            }
        )
    return _response(request, {"filter_results": results})
