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
