"""The broker-side assignor: every partition to exactly one subscribed
member, balanced, and sticky (a partition moves only when it must)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tailrace.broker.coordinator.assignor import assign

TOPICS = {"a": 5, "b": 7, "c": 1}


def _owners(result):
    owners = {}
    for member, tps in result.items():
        for tp in tps:
            assert tp not in owners, f"{tp} given to {owners[tp]} and {member}"
            owners[tp] = member
    return owners


def _moved(before, after):
    return sum(len(tps - after.get(m, frozenset())) for m, tps in before.items() if m in after)


def test_twelve_partitions_three_members_then_a_fourth_moves_three():
    subs = {m: ["t"] for m in ("m1", "m2", "m3")}
    first = assign(subs, {"t": 12}, {})
    assert sorted(len(v) for v in first.values()) == [4, 4, 4]
    second = assign({**subs, "m4": ["t"]}, {"t": 12}, first)
    assert sorted(len(v) for v in second.values()) == [3, 3, 3, 3]
    assert _moved(first, second) == 3  # exactly the new member's share
    for m in subs:
        assert second[m] <= first[m]  # nobody gains partitions from another old member


def test_a_member_leaving_hands_out_only_its_own_partitions():
    subs = {m: ["t"] for m in ("m1", "m2", "m3", "m4")}
    first = assign(subs, {"t": 12}, {})
    del subs["m2"]
    second = assign(subs, {"t": 12}, first)
    assert set(_owners(second)) == {("t", p) for p in range(12)}
    for m in subs:
        assert first[m] <= second[m]
    assert sorted(len(v) for v in second.values()) == [4, 4, 4]


def test_partitions_of_unsubscribed_or_missing_topics_go_nowhere():
    result = assign({"m1": ["a", "zzz"], "m2": ["c"]}, TOPICS, {})
    assert result["m1"] == frozenset(("a", p) for p in range(5))
    assert result["m2"] == frozenset({("c", 0)})


def test_same_inputs_same_result():
    subs = {"x": ["a", "b"], "y": ["b"], "z": ["a", "b", "c"]}
    assert assign(subs, TOPICS, {}) == assign(dict(reversed(subs.items())), TOPICS, {})


def test_a_topic_growing_adds_its_new_partitions_without_moving_old_ones():
    subs = {"m1": ["t"], "m2": ["t"]}
    first = assign(subs, {"t": 4}, {})
    second = assign(subs, {"t": 6}, first)
    assert _moved(first, second) == 0
    assert sorted(len(v) for v in second.values()) == [3, 3]


members = st.lists(
    st.sampled_from([f"m{i}" for i in range(6)]), min_size=1, max_size=6, unique=True
)
subscription = st.lists(st.sampled_from(sorted(TOPICS)), min_size=1, max_size=3, unique=True)


@settings(max_examples=150, deadline=None)
@given(
    st.data(),
    members,
    st.booleans(),
)
def test_properties_over_a_sequence_of_changes(data, start, uniform):
    def subs_for(ms):
        if uniform:
            return {m: ["a", "b"] for m in ms}
        return {m: data.draw(subscription, label=f"subs {m}") for m in ms}

    subs = subs_for(start)
    current = assign(subs, TOPICS, {})
    for _ in range(data.draw(st.integers(1, 4), label="changes")):
        ms = data.draw(members, label="next members")
        new_subs = {m: subs.get(m) or subs_for([m])[m] for m in ms}
        nxt = assign(new_subs, TOPICS, current)
        owners = _owners(nxt)
        # every partition of a subscribed topic has exactly one owner, who subscribes
        wanted = {(t, p) for s in new_subs.values() for t in s for p in range(TOPICS[t])}
        assert set(owners) == wanted
        for tp, m in owners.items():
            assert tp[0] in new_subs[m]
        if len({frozenset(s) for s in new_subs.values()}) == 1:
            sizes = [len(v) for v in nxt.values()]
            assert max(sizes) - min(sizes) <= 1
            # sticky: what a surviving member keeps is at least its old share
            # capped by its new quota
            quota = -(-len(wanted) // len(new_subs))
            for m in new_subs:
                if m in current and set(new_subs[m]) == set(subs.get(m, [])):
                    kept = len(current[m] & nxt[m])
                    assert kept >= min(len(current[m]), quota - 1)
        subs, current = new_subs, nxt
