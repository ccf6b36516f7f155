"""The broker-side assignor: sticky, balanced, deterministic.

Given who subscribes to what, how many partitions each topic has and the
previous target assignment, :func:`assign` returns the next target. It is
what makes a rebalance incremental: a partition only moves when it must.

1. **Keep.** A member keeps every partition of its previous target that
   still exists and that it still subscribes to.
2. **Balance.** With one subscription shared by every member (the usual
   case) each member's quota is ``P // N`` partitions, ``P % N`` of them
   one more; the extra places go to the members that already hold the most,
   so the fewest partitions move. A member above its quota gives up its
   highest-numbered partitions. With different subscriptions a general
   pass moves a partition from a member to another member subscribed to its
   topic while their counts differ by two or more.
3. **Fill.** Partitions nobody holds go, in (topic, partition) order, to the
   subscribed member holding the fewest (ties: the smallest member id).

Moving only what must move means: a member joining a group of N over P
partitions takes about P/(N+1) partitions, all from others' surplus; a
member leaving hands its partitions out and nobody else's move. The result
depends only on the inputs (no randomness, no dict ordering), so tests and
describe output are stable.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping

__all__ = ["TopicPartition", "assign"]

TopicPartition = tuple[str, int]


def assign(
    subscriptions: Mapping[str, Collection[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Collection[TopicPartition]],
) -> dict[str, frozenset[TopicPartition]]:
    """The new target assignment: member id -> its partitions.

    ``subscriptions`` maps every member to the topics it reads;
    ``partition_counts`` holds the topics that exist (others are ignored);
    ``previous`` is the last target (members not in ``subscriptions`` are
    gone and their partitions are free).
    """
    members = sorted(subscriptions)
    if not members:
        return {}
    subs = {
        m: frozenset(t for t in subscriptions[m] if partition_counts.get(t, 0) > 0) for m in members
    }
    owned: dict[str, set[TopicPartition]] = {m: set() for m in members}
    taken: set[TopicPartition] = set()
    for m in members:
        for tp in previous.get(m, ()):
            topic, p = tp
            if topic in subs[m] and 0 <= p < partition_counts[topic] and tp not in taken:
                owned[m].add(tp)
                taken.add(tp)
    wanted = sorted((t, p) for t in set().union(*subs.values()) for p in range(partition_counts[t]))
    free = [tp for tp in wanted if tp not in taken]
    if len({subs[m] for m in members}) == 1:
        _balance_uniform(members, owned, free, len(wanted))
    else:
        _fill(members, subs, owned, free)
        _balance_general(members, subs, owned)
    return {m: frozenset(owned[m]) for m in members}


def _balance_uniform(
    members: list[str],
    owned: dict[str, set[TopicPartition]],
    free: list[TopicPartition],
    total: int,
) -> None:
    n = len(members)
    base, extra = divmod(total, n)
    # The members already holding the most get the "+1" places: fewest moves.
    by_size = sorted(members, key=lambda m: (-len(owned[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_size)}
    released: list[TopicPartition] = []
    for m in members:
        surplus = len(owned[m]) - quota[m]
        if surplus > 0:
            doomed = sorted(owned[m], reverse=True)[:surplus]
            owned[m].difference_update(doomed)
            released.extend(doomed)
    pool = sorted([*free, *released])
    heap = [(len(owned[m]), m) for m in members if len(owned[m]) < quota[m]]
    heapq.heapify(heap)
    for tp in pool:
        count, m = heapq.heappop(heap)
        owned[m].add(tp)
        if count + 1 < quota[m]:
            heapq.heappush(heap, (count + 1, m))


def _fill(
    members: list[str],
    subs: dict[str, frozenset[str]],
    owned: dict[str, set[TopicPartition]],
    free: list[TopicPartition],
) -> None:
    by_topic: dict[str, list[str]] = {}
    for m in members:
        for t in subs[m]:
            by_topic.setdefault(t, []).append(m)
    for tp in free:
        best = min(by_topic[tp[0]], key=lambda m: (len(owned[m]), m))
        owned[best].add(tp)


def _balance_general(
    members: list[str], subs: dict[str, frozenset[str]], owned: dict[str, set[TopicPartition]]
) -> None:
    """Move partitions from fuller to emptier eligible members until no move
    narrows a gap of two or more. Each move lowers the sum of squared counts,
    so this ends."""
    while True:
        moved = False
        for donor in sorted(members, key=lambda m: (-len(owned[m]), m)):
            size = len(owned[donor])
            for tp in sorted(owned[donor], reverse=True):
                eligible = [m for m in members if tp[0] in subs[m] and len(owned[m]) <= size - 2]
                if eligible:
                    target = min(eligible, key=lambda m: (len(owned[m]), m))
                    owned[donor].discard(tp)
                    owned[target].add(tp)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return
