"""Cluster fault scenarios (broker/faultkit/cluster_scenarios.py): three
real etcd members and three broker processes in a private network
namespace, faulted by kill -9, SIGSTOP and nftables partitions. Short
profile here (one round of each fault); ``RELIABILITY_PROFILE=long`` (see
tools/reliability.py) runs several seeded rounds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rel_profile import record_result, seeds, size

from tailrace.broker.faultkit.cluster_scenarios import DATA_FAULTS


@pytest.mark.parametrize("seed", seeds(9100, 1, 3))
def test_membership_survives_kills_pauses_and_partitions(seed: int) -> None:
    rounds = size(1, 3)
    proc = subprocess.run(
        [sys.executable, "-m", "tailrace.broker.faultkit.cluster_scenarios", "membership",
         "--seed", str(seed), "--rounds", str(rounds), "--deadline", "60"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(lines[-1])
    record_result(
        "cluster-membership", seed=seed, rounds=rounds, faults=len(report["steps"]),
        problems=len(report["problems"]),
        slowest_recovery_s=max(s["seconds"] for s in report["steps"]),
    )  # fmt: skip
    assert report["ok"], f"seed {seed}: {report['problems']}\nsteps: {report['steps']}"
    assert proc.returncode == 0
    steps = [s["step"] for s in report["steps"]]
    assert any("killed: successor elected" in s for s in steps)
    assert any("paused: successor elected" in s for s in steps)
    assert any("cut from etcd: successor" in s for s in steps)


def _scenario(*args: str) -> tuple[dict, subprocess.CompletedProcess[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tailrace.broker.faultkit.cluster_scenarios", *args],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1]), proc


#: left out of the short profile (make test's time budget), run by the long
#: one: power loss on one broker (the two-broker cut covers the mechanism),
#: an etcd member killed or paused with data flowing (scenario membership
#: covers both without data)
LONG_ONLY = ("power-cut-one", "kill-etcd-member", "pause-etcd-member")


@pytest.mark.parametrize("seed", seeds(9200, 1, 3))
def test_replication_keeps_every_acknowledged_record_across_faults(seed: int) -> None:
    """Scenario ``replication``: acks=all producers through the oracle while
    leaders and followers are killed, paused and cut off, a leader left
    alone in a minority, the controller killed and paused, an etcd member
    killed and paused, the power cut on one broker and on two at once, a
    follower's tail damaged, every broker restarted in turn; then nothing
    acknowledged lost or duplicated, order kept, replicas byte-identical,
    epochs and high watermarks never back."""
    rounds = size(1, 3)
    kinds = [f for f in DATA_FAULTS if f not in size(LONG_ONLY, ())]
    report, proc = _scenario(
        "replication", "--seed", str(seed), "--rounds", str(rounds), "--deadline", "120",
        "--faults", ",".join(kinds),
    )  # fmt: skip
    record_result(
        "cluster-replication", runs=1, seed=seed, rounds=rounds, faults=len(report["faults"]),
        seconds=report["seconds"], acked=report["acked"], unknown=report["unknown"],
        records_checked=report["records_read"], lost=report["lost"],
        duplicated=report["duplicated"], hw_samples=report["hw_samples"],
        problems=len(report["problems"]), notes=len(report["notes"]),
    )  # fmt: skip
    assert report["ok"], (
        f"seed {seed}: {report['problems']}\nsteps: {report['steps']}\n{proc.stderr[-3000:]}"
    )
    assert proc.returncode == 0
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert len(report["faults"]) == len(kinds) * rounds
    assert set(report["faults"]) == set(kinds)  # round 1 runs each once
    # the faults that act on files did act: a batch damaged, images written
    steps = [s["step"] for s in report["steps"]]
    assert any("bytes flipped at the end of batch" in s for s in steps), steps
    assert sum("power cut image=" in s for s in steps) >= 2, steps
    assert report["acked"] > 0
    assert report["records_read"] >= report["acked"]
    assert report["hw_samples"] > 0


@pytest.mark.parametrize("unsafe", [False, True], ids=["rule-on", "rule-off"])
def test_checker_sees_the_loss_when_an_out_of_sync_replica_may_lead(unsafe: bool) -> None:
    """Scenario ``unclean``, the negative control: every in-sync replica of
    a partition dies while its cut-off, out-of-sync follower lives. With the
    no-unclean-election rule (the broker as shipped) the partition waits
    offline and nothing acknowledged is lost; with the rule switched off
    (the test-only seam TAILRACE_FAULT_UNCLEAN_ELECTION=1) the follower
    leads, the others truncate to its log, and the same checker must report
    acknowledged records lost: it can fail, so its passes mean something."""
    seed = 9300
    args = ["unclean", "--seed", str(seed), "--deadline", "120"]
    report, proc = _scenario(*args, *(["--unsafe"] if unsafe else []))
    record_result(
        f"cluster-unclean-{'rule-off' if unsafe else 'rule-on'}", runs=1, seed=seed, faults=3,
        seconds=report["seconds"], acked=report["acked"], records_checked=report["records_read"],
        lost=report["lost"], problems=len(report["problems"]),
    )  # fmt: skip
    steps = [s["step"] for s in report["steps"]]
    if not unsafe:
        assert report["ok"], f"{report['problems']}\nsteps: {steps}\n{proc.stderr[-3000:]}"
        assert report["lost"] == 0
        assert any("offline, out-of-sync" in s for s in steps)
        return
    assert any("out-of-sync" in s and "leads (unclean" in s for s in steps), steps
    assert not report["ok"]
    assert proc.returncode == 1
    assert report["lost"] > 0, report["problems"]
    assert any("lost" in p for p in report["problems"])
    # the replicas agree with each other (the loss is in all of them alike):
    # only the oracle's acknowledged history shows it
    assert not any("differs from" in p for p in report["problems"])


@pytest.mark.parametrize("unsafe", [False, True], ids=["rule-on", "rule-off"])
def test_checker_sees_the_loss_when_a_follower_truncates_to_its_high_watermark(
    unsafe: bool,
) -> None:
    """Scenario ``kip101``, the second negative control: a follower holding
    acknowledged records above its own high watermark sees a new leader
    epoch it cannot ask about (cut from the new leader), and the new leader
    dies before it fetched anything, so the follower leads. Truncating by
    leader epoch (the broker as shipped) keeps those records: nothing is
    lost. With the rule switched off (the test-only seam
    TAILRACE_FAULT_TRUNCATE_TO_HW=1: truncate to the high watermark, Kafka
    before KIP-101) the same checker must report them lost."""
    seed = 9400
    args = ["kip101", "--seed", str(seed), "--deadline", "120"]
    report, proc = _scenario(*args, *(["--unsafe"] if unsafe else []))
    record_result(
        f"cluster-kip101-{'rule-off' if unsafe else 'rule-on'}", runs=1, seed=seed, faults=3,
        seconds=report["seconds"], acked=report["acked"], records_checked=report["records_read"],
        lost=report["lost"], problems=len(report["problems"]),
    )  # fmt: skip
    steps = [s["step"] for s in report["steps"]]
    assert any("the last in-sync replica, leads" in s for s in steps), steps
    if not unsafe:
        assert report["ok"], f"{report['problems']}\nsteps: {steps}\n{proc.stderr[-3000:]}"
        assert report["lost"] == 0
        assert report["truncations_to_hw"] == []
        return
    # the follower cut its log at its watermark on the new epoch, below its
    # log end (the restarted brokers' cuts are at their log start, 0)
    cuts = [
        (int(line.split("log_end_offset=")[1].split()[0]), int(line.split("high_watermark=")[1]))
        for line in report["truncations_to_hw"]
    ]
    assert any(0 < hw < end for end, hw in cuts), report["truncations_to_hw"]
    assert not report["ok"]
    assert proc.returncode == 1
    assert report["lost"] > 0, report["problems"]
    assert any("lost" in p for p in report["problems"])
