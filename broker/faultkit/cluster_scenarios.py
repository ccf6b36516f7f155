"""Cluster fault scenarios: etcd members and broker processes in a private
network namespace, faulted by kills, pauses and network partitions.

Run as ``python -m tailrace.broker.faultkit.cluster_scenarios SCENARIO``; it
re-executes itself inside a new ``unshare -rn`` namespace (see
:mod:`.netns`), runs the scenario and prints one JSON report on stdout
(``ok``, ``problems``, ``steps`` with what each fault led to and how long).
The tests run the short profile; tools/reliability.py the long one.

Layout inside the namespace: etcd members on 127.0.1.1 (one port pair
each), broker N on 127.0.0.(N+1) with its outgoing connections bound there
(``cluster.bind_host``), so an nftables rule can cut one broker from etcd
or from another broker by address.

Scenario ``membership`` (what exists of issue 16 today: registration,
controller election, partition leadership in etcd; no data is replicated
yet, so nothing here checks records, and a broker that died stays out of
the ISR: without replication nothing shows it caught up, so partitions
whose every ISR member died stay offline, as the no-unclean-election rule
wants):

1. three brokers register, one becomes controller; a topic with three
   partitions of replication factor 3 is created through a broker and
   placed;
2. for each fault in turn, the cluster must recover within the deadline:
   the controller killed (kill -9), then restarted; the controller paused
   (SIGSTOP) past its session, then resumed; the controller cut off from
   etcd but not from the brokers, then healed; one etcd member killed
   (quorum kept) while a broker is killed, then both restarted; one etcd
   member paused, then resumed;
3. after each: a controller on a registered broker, with a controller
   epoch higher than every earlier one whenever the controller changed;
   every partition led by a live member of its ISR, or offline when no ISR
   member lives; the ISR never empty; leader epochs never lowered; a
   restarted broker registered again with a higher broker epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from .etcd_cluster import EtcdCluster
from .netns import NetFaults, bring_up_loopback, in_private_namespace, namespace_argv, pause, resume
from .process import BrokerChild
from .replicas import Monotonic

__all__ = ["main", "run_membership"]

ETCD_HOST = "127.0.1.1"
PREFIX = "/tailrace"


def broker_host(node_id: int) -> str:
    return f"127.0.0.{node_id + 1}"


class Cluster:
    """The processes of one scenario, each stopped through its own handle."""

    def __init__(self, base: Path, *, brokers: int = 3, etcd_members: int = 3,
                 session_timeout_ms: int = 2_000) -> None:  # fmt: skip
        self.base = base
        self.etcd = EtcdCluster(base / "etcd", members=etcd_members, host=ETCD_HOST)
        self.session_timeout_ms = session_timeout_ms
        self.brokers: dict[int, BrokerChild] = {}
        for n in range(1, brokers + 1):
            child = BrokerChild(
                base / f"broker{n}",
                env={
                    "TAILRACE_CLUSTER_NODE_ID": str(n),
                    "TAILRACE_CLUSTER_ETCD_ENDPOINTS": ",".join(self.etcd.endpoints),
                    "TAILRACE_CLUSTER_BIND_HOST": broker_host(n),
                    "TAILRACE_CLUSTER_SESSION_TIMEOUT_MS": str(session_timeout_ms),
                },
            )
            child.listen = f"{broker_host(n)}:0"
            self.brokers[n] = child

    def start(self) -> None:
        self.etcd.start()
        for child in self.brokers.values():
            child.start()

    def stop(self) -> None:
        for child in self.brokers.values():
            if child.proc is not None:
                resume(child.proc)  # a paused broker cannot die by SIGKILL until continued
                child.kill()
        self.etcd.stop()

    def status(self) -> dict[str, Any]:
        """``tailrace cluster status --json``'s document, read from etcd."""
        from tailrace.broker.cluster.status import read_view, status_document

        view = trio.run(read_view, self.etcd.endpoints, PREFIX)
        doc = status_document(view)
        doc["partitions_detail"] = [
            {"topic": t, "partition": p, "leader": s.leader, "leader_epoch": s.leader_epoch,
             "isr": list(s.isr)}
            for (t, p), (s, _rev) in sorted(view.partitions.items())
        ]  # fmt: skip
        return doc


