"""The group state machine under random sequences of joins, leaves,
timeouts, subscription changes, topic changes and heartbeats that do or do
not acknowledge revocations: a partition never has two owners, a member
only ever owns partitions of its target or ones it is still revoking, and
once everyone acknowledges, the group settles on its target."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tailrace.broker.coordinator.group import STATE_STABLE, Group, Member

TOPICS = ["a", "b"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from([("a",), ("b",), ("a", "b")])),
        st.tuples(st.just("leave"), st.integers(0, 7)),
        st.tuples(st.just("beat"), st.integers(0, 7), st.booleans()),
        st.tuples(st.just("subscribe"), st.integers(0, 7), st.sampled_from([("a",), ("a", "b")])),
        st.tuples(st.just("grow"), st.sampled_from(TOPICS)),
        st.tuples(st.just("drop"), st.sampled_from(TOPICS)),
    ),
    max_size=40,
)


def check(group: Group) -> None:
    seen: dict = {}
    for m in group.members.values():
        assert not (m.assigned & m.revoking)
        for tp in m.owned:
            assert tp not in seen, f"{tp} owned by {seen[tp]} and {m.member_id}"
            seen[tp] = m.member_id
    assert seen == group.owner


@settings(max_examples=200, deadline=None)
@given(ops)
@example([("join", ("a",)), ("join", ("a",)), ("beat", 0, False), ("beat", 0, False)])
@example(
    [("join", ("a", "b")), ("join", ("b",)), ("beat", 0, True), ("drop", "b"), ("beat", 1, True)]
)
def test_ownership_invariants_hold_and_the_group_settles(sequence):
    counts = {"a": 3, "b": 2}
    group = Group("g", 0)
    # what each member's client owns (it acknowledges revocations only when told to)
    client: dict[str, set] = {}
    n = 0
    for op in sequence:
        live = sorted(group.members)
        if op[0] == "join":
            n += 1
            m = Member(
                f"m{n}",
                instance_id=None,
                subscribed=op[1],
                session_timeout_ms=1000,
                rebalance_timeout_ms=1000,
            )
            group.add(m, counts)
            group.reconcile(m, 0.0)
            client[m.member_id] = set(m.assigned)
        elif op[0] in ("leave", "beat", "subscribe") and live:
            m = group.members[live[op[1] % len(live)]]
            if op[0] == "leave":
                group.remove(m, counts, 0)
                del client[m.member_id]
            elif op[0] == "subscribe":
                m.subscribed = op[2]
                group.rebalance(counts)
            else:
                if op[2]:  # the client applied the last answer: drops what was revoked
                    client[m.member_id] &= m.assigned
                group.acknowledge(m, client[m.member_id])
                group.reconcile(m, 0.0)
                assert m.assigned <= group.target.get(m.member_id, frozenset())
                if op[2]:
                    client[m.member_id] |= m.assigned
        elif op[0] == "grow":
            counts[op[1]] += 1
            group.refresh_metadata(counts)
        elif op[0] == "drop" and counts[op[1]] > 0:
            counts[op[1]] = 0
            group.refresh_metadata(counts)
        check(group)
        for mid, holding in client.items():
            assert holding <= group.members[mid].owned  # no client reads what it lost
    # everyone now applies and acknowledges until nothing changes
    for _ in range(4 * (len(group.members) + 1)):
        for m in list(group.members.values()):
            client[m.member_id] &= m.assigned
            group.acknowledge(m, client[m.member_id])
            group.reconcile(m, 0.0)
            client[m.member_id] |= m.assigned
            check(group)
    if group.members:
        assert group.state == STATE_STABLE
        wanted = {
            (t, p) for m in group.members.values() for t in m.subscribed for p in range(counts[t])
        }
        assert set(group.owner) == wanted
