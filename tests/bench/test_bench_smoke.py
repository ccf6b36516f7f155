"""``tailrace bench`` as a user runs it: real processes, tiny record counts.

Shape and counts only: speed is measured by running the bench, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from cluster_harness import BrokerCluster
from harness import BrokerProcess

from tailrace.client import Admin

KEYS = {"records", "records_per_sec", "mib_per_sec", "latency_ms", "config", "errors"}
LATENCY_KEYS = {"p50", "p99", "p999", "max"}


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
    return subprocess.run(
        [sys.executable, "-m", "tailrace.broker.cli", "bench", *args],
        capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return json.loads(lines[-1])


def check_shape(result: dict[str, Any], records: int) -> None:
    assert result.keys() >= KEYS
    assert result["records"] == records
    assert result["errors"] == 0
    assert result["records_per_sec"] > 0
    assert result["mib_per_sec"] > 0
    assert result["latency_ms"].keys() >= LATENCY_KEYS
    assert all(result["latency_ms"][k] >= 0 for k in LATENCY_KEYS)
    # a spawned broker's PID is known: its cost is reported
    assert result["broker_cpu_s"] >= 0
    assert result["broker_rss_mib"] > 0


def test_produce_json():
    result = last_json(bench("produce", "--spawn-broker", "--json", "--records", "640"))
    check_shape(result, 640)
    assert result["mode"] == "produce"
    assert result["stored"] == 640  # counted in the log, not only by the producer
    assert result["latency_ms"]["count"] == 10  # every 64th record at full speed
    assert result["config"]["spawned_broker"] is True


def test_consume_json_with_two_producers_and_partitions():
    result = last_json(
        bench(
            "consume", "--spawn-broker", "--json", "--records", "501",
            "--producers", "2", "--partitions", "3", "--record-size", "1000",
        )
    )  # fmt: skip
    check_shape(result, 501)
    assert result["mode"] == "consume"
    assert result["mib_per_sec"] == pytest.approx(
        result["records_per_sec"] * 1000 / 2**20, rel=1e-3
    )


def test_e2e_json_at_a_fixed_rate():
    result = last_json(
        bench(
            "e2e", "--spawn-broker", "--json", "--records", "200", "--rate", "2000",
            "--wait-idle", "0",
        )
    )  # fmt: skip
    check_shape(result, 200)
    assert 0 <= result["machine_idle_pct_before"] <= 100
    assert result["other_cpu_s"] >= 0
    assert result["latency_ms"]["count"] == 200
    assert result["produce_ack_latency_ms"]["count"] == 200
    assert result["config"]["rate"] == 2000


def test_human_report_against_a_running_broker_finds_its_pid(tmp_path):
    with BrokerProcess(tmp_path / "data") as broker:
        proc = bench(
            "produce", "--bootstrap", broker.address, "--records", "300", "--latency-every", "3"
        )
        assert proc.returncode == 0, proc.stderr
        assert "300 records" in proc.stdout
        assert "(100 samples)" in proc.stdout
        assert "records/s" in proc.stdout
        # the broker listens on loopback: its PID is looked up, not guessed
        assert "PID from listener" in proc.stdout
        assert "\r" not in proc.stderr  # no progress drawn when stderr is not a TTY


def test_idle_needs_a_spawned_broker_and_reports_startup():
    refused = bench("idle", "--bootstrap", "127.0.0.1:1")
    assert refused.returncode == 2
    assert "--spawn-broker" in refused.stderr
    result = last_json(bench("idle", "--spawn-broker", "--partitions", "5", "--json"))
    assert result["partitions"] == 5
    assert result["startup_s"] > 0
    assert result["broker_rss_mib"] > 0


def test_bad_arguments_are_usage_errors():
    proc = bench("e2e", "--spawn-broker", "--records", "10", "--record-size", "4")
    assert proc.returncode == 2
    assert "--record-size" in proc.stderr


@pytest.mark.slow
def test_produce_acks_all_on_a_replicated_cluster(tmp_path, etcd):
    """--acks all and --replication-factor reach the producer and the topic:
    every record is acknowledged by the in-sync replicas of an RF=3 topic."""
    cluster = BrokerCluster(tmp_path, etcd)
    try:
        brokers = [cluster.start_broker(n) for n in (1, 2, 3)]
        cluster.wait_status(
            lambda d: len([b for b in d["brokers"] if b["alive"]]) == 3, "3 brokers alive"
        )
        result = last_json(
            bench(
                "produce", "--bootstrap", brokers[0].address, "--json", "--records", "500",
                "--acks", "all", "--replication-factor", "3", "--flush", "none", "--topic", "rf3",
            )
        )  # fmt: skip
        assert {k: result[k] for k in ("records", "errors", "stored")} == {
            "records": 500,
            "errors": 0,
            "stored": 500,
        }
        assert result["config"]["acks"] == -1
        assert result["config"]["replication_factor"] == 3
        # the controller placed it on three replicas (its log says so)...
        placed = r"partition state .*topic=rf3 .*replicas=(\S+)"
        found = [re.search(placed, line) for b in brokers for line in b.log_lines]
        assert {m.group(1) for m in found if m} == {"1,2,3"}
        # ...and the bench deleted the topic it created, from every replica
        deadline = time.monotonic() + 60  # the bound only stops a hung test
        with Admin(brokers[0].address) as admin:
            while "rf3" in [t.name for t in admin.list_topics()]:
                assert time.monotonic() < deadline, "rf3 is still listed"
                time.sleep(0.1)
    finally:
        cluster.stop()
    refused = bench("produce", "--spawn-broker", "--records", "10", "--acks", "2")
    assert refused.returncode == 2