def _controller(doc: dict[str, Any]) -> int | None:
    c = doc["controller"]
    return None if c is None else c["node_id"]


def _alive(doc: dict[str, Any]) -> set[int]:
    return {b["node_id"] for b in doc["brokers"] if b["alive"]}


def _epochs(doc: dict[str, Any]) -> dict[int, int]:
    return {b["node_id"]: b["broker_epoch"] for b in doc["brokers"] if b["alive"]}


class Run:
    """One scenario's observations, checks and steps."""

    def __init__(self, cluster: Cluster, deadline_s: float) -> None:
        self.cluster = cluster
        self.deadline_s = deadline_s
        self.seen = Monotonic()
        self.problems: list[str] = []
        self.steps: list[dict[str, Any]] = []

    def observe(self) -> dict[str, Any]:
        doc = self.cluster.status()
        c = doc["controller"]
        if c is not None:
            self.seen.observe("controller_epoch", "cluster", c["controller_epoch"])
        for p in doc.get("partitions_detail", []):
            self.seen.observe("leader_epoch", f"{p['topic']}/{p['partition']}", p["leader_epoch"])
        return doc

    def wait_for(self, what: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll the cluster's state until ``check`` holds; a miss past the
        deadline is a problem (the scenario goes on)."""
        start = time.monotonic()
        doc = self.observe()
        while not check(doc):
            if time.monotonic() - start > self.deadline_s:
                self.problems.append(f"{what}: not within {self.deadline_s:.0f} s; last {doc}")
                break
            time.sleep(0.1)
            doc = self.observe()
        self.steps.append({"step": what, "seconds": round(time.monotonic() - start, 3)})
        return doc

    def settled(self, doc: dict[str, Any], alive: set[int]) -> bool:
        """Every broker in ``alive`` registered, a controller among them, and
        every partition led by a live member of its ISR, or offline with no
        live ISR member (never an unclean leader; the ISR never empty)."""
        if _alive(doc) != alive or _controller(doc) not in alive:
            return False
        for p in doc["partitions_detail"]:
            if not p["isr"]:
                self.problems.append(f"empty ISR: {p}")
                return False
            if p["leader"] == -1:
                if set(p["isr"]) & alive:
                    return False  # a live ISR member should lead
            elif p["leader"] not in alive or p["leader"] not in p["isr"]:
                return False
        return True


def run_membership(base: Path, *, seed: int, rounds: int, deadline_s: float) -> dict[str, Any]:
    rng = random.Random(seed)
    cluster = Cluster(base)
    run = Run(cluster, deadline_s)
    net = NetFaults()
    try:
        cluster.start()
        everyone = set(cluster.brokers)
        run.wait_for("three brokers and a controller", lambda d: run.settled(d, everyone))
        from tailrace.client import Admin

        with Admin(cluster.brokers[1].address) as admin:
            admin.create_topic("t", 3)
        run.wait_for(
            "topic placed on three replicas",
            lambda d: (
                d["partitions"] == 3 and not d["unplaced_topics"] and run.settled(d, everyone)
            ),
        )
        for _ in range(rounds):
            faults = [_kill_controller, _pause_controller, _cut_controller_from_etcd,
                      _etcd_member_down, _pause_etcd_member]  # fmt: skip
            rng.shuffle(faults)
            for fault in faults:
                fault(run, net, rng)
        problems = run.problems + run.seen.problems
    finally:
        net.heal()
        cluster.stop()
    return {"ok": not problems, "problems": problems, "steps": run.steps, "seed": seed}


def _controller_change(run: Run, before: dict[str, Any], what: str, ok_alive: set[int]) -> None:
    old = before["controller"]

    def moved(d: dict[str, Any]) -> bool:
        c = d["controller"]
        return (
            c is not None
            and c["controller_epoch"] > old["controller_epoch"]
            and c["node_id"] in ok_alive
            and _alive(d) >= ok_alive
        )

    run.wait_for(what, moved)


def _kill_controller(run: Run, net: NetFaults, rng: random.Random) -> None:
    before = run.observe()
    victim = _controller(before)
    assert victim is not None
    old_epochs = _epochs(before)
    run.cluster.brokers[victim].kill()
    rest = set(run.cluster.brokers) - {victim}
    _controller_change(run, before, f"controller {victim} killed: successor elected", rest)
    run.wait_for(f"broker {victim} dead: partitions re-led", lambda d: run.settled(d, rest))
    run.cluster.brokers[victim].start()
    everyone = set(run.cluster.brokers)
    doc = run.wait_for(f"broker {victim} restarted: registered", lambda d: run.settled(d, everyone))
    if _epochs(doc).get(victim, 0) <= old_epochs[victim]:
        run.problems.append(f"broker {victim} re-registered without a higher broker epoch")


def _pause_controller(run: Run, net: NetFaults, rng: random.Random) -> None:
    before = run.observe()
    victim = _controller(before)
    assert victim is not None
    proc = run.cluster.brokers[victim].proc
    assert proc is not None
    pause(proc)
    rest = set(run.cluster.brokers) - {victim}
    try:
        _controller_change(run, before, f"controller {victim} paused: successor elected", rest)
    finally:
        resume(proc)
    everyone = set(run.cluster.brokers)
    doc = run.wait_for(
        f"broker {victim} resumed: registered again", lambda d: run.settled(d, everyone)
    )
    if _controller(doc) == victim:
        run.problems.append(f"paused controller {victim} is controller again after waking up")


def _cut_controller_from_etcd(run: Run, net: NetFaults, rng: random.Random) -> None:
    before = run.observe()
    victim = _controller(before)
    assert victim is not None
    net.drop(broker_host(victim), ETCD_HOST)
    net.drop(ETCD_HOST, broker_host(victim))
    rest = set(run.cluster.brokers) - {victim}
    try:
        _controller_change(run, before, f"controller {victim} cut from etcd: successor", rest)
    finally:
        net.heal()
    everyone = set(run.cluster.brokers)
    run.wait_for(f"broker {victim} healed: registered again", lambda d: run.settled(d, everyone))


def _etcd_member_down(run: Run, net: NetFaults, rng: random.Random) -> None:
    member = rng.choice(run.cluster.etcd.members)
    member.kill()
    try:
        # the cluster still works on two members: a broker's death is handled
        before = run.observe()
        victim = rng.choice([n for n in run.cluster.brokers if n != _controller(before)])
        run.cluster.brokers[victim].kill()
        rest = set(run.cluster.brokers) - {victim}
        run.wait_for(
            f"etcd member {member.name} down, broker {victim} killed: handled",
            lambda d: run.settled(d, rest),
        )
    finally:
        member.start()
    run.cluster.brokers[victim].start()
    everyone = set(run.cluster.brokers)
    run.wait_for(
        f"etcd member {member.name} and broker {victim} back", lambda d: run.settled(d, everyone)
    )


def _pause_etcd_member(run: Run, net: NetFaults, rng: random.Random) -> None:
    member = rng.choice(run.cluster.etcd.members)
    member.pause()
    try:
        time.sleep(run.cluster.session_timeout_ms / 1000 * 1.5)
        everyone = set(run.cluster.brokers)
        run.wait_for(
            f"etcd member {member.name} paused: cluster still settled",
            lambda d: run.settled(d, everyone),
        )
    finally:
        member.resume()


SCENARIOS = {"membership": run_membership}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds per recovery")
    parser.add_argument("--base", help="directory for data and logs (default: a temporary one)")
    args = parser.parse_args(argv)
    if not in_private_namespace():
        argv_full = [sys.executable, "-m", "tailrace.broker.faultkit.cluster_scenarios"]
        os.execvp("unshare", namespace_argv([*argv_full, *(argv or sys.argv[1:])]))
    bring_up_loopback()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    with tempfile.TemporaryDirectory(prefix="tailrace-cluster-", dir=args.base) as base:
        report = SCENARIOS[args.scenario](
            Path(base), seed=seed, rounds=args.rounds, deadline_s=args.deadline
        )
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
