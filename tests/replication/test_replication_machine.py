"""A replicated partition (3 replicas, min ISR 2, flush sync) under random
appends, follower fetches (some responses lost), truncations, metadata
syncs, crashes that lose unflushed tails, restarts, lease expiries,
controlled and forced elections among the ISR, time passing and ISR changes
whose CAS lands late or not at all -- all decided by broker/replication.

After every step the checker (replication_sim.Cluster.check) holds: no
acknowledged record missing from any ISR member, replicas agree below their
high watermarks and by log matching, high watermarks, the served high
watermark and epochs never go back, each epoch cache matches its log. At the
end every replica restarts and catches up, and all logs are the same and hold
every acknowledged record.

The negative controls run the same machine with one rule switched off and
require Hypothesis to find a violation (derandomized, so the search is the
same every run).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
)
from replication_sim import Bugs, Cluster, Violation, random_walk, replicate_round

IDS = (1, 2, 3)
replica = st.sampled_from(IDS)


def machine(bugs: Bugs | None = None, sync: bool = True) -> type[RuleBasedStateMachine]:
    """The machine; ``sync=False`` models flush none, where a power cut of
    every replica loses acknowledged records by design, so only agreement,
    convergence and the epoch rules are checked."""

    class ReplicatedPartition(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.c = Cluster(IDS, min_isr=2, lag_ms=100, sync=sync, bugs=bugs, check_loss=sync)

        @rule(r=st.just(0) | replica, n=st.integers(1, 3))
        def produce(self, r: int, n: int) -> None:
            """``n`` acks=all produces to ``r`` (0: the store's leader)."""
            for _ in range(n):
                self.c.produce(r or self.c.state.leader)

        @rule(rounds=st.integers(1, 3))
        def replicate(self, rounds: int) -> None:
            for _ in range(rounds):
                replicate_round(self.c)

        @rule(r=replica)
        def flush(self, r: int) -> None:
            self.c.flush(r)

        @rule(r=replica, lose=st.booleans())
        def fetch(self, r: int, lose: bool) -> None:
            self.c.fetch(r, lose_response=lose)

        @rule(r=replica)
        def truncate(self, r: int) -> None:
            self.c.truncate(r)

        @rule(r=replica)
        def sync(self, r: int) -> None:
            self.c.sync(r)

        @rule(
            kind=st.sampled_from(["crash", "power cut", "restart", "expire", "elect"]),
            r=replica,
            prefer=st.none() | replica,
        )
        def fault(self, kind: str, r: int, prefer: int | None) -> None:
            """A crash (kill -9, or a power cut losing unsynced tails), a
            restart, a lease expiry (death, pause or partition from the
            store) or a controller election (a move to ``prefer``)."""
            c = self.c
            if kind == "crash":
                c.crash(r, power=False)
            elif kind == "power cut":
                c.crash(r, power=True)
            elif kind == "restart":
                c.restart(r)
            elif kind == "expire":
                c.expire(r)
            else:
                c.elect(prefer)

        @rule(ms=st.sampled_from([10, 60, 150]))
        def tick(self, ms: int) -> None:
            self.c.tick(ms)

        @rule(r=replica)
        def isr_propose(self, r: int) -> None:
            self.c.isr_propose(r)

        @rule(r=replica)
        def isr_commit(self, r: int) -> None:
            self.c.isr_commit(r)

        @invariant()
        def holds(self) -> None:
            self.c.check()

        def teardown(self) -> None:
            c = self.c

            def bucket(n: int) -> str:
                return "0" if n == 0 else "1-4" if n < 5 else "5+"

            event(f"acknowledged before heal: {bucket(len(c.acked))}")
            event(f"leader epoch before heal: {bucket(c.state.leader_epoch)}")
            cuts = sum(1 for t in c.trace if " truncates to " in t)
            event(f"truncations that cut records: {bucket(cuts)}")
            c.final_check()

    return ReplicatedPartition


TestReplicatedPartition = machine().TestCase
TestReplicatedPartition.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestReplicatedPartitionFlushNone = machine(sync=False).TestCase
TestReplicatedPartitionFlushNone.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_random_walks_keep_every_rule():
    """The same steps as the machine, as 300 seeded random walks (cheap,
    and the same walks every run)."""
    acked = cut = 0
    for seed in range(300):
        c = random_walk(seed)
        acked += len(c.acked)
        cut += sum(1 for t in c.trace if " truncates to " in t)
    # the walks do exercise the rules (about 2 records acked per walk here)
    assert acked > 100
    assert cut > 10


@pytest.mark.parametrize(
    "bugs",
    [
        Bugs(truncate_to_hw=True),
        Bugs(unclean_election=True),
        Bugs(skip_same_leader_truncation=True),
        Bugs(single_round_truncation=True),
        Bugs(serve_unestablished_hw=True),
        # resume_epoch_after_restart needs a power cut of the leader, its
        # restart and resync before the controller sees it gone: 3000 walks
        # did not hit that; test_scenarios.py replays it
    ],
    ids=lambda b: next(k for k, v in vars(b).items() if v),
)
def test_the_checker_finds_each_switched_off_rule(bugs: Bugs):
    """Negative controls: with one rule switched off, a seeded random walk
    over the same steps makes the checker report a violation. (Hypothesis
    finds these too, but its search and shrinking took minutes here; the
    scripted replays in test_scenarios.py pin each bug down exactly.)"""
    for seed in range(3000):
        try:
            random_walk(seed, bugs=bugs)
        except Violation:
            return
    pytest.fail(f"no violation found with {bugs}")
