"""The classic (JoinGroup/SyncGroup) group state machine on its own: explicit
clock values, no I/O. Scenario tests for each rule of Kafka's protocol, then
Hypothesis over random sequences of joins, syncs, heartbeats, leaves,
static restarts and clock jumps checking the invariants: generations only
increase, one leader per generation and it is a member of it, and a
member's SyncGroup answer is exactly what the leader assigned to it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailrace.broker.coordinator.classic import (
    COMPLETING,
    DEAD,
    EMPTY,
    PREPARING,
    STABLE,
    ClassicGroup,
    JoinParams,
    JoinResult,
    SyncResult,
)
from tailrace.client.errors import (
    CoordinatorNotAvailableError,
    FencedInstanceIdError,
    GroupMaxSizeReachedError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    MemberIdRequiredError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

RANGE = ("range", b"range-meta")
ROUNDROBIN = ("roundrobin", b"rr-meta")


def group(max_size: int = 100) -> ClassicGroup:
    counter = itertools.count(1)
    return ClassicGroup("g", max_size=max_size, new_member_id=lambda client: f"m{next(counter)}")


def params(member_id: str = "", **kw) -> JoinParams:
    values = {
        "member_id": member_id,
        "instance_id": None,
        "protocol_type": "consumer",
        "protocols": (RANGE, ROUNDROBIN),
        "session_timeout_ms": 10_000,
        "rebalance_timeout_ms": 30_000,
    }
    values.update(kw)
    return JoinParams(**values)


def joined(waiter) -> JoinResult:
    assert waiter.done
    assert isinstance(waiter.result, JoinResult)
    return waiter.result


def synced(waiter) -> SyncResult:
    assert waiter.done
    assert isinstance(waiter.result, SyncResult)
    return waiter.result


def stable_group_of_two() -> tuple[ClassicGroup, str, str]:
    g = group()
    a = joined(g.join(params(), 0.0))
    assert a.error is None
    assert a.generation == 1
    assert a.leader_id == a.member_id
    # b joins: a rebalance; a's rejoin completes it
    wb = g.join(params(), 1.0)
    assert g.state == PREPARING
    assert not wb.done
    wa = g.join(params(a.member_id), 1.5)
    ra, rb = joined(wa), joined(wb)
    assert ra.generation == rb.generation == 2
    assert ra.leader_id == rb.leader_id == a.member_id
    assert [m for m, _, _ in ra.members] == [a.member_id, rb.member_id]
    assert rb.members == ()
    sb = g.sync(rb.member_id, None, 2, {}, 2.0)
    assert not sb.done
    assert g.state == COMPLETING
    sa = g.sync(a.member_id, None, 2, {a.member_id: b"A", rb.member_id: b"B"}, 2.0)
    assert synced(sa).assignment == b"A"
    assert synced(sb).assignment == b"B"
    assert g.state == STABLE
    return g, a.member_id, rb.member_id


def test_first_joiner_leads_and_assignments_reach_exactly_their_member():
    g, a, b = stable_group_of_two()
    assert g.leader_id == a
    assert g.protocol == "range"
    # a follower's SyncGroup in Stable gets its own assignment back
    assert synced(g.sync(b, None, 2, {b: b"forged"}, 3.0)).assignment == b"B"
    # heartbeats are fine while stable
    g.heartbeat(b, None, 2, 3.0)


def test_member_id_required_from_v4_then_join_with_the_given_id():
    g = group()
    first = joined(g.join(params(require_known_member_id=True), 0.0))
    assert isinstance(first.error, MemberIdRequiredError)
    assert first.member_id == "m1"
    assert g.state == EMPTY
    assert "m1" in g.pending
    second = joined(g.join(params("m1", require_known_member_id=True), 0.1))
    assert second.error is None
    assert second.member_id == "m1"
    assert second.generation == 1
    assert not g.pending


def test_pending_member_id_expires_after_the_session_timeout():
    g = group()
    g.join(params(require_known_member_id=True), 0.0)
    assert g.next_deadline() == pytest.approx(10.0)
    g.tick(10.0)
    assert not g.pending
    with pytest.raises(UnknownMemberIdError):
        g.join(params("m1"), 10.1)


def test_held_join_completes_at_the_rebalance_timeout_and_drops_who_did_not_rejoin():
    g, a, b = stable_group_of_two()
    # a new member joins; a rejoins; b keeps heartbeating but never rejoins
    wc = g.join(params(), 5.0)
    wa = g.join(params(a), 5.1)
    assert not wc.done
    assert not wa.done
    for t in (9.0, 18.0, 27.0):
        with pytest.raises(RebalanceInProgressError):
            g.heartbeat(b, None, 2, t)
        g.tick(t)
    assert g.next_deadline() == pytest.approx(35.0)  # the longest rebalance timeout
    g.tick(34.9)
    assert not wc.done
    g.tick(35.0)
    ra, rc = joined(wa), joined(wc)
    assert ra.generation == rc.generation == 3
    assert {m for m, _, _ in ra.members} == {a, rc.member_id}
    assert b not in g.members
    with pytest.raises(UnknownMemberIdError):
        g.heartbeat(b, None, 2, 35.1)


def test_a_silent_member_that_does_not_rejoin_is_dropped_at_its_session_timeout():
    g, a, b = stable_group_of_two()
    wc = g.join(params(), 5.0)
    wa = g.join(params(a), 5.1)
    assert g.next_deadline() == pytest.approx(12.0)  # b synced at 2.0, 10 s sessions
    g.tick(12.0)
    assert joined(wa).generation == joined(wc).generation == 3
    assert b not in g.members


def test_heartbeat_errors_in_kafka_order():
    g, _a, b = stable_group_of_two()
    with pytest.raises(UnknownMemberIdError):
        g.heartbeat("nobody", None, 2, 3.0)
    with pytest.raises(IllegalGenerationError):
        g.heartbeat(b, None, 1, 3.0)
    g.join(params(), 3.0)  # a third member: rebalance
    with pytest.raises(RebalanceInProgressError):
        g.heartbeat(b, None, 2, 3.1)
    with pytest.raises(RebalanceInProgressError):
        g.sync(b, None, 2, {}, 3.1)


def test_session_timeout_removes_a_silent_member_and_rebalances():
    g, a, b = stable_group_of_two()
    g.heartbeat(a, None, 2, 9.0)  # a keeps its session; b's ends at 12.0
    assert g.next_deadline() == pytest.approx(12.0)
    g.tick(12.0)
    assert b not in g.members
    assert g.state == PREPARING
    # a is asked to rejoin and is alone: the rebalance completes on its join
    ra = joined(g.join(params(a), 12.5))
    assert ra.generation == 3
    assert [m for m, _, _ in ra.members] == [a]


def test_a_leader_silent_after_its_sync_is_dropped_and_the_rest_take_everything():
    """The kafka-python 3 matrix flake, as the broker saw it (its log): the
    leader's SyncGroup was answered, then its client stopped (its I/O thread
    never heartbeated again: a client-side stall, see docs/kafka.md). The
    group must not wait for it beyond its session: the others are told to
    rejoin, the next joiner leads a generation without it, and the silent
    member, should it wake, is told it is unknown (so it rejoins)."""
    g = group()
    a = joined(g.join(params(session_timeout_ms=6_000), 0.0)).member_id
    g.sync(a, None, 1, {a: b"all"}, 0.1)
    wb = g.join(params(session_timeout_ms=6_000), 1.0)
    wc = g.join(params(session_timeout_ms=6_000), 1.0)
    ra = joined(g.join(params(a, session_timeout_ms=6_000), 1.1))
    b, c = joined(wb).member_id, joined(wc).member_id
    assert ra.generation == 2
    assert len(ra.members) == 3
    sb, sc = g.sync(b, None, 2, {}, 1.2), g.sync(c, None, 2, {}, 1.2)
    g.sync(a, None, 2, {a: b"0", b: b"1", c: b"2"}, 1.2)  # ... then a falls silent
    assert (synced(sb).assignment, synced(sc).assignment) == (b"1", b"2")
    for t in (3.0, 5.0, 7.0):  # b and c heartbeat; a does not
        g.heartbeat(b, None, 2, t)
        g.heartbeat(c, None, 2, t)
        g.tick(t)
    assert a in g.members
    g.tick(7.25)  # a's session (from its SyncGroup at 1.2) ended at 7.2
    assert a not in g.members
    assert g.state == PREPARING
    with pytest.raises(RebalanceInProgressError):
        g.heartbeat(b, None, 2, 7.3)
    wb = g.join(params(b, session_timeout_ms=6_000), 7.4)
    rc = joined(g.join(params(c, session_timeout_ms=6_000), 7.4))
    rb = joined(wb)
    assert rb.generation == rc.generation == 3
    assert rb.leader_id == b  # the earliest joiner still present
    assert [m for m, _, _ in rb.members] == [b, c]
    with pytest.raises(UnknownMemberIdError):
        g.heartbeat(a, None, 2, 8.0)


def test_leader_leaving_hands_leadership_to_the_next_joiner():
    g, a, b = stable_group_of_two()
    assert g.leave([(a, None)], 3.0) == [None]
    assert g.leader_id == b
    assert g.state == PREPARING
    rb = joined(g.join(params(b), 3.1))
    assert rb.leader_id == b
    assert rb.generation == 3


def test_last_member_leaving_empties_the_group_and_bumps_the_generation():
    g, a, b = stable_group_of_two()
    assert g.leave([(a, None), (b, None), ("ghost", None)], 3.0)[:2] == [None, None]
    assert g.state == EMPTY
    assert not g.members
    assert g.generation == 3
    assert g.protocol_type == "consumer"  # kept for ListGroups, as Kafka does


def test_follower_rejoining_a_stable_group_unchanged_causes_no_rebalance():
    g, _a, b = stable_group_of_two()
    rb = joined(g.join(params(b), 3.0))
    assert rb.generation == 2
    assert g.state == STABLE
    # with different protocols it does
    w = g.join(params(b, protocols=(ROUNDROBIN,)), 3.1)
    assert not w.done
    assert g.state == PREPARING


def test_leader_rejoining_right_after_its_sync_starts_a_generation_with_the_same_members():
    """The broker's side of the kafka-python 3.0.12 group-of-three flake
    (issue 14; docs/kafka.md, "Client quirks met on the way"), replayed
    from the request trace of a failing run: the leader's SyncGroup is
    answered, then the same leader sends JoinGroup again (its client threw
    the completed join away) while the followers, who hold their
    assignment, keep heartbeating. As in Kafka's GroupCoordinator, a
    leader's rejoin of a Stable group starts a rebalance (a follower's
    unchanged rejoin would not: the test above); the followers hear
    REBALANCE_IN_PROGRESS on their next heartbeat, rejoin, and the next
    generation has the same members and leader, each synced its own
    assignment again. Nothing is lost on the broker: what the members
    read across it is the client's business."""
    g, a, b = stable_group_of_two()
    w_leader = g.join(params(a), 2.1)  # right after its sync, nothing changed
    assert not w_leader.done
    assert g.state == PREPARING
    with pytest.raises(RebalanceInProgressError):
        g.heartbeat(b, None, 2, 2.3)
    w_b = g.join(params(b), 2.4)
    ra, rb = joined(w_leader), joined(w_b)
    assert ra.error is None
    assert rb.error is None
    assert ra.generation == rb.generation == 3
    assert ra.leader_id == rb.leader_id == a
    assert [m for m, _, _ in ra.members] == [a, b]
    sb = g.sync(b, None, 3, {}, 2.5)
    sa = g.sync(a, None, 3, {a: b"A", b: b"B"}, 2.5)
    assert synced(sa).assignment == b"A"
    assert synced(sb).assignment == b"B"
    assert g.state == STABLE
    g.heartbeat(b, None, 3, 2.6)  # the followers are members of it
    with pytest.raises(IllegalGenerationError):
        g.heartbeat(b, None, 2, 2.7)


