"""Kafka's replication bugs replayed step by step on the decisions.

Each scenario runs twice: with tailrace's rules, where nothing acknowledged
is lost and the replicas end identical, and with the one rule switched off
that the original bug lacked (replication_sim.Bugs), where the checker
reports the loss or the divergence -- which shows the checker can see the
bug. The step lists follow the KIPs' and JIRA's narratives; where tailrace
differs from Kafka in what triggers a step, the test says so.
"""

from __future__ import annotations

import pytest
from replication_sim import Bugs, Cluster, Rec, Violation

A, B, C = 1, 2, 3


def run(steps, cluster: Cluster) -> Cluster:
    for step in steps:
        step(cluster)
        cluster.check()
    cluster.final_check()
    return cluster


# --- KIP-101 scenario 1: truncation to the high watermark loses a committed record --


def kip101_hw_truncation(c: Cluster) -> None:
    # B leads epoch 0; A follows
    c.produce(B, "m1")
    c.produce(B, "m2")
    c.flush(B)
    c.check()
    c.fetch(A)  # A gets m1 m2; its high watermark is still 0
    # A reports offset 2: B's watermark moves to 2 and m1, m2 are acknowledged,
    # but the response that would tell A so is lost
    c.fetch(A, lose_response=True)
    assert c.acked == {0: "m1", 1: "m2"}
    assert c.replicas[A].hw == 0
    c.check()
    # The KIP's trigger is A's restart; in tailrace a restart is a lease loss
    # that takes A out of the ISR (so it could not lead before catching up).
    # The same truncation runs on every epoch change: B is re-elected.
    c.elect(prefer=B)
    c.sync(B)
    c.sync(A)
    c.truncate(A)
    c.check()
    # B dies; A, in the ISR, is elected
    c.crash(B)
    c.check()
    c.expire(B)
    c.sync(A)
    c.check()


def test_kip101_scenario_1_epoch_truncation_keeps_committed_records():
    c = Cluster((B, A))
    kip101_hw_truncation(c)
    assert c.state.leader == A
    assert c.replicas[A].log == [Rec(0, "m1"), Rec(0, "m2")]
    c.final_check()


def test_kip101_scenario_1_truncating_to_the_hw_is_caught():
    c = Cluster((B, A), bugs=Bugs(truncate_to_hw=True))
    with pytest.raises(Violation, match="lost on ISR member r1"):
        kip101_hw_truncation(c)


# --- KIP-101 scenario 2: divergence after a double failure ---------------------------


def kip101_double_failure(c: Cluster) -> None:
    # flush none (Kafka's default setting in the KIP): positions count unsynced
    c.produce(A, "m1")
    c.fetch(B)
    c.fetch(B)
    c.flush(A)
    c.flush(B)
    c.produce(A, "m2")
    c.flush(A)
    c.fetch(B)  # B has m2 in its page cache only
    c.fetch(B)
    assert c.acked == {0: "m1", 1: "m2"}
    # power fails on both; B loses m2
    c.crash(A)
    c.crash(B)
    c.expire(A)  # B still registered: it is elected, then its lease ends too
    c.expire(B)
    assert not c.state.online
    c.restart(B)
    c.sync(B)  # B comes back first and leads again (it is the ISR)
    assert c.state.leader == B
    c.produce(B, "m3")  # at offset 1, where A holds m2
    c.flush(B)
    c.restart(A)
    c.sync(A)
    c.truncate(A)
    for _ in range(3):
        c.fetch(A)
        c.isr_propose(B)
        c.isr_commit(B)
        c.produce(B)
        c.check()


def test_kip101_scenario_2_replicas_converge_by_epoch():
    c = Cluster((A, B), min_isr=1, sync=False, check_loss=False)
    kip101_double_failure(c)
    c.final_check()
    log = [r.value for r in c.replicas[A].log]
    assert log[:2] == ["m1", "m3"]
    assert c.replicas[A].log == c.replicas[B].log
    # m2 was acknowledged and is gone: flush none does not survive a power
    # cut of every replica (what flush sync is for; tested in the state machine)
    assert "m2" not in log
    assert c.lost == ["m2"]


def test_kip101_scenario_2_hw_truncation_diverges():
    c = Cluster((A, B), min_isr=1, sync=False, check_loss=False, bugs=Bugs(truncate_to_hw=True))
    with pytest.raises(Violation, match="disagree below 2"):
        run([kip101_double_failure], c)


# --- KIP-279: fast leader failover ----------------------------------------------------


def kip279_fast_failover(c: Cluster) -> None:
    c.produce(A, "m1")
    c.fetch(B)
    c.fetch(B)
    c.produce(A, "m2")  # epoch 0 at offset 1; B never gets it
    c.flush(A)
    c.elect(prefer=B)  # controlled move; A (paused) does not notice
    c.sync(B)
    c.produce(B, "m3")  # epoch 1 at offset 1
    c.flush(B)
    c.elect(prefer=A)  # and back, before A ever saw epoch 1
    c.sync(A)
    assert c.replicas[A].cache.entries() == [(0, 0), (2, 2)]
    c.sync(B)
    c.truncate(B)  # B asks for epoch 1, which A never had
    for _ in range(3):
        c.fetch(B)
        c.produce(A)
        c.flush(A)
        c.check()


