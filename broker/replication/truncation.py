"""Where a follower cuts its log after a leader-epoch change (KIP-101, KIP-279).

On *every* change of the partition's leader epoch -- also when the leader
stays the same broker (KAFKA-7164) -- a follower stops fetching and runs
this exchange until it is done:

1. ``epoch = request_epoch(cache)``: its latest epoch.
2. It sends OffsetForLeaderEpoch(epoch, current_leader_epoch) to the
   leader, which answers ``leader_cache.end_offset_for(epoch, leader_leo)``
   (see :func:`~tailrace.broker.replication.leader.LeaderState.offset_for_epoch`).
3. ``state = truncation_point(cache, log_start, log_end, answer)``; it
   truncates its log to ``state.offset`` and its cache with
   ``cache.truncate_from_end(state.offset)`` -- the cache *also when the log
   holds nothing past the offset*: a replica that became leader and wrote
   nothing before losing the leadership holds an entry starting at its log
   end, and without removing it the next round asks for the same epoch
   forever (Kafka's UnifiedLog.truncateTo has the same rule and comment).
   When ``state.done`` is False it asks again with
   ``request_epoch(cache)`` -- the epoch it asks for is now lower -- and
   repeats until the answer names an epoch it holds (KIP-279: after
   several quick leader changes the first answer may name an epoch this
   follower never saw).
4. It fetches from ``state.offset``.

The high watermark plays no part: truncating to it loses records that were
committed after the follower last heard the watermark (KIP-101 scenario 1)
and does not remove records written at the same offsets by another leader
(scenario 2).

One deliberate difference from Kafka: when the leader answers with an
undefined end offset (the follower asked with no epoch, or with one the
leader has never heard of), Kafka falls back to the follower's high
watermark. tailrace cuts to the log start instead (the whole log is fetched
again): slower, never wrong. Every batch tailrace writes carries its epoch,
so a follower with data always has epochs and this only happens to an empty
log, where the two agree.
"""

from __future__ import annotations

from typing import NamedTuple

from .epochs import UNDEFINED_EPOCH, EpochEndOffset, LeaderEpochCache

__all__ = ["TruncationState", "request_epoch", "truncation_point"]


class TruncationState(NamedTuple):
    """Cut the log to end at ``offset``; ``done`` is False when another
    OffsetForLeaderEpoch round is needed (with the new latest epoch)."""

    offset: int
    done: bool


def request_epoch(cache: LeaderEpochCache) -> int:
    """The epoch a follower sends in OffsetForLeaderEpoch: its latest one."""
    return cache.latest_epoch


def truncation_point(
    cache: LeaderEpochCache,
    log_start_offset: int,
    log_end_offset: int,
    answer: EpochEndOffset,
) -> TruncationState:
    """Kafka's ``AbstractFetcherThread.getOffsetTruncationState``, without
    its high-watermark fallback (see the module docstring).

    ``cache``, ``log_start_offset`` and ``log_end_offset`` describe the
    follower's log; ``answer`` is the leader's reply to the epoch from
    :func:`request_epoch`. The offset returned is never above
    ``log_end_offset`` (truncation only cuts).
    """
    if answer.undefined:
        return TruncationState(min(log_start_offset, log_end_offset), True)
    if answer.epoch == UNDEFINED_EPOCH:
        # an old-protocol answer without an epoch: trust the leader's offset
        return TruncationState(min(answer.end_offset, log_end_offset), True)
    mine = cache.end_offset_for(answer.epoch, log_end_offset)
    if mine.undefined:
        # the leader's epoch is below every epoch this follower holds: all of
        # this follower's epochs are unknown to the leader past its offset
        return TruncationState(min(answer.end_offset, log_end_offset), True)
    if mine.epoch != answer.epoch:
        # the follower never saw the leader's epoch: cut to the end of its own
        # largest epoch below it and ask again with that one (KIP-279)
        return TruncationState(min(mine.end_offset, log_end_offset), False)
    return TruncationState(min(mine.end_offset, answer.end_offset, log_end_offset), True)