def test_protocol_choice_is_what_every_member_supports():
    g = group()
    joined(g.join(params(protocols=(RANGE, ROUNDROBIN)), 0.0))
    wb = g.join(params(protocols=(ROUNDROBIN,)), 0.1)
    ra = joined(g.join(params("m1", protocols=(RANGE, ROUNDROBIN)), 0.2))
    assert joined(wb).protocol_name == ra.protocol_name == "roundrobin"
    assert dict((m, md) for m, _, md in ra.members) == {"m1": b"rr-meta", "m2": b"rr-meta"}
    with pytest.raises(InconsistentGroupProtocolError):
        g.join(params(protocols=(RANGE,)), 0.3)
    with pytest.raises(InconsistentGroupProtocolError):
        g.join(params(protocol_type="connect"), 0.3)


def test_static_member_restart_takes_its_place_without_rebalance():
    g = group()
    a = joined(g.join(params(instance_id="ia"), 0.0)).member_id
    wb = g.join(params(instance_id="ib"), 0.1)
    joined(g.join(params(a, instance_id="ia"), 0.2))
    b = joined(wb).member_id
    g.sync(b, "ib", 2, {}, 0.3)
    g.sync(a, "ia", 2, {a: b"A", b: b"B"}, 0.3)
    assert g.state == STABLE
    # b restarts: empty member id, same instance id, same protocols
    nb = joined(g.join(params(instance_id="ib"), 1.0))
    assert nb.error is None
    assert nb.generation == 2
    assert nb.member_id != b
    assert g.state == STABLE
    assert synced(g.sync(nb.member_id, "ib", 2, {}, 1.1)).assignment == b"B"
    # the old member id is fenced
    with pytest.raises(FencedInstanceIdError):
        g.heartbeat(b, "ib", 2, 1.2)
    outcome = g.leave([(b, "ib")], 1.3)[0]
    assert isinstance(outcome, FencedInstanceIdError)
    # leaving by instance id alone (LeaveGroup v3+)
    assert g.leave([("", "ib")], 1.4) == [None]
    assert nb.member_id not in g.members


