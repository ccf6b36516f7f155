"""Real ``tailrace broker`` processes in cluster mode over a real etcd:
registration, controller election, controller failover after kill -9, and
``tailrace cluster status`` as a user sees it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import BrokerCluster

from tailrace.broker.cli.main import main
from tailrace.broker.faultkit.etcd_cluster import free_port
from tailrace.client import Admin

pytestmark = pytest.mark.slow


def controller_of(doc: dict[str, Any]) -> int | None:
    return doc["controller"]["node_id"] if doc["controller"] else None


def test_three_brokers_register_and_one_is_elected_controller(cluster: BrokerCluster) -> None:
    procs = [cluster.start_broker(n) for n in (1, 2, 3)]
    doc = cluster.wait_status(lambda d: d["controller"] is not None, "a controller")
    brokers = {b["node_id"]: b for b in doc["brokers"]}
    assert set(brokers) == {1, 2, 3}
    for proc in procs:
        b = brokers[proc.node_id]
        assert b["alive"] is True
        assert b["address"] == proc.address  # its native listener, as bound
        assert b["broker_epoch"] == proc.broker_epoch()
    controller = cluster.brokers[controller_of(doc)]  # type: ignore[index]
    m = controller.wait_for_line(r"elected controller .*controller_epoch=(\d+)")
    assert int(m.group(1)) == doc["controller"]["controller_epoch"]
    assert [b["node_id"] for b in doc["brokers"] if b["controller"]] == [controller.node_id]
    assert (doc["under_replicated"], doc["offline"]) == ([], [])


def test_kill_9_of_the_controller_elects_another_with_a_higher_epoch(
    cluster: BrokerCluster,
) -> None:
    for n in (1, 2, 3):
        cluster.start_broker(n)
    first = cluster.wait_status(lambda d: d["controller"] is not None, "a controller")
    old = controller_of(first)
    assert old is not None
    bootstrap = next(p.address for n, p in cluster.brokers.items() if n != old)
    with Admin(bootstrap) as admin:
        admin.create_topic("orders", 3)  # the default replication factor: 3
    placed = cluster.wait_status(lambda d: d["partitions"] == 3, "orders placed")
    assert placed["under_replicated"] == []

    cluster.kill(old)  # kill -9 through its handle: its lease expires

    def taken_over(d: dict[str, Any]) -> bool:
        return controller_of(d) not in (None, old) and len(d["under_replicated"]) == 3

    doc = cluster.wait_status(taken_over, "a new controller and the dead broker out of the ISRs")
    assert doc["controller"]["controller_epoch"] > first["controller"]["controller_epoch"]
    dead = next(b for b in doc["brokers"] if b["node_id"] == old)
    assert (dead["alive"], dead["address"]) == (False, None)
    for p in doc["under_replicated"]:
        assert old not in p["isr"]
        assert p["leader"] != old
        assert p["leader"] in p["isr"]
        # the partition the dead broker led has a new leader in a new epoch
        assert p["leader_epoch"] == (1 if p["replicas"][0] == old else 0)
    assert doc["offline"] == []

    # what a user reads
    text = cluster.status_command()
    assert text.returncode == 0, text.stderr
    new = controller_of(doc)
    assert f"controller: broker {new} (controller epoch " in text.stdout
    assert "3 under-replicated, 0 offline" in text.stdout
    rows = {line.split()[0]: line.split() for line in text.stdout.splitlines() if line[:1] == " "}
    assert rows[str(old)][1] == "no"


def test_kill_9_ends_the_dead_brokers_session_without_waiting_for_its_lease(
    tmp_path: Path, etcd: Any
) -> None:
    # a two-minute lease: within the minute this test allows, only the
    # other brokers' peer watch (cluster.peer_liveness) can end the session
    cluster = BrokerCluster(tmp_path, etcd, session_timeout_ms=120_000)
    try:
        for n in (1, 2, 3):
            cluster.start_broker(n)
        first = cluster.wait_status(lambda d: d["controller"] is not None, "a controller")
        old = controller_of(first)
        assert old is not None
        survivors = [p for n, p in cluster.brokers.items() if n != old]
        marks = [len(p.log_lines) for p in survivors]

        cluster.kill(old)

        doc = cluster.wait_status(
            lambda d: (
                controller_of(d) not in (None, old)
                and not any(b["alive"] for b in d["brokers"] if b["node_id"] == old)
            ),
            "the dead controller's registration gone and another controller",
        )
        assert doc["controller"]["controller_epoch"] > first["controller"]["controller_epoch"]
        # it was a survivor's watch that ended it, saying so
        pattern = rf"port refuses connections.*node_id={old}\b"
        seen = [
            any(re.search(pattern, line) for line in p.log_lines[mark:])
            for p, mark in zip(survivors, marks, strict=True)
        ]
        assert any(seen), "no survivor logged the refused port"
    finally:
        cluster.stop()


def test_a_controller_paused_past_its_lease_is_replaced_and_rejoins_as_a_broker(
    cluster: BrokerCluster,
) -> None:
    for n in (1, 2, 3):
        cluster.start_broker(n)
    first = cluster.wait_status(lambda d: d["controller"] is not None, "a controller")
    old = controller_of(first)
    assert old is not None
    paused = cluster.brokers[old]
    old_broker_epoch = paused.broker_epoch()
    seen = len(paused.log_lines)
    paused.pause()
    try:
        doc = cluster.wait_status(
            lambda d: controller_of(d) not in (None, old), "another controller while paused"
        )
    finally:
        paused.resume()
    assert doc["controller"]["controller_epoch"] > first["controller"]["controller_epoch"]
    # on waking it finds its lease gone: it ends that session (a write it
    # made as controller would be fenced: test_membership) and registers
    # anew with a higher broker epoch
    paused.wait_for_line(r"cluster session ended", start=seen)
    assert paused.broker_epoch(start=seen) > old_broker_epoch
    after = cluster.wait_status(
        lambda d: any(b["node_id"] == old and b["alive"] for b in d["brokers"]), "rejoined"
    )
    assert after["controller"] == doc["controller"]


def test_cluster_status_without_etcd_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["cluster", "status", "--etcd", f"http://127.0.0.1:{free_port()}"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("tailrace: etcd kv/range: no endpoint answered")
    assert len(err.splitlines()) == 1


def test_cluster_mode_needs_both_a_node_id_and_etcd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("TAILRACE_")]:
        monkeypatch.delenv(name)
    base = ["broker", "--data-dir", str(tmp_path), "--check-config"]
    for extra in (["--node-id", "1"], ["--cluster-etcd", "http://127.0.0.1:2379"]):
        assert main([*base, *extra]) == 2
        assert "cluster mode needs both cluster.node_id" in capsys.readouterr().err
    assert main([*base, "--node-id", "1", "--cluster-etcd", "http://127.0.0.1:2379"]) == 0
    out = capsys.readouterr().out
    assert "cluster.node_id = 1  # flag" in out
    assert 'cluster.etcd_endpoints = "http://127.0.0.1:2379"  # flag' in out


def test_a_single_node_broker_never_loads_the_etcd_client() -> None:
    code = (
        "import sys, tailrace.broker.app, tailrace.broker.cli.main;"
        "assert 'httpx' not in sys.modules, 'httpx imported';"
        "assert 'tailrace.broker.etcd' not in sys.modules, 'etcd adapter imported';"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tailrace.broker.c'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json;" + code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "tailrace.broker.cluster" not in json.loads(done.stdout)
