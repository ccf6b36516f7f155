"""The Kafka benchmark tools as a user runs them: real processes, tiny sizes.

tools/bench_kafka_clients.py (confluent-kafka next to the native clients on
one spawned broker) and tools/compare_peers.py's Kafka-protocol rows
(confluent-kafka against tailrace's Kafka listener and against librdkafka's
mock cluster). Shape and counts only: speed is measured by running the
tools, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )  # fmt: skip


def test_bench_kafka_clients_runs_every_workload_on_one_broker(tmp_path):
    out = tmp_path / "kc.json"
    proc = tool(
        "bench_kafka_clients.py", "--rounds", "1", "--sizes", "100", "--records", "3000",
        "--json", "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == doc
    (run,) = doc["results"]["100"]
    assert set(run) == {
        "native", "native-magic2", "confluent-kafka", "native <- native", "native <- magic2",
        "ck <- ck magic2", "ck <- native magic2", "ck <- native",
    }  # fmt: skip
    for workload, figures in run.items():
        # every record produced is in the log, every record stored is read back
        assert figures["records"] == 3000, workload
        assert figures["records_per_sec"] > 0
        assert figures["broker_cpu_s"] >= 0
        assert figures["load_avg_1m"] >= 0
    ratios = doc["ratios"]["100"]
    assert len(ratios["ck_produce_vs_native"]) == 1
    assert len(ratios["down_conversion_broker_ms_per_mib"]) == 1


def test_compare_peers_kafka_rows_tailrace_listener_and_librdkafka_mock(tmp_path):
    out = tmp_path / "peers.json"
    proc = tool(
        "compare_peers.py", "--systems", "tailrace-kafka,kafka-mock", "--repeats", "1",
        "--sizes", "100", "--records", "2000", "--rates", "200", "--seconds", "1",
        "--wait-idle", "0", "--chart", "", "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stdout  # neither system was left out
    assert "tailrace Kafka listener" in proc.stdout
    assert "librdkafka mock cluster" in proc.stdout
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"tailrace-kafka", "kafka-mock"}
    for system, by_size in results.items():
        (figures,) = by_size["100"]
        assert figures["produce_rps"] > 0, system
        assert figures["consume_rps"] > 0, system
        # 200 KB: within the 5 MiB the mock cluster keeps of a partition
        assert figures["consume_records"] == 2000, system
        assert figures["e2e_records@200"] == 200, system
        assert figures["e2e_p99_ms@200"] >= figures["e2e_p50_ms@200"] >= 0
