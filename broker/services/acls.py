"""The broker's ACLs, managed from either front-end.

Who may: describing needs ``describe`` on the cluster, creating and
deleting need ``alter`` on it (super users have both); with
``security.authorizer`` off nothing is checked and the ACLs are stored all
the same. Changes are durable (the store fsyncs in a worker thread) and
visible to every connection's next request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import ClusterAuthorizationError, CoordinatorNotAvailableError

from ..security.acl import AclBinding, AclFilter, AclStore
from ..security.authz import ALTER, CLUSTER, CLUSTER_NAME, DESCRIBE, add_bindings, remove_bindings

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..server.connection import ConnectionInfo

__all__ = ["create", "delete", "describe", "store_for"]


def store_for(ctx: BrokerContext, info: ConnectionInfo, operation: str) -> AclStore:
    """The store, once the principal may ``operation`` (describe/alter) the cluster."""
    authz = ctx.authz
    if authz is not None and not authz.allowed(info, operation, CLUSTER, CLUSTER_NAME):
        raise ClusterAuthorizationError(
            f"{info.principal} may not {operation} the cluster's ACLs "
            f"(needs {operation} on the cluster)"
        )
    if ctx.acl_store is None:
        raise CoordinatorNotAvailableError("the ACL store is not open yet")
    return ctx.acl_store


def describe(ctx: BrokerContext, info: ConnectionInfo, selector: AclFilter) -> list[AclBinding]:
    return store_for(ctx, info, DESCRIBE).bindings(selector)


async def create(ctx: BrokerContext, info: ConnectionInfo, bindings: list[AclBinding]) -> None:
    """Add ``bindings`` together (over the store's cap: none is added)."""
    store = store_for(ctx, info, ALTER)
    await add_bindings(store, ctx.authz, bindings)


async def delete(ctx: BrokerContext, info: ConnectionInfo, selector: AclFilter) -> list[AclBinding]:
    store = store_for(ctx, info, ALTER)
    return await remove_bindings(store, ctx.authz, selector)
