"""Authorization as the request handlers use it: ACL checks with a
per-connection cache, denials in the audit log, and ACL changes.

The broker always opens its :class:`~.acl.AclStore` (so ACLs can be prepared
before they are enforced); :class:`Authorization` exists only when they are
enforced (``security.authorizer``). Handlers hold ``ctx.authz``, which is
None otherwise: a broker without an authorizer pays one attribute check per
request, nothing more.

Per-connection cache: a connection asks the same questions again and again
(a producer writes the same topics, a consumer fetches the same partitions),
so each connection keeps its answers in ``ConnectionInfo.state``, keyed by
(operation, resource type, name). The cache belongs to an ACL *generation*:
every change made through :meth:`Authorization.add` / :meth:`remove` bumps
it, and a connection whose cache is older starts a new one, so a change takes
effect at the next request of every connection. A cache holds at most
:data:`CACHE_MAX` answers (then it starts over).

Denials are logged (audit ``authz_denied``) every time, cached or not,
except for the implicit filtering of listings (Metadata of every topic,
ListGroups), where a hidden resource is the expected outcome (Kafka does the
same).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from . import audit
from .acl import CLUSTER_NAME, AclBinding, AclFilter, AclStore

if TYPE_CHECKING:
    from ..server.connection import ConnectionInfo

__all__ = [
    "ALTER",
    "CACHE_MAX",
    "CLUSTER",
    "CLUSTER_ACTION",
    "CLUSTER_NAME",
    "CREATE",
    "DELETE",
    "DESCRIBE",
    "GROUP",
    "READ",
    "TOPIC",
    "WRITE",
    "Authorization",
]

# plain strings: the authorizer's index is keyed by the enums' values
READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE = (
    "read",
    "write",
    "create",
    "delete",
    "alter",
    "describe",
)
#: the requests brokers send each other (follower fetches, OffsetForLeaderEpoch)
CLUSTER_ACTION = "cluster_action"
TOPIC, GROUP, CLUSTER = "topic", "group", "cluster"

CACHE_MAX = 4096


class _Cache:
    __slots__ = ("generation", "results", "writes_any_topic")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.results: dict[tuple[str, str, str], bool] = {}
        self.writes_any_topic: bool | None = None


class Authorization:
    """ACL enforcement over the broker's :class:`AclStore`."""

    def __init__(self, store: AclStore) -> None:
        self.store = store
        self.generation = 0

    def _cache(self, info: ConnectionInfo) -> _Cache:
        cache = info.state
        if type(cache) is not _Cache or cache.generation != self.generation:
            cache = info.state = _Cache(self.generation)
        return cache

    def allowed(
        self,
        info: ConnectionInfo,
        operation: str,
        resource_type: str,
        name: str,
        *,
        log_denial: bool = True,
    ) -> bool:
        """May the connection's principal do ``operation`` on the resource?"""
        cache = self._cache(info)
        key = (operation, resource_type, name)
        result = cache.results.get(key)
        if result is None:
            result = self.store.authorizer.authorize(info.principal, operation, resource_type, name)
            if len(cache.results) >= CACHE_MAX:
                cache.results.clear()
            cache.results[key] = result
        if not result and log_denial:
            audit.authz_denied(info.principal, operation, resource_type, name, info.peer)
        return result

    def may_create_topic(self, info: ConnectionInfo, name: str) -> bool:
        """Creating a topic takes ``create`` on the cluster or on the topic."""
        return self.allowed(info, CREATE, CLUSTER, CLUSTER_NAME, log_denial=False) or self.allowed(
            info, CREATE, TOPIC, name
        )

    def may_write_some_topic(self, info: ConnectionInfo) -> bool:
        """InitProducerId: ``write`` on the cluster, or on any topic (Kafka's
        KIP-679 rule: whoever may produce may ask for a producer id)."""
        cache = self._cache(info)
        if cache.writes_any_topic is None:
            principal = info.principal
            cache.writes_any_topic = (
                principal in self.store.authorizer.super_users
                or self.allowed(info, WRITE, CLUSTER, CLUSTER_NAME, log_denial=False)
                or any(
                    b.operation == WRITE
                    and b.resource_type == TOPIC
                    and b.principal in (principal, "*")
                    for b in self.store.bindings()
                )
            )
        if not cache.writes_any_topic:
            audit.authz_denied(info.principal, WRITE, TOPIC, "*", info.peer)
        return cache.writes_any_topic


async def add_bindings(
    store: AclStore, authz: Authorization | None, bindings: Iterable[AclBinding]
) -> list[AclBinding]:
    """Grant ``bindings`` durably (the store fsyncs: a worker thread) and
    invalidate every connection's cache."""
    wanted = list(bindings)
    try:
        return await trio.to_thread.run_sync(store.add, wanted)
    finally:
        if authz is not None:
            authz.generation += 1


async def remove_bindings(
    store: AclStore, authz: Authorization | None, filter: AclFilter
) -> list[AclBinding]:
    """Revoke what ``filter`` selects durably, and invalidate the caches."""
    try:
        return await trio.to_thread.run_sync(store.remove, filter)
    finally:
        if authz is not None:
            authz.generation += 1