def test_static_leader_restart_rebalances():
    g = group()
    a = joined(g.join(params(instance_id="ia"), 0.0)).member_id
    g.sync(a, "ia", 1, {a: b"A"}, 0.1)
    w = g.join(params(instance_id="ia"), 1.0)
    r = joined(w)  # alone: the rebalance completes at once
    assert r.generation == 2
    assert r.leader_id == r.member_id != a


def test_group_max_size_counts_pending_members():
    g = group(max_size=2)
    g.join(params(require_known_member_id=True), 0.0)
    g.join(params(), 0.0)
    with pytest.raises(GroupMaxSizeReachedError):
        g.join(params(), 0.0)


def test_members_that_do_not_sync_in_time_are_removed():
    g = group()
    a = joined(g.join(params(), 0.0)).member_id
    wb = g.join(params(), 1.0)
    joined(g.join(params(a), 1.0))
    b = joined(wb).member_id
    sb = g.sync(b, None, 2, {}, 1.1)
    # the leader heartbeats (fine while completing) but never syncs: at the
    # rebalance timeout it is removed; b's held SyncGroup keeps b in
    for t in (10.0, 20.0, 29.0):
        g.heartbeat(a, None, 2, t)
        g.tick(t)
    assert not sb.done
    g.tick(31.0)
    assert a not in g.members
    assert isinstance(synced(sb).error, RebalanceInProgressError)
    assert g.state == PREPARING
    assert g.leader_id == b