def test_kip279_iterating_epochs_converges():
    c = Cluster((A, B), min_isr=1)
    kip279_fast_failover(c)
    assert [r.value for r in c.replicas[B].log[:2]] == ["m1", "m2"]
    c.final_check()


def test_kip279_single_round_answer_diverges():
    c = Cluster((A, B), min_isr=1, bugs=Bugs(single_round_truncation=True))
    with pytest.raises(Violation, match="disagree"):
        kip279_fast_failover(c)


# --- KAFKA-7164: truncate on every epoch change, also with the same leader -----------


def kafka7164(c: Cluster) -> None:
    c.produce(A, "m0")
    c.flush(A)
    c.fetch(C)  # r3 has m0; r2 does not, so it is not committed
    c.expire(A)  # r1's lease ends (a pause): r2 leads epoch 1
    c.sync(B)
    c.sync(A)  # r1 is back and follows r2: it truncates m0
    c.truncate(A)
    assert c.replicas[A].log == []
    c.fetch(A)
    c.isr_propose(B)
    c.isr_commit(B)  # r1 rejoins the ISR
    assert A in c.state.isr
    c.crash(B)
    c.expire(B)  # r1 leads epoch 2 and writes m1 at offset 0
    c.sync(A)
    c.produce(A, "m1")
    c.flush(A)
    # r3 missed epoch 1: it sees epoch 2 led by r1, the leader it followed
    c.sync(C)
    c.truncate(C)
    c.fetch(C)
    c.fetch(C)
    c.check()


def test_kafka7164_same_leader_epoch_change_truncates():
    c = Cluster((A, B, C), min_isr=1)
    kafka7164(c)
    assert c.replicas[C].log == [Rec(2, "m1")]
    c.final_check()


def test_kafka7164_skipping_truncation_for_the_same_leader_diverges():
    c = Cluster((A, B, C), min_isr=1, bugs=Bugs(skip_same_leader_truncation=True))
    with pytest.raises(Violation, match="disagree"):
        kafka7164(c)


# --- a new leader's high watermark is not served until established -------------------


def hw_regression(c: Cluster) -> None:
    c.produce(A, "a")
    c.produce(A, "b")
    c.flush(A)
    c.fetch(B)
    c.fetch(B, lose_response=True)  # A's watermark is 2, B's still 0
    c.check()
    assert c.served_max == 2
    c.elect(prefer=B)
    c.sync(B)  # B leads from offset 2 holding watermark 0
    c.check()
    c.sync(A)
    c.truncate(A)
    c.fetch(A)
    c.check()


def test_new_leader_hw_is_withheld_until_established():
    c = Cluster((A, B), min_isr=1)
    hw_regression(c)
    assert c.replicas[B].leader is not None
    assert c.replicas[B].leader.established
    c.final_check()


def test_serving_an_unestablished_hw_is_caught():
    c = Cluster((A, B), min_isr=1, bugs=Bugs(serve_unestablished_hw=True))
    with pytest.raises(Violation, match="served high watermark went back"):
        hw_regression(c)


# --- no unclean election (Jepsen 2013) --------------------------------------------------


def unclean(c: Cluster) -> None:
    c.produce(A, "a")
    c.flush(A)
    for _ in range(2):
        c.fetch(B)
        c.fetch(C)
    assert c.acked == {0: "a"}
    c.produce(A, "b")  # r3 stops fetching
    c.flush(A)
    c.fetch(B)
    c.fetch(B)
    c.tick(200)
    c.isr_propose(A)
    c.isr_commit(A)  # r3 leaves the ISR; b is committed by r1 and r2
    assert c.state.isr == (A, B)
    assert c.acked == {0: "a", 1: "b"}
    c.crash(A)
    c.crash(B)
    c.expire(A)
    c.expire(B)
    c.check()


def test_no_live_isr_member_leaves_the_partition_offline():
    c = Cluster((A, B, C))
    unclean(c)
    assert not c.state.online
    assert c.state.isr == (B,)
    c.final_check()


def test_unclean_election_is_caught():
    c = Cluster((A, B, C), bugs=Bugs(unclean_election=True))
    with pytest.raises(Violation, match="lost on ISR member r3"):
        unclean(c)


# --- a restarted leader does not resume its epoch ---------------------------------------


def restart_resume(c: Cluster) -> None:
    c.produce(A, "a")
    c.flush(A)
    c.fetch(B)
    c.fetch(B)  # a is committed
    c.produce(A, "x")  # not synced on A
    c.fetch(B)  # B has x (it reports it with its next fetch)
    c.crash(A)  # power cut: A loses x
    c.restart(A)
    c.sync(A)
    c.produce(A, "y")  # at x's offset
    c.flush(A)
    c.sync(B)
    c.truncate(B)
    for _ in range(3):
        c.fetch(B)
        c.produce(c.state.leader)
        c.flush(c.state.leader)
        c.check()


def test_a_restarted_leader_is_re_elected_in_a_new_epoch():
    c = Cluster((A, B), min_isr=1)
    restart_resume(c)
    # A's restart counted as its death: B led epoch 1 keeping x; y went
    # nowhere (A was a follower then)
    assert [r.value for r in c.replicas[B].log[:2]] == ["a", "x"]
    c.final_check()


def test_resuming_the_epoch_after_a_restart_is_caught():
    c = Cluster((A, B), min_isr=1, bugs=Bugs(resume_epoch_after_restart=True))
    with pytest.raises(Violation, match="disagree"):
        restart_resume(c)
