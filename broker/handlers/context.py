"""What every request handler reaches through: the broker's shared state."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import trio

from tailrace.client.errors import InvalidTopicError, TopicAlreadyExistsError
from tailrace.client.protocol import Request, encode_response

from ..config import BrokerConfig
from ..log.manager import LogManager
from ..log.partition import PartitionLog
from ..producer_ids import ProducerIdAllocator
from ..server.connection import ConnectionInfo
from ..server.listeners import BoundListener

if TYPE_CHECKING:
    from ..coordinator import GroupCoordinator
    from ..security.acl import AclStore
    from ..security.authz import Authorization

__all__ = ["INTERNAL_PREFIX", "BrokerContext", "is_internal"]

#: Topic names with this prefix belong to the broker (``__consumer_offsets``):
#: clients may read them but not create, write, alter or delete them.
INTERNAL_PREFIX = "__"


def is_internal(topic: str) -> bool:
    return topic.startswith(INTERNAL_PREFIX)


class BrokerContext:
    """Shared by every handler on every connection (trio thread only)."""

    def __init__(
        self,
        config: BrokerConfig,
        manager: LogManager,
        producer_ids: ProducerIdAllocator,
        listeners: list[BoundListener],
        cluster_id: str,
    ) -> None:
        self.config = config
        self.manager = manager
        self.producer_ids = producer_ids
        self.listeners = listeners
        self.cluster_id = cluster_id
        #: set when the broker starts shutting down: long polls answer at once
        self.draining = trio.Event()
        self.node_id = 0
        #: the consumer-group coordinator (set by the broker once it exists)
        self.coordinator: GroupCoordinator | None = None
        #: the broker's durable ACLs (managed through CreateAcls/DeleteAcls)
        self.acl_store: AclStore | None = None
        #: ACL enforcement, or None when security.authorizer is off: every
        #: handler checks ``ctx.authz is not None`` and does nothing more then
        self.authz: Authorization | None = None

    # --- lookups -------------------------------------------------------------

    def partition_for_produce(
        self, info: ConnectionInfo, topic: str, partition: int
    ) -> PartitionLog:
        if is_internal(topic):
            raise InvalidTopicError(f"{topic!r} is the broker's own topic: clients cannot write it")
        return self.manager.get(topic, partition)

    def partition_for_fetch(self, info: ConnectionInfo, topic: str, partition: int) -> PartitionLog:
        return self.manager.get(topic, partition)

    def missing_topics(self, names: list[str]) -> list[str]:
        """Topics among ``names`` that do not exist (for auto-creation)."""
        existing = self.manager.topics()
        return [n for n in dict.fromkeys(names) if n not in existing]

    async def auto_create(self, names: list[str]) -> None:
        """Create ``names`` with the broker defaults, when auto_create_topics
        is on; a topic created meanwhile by someone else is fine."""
        for name in names:
            if name in self.manager.topics():
                continue
            with contextlib.suppress(TopicAlreadyExistsError):  # a racing create won
                await self.manager.create_topic(name, self.config.default_partitions)

    # --- encoding --------------------------------------------------------------

    def encode(self, request: Request, response: Any) -> bytes:
        prefix, parts = encode_response(
            request.api_key, request.api_version, request.correlation_id, response
        )
        return b"".join([prefix, *parts]) if parts else prefix

    def encode_parts(self, request: Request, response: Any) -> tuple[bytes, list]:
        return encode_response(
            request.api_key, request.api_version, request.correlation_id, response
        )
