"""The controller's rules, sans I/O: placement, leader election, ISR shrink."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailrace.broker.cluster.decisions import NotEnoughBrokers, assign_replicas, plan, reelect
from tailrace.broker.cluster.state import (
    NO_LEADER,
    BrokerInfo,
    ClusterView,
    PartitionState,
    TopicSpec,
)


def view(live: list[int], topics=(), partitions=None) -> ClusterView:
    return ClusterView(
        revision=10,
        brokers={n: BrokerInfo(n, f"127.0.0.1:{7420 + n}", epoch=n) for n in live},
        controller=None,
        topics={t.name: t for t in topics},
        partitions=partitions or {},
    )


def test_replicas_are_spread_round_robin_over_live_brokers() -> None:
    assert assign_replicas(4, 3, [3, 1, 2]) == [(1, 2, 3), (2, 3, 1), (3, 1, 2), (1, 2, 3)]
    assert assign_replicas(2, 1, [5, 7], start=1) == [(7,), (5,)]


@given(
    brokers=st.sets(st.integers(0, 50), min_size=1, max_size=8),
    partitions=st.integers(1, 40),
    data=st.data(),
)
def test_every_partition_gets_distinct_replicas_and_leaders_are_balanced(
    brokers: set[int], partitions: int, data: st.DataObject
) -> None:
    rf = data.draw(st.integers(1, len(brokers)))
    start = data.draw(st.integers(0, 100))
    assignment = assign_replicas(partitions, rf, sorted(brokers), start)
    assert len(assignment) == partitions
    for replicas in assignment:
        assert len(set(replicas)) == rf
        assert set(replicas) <= brokers
    leaders = [r[0] for r in assignment]
    counts = [leaders.count(b) for b in brokers]
    assert max(counts) - min(counts) <= 1


def test_a_replication_factor_above_the_live_brokers_is_refused() -> None:
    with pytest.raises(NotEnoughBrokers):
        assign_replicas(1, 3, [1, 2])


def test_a_new_topic_is_placed_with_epoch_zero_and_a_full_isr() -> None:
    changes, waiting = plan(view([1, 2, 3], [TopicSpec("t", 2, 3)]), controller_epoch=7)
    assert waiting == []
    assert [(c.topic, c.partition, c.expected_revision) for c in changes] == [
        ("t", 0, 0),
        ("t", 1, 0),
    ]
    for c in changes:
        assert c.new.leader == c.new.replicas[0]
        assert c.new.isr == c.new.replicas
        assert c.new.leader_epoch == 0
        assert c.new.controller_epoch == 7
        assert c.new.leader_broker_epoch == c.new.leader  # view(): epoch == node id


def test_a_topic_waits_while_too_few_brokers_are_alive() -> None:
    changes, waiting = plan(view([1], [TopicSpec("t", 1, 3)]), controller_epoch=1)
    assert (changes, waiting) == ([], ["t"])


def test_a_dead_leader_is_replaced_by_the_first_live_isr_replica_with_a_new_epoch() -> None:
    state = PartitionState((1, 2, 3), leader=1, leader_epoch=4, isr=(1, 3))
    new = reelect(state, {2: 20, 3: 30}, controller_epoch=9)
    # 2 is a live replica but not in sync: never elected (no unclean election)
    assert (new.leader, new.leader_epoch, new.isr, new.controller_epoch) == (3, 5, (3,), 9)
    assert new.leader_broker_epoch == 30


def test_a_restarted_leader_is_elected_anew_in_a_new_leader_epoch() -> None:
    # the node id never looked dead to the controller, but its broker epoch
    # changed: the process that led is gone, and with it what it held in memory
    state = PartitionState((1, 2), leader=1, leader_epoch=4, isr=(1, 2), leader_broker_epoch=10)
    assert reelect(state, {1: 10, 2: 20}, controller_epoch=9) == state
    new = reelect(state, {1: 55, 2: 20}, controller_epoch=9)
    assert (new.leader, new.leader_epoch, new.leader_broker_epoch) == (1, 5, 55)


def test_a_dead_follower_leaves_the_isr_without_an_epoch_change() -> None:
    state = PartitionState((1, 2, 3), leader=1, leader_epoch=4, isr=(1, 2, 3))
    new = reelect(state, {1: 10, 3: 30}, controller_epoch=9)
    assert (new.leader, new.leader_epoch, new.isr) == (1, 4, (1, 3))


def test_with_no_live_isr_member_the_partition_goes_offline_keeping_its_isr() -> None:
    state = PartitionState((1, 2, 3), leader=1, leader_epoch=4, isr=(1, 2))
    offline = reelect(state, {3: 30}, controller_epoch=9)
    assert (offline.leader, offline.leader_epoch, offline.isr) == (NO_LEADER, 5, (1, 2))
    # nothing changes while none of them is back
    assert reelect(offline, {3: 30}, controller_epoch=9) == offline
    # an in-sync replica that comes back leads again, in a new epoch
    back = reelect(offline, {2: 21, 3: 30}, controller_epoch=10)
    assert (back.leader, back.leader_epoch, back.isr) == (2, 6, (2,))


def test_the_unclean_election_fault_seam_lets_an_out_of_sync_replica_lead(monkeypatch) -> None:
    """Test-only (TAILRACE_FAULT_UNCLEAN_ELECTION): the rule switched off
    for the harness's negative control; off, the same state stays offline."""
    from tailrace.broker.cluster import decisions

    state = PartitionState((1, 2, 3), leader=1, leader_epoch=4, isr=(1, 2))
    assert not decisions.UNSAFE_UNCLEAN_ELECTION
    assert reelect(state, {3: 30}, controller_epoch=9).leader == NO_LEADER
    monkeypatch.setattr(decisions, "UNSAFE_UNCLEAN_ELECTION", True)
    unclean = reelect(state, {3: 30}, controller_epoch=9)
    assert (unclean.leader, unclean.leader_epoch, unclean.isr) == (3, 5, (3,))
    assert unclean.leader_broker_epoch == 30
    # with an ISR member alive it changes nothing
    assert reelect(state, {2: 20, 3: 30}, controller_epoch=9).leader == 2


