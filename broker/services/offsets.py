"""Offsets by time (earliest, latest, a timestamp) and producer ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tailrace.client.errors import (
    BrokerError,
    ClusterAuthorizationError,
    InvalidRequestError,
    TopicAuthorizationError,
)

from ..security.authz import READ, TOPIC
from .topics import partition_for_fetch

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..server.connection import ConnectionInfo

__all__ = [
    "EARLIEST",
    "LATEST",
    "OffsetQuery",
    "check_init_producer_id",
    "init_producer_id",
    "list_offsets",
]

#: the timestamps that ask for the latest (high watermark) and earliest offsets
LATEST = -1
EARLIEST = -2


@dataclass(slots=True)
class OffsetQuery:
    topic: str
    partition: int
    timestamp: int
    #: the leader epoch of the asker's metadata (Kafka ListOffsets v4+), -1: unsaid
    current_leader_epoch: int = -1
    #: filled by list_offsets: -1 / -1 when no record is at or after the time
    error: BrokerError | None = None
    offset: int = -1
    found_timestamp: int = -1


def list_offsets(
    ctx: BrokerContext, info: ConnectionInfo, queries: list[OffsetQuery]
) -> list[OffsetQuery]:
    authz = ctx.authz
    denied: dict[str, bool] = {}
    for q in queries:
        try:
            if authz is not None:
                no = denied.get(q.topic)
                if no is None:
                    no = denied[q.topic] = not authz.allowed(info, READ, TOPIC, q.topic)
                if no:
                    raise TopicAuthorizationError(f"{info.principal} may not read {q.topic!r}")
            if ctx.replicas is not None:
                # at the leader only; a new leader's watermark once established
                ctx.replicas.check_readable(q.topic, q.partition, q.current_leader_epoch)
            plog = partition_for_fetch(ctx, q.topic, q.partition)
            if ctx.replicas is not None and q.timestamp == LATEST:
                q.offset = ctx.replicas.served_high_watermark(q.topic, q.partition)
                continue
            if q.timestamp == LATEST:
                q.offset = plog.high_watermark
            elif q.timestamp == EARLIEST:
                q.offset = plog.log_start_offset
            elif q.timestamp < 0:
                raise InvalidRequestError(f"timestamp {q.timestamp} is neither -1, -2 nor a time")
            else:
                found = plog.offset_for_timestamp(q.timestamp)
                if found is not None:
                    q.offset, q.found_timestamp = found
        except BrokerError as exc:
            q.error = exc
    return queries


def check_init_producer_id(ctx: BrokerContext, info: ConnectionInfo) -> None:
    """Raise unless the principal may get a producer id (KIP-679: write on
    the cluster or on some topic)."""
    if ctx.authz is not None and not ctx.authz.may_write_some_topic(info):
        raise ClusterAuthorizationError(
            f"{info.principal} may not get a producer id (needs write on some topic)"
        )


async def init_producer_id(ctx: BrokerContext, producer_id: int, epoch: int) -> tuple[int, int]:
    return await ctx.producer_ids.init(producer_id, epoch)
