"""The decisions one by one: truncation point, fencing, high watermark, ISR
changes, acks=all checks, leader election, the follower's epoch rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tailrace.broker.replication import (
    NO_LEADER,
    UNDEFINED_EPOCH,
    UNKNOWN_OFFSET,
    EpochEndOffset,
    FencedLeaderEpochError,
    FollowerState,
    LeaderEpochCache,
    LeaderState,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderOrFollowerError,
    OffsetNotAvailableError,
    PartitionState,
    UnknownLeaderEpochError,
    default_min_insync_replicas,
    diverging_epoch,
    elect_leader,
    remove_replica,
    request_epoch,
    truncation_point,
)
from tailrace.client.errors import BrokerError, ErrorCode, error_for_code

# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (NotLeaderOrFollowerError, 6),
        (NotEnoughReplicasError, 19),
        (NotEnoughReplicasAfterAppendError, 20),
        (FencedLeaderEpochError, 74),
        (UnknownLeaderEpochError, 75),
        (OffsetNotAvailableError, 78),
    ],
)
def test_errors_carry_kafkas_codes_and_are_retriable(cls: type[BrokerError], code: int):
    assert int(cls.code) == code
    assert cls.retriable
    assert type(error_for_code(ErrorCode(code))) is cls


# --- truncation point -------------------------------------------------------------


def c(*entries: tuple[int, int]) -> LeaderEpochCache:
    return LeaderEpochCache(entries)


def test_same_epoch_truncates_to_the_smaller_end():
    follower = c((0, 0), (1, 10))
    # the leader's epoch 1 ended at 15, the follower has 1 up to 20
    assert truncation_point(follower, 0, 20, EpochEndOffset(1, 15)) == (15, True)
    # the leader has more of epoch 1: nothing to cut
    assert truncation_point(follower, 0, 20, EpochEndOffset(1, 30)) == (20, True)


def test_unknown_leader_epoch_cuts_to_own_previous_epoch_and_asks_again():
    # follower saw epochs 0, 2, 3; the leader answers epoch 1 (it never had 2)
    follower = c((0, 0), (2, 10), (3, 20))
    state = truncation_point(follower, 0, 25, EpochEndOffset(1, 12))
    assert state == (10, False)
    follower.truncate_from_end(state.offset)
    assert request_epoch(follower) == 0


def test_undefined_answer_cuts_to_the_log_start_never_the_high_watermark():
    assert truncation_point(c(), 5, 9, EpochEndOffset(UNDEFINED_EPOCH, -1)) == (5, True)


def test_answer_below_every_follower_epoch_trusts_the_leader_offset():
    assert truncation_point(c((4, 10)), 0, 30, EpochEndOffset(4, 12)) == (12, True)
    assert truncation_point(c((4, 10)), 0, 30, EpochEndOffset(UNDEFINED_EPOCH, 7)) == (7, True)


def test_truncation_never_extends_the_log():
    assert truncation_point(c((0, 0)), 0, 3, EpochEndOffset(0, 10)) == (3, True)


# --- fencing and KIP-320 ------------------------------------------------------------


def leader(isr=(1, 2, 3), *, epoch=5, start=10, hw=8, lag=1000, min_isr=2, now=0) -> LeaderState:
    state = PartitionState((1, 2, 3), 1, epoch, tuple(isr), version=7)
    return LeaderState(
        state,
        version=state.version,
        replica_id=1,
        epoch_start_offset=start,
        high_watermark=hw,
        now_ms=now,
        replica_lag_time_max_ms=lag,
        min_insync_replicas=min_isr,
    )


def test_stale_and_future_epochs_are_fenced():
    ls = leader()
    ls.check_epoch(5)
    ls.check_epoch(UNDEFINED_EPOCH)
    with pytest.raises(FencedLeaderEpochError):
        ls.check_epoch(4)
    with pytest.raises(UnknownLeaderEpochError):
        ls.check_epoch(6)
    with pytest.raises(FencedLeaderEpochError):
        ls.on_follower_fetch(2, 10, 4, 0, 10)
    assert ls.followers[2].log_end_offset == UNKNOWN_OFFSET


def test_offset_for_epoch_answers_from_the_cache_after_fencing():
    ls = leader()
    cache = c((0, 0), (5, 10))
    assert ls.offset_for_epoch(cache, 12, 0, 5) == (0, 10)
    with pytest.raises(FencedLeaderEpochError):
        ls.offset_for_epoch(cache, 12, 0, 3)


def test_diverging_epoch():
    cache = c((0, 0), (3, 10), (5, 20))
    assert diverging_epoch(cache, 3, 10, 25) is None  # epoch 3 reaches 10
    assert diverging_epoch(cache, 3, 20, 25) is None
    assert diverging_epoch(cache, 5, 25, 25) is None
    # the follower wrote past the end of epoch 3 here (it was a leader then)
    assert diverging_epoch(cache, 3, 22, 25) == (3, 20)
    # an epoch this log never had
    assert diverging_epoch(cache, 4, 22, 25) == (3, 20)
    assert diverging_epoch(cache, UNDEFINED_EPOCH, 22, 25) is None


# --- high watermark ---------------------------------------------------------------


def test_hw_is_the_lowest_isr_leo_and_waits_for_unknown_followers():
    ls = leader(hw=8, start=10)
    assert not ls.update_high_watermark(12)  # followers unknown yet
    assert ls.on_follower_fetch(2, 11, 5, 1, 12) is False  # 3 still unknown
    assert ls.on_follower_fetch(3, 12, 5, 1, 12) is True
    assert ls.high_watermark == 11
    assert ls.on_follower_fetch(2, 12, 5, 2, 12)
    assert ls.high_watermark == 12


def test_hw_never_goes_down():
    ls = leader(isr=(1, 2), hw=8, start=8)
    ls.on_follower_fetch(2, 9, 5, 0, 9)
    assert ls.high_watermark == 9
    # a follower that truncated and refetches from lower does not lower it
    ls.on_follower_fetch(2, 4, 5, 0, 9)
    assert ls.high_watermark == 9


def test_new_leader_hw_is_not_served_until_established():
    ls = leader(isr=(1, 2), hw=6, start=10)
    assert ls.high_watermark == 6
    with pytest.raises(OffsetNotAvailableError):
        ls.served_high_watermark()
    ls.on_follower_fetch(2, 10, 5, 0, 10)
    assert ls.established
    assert ls.served_high_watermark() == 10


def test_fetch_beyond_the_log_end_is_refused():
    with pytest.raises(ValueError, match="above the log end"):
        leader().on_follower_fetch(2, 11, 5, 0, 10)
    with pytest.raises(ValueError, match="not a follower"):
        leader().on_follower_fetch(9, 1, 5, 0, 10)


# --- ISR ----------------------------------------------------------------------------


def test_lagging_follower_is_proposed_out_and_only_leaves_once_confirmed():
    ls = leader(isr=(1, 2, 3), hw=10, start=10, lag=100, now=0)
    ls.on_follower_fetch(2, 10, 5, 0, 10)
    ls.on_follower_fetch(3, 10, 5, 0, 10)
    # leader appends to 20; 2 keeps up, 3 stops fetching
    ls.on_follower_fetch(2, 20, 5, 50, 20)
    assert ls.propose_isr_change(100, 20, {1, 2, 3}) is None  # 3 lagged 100 ms, not more
    change = ls.propose_isr_change(101, 20, {1, 2, 3})
    assert change is not None
    assert change.kind == "shrink"
    assert change.replicas == (3,)
    assert change.new_isr == (1, 2)
    assert change.base_version == 7
    # in flight: the old ISR still counts and nothing else is proposed
    assert ls.maximal_isr == (1, 2, 3)
    assert not ls.update_high_watermark(20)
    assert ls.propose_isr_change(200, 20, {1, 2, 3}) is None
    ls.confirm_isr_change(change, 8)
    assert ls.isr == (1, 2)
    assert ls.version == 8
    assert ls.update_high_watermark(20)
    assert ls.high_watermark == 20


def test_failed_cas_keeps_the_isr():
    ls = leader(isr=(1, 2), hw=10, start=10, lag=10)
    change = ls.propose_isr_change(100, 12, {1, 2, 3})
    assert change is not None
    assert change.kind == "shrink"
    ls.abort_isr_change(change)
    assert ls.isr == (1, 2)
    assert ls.pending is None


def test_follower_caught_up_at_previous_fetch_stays_in_sync():
    ls = leader(isr=(1, 2), hw=10, start=10, lag=100)
    ls.on_follower_fetch(2, 10, 5, 0, 10)  # caught up at t=0
    ls.on_follower_fetch(2, 10, 5, 90, 30)  # leader grew to 30 meanwhile
    ls.on_follower_fetch(2, 30, 5, 180, 40)  # reached the LEO of the previous fetch (t=90)
    assert ls.followers[2].last_caught_up_ms == 90
    assert ls.out_of_sync(190, 40) == ()
    assert ls.out_of_sync(191, 40) == (2,)


def test_caught_up_live_follower_rejoins_at_once():
    ls = leader(isr=(1, 2), hw=10, start=10)
    ls.on_follower_fetch(2, 12, 5, 0, 12)
    ls.on_follower_fetch(3, 9, 5, 0, 12)  # below the HW (10)
    assert ls.propose_isr_change(0, 12, {1, 2, 3}) is None
    ls.on_follower_fetch(3, 12, 5, 0, 12)
    assert not ls.can_join(3, {1, 2})  # its broker is not registered
    change = ls.propose_isr_change(0, 12, {1, 2, 3})
    assert change is not None
    assert change.kind == "expand"
    assert change.new_isr == (1, 2, 3)
    assert ls.maximal_isr == (1, 2, 3)  # counts for the HW while in flight
    ls.confirm_isr_change(change, 9)
    assert ls.isr == (1, 2, 3)


def test_rejoin_needs_the_start_of_the_leaders_epoch():
    ls = leader(isr=(1, 2), hw=10, start=15)
    ls.on_follower_fetch(3, 12, 5, 0, 20)  # >= HW but below the epoch start
    assert not ls.can_join(3, {1, 2, 3})


def test_leader_is_never_shrunk_out():
    ls = leader(isr=(1,), hw=10, start=10, lag=1)
    assert ls.propose_isr_change(10_000, 50, {1}) is None


def test_confirming_a_change_not_in_flight_is_a_bug():
    ls = leader(isr=(1, 2), lag=1)
    change = ls.propose_isr_change(100, 12, {1, 2})
    assert change is not None
    ls.abort_isr_change(change)
    with pytest.raises(ValueError, match="not the ISR change in flight"):
        ls.confirm_isr_change(change, 9)


def test_controller_isr_update_in_the_same_epoch():
    ls = leader(isr=(1, 2, 3))
    ls.apply_state(PartitionState((1, 2, 3), 1, 5, (1, 2)), 12)
    assert ls.isr == (1, 2)
    assert ls.version == 12
    with pytest.raises(ValueError, match="another epoch"):
        ls.apply_state(PartitionState((1, 2, 3), 1, 6, (1, 2)), 13)


# --- acks=all -----------------------------------------------------------------------


def test_min_isr_refuses_before_append():
    ls = leader(isr=(1,), min_isr=2)
    with pytest.raises(NotEnoughReplicasError):
        ls.check_append(-1)
    ls.check_append(1)
    ls.check_append(0)
    leader(isr=(1, 2), min_isr=2).check_append(-1)


def test_acks_all_completes_at_the_hw_or_reports_the_shrink():
    ls = leader(isr=(1, 2), hw=10, start=10, lag=100, min_isr=2)
    ls.check_append(-1)
    assert not ls.acks_all_done(13)  # appended 10..12
    ls.on_follower_fetch(2, 13, 5, 0, 13)
    assert ls.acks_all_done(13)
    # another append; the follower stops; the ISR shrinks to the leader
    change = ls.propose_isr_change(500, 16, {1, 2})
    assert change is not None
    ls.confirm_isr_change(change, 8)
    ls.update_high_watermark(16)
    with pytest.raises(NotEnoughReplicasAfterAppendError):
        ls.acks_all_done(16)


def test_default_min_insync_replicas():
    assert [default_min_insync_replicas(rf) for rf in (1, 2, 3, 5)] == [1, 2, 2, 2]


# --- election -------------------------------------------------------------------------


def test_only_live_isr_members_lead_in_assignment_order():
    s = PartitionState((1, 2, 3), 1, 4, (1, 3), version=3)
    new = elect_leader(s, {2, 3})
    assert (new.leader, new.leader_epoch, new.isr) == (3, 5, (3,))
    assert new.version == 3  # the CAS compares the version it was read at


def test_no_live_isr_member_takes_the_partition_offline_keeping_the_isr():
    s = PartitionState((1, 2, 3), 1, 4, (1,))
    new = elect_leader(s, {2, 3})  # 2 and 3 are live but out of sync: never unclean
    assert new.leader == NO_LEADER
    assert new.isr == (1,)
    assert new.leader_epoch == 5
    assert not new.online
    back = elect_leader(new, {1, 2, 3})
    assert (back.leader, back.leader_epoch, back.isr) == (1, 6, (1,))


def test_reelecting_the_same_leader_bumps_the_epoch():
    s = PartitionState((1, 2), 1, 4, (1, 2))
    assert elect_leader(s, {1, 2}).leader_epoch == 5


def test_remove_replica():
    s = PartitionState((1, 2, 3), 1, 4, (1, 2, 3))
    assert remove_replica(s, 3, {1, 2}).isr == (1, 2)
    assert remove_replica(s, 3, {1, 2}).leader_epoch == 4
    moved = remove_replica(s, 1, {2, 3})
    assert (moved.leader, moved.leader_epoch, moved.isr) == (2, 5, (2, 3))
    last = PartitionState((1, 2), 2, 4, (2,))
    assert remove_replica(last, 1, {2}) is last
    gone = remove_replica(last, 2, {1})
    assert gone.leader == NO_LEADER
    assert gone.isr == (2,)


def test_partition_state_invariants():
    with pytest.raises(ValueError, match="never empty"):
        PartitionState((1, 2), NO_LEADER, 0, ())
    with pytest.raises(ValueError, match="not in the ISR"):
        PartitionState((1, 2), 2, 0, (1,))
    with pytest.raises(ValueError, match="subset"):
        PartitionState((1, 2), 1, 0, (1, 4))
    new = PartitionState.new([3, 1, 2])
    assert (new.leader, new.leader_epoch, new.isr) == (3, 0, (3, 1, 2))
    assert not new.under_replicated


# --- follower -------------------------------------------------------------------------


def test_every_epoch_change_means_truncation_even_with_the_same_leader():
    f = FollowerState(3)
    assert f.on_state(PartitionState((1, 2, 3), 1, 0, (1, 2, 3)))
    f.truncated()
    assert not f.on_state(PartitionState((1, 2, 3), 1, 0, (1, 3), version=2))
    assert not f.needs_truncation
    # KAFKA-7164: leader 1 again, in a new epoch
    assert f.on_state(PartitionState((1, 2, 3), 1, 2, (1, 3), version=3))
    assert f.needs_truncation
    with pytest.raises(ValueError, match="went back"):
        f.on_state(PartitionState((1, 2, 3), 1, 1, (1, 3)))
    with pytest.raises(ValueError, match="LeaderState"):
        f.on_state(PartitionState((1, 2, 3), 3, 4, (3,)))


def test_follower_hw_is_bounded_by_its_log_and_never_lowered():
    f = FollowerState(2, high_watermark=5)
    assert f.update_high_watermark(10, 8) == 8
    assert f.update_high_watermark(6, 12) == 8  # a new leader's lagging HW
    assert f.update_high_watermark(12, 12) == 12


def test_preferred_leader_when_it_is_a_live_isr_member():
    s = PartitionState((1, 2, 3), 1, 4, (1, 2, 3))
    assert elect_leader(s, {1, 2, 3}, prefer=2).leader == 2
    assert elect_leader(s, {1, 3}, prefer=2).leader == 1
    out = PartitionState((1, 2, 3), 1, 4, (1, 3))
    assert elect_leader(out, {1, 2, 3}, prefer=2).leader == 1  # 2 is out of sync


def test_hw_counts_only_the_leaders_synced_offset():
    ls = leader(isr=(1, 2), hw=10, start=10)
    assert ls.on_follower_fetch(2, 14, 5, 0, 14, leader_counted_offset=12)
    assert ls.high_watermark == 12


@dataclass(frozen=True)
class StoredState:
    """Shaped like the cluster's own state (broker/cluster/state.py): the
    four fields the decisions read, plus fields they must keep."""

    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int = 0
    leader_broker_epoch: int = 0


def test_decisions_take_any_state_with_the_four_fields():
    s = StoredState((1, 2, 3), 1, 4, (1, 2, 3), controller_epoch=9, leader_broker_epoch=77)
    moved = elect_leader(s, {2, 3})
    assert type(moved) is StoredState
    assert (moved.leader, moved.leader_epoch, moved.isr) == (2, 5, (2, 3))
    assert moved.controller_epoch == 9  # other fields kept: the caller updates them
    assert remove_replica(s, 3, {1, 2}).isr == (1, 2)
    ls = LeaderState(
        s,
        version=31,
        replica_id=1,
        epoch_start_offset=0,
        high_watermark=0,
        now_ms=0,
        replica_lag_time_max_ms=10,
        min_insync_replicas=2,
    )
    change = ls.propose_isr_change(100, 5, {1, 2, 3})
    assert change is not None
    assert change.base_version == 31
    assert change.apply(s) == StoredState((1, 2, 3), 1, 4, (1,), 9, 77)
    with pytest.raises(ValueError, match="stale"):
        change.apply(moved)
    FollowerState(3).on_state(s)