def test_a_healthy_cluster_needs_no_writes() -> None:
    state = PartitionState((1, 2), leader=1, leader_epoch=0, isr=(1, 2), leader_broker_epoch=1)
    v = view([1, 2], [TopicSpec("t", 1, 2)], {("t", 0): (state, 33)})
    assert plan(v, controller_epoch=1) == ([], [])
    changes, _ = plan(view([2], [TopicSpec("t", 1, 2)], {("t", 0): (state, 33)}), 2)
    (change,) = changes
    assert change.expected_revision == 33  # CAS on the revision the decision read
    assert (change.new.leader, change.new.leader_epoch) == (2, 1)


@given(
    replicas=st.lists(st.integers(0, 6), min_size=1, max_size=5, unique=True),
    data=st.data(),
)
def test_reelection_never_empties_the_isr_nor_elects_outside_it(
    replicas: list[int], data: st.DataObject
) -> None:
    isr = tuple(r for r in replicas if data.draw(st.booleans())) or (replicas[0],)
    leader = data.draw(st.sampled_from([*isr, NO_LEADER]))
    state = PartitionState(tuple(replicas), leader, 3, isr)
    live = {n: 100 + n for n in data.draw(st.sets(st.integers(0, 6)))}
    new = reelect(state, live, controller_epoch=1)
    assert new.isr
    assert set(new.isr) <= set(state.isr)
    assert new.leader == NO_LEADER or (new.leader in state.isr and new.leader in live)
    assert new.leader_epoch >= state.leader_epoch
    if new.leader != state.leader:
        assert new.leader_epoch == state.leader_epoch + 1
