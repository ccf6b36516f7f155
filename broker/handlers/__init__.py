"""Request handlers, one module per family of APIs, and the table that routes
each API key to its handler.

A handler is ``handler(ctx, info, request)`` and returns response bytes, a
``Streamed`` response (fetch), ``NO_REPLY`` (acks 0), or ``Later(fn, ...)``
when it must wait; it raises a BrokerError to answer with a request-level
error (see ..server.connection).
"""

from __future__ import annotations

from collections.abc import Callable

from tailrace.client.protocol import ApiKey

from .acls import handle_create_acls, handle_delete_acls, handle_describe_acls
from .admin import (
    handle_alter_configs,
    handle_create_partitions,
    handle_create_topics,
    handle_delete_topics,
    handle_describe_configs,
)
from .context import BrokerContext
from .fetch import handle_fetch
from .groups import (
    handle_consumer_group_heartbeat,
    handle_delete_groups,
    handle_describe_groups,
    handle_find_coordinator,
    handle_list_groups,
    handle_offset_commit,
    handle_offset_fetch,
)
from .metadata import handle_api_versions, handle_metadata
from .offsets import handle_init_producer_id, handle_list_offsets
from .produce import handle_produce
from .replication import handle_offset_for_leader_epoch
from .sasl import handle_sasl_authenticate, handle_sasl_handshake

__all__ = ["HANDLERS", "BrokerContext"]

HANDLERS: dict[int, Callable] = {
    ApiKey.PRODUCE: handle_produce,
    ApiKey.FETCH: handle_fetch,
    ApiKey.LIST_OFFSETS: handle_list_offsets,
    ApiKey.METADATA: handle_metadata,
    ApiKey.API_VERSIONS: handle_api_versions,
    ApiKey.CREATE_TOPICS: handle_create_topics,
    ApiKey.DELETE_TOPICS: handle_delete_topics,
    ApiKey.CREATE_PARTITIONS: handle_create_partitions,
    ApiKey.INIT_PRODUCER_ID: handle_init_producer_id,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: handle_offset_for_leader_epoch,
    ApiKey.DESCRIBE_CONFIGS: handle_describe_configs,
    ApiKey.ALTER_CONFIGS: handle_alter_configs,
    ApiKey.OFFSET_COMMIT: handle_offset_commit,
    ApiKey.OFFSET_FETCH: handle_offset_fetch,
    ApiKey.FIND_COORDINATOR: handle_find_coordinator,
    ApiKey.DESCRIBE_GROUPS: handle_describe_groups,
    ApiKey.LIST_GROUPS: handle_list_groups,
    ApiKey.DELETE_GROUPS: handle_delete_groups,
    ApiKey.CONSUMER_GROUP_HEARTBEAT: handle_consumer_group_heartbeat,
    ApiKey.SASL_HANDSHAKE: handle_sasl_handshake,
    ApiKey.SASL_AUTHENTICATE: handle_sasl_authenticate,
    ApiKey.DESCRIBE_ACLS: handle_describe_acls,
    ApiKey.CREATE_ACLS: handle_create_acls,
    ApiKey.DELETE_ACLS: handle_delete_acls,
}
