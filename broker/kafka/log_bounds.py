"""DeleteRecords and OffsetForLeaderEpoch for Kafka clients: adapters over
:mod:`..services.log_bounds` (the rules are there).

OffsetForLeaderEpoch also checks the request's ``current_leader_epoch``
(v2+) as a Kafka leader does: -1 skips the check; on a single node 0 (its
only epoch) passes, a larger one is UNKNOWN_LEADER_EPOCH (the client knows
an epoch this broker never had) and a smaller one FENCED_LEADER_EPOCH; in a
cluster the partition must be led here (NOT_LEADER_OR_FOLLOWER) and the
epoch is compared with its leader epoch the same way (KIP-320; Fetch and
ListOffsets are fenced alike, in the replica manager). The answer is the
partition's own epoch cache: the end offset of the asked epoch. Kafka
clients' ``replica_id`` is accepted and ignored: followers use the native
protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode as KafkaErrorCode

from tailrace.client.errors import BrokerError

from ..server.connection import ConnectionInfo, Later
from ..services import log_bounds as service
from .codec import KafkaRequest
from .entities import ZERO, make
from .errors import kafka_error

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext

__all__ = ["handle_delete_records", "handle_offset_for_leader_epoch"]


def handle_delete_records(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Later:
    return Later(_delete_records, ctx, info, request)


async def _delete_records(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> Any:
    body = request.body
    done = iter(
        await service.delete_records(
            ctx,
            info,
            [
                service.DeleteRecords(t.name, p.partition_index, p.offset)
                for t in body.topics
                for p in t.partitions
            ],
        )
    )
    topics = []
    for t in body.topics:
        parts = []
        for _ in t.partitions:
            r = next(done)
            parts.append(
                {
                    "partition_index": r.partition,
                    "low_watermark": r.low_watermark,
                    "error_code": kafka_error(r.error),
                }
            )
        topics.append({"name": t.name, "partitions": parts})
    cls = load_response_schema(request.api_key, request.api_version)
    return make(cls, {"throttle_time": ZERO, "topics": topics})


def _epoch_check(current: int) -> KafkaErrorCode | None:
    if current < 0 or current == service.LEADER_EPOCH:
        return None
    if current > service.LEADER_EPOCH:
        return KafkaErrorCode.unknown_leader_epoch
    return KafkaErrorCode.fenced_leader_epoch  # pragma: no cover - epochs start at 0


def _fence(ctx: BrokerContext, topic: str, partition: int, current: int) -> KafkaErrorCode:
    """In a cluster: the partition must be led here, in the epoch the
    client's metadata gave (KIP-320); on a single node, epoch 0."""
    if ctx.replicas is None:
        return _epoch_check(current) or KafkaErrorCode.none
    try:
        ctx.replicas.check_readable(topic, partition, current)
    except BrokerError as exc:
        return kafka_error(exc)
    return KafkaErrorCode.none


def handle_offset_for_leader_epoch(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest
) -> Any:
    asked = [
        service.EpochEnd(t.topic, p.partition, p.leader_epoch)
        for t in request.body.topics
        for p in t.partitions
    ]
    service.end_offset_for_epoch(ctx, info, asked)
    it = iter(asked)
    topics = []
    for t in request.body.topics:
        parts = []
        for p in t.partitions:
            a = next(it)
            error = kafka_error(a.error)
            if a.error is None:
                error = _fence(ctx, t.topic, p.partition, p.current_leader_epoch)
            ok = error == KafkaErrorCode.none
            parts.append(
                {
                    "error_code": error,
                    "partition": a.partition,
                    "leader_epoch": a.end_epoch if ok else service.UNDEFINED_EPOCH,
                    "end_offset": a.end_offset if ok else service.UNDEFINED_OFFSET,
                }
            )
        topics.append({"topic": t.topic, "partitions": parts})
    cls = load_response_schema(request.api_key, request.api_version)
    return make(cls, {"throttle_time": ZERO, "topics": topics})
