"""What a follower decides: when to truncate, and its high watermark.

A :class:`FollowerState` per partition this broker follows. Its one rule
that matters most is KAFKA-7164: *every* change of the leader epoch sends the
follower back to truncation (OffsetForLeaderEpoch, see truncation.py), also
when the new epoch has the same leader as the old one. Skipping truncation
when the leader id did not change left replicas holding different records at
the same offsets (a leader that lost its tail and was re-elected).
"""

from __future__ import annotations

from .election import NO_LEADER, ReplicaState
from .epochs import UNDEFINED_EPOCH

__all__ = ["FollowerState"]


class FollowerState:
    """A follower's view of one partition: the leader and epoch it follows,
    whether it must truncate before fetching, its high watermark."""

    __slots__ = ("high_watermark", "leader", "leader_epoch", "needs_truncation", "replica_id")

    def __init__(self, replica_id: int, high_watermark: int = 0) -> None:
        self.replica_id = replica_id
        self.leader = NO_LEADER
        self.leader_epoch = UNDEFINED_EPOCH
        self.needs_truncation = True
        #: reads stop below this (never lowered; see update_high_watermark)
        self.high_watermark = high_watermark

    def on_state(self, state: ReplicaState) -> bool:
        """A partition state from the cluster store in which this broker is a
        follower. Returns True when the epoch changed: stop fetching and
        truncate (needs_truncation) before the next fetch."""
        if state.leader == self.replica_id:
            raise ValueError(f"broker {self.replica_id} leads in {state}: use LeaderState")
        if state.leader_epoch == self.leader_epoch:
            return False
        if state.leader_epoch < self.leader_epoch:
            raise ValueError(f"epoch went back from {self.leader_epoch} to {state.leader_epoch}")
        self.leader = state.leader
        self.leader_epoch = state.leader_epoch
        self.needs_truncation = True
        return True

    def truncated(self) -> None:
        """The truncation exchange finished: fetching may start."""
        self.needs_truncation = False

    def update_high_watermark(self, leader_high_watermark: int, log_end_offset: int) -> int:
        """From a fetch response: min(leader's watermark, own log end), never
        below the watermark already held (a new leader's watermark may lag
        the one this follower heard from the old leader; the records below
        it are committed and the new leader holds them)."""
        hw = min(leader_high_watermark, log_end_offset)
        if hw > self.high_watermark:
            self.high_watermark = hw
        return self.high_watermark