def test_commit_rules():
    g, a, b = stable_group_of_two()
    g.check_commit(2, b, None, 3.0)
    with pytest.raises(UnknownMemberIdError):
        g.check_commit(-1, "", None, 3.0)  # simple commits only while empty
    with pytest.raises(IllegalGenerationError):
        g.check_commit(1, b, None, 3.0)
    g.leave([(a, None), (b, None)], 4.0)
    g.check_commit(-1, "", None, 4.0)
    g.kill()
    assert g.state == DEAD
    with pytest.raises(CoordinatorNotAvailableError):
        g.check_commit(-1, "", None, 4.0)


# --- invariants under random sequences -------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("join_new"), st.booleans(), st.sampled_from([None, "i1", "i2"])),
        st.tuples(st.just("rejoin"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("sync"), st.integers(0, 5)),
        st.tuples(st.just("beat"), st.integers(0, 5)),
        st.tuples(st.just("leave"), st.integers(0, 5)),
        st.tuples(st.just("time"), st.floats(0.1, 40.0)),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_invariants_hold_under_random_sequences(sequence):
    g = group(max_size=4)
    now = 0.0
    joins: list = []  # every join waiter handed out
    syncs: list = []  # (member id, generation, waiter)
    #: generation -> what its leader assigned
    assigned: dict[int, dict[str, bytes]] = {}
    last_generation = 0
    for op in sequence:
        members = sorted(g.members)
        try:
            if op[0] == "join_new":
                protocols = (RANGE, ROUNDROBIN) if op[1] else (ROUNDROBIN,)
                joins.append(g.join(params(protocols=protocols, instance_id=op[2]), now))
            elif op[0] == "rejoin" and members:
                m = g.members[members[op[1] % len(members)]]
                protocols = (RANGE, ROUNDROBIN) if op[2] else (ROUNDROBIN,)
                joins.append(
                    g.join(params(m.member_id, protocols=protocols, instance_id=m.instance_id), now)
                )
            elif op[0] == "sync" and members:
                m = g.members[members[op[1] % len(members)]]
                plan = {x: f"{x}@{g.generation}".encode() for x in members}
                if m.member_id == g.leader_id and g.state == COMPLETING:
                    assigned[g.generation] = plan
                syncs.append(
                    (
                        m.member_id,
                        g.generation,
                        g.sync(m.member_id, m.instance_id, g.generation, plan, now),
                    )
                )
            elif op[0] == "beat" and members:
                m = g.members[members[op[1] % len(members)]]
                g.heartbeat(m.member_id, m.instance_id, g.generation, now)
            elif op[0] == "leave" and members:
                g.leave([(members[op[1] % len(members)], None)], now)
            elif op[0] == "time":
                now += op[1]
                g.tick(now)
        except (
            RebalanceInProgressError,
            InconsistentGroupProtocolError,
            GroupMaxSizeReachedError,
            UnknownMemberIdError,
            IllegalGenerationError,
        ):
            pass
        # generations only increase
        assert g.generation >= last_generation
        last_generation = g.generation
        # the leader is a member whenever there are members
        if g.members:
            assert g.leader_id in g.members
        else:
            assert g.state in (EMPTY, PREPARING)
        assert set(g.instances.values()) <= set(g.members)
    # every join answered without error for one generation agrees on leader
    # and protocol; the leader was given the members' metadata
    by_generation: dict[int, set] = {}
    for w in joins:
        if w.done and w.result.error is None:
            r = w.result
            by_generation.setdefault(r.generation, set()).add((r.leader_id, r.protocol_name))
            if r.member_id == r.leader_id:
                assert r.members, "the leader gets the member list"
                assert r.leader_id in {m for m, _, _ in r.members}
    for generation, answers in by_generation.items():
        assert len(answers) == 1, f"generation {generation}: {answers}"
    # a member's successful SyncGroup answer is what the leader assigned to it
    for member_id, generation, w in syncs:
        if w.done and w.result.error is None:
            assert w.result.assignment == assigned[generation].get(member_id, b"")


def test_an_empty_groups_first_rebalance_waits_the_initial_delay_for_more_joiners():
    """Kafka's group.initial.rebalance.delay.ms: the first join of an empty
    group is held for the delay even though everyone known has joined; a
    member joining during it extends the wait once more (within the
    rebalance timeout); then one generation holds everyone."""
    counter = itertools.count(1)
    g = ClassicGroup(
        "g", max_size=10, new_member_id=lambda _c: f"m{next(counter)}", initial_delay=3.0
    )
    wa = g.join(params(), 0.0)
    assert not wa.done
    assert g.next_deadline() == pytest.approx(3.0)
    wb = g.join(params(), 1.0)  # joins during the delay
    g.tick(3.0)
    assert not wa.done  # someone joined: wait another delay
    assert g.next_deadline() == pytest.approx(6.0)
    g.tick(6.0)
    ra, rb = joined(wa), joined(wb)
    assert ra.generation == rb.generation == 1
    assert [m for m, _, _ in ra.members] == [ra.member_id, rb.member_id]
    # later rebalances of the (no longer empty) group do not wait
    g.sync(ra.member_id, None, 1, {}, 6.1)
    wc = g.join(params(), 7.0)
    wa2 = g.join(params(ra.member_id), 7.1)
    wb2 = g.join(params(rb.member_id), 7.1)
    assert joined(wc).generation == joined(wa2).generation == joined(wb2).generation == 2


def test_the_initial_delay_is_bounded_by_the_rebalance_timeout():
    g = ClassicGroup("g", max_size=10, initial_delay=3.0)
    wa = g.join(params(rebalance_timeout_ms=2_000), 0.0)
    assert g.next_deadline() == pytest.approx(2.0)
    g.tick(2.0)
    assert joined(wa).generation == 1
