"""Replication decisions, sans-I/O: no trio, no sockets, no cluster store.

The leader-epoch cache (:mod:`.epochs`), the follower's truncation point
(:mod:`.truncation`, KIP-101 + KIP-279), the follower's epoch-change rule
and high watermark (:mod:`.follower`, KAFKA-7164), the leader's high
watermark, fencing, ISR changes and acks=all checks (:mod:`.leader`), and the
controller's leader election (:mod:`.election`). The broker's I/O layers
call these and act on their answers; tests replay Kafka's divergence
scenarios through them deterministically (tests/replication). The rules and
what is wired into the running broker: docs/replication.md.
"""

from tailrace.client.errors import (
    FencedLeaderEpochError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderOrFollowerError,
    OffsetNotAvailableError,
    UnknownLeaderEpochError,
)

from .election import (
    NO_LEADER,
    PartitionState,
    ReplicaState,
    default_min_insync_replicas,
    elect_leader,
    remove_replica,
)
from .epochs import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    EpochEndOffset,
    EpochEntry,
    LeaderEpochCache,
)
from .follower import FollowerState
from .leader import (
    UNKNOWN_OFFSET,
    FollowerProgress,
    IsrChange,
    LeaderState,
    check_leader_epoch,
    diverging_epoch,
)
from .truncation import TruncationState, request_epoch, truncation_point

__all__ = [
    "NO_LEADER",
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "UNKNOWN_OFFSET",
    "EpochEndOffset",
    "EpochEntry",
    "FencedLeaderEpochError",
    "FollowerProgress",
    "FollowerState",
    "IsrChange",
    "LeaderEpochCache",
    "LeaderState",
    "NotEnoughReplicasAfterAppendError",
    "NotEnoughReplicasError",
    "NotLeaderOrFollowerError",
    "OffsetNotAvailableError",
    "PartitionState",
    "ReplicaState",
    "TruncationState",
    "UnknownLeaderEpochError",
    "check_leader_epoch",
    "default_min_insync_replicas",
    "diverging_epoch",
    "elect_leader",
    "remove_replica",
    "request_epoch",
    "truncation_point",
]
