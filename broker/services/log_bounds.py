"""A partition's boundaries, one copy for both front-ends: moving its start
(DeleteRecords) and the end offset of a leader epoch (OffsetForLeaderEpoch).

* **DeleteRecords** needs ``delete`` on the topic (Kafka's rule); the
  broker's own topics (``__`` prefix) are refused with INVALID_TOPIC, as
  Kafka refuses its internal ones. ``-1`` means "up to the high watermark";
  an offset above it is OFFSET_OUT_OF_RANGE; the answer is the new low
  watermark (:meth:`..log.partition.PartitionLog.delete_records` keeps it
  across restarts).
* **Leader epochs.** :func:`end_offset_for_epoch` answers from the
  partition's leader-epoch cache
  (:meth:`..log.partition.PartitionLog.end_offset_for_epoch`, Kafka's
  ``endOffsetFor``). A single broker leads every partition in epoch 0 from
  its first record on, so a log with records answers as a cache holding
  (0, log start) would: epoch 0 ends at the log end offset; an unknown epoch
  (-1) or one above 0 gives (-1, -1); an epoch below 0's first entry gives
  (that epoch, the log start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tailrace.client.errors import BrokerError

from ..security.authz import DELETE, DESCRIBE, TOPIC
from .topics import check_allowed, partition_for_fetch, refuse_internal

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..server.connection import ConnectionInfo

__all__ = [
    "LEADER_EPOCH",
    "UNDEFINED_EPOCH",
    "DeleteRecords",
    "EpochEnd",
    "delete_records",
    "end_offset_for_epoch",
]

#: the leader epoch of every partition on a single broker
LEADER_EPOCH = 0
#: Kafka's "no epoch" and "no offset" answers
UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


@dataclass(slots=True)
class DeleteRecords:
    topic: str
    partition: int
    #: delete every record below this offset (-1: the high watermark)
    offset: int
    #: filled by delete_records
    error: BrokerError | None = None
    low_watermark: int = -1


async def delete_records(
    ctx: BrokerContext, info: ConnectionInfo, requests: list[DeleteRecords]
) -> list[DeleteRecords]:
    """Apply each request in order; each carries its error or new low watermark."""
    for r in requests:
        try:
            check_allowed(ctx, info, DELETE, TOPIC, r.topic)
            refuse_internal(r.topic, "delete records of")
            plog = partition_for_fetch(ctx, r.topic, r.partition)
            r.low_watermark = await plog.delete_records(r.offset)
        except BrokerError as exc:
            r.error = exc
    return requests


@dataclass(slots=True)
class EpochEnd:
    topic: str
    partition: int
    #: the epoch asked about
    leader_epoch: int
    error: BrokerError | None = None
    #: filled by end_offset_for_epoch
    end_epoch: int = UNDEFINED_EPOCH
    end_offset: int = UNDEFINED_OFFSET


def end_offset_for_epoch(ctx: BrokerContext, info: ConnectionInfo, asked: list[EpochEnd]) -> None:
    """Fill each :class:`EpochEnd` (module docstring); needs ``describe`` on
    the topic."""
    for a in asked:
        try:
            check_allowed(ctx, info, DESCRIBE, TOPIC, a.topic)
            plog = partition_for_fetch(ctx, a.topic, a.partition)
        except BrokerError as exc:
            a.error = exc
            continue
        answer = plog.end_offset_for_epoch(a.leader_epoch)
        a.end_epoch, a.end_offset = answer.epoch, answer.end_offset
