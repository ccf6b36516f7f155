"""DescribeAcls, CreateAcls and DeleteAcls: managing the broker's ACLs.

The bindings live in the broker's :class:`~..security.acl.AclStore`, one
JSON file rewritten atomically and fsynced on every change; the fsync runs
in a worker thread (the event loop never blocks on the disk), and the change
is visible to every connection's next request once the answer is sent.

Who may: describing needs ``describe`` on the cluster, creating and
deleting need ``alter`` on it (super users have both). With
``security.authorizer`` off nothing is checked, and the ACLs are stored all
the same, ready for when it is turned on.

A malformed binding or filter fails alone (INVALID_REQUEST in its own
result); the valid creations of a request are added together, in one write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import (
    BrokerError,
)
from tailrace.client.protocol import (
    AclCreationResult,
    AclEntry,
    AclFilterEntry,
    CreateAclsRequest,
    CreateAclsResponse,
    DeleteAclsFilterResult,
    DeleteAclsRequest,
    DeleteAclsResponse,
    DescribeAclsRequest,
    DescribeAclsResponse,
    Request,
)

from ..security.acl import AclBinding, AclFilter
from ..security.authz import ALTER
from ..server.connection import ConnectionInfo, Later
from ..services import acls as service
from .errors import fill

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_create_acls", "handle_delete_acls", "handle_describe_acls"]


def _entry(b: AclBinding) -> AclEntry:
    return AclEntry(
        principal=b.principal,
        operation=b.operation.value,
        resource_type=b.resource_type.value,
        resource_name=b.resource_name,
        pattern_type=b.pattern_type.value,
    )


def _binding(e: AclEntry) -> AclBinding:
    return AclBinding(e.principal, e.operation, e.resource_type, e.resource_name, e.pattern_type)


def _filter(f: AclFilterEntry) -> AclFilter:
    return AclFilter(f.principal, f.operation, f.resource_type, f.resource_name, f.pattern_type)


def handle_describe_acls(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: DescribeAclsRequest = request.body
    bindings = service.describe(ctx, info, _filter(body.filter))
    return ctx.encode(request, DescribeAclsResponse(bindings=[_entry(b) for b in bindings]))


def handle_create_acls(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    service.store_for(ctx, info, ALTER)  # refused as a whole, before any work
    return Later(_create_acls, ctx, info, request)


async def _create_acls(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: CreateAclsRequest = request.body
    results = []
    valid: list[tuple[AclCreationResult, AclBinding]] = []
    for entry in body.creations:
        result = AclCreationResult()
        results.append(result)
        try:
            valid.append((result, _binding(entry)))
        except BrokerError as exc:
            fill(result, exc)
    if valid:
        try:
            await service.create(ctx, info, [b for _, b in valid])
        except BrokerError as exc:  # over the cap: nothing was added
            for result, _ in valid:
                fill(result, exc)
    return ctx.encode(request, CreateAclsResponse(results=results))


def handle_delete_acls(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> Later:
    service.store_for(ctx, info, ALTER)  # refused as a whole, before any work
    return Later(_delete_acls, ctx, info, request)


async def _delete_acls(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: DeleteAclsRequest = request.body
    results = []
    for entry in body.filters:
        result = DeleteAclsFilterResult()
        results.append(result)
        try:
            removed = await service.delete(ctx, info, _filter(entry))
        except BrokerError as exc:
            fill(result, exc)
            continue
        result.deleted = [_entry(b) for b in removed]
    return ctx.encode(request, DeleteAclsResponse(results=results))
