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

Scenario ``membership`` (registration, controller election, partition
leadership in etcd; it writes no records, so nothing here checks them:
scenario ``replication`` below does; partitions whose every ISR member
died stay offline, as the no-unclean-election rule wants):

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

Scenario ``replication`` (issue 16's data under faults):

1. three etcd members, three brokers (``replica_lag_time_max_ms`` 2 s, a
   2 s session), a topic of three partitions with replication factor 3;
   two idempotent acks=all producers (tailrace's AsyncProducer, a bootstrap
   list of all three brokers; it routes to leaders and retries
   NOT_LEADER_OR_FOLLOWER) write numbered values whose outcomes go to the
   oracle's History (oracle.py, workload.py);
2. a sampler asks every broker for Metadata four times a second: each
   broker's view of every leader epoch must never go back, nor each
   replica's high watermark within one broker process once it has taken
   up its replica (its "leading"/"following" log line; before that a
   restarted broker's log reports its own flush point), nor may a high
   watermark exceed its log end;
3. the faults, each followed by a heal and a wait until every broker is
   registered, every partition led and every replica back in the ISR, and
   acknowledgements going on in every partition: kill -9 of a partition's
   leader (restarted), kill -9 of a follower (restarted), the leader
   paused (SIGSTOP) until another is elected and past its lag limit and
   lease, then resumed; the leader cut from its followers but not from
   etcd (it shrinks its ISR to itself; acks=all waits), the leader cut
   from etcd but not from its followers (another is elected), a follower
   cut from everything until it is out of every ISR, then rejoined, and
   the controller killed (restarted); a leader alone in a minority (cut
   from the other brokers, every etcd member and the clients), the
   controller paused past its session, one etcd member killed and one
   paused past every session, quorum kept; the power cut on one
   broker and on two at once (:func:`_d_power_cut`, powercut_broker.py); a
   follower's tail damaged while it is down (:func:`_d_corrupt_follower_tail`);
   a rolling restart (SIGTERM, restart, whole again, next broker). Round 1
   runs each once in a seeded order; later rounds a seeded random mix;
4. then: producers closed, every replica caught up (same log end, high
   watermark there), the topic read through a consumer and checked by the
   oracle (nothing acknowledged lost, nothing duplicated, each producer's
   order kept per partition, each value at its acknowledged offset); the
   brokers stopped; each broker's files checked by the oracle on their own,
   and the replicas of each partition compared batch by batch (offsets,
   leader epoch, CRC, SHA-256 of the stored bytes: byte-identical).

Scenario ``unclean`` (the checker's negative control): every in-sync
replica of a partition dies while its out-of-sync follower lives; see
:func:`run_unclean`. Safe, nothing is lost; with ``--unsafe`` (the
test-only seam TAILRACE_FAULT_UNCLEAN_ELECTION=1) the checker must report
acknowledged records lost.

Scenario ``kip101`` (the second negative control, rule 7): a follower that
holds acknowledged records above its own high watermark must truncate in a
new epoch whose leader it cannot reach, and leads next; see
:func:`run_kip101`. Safe, nothing is lost; with ``--unsafe`` (the test-only
seam TAILRACE_FAULT_TRUNCATE_TO_HW=1 in broker/cluster/replicas.py) the
checker must report acknowledged records lost.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from tailrace.client.errors import (
    CorruptRecordError,
    InvalidRecordError,
    RecordTooLargeError,
    TailraceError,
)
from tailrace.client.protocol import MetadataRequest
from tailrace.client.records import validate_batch
from tailrace.client.transport import BrokerConnection

from .etcd_cluster import EtcdCluster
from .netns import NetFaults, bring_up_loopback, in_private_namespace, namespace_argv, pause, resume
from .oracle import ACKED, FAILED, UNKNOWN, History, check, read_topic_dir
from .process import BrokerChild
from .replicas import Monotonic, compare_replicas
from .workload import read_topic, run_producer

__all__ = ["main", "run_kip101", "run_membership", "run_replication", "run_unclean"]

ETCD_HOST = "127.0.1.1"
#: how long a status read retries while etcd cannot answer
STATUS_RETRY_S = 30.0
#: where the harness's clients connect from (sockets that do not bind)
CLIENT_HOST = "127.0.0.1"
PREFIX = "/tailrace"


def broker_host(node_id: int) -> str:
    return f"127.0.0.{node_id + 1}"


class Cluster:
    """The processes of one scenario, each stopped through its own handle."""

    def __init__(self, base: Path, *, brokers: int = 3, etcd_members: int = 3,
                 session_timeout_ms: int = 2_000,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
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
                    **(env or {}),
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
        from tailrace.broker.etcd import EtcdUnavailableError

        began = time.monotonic()
        while True:
            try:
                view = trio.run(read_view, self.etcd.endpoints, PREFIX)
                break
            except EtcdUnavailableError:
                # a member killed or paused while etcd elects a new leader
                # ("leader changed", no answer within 2 s): read again
                if time.monotonic() - began > STATUS_RETRY_S:
                    raise
                time.sleep(0.2)
        doc = status_document(view)
        doc["partitions_detail"] = [
            {"topic": t, "partition": p, "leader": s.leader, "leader_epoch": s.leader_epoch,
             "isr": list(s.isr), "replicas": list(s.replicas)}
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
        #: what was seen that is no violation (a known liveness limit)
        self.notes: list[str] = []

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
        self.step(what, time.monotonic() - start)
        return doc

    def step(self, what: str, seconds: float) -> None:
        """Record a step (and show it on stderr as it happens)."""
        self.steps.append({"step": what, "seconds": round(seconds, 3)})
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {seconds:7.2f} s  {what}\n")
        sys.stderr.flush()

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
    before = run.wait_for("a controller to fault", lambda d: _controller(d) is not None)
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
    before = run.wait_for("a controller to fault", lambda d: _controller(d) is not None)
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
    before = run.wait_for("a controller to fault", lambda d: _controller(d) is not None)
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


# --- scenario "replication": data under the faults ---------------------------------

TOPIC = "rep"
PARTITIONS = 3
#: a follower that has not caught up for this long leaves the ISR (the
#: broker's default is 10 s; short here so the faults take effect quickly)
LAG_MS = 2_000


_ROLE = re.compile(r"\b(?:leading|following)\b.*\btopic=(\S+) partition=(\d+)\b")


class Workload:
    """Idempotent acks=all producers (tailrace's AsyncProducer, a bootstrap
    list of every broker) feeding an oracle History, and a sampler of every
    broker's Metadata (its own replica's high watermark and log end, its
    view of the leader epochs), in a trio loop of their own on a thread."""

    def __init__(self, cluster: Cluster, run: Run, *, producers: int, rate: float,
                 partitions: int = PARTITIONS, close_timeout: float = 120.0) -> None:  # fmt: skip
        self.cluster = cluster
        self.run = run
        self.history = History()
        self.producers = producers
        self.rate = rate
        self.partitions = partitions
        self.close_timeout = close_timeout
        self.bootstrap = ""
        #: (node, partition) -> (pid, high watermark, log end) last reported
        self.latest: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.samples = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._closing: trio.Event | None = None
        #: (pid, partition) whose replica the broker process has taken up
        #: (its "leading" or "following" line): its high watermark is the
        #: replicated one from then on (before, a restarted broker's log
        #: reports what its own flush mode made durable)
        self.roles: set[tuple[int, int]] = set()
        for child in cluster.brokers.values():
            child.line_hooks.append(self._line)
        self._error: list[BaseException] = []
        self._producers_done = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self.bootstrap = ",".join(c.address for c in self.cluster.brokers.values())
        self._thread.start()
        self._ready.wait(60)
        if self._error:
            raise self._error[0]

    def _line(self, pid: int, line: str) -> None:
        m = _ROLE.search(line)
        if m and m.group(1) == TOPIC:
            self.roles.add((pid, int(m.group(2))))

    def stop(self, timeout: float = 180.0) -> None:
        """Stop sending; wait (a hang guard) for the producers to close:
        what is still unanswered after their close timeout is unknown. The
        sampler goes on until :meth:`close`."""
        self._signal(self._stop)
        began = time.monotonic()
        while self.history.pending and time.monotonic() - began < timeout:
            time.sleep(0.1)
        self._producers_done.wait(max(1.0, timeout - (time.monotonic() - began)))
        if not self._producers_done.is_set():
            self.run.problems.append(f"workload: producers not closed within {timeout:.0f} s")
        self.history.finish()

    def close(self, timeout: float = 60.0) -> None:
        self._signal(self._stop)
        self._signal(self._closing)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.run.problems.append(f"workload: not finished within {timeout:.0f} s")
        self.history.finish()
        if self._error:
            self.run.problems.append(f"workload failed: {self._error[0]!r}")

    def _signal(self, event: trio.Event | None) -> None:
        if self._token is not None and event is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(event.set, trio_token=self._token)

    def acked(self) -> int:
        return sum(self.history.acked_in.values())

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported by stop()
            self._error.append(exc)
            self._ready.set()
            self._producers_done.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = stop = trio.Event()
        self._closing = trio.Event()
        config = {"acks": "all", "delivery_timeout_ms": 300_000, "request_timeout_ms": 3_000,
                  "linger_ms": 5}  # fmt: skip
        async with trio.open_nursery() as outer:
            for n in self.cluster.brokers:
                outer.start_soon(self._sample, n)
            async with trio.open_nursery() as producers:
                for i in range(self.producers):
                    await producers.start(
                        functools.partial(
                            run_producer, self.bootstrap, TOPIC, self.history, f"p{i}",
                            partitions=self.partitions, stop=stop, rate=self.rate, pad=64,
                            config=config, close_timeout=self.close_timeout,
                        )
                    )  # fmt: skip
                self._ready.set()
            # the producers closed by themselves once stop was set
            self._producers_done.set()
            await self._closing.wait()
            outer.cancel_scope.cancel()

    async def _sample(self, node: int) -> None:
        """Every quarter second, ``node``'s Metadata of the topic: its
        replica's high watermark, per process (a restarted replica starts
        again from its log start, it does not know what was committed), and
        the leader epochs it knows, which must never go back."""
        child = self.cluster.brokers[node]
        while True:
            await trio.sleep(0.25)
            proc = child.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                await self._sample_process(node, child, proc.pid)
            except* (TailraceError, OSError, trio.BrokenResourceError):
                pass  # dead, paused or cut off: connect again

    async def _sample_process(self, node: int, child: BrokerChild, pid: int) -> None:
        async with trio.open_nursery() as nursery:
            conn = await BrokerConnection.connect(
                nursery, child.address, connect_timeout=2, request_timeout=2
            )
            try:
                while child.proc is not None and child.proc.pid == pid:
                    answer = await conn.request(MetadataRequest(topics=[TOPIC]))
                    if child.proc is None or child.proc.pid != pid:
                        break
                    self._observe(node, pid, answer)
                    await trio.sleep(0.25)
            finally:
                await conn.aclose()
                nursery.cancel_scope.cancel()

    def _observe(self, node: int, pid: int, answer: Any) -> None:
        seen = self.run.seen
        for t in answer.topics:
            if t.name != TOPIC:
                continue
            for p in t.partitions:
                where = f"{TOPIC}/{p.partition}"
                if p.leader_epoch >= 0:
                    # each broker's view (etcd's, as its watch delivered it) must
                    # never go back; one cut off from etcd may trail the others
                    seen.observe("leader_epoch", f"{where}@{node}", p.leader_epoch)
                if p.high_watermark < 0 or p.log_end_offset < 0:
                    continue
                if (pid, p.partition) not in self.roles:
                    continue
                self.samples += 1
                seen.observe("high_watermark", f"{where}@{node} (pid {pid})", p.high_watermark)
                if p.high_watermark > p.log_end_offset:
                    self.run.problems.append(
                        f"broker {node} reports {where} high watermark {p.high_watermark} above "
                        f"its log end {p.log_end_offset}"
                    )
                self.latest[(node, p.partition)] = (pid, p.high_watermark, p.log_end_offset)


def _detail(doc: dict[str, Any], partition: int) -> dict[str, Any]:
    for p in doc["partitions_detail"]:
        if p["topic"] == TOPIC and p["partition"] == partition:
            return p
    raise KeyError(partition)


def _leader_of(doc: dict[str, Any], partition: int) -> int:
    return _detail(doc, partition)["leader"]


class DataRun:
    """Run plus the workload: waits for the cluster to be whole again and
    for acknowledgements to go on after each fault."""

    def __init__(self, run: Run, work: Workload, net: NetFaults, rng: random.Random) -> None:
        self.run = run
        self.cluster = run.cluster
        self.work = work
        self.net = net
        self.rng = rng
        self.faults = 0

    def whole(self, doc: dict[str, Any]) -> bool:
        """Every broker registered, every partition led by one of them with
        every replica in sync."""
        everyone = set(self.cluster.brokers)
        return self.run.settled(doc, everyone) and all(
            len(p["isr"]) == len(p["replicas"]) and p["leader"] in everyone
            for p in doc["partitions_detail"]
            if p["topic"] == TOPIC
        )

    def heal_and_rejoin(self, what: str) -> None:
        self.net.heal()
        for child in self.cluster.brokers.values():
            if child.proc is not None:
                resume(child.proc)
        self.run.wait_for(f"{what}: healed, every replica in sync", self.whole)
        self.progress(what)

    def rejoin_restarted(self, nodes: dict[int, int], what: str) -> None:
        """Like :meth:`heal_and_rejoin`, once each restarted broker (node ->
        its broker epoch before) registered again with a higher epoch: the
        old registration may outlive a killed process by its session, and
        the cluster would look whole while the new one has not yet joined."""
        self.net.heal()
        self.run.wait_for(
            f"{what}: registered again",
            lambda d: all(_epochs(d).get(n, 0) > old for n, old in nodes.items()),
        )
        self.heal_and_rejoin(what)

    def progress(self, what: str, records: int = 30) -> None:
        """Acknowledgements go on in every partition (a hang guard, not a
        timing check)."""
        start = dict(self.work.history.acked_in)

        def moved() -> bool:
            now = self.work.history.acked_in
            return all(
                now.get((TOPIC, p), 0) - start.get((TOPIC, p), 0) >= records
                for p in range(self.work.partitions)
            )

        began = time.monotonic()
        while not moved():
            if time.monotonic() - began > self.run.deadline_s:
                self.run.problems.append(
                    f"{what}: fewer than {records} acknowledgements per partition within "
                    f"{self.run.deadline_s:.0f} s (acked per partition "
                    f"{dict(self.work.history.acked_in)})"
                )
                break
            time.sleep(0.1)
        self.run.step(f"{what}: acknowledgements go on", time.monotonic() - began)

    def pick(self) -> tuple[int, dict[str, Any]]:
        doc = self.run.observe()
        return self.rng.randrange(self.work.partitions), doc

    def lag_and_lease(self) -> float:
        return max(LAG_MS, self.cluster.session_timeout_ms) / 1000


def _new_leader(p: int, old: int) -> Callable[[dict[str, Any]], bool]:
    def check(d: dict[str, Any]) -> bool:
        return _leader_of(d, p) not in (old, NO_LEADER_ID)

    return check


NO_LEADER_ID = -1


def _d_kill_leader(dr: DataRun) -> None:
    p, doc = dr.pick()
    victim = _leader_of(doc, p)
    dr.cluster.brokers[victim].kill()
    dr.run.wait_for(f"leader {victim} of {TOPIC}/{p} killed: new leader", _new_leader(p, victim))
    dr.progress(f"leader {victim} killed")
    dr.cluster.brokers[victim].start()
    dr.heal_and_rejoin(f"leader {victim} restarted")


def _d_kill_follower(dr: DataRun) -> None:
    p, doc = dr.pick()
    d = _detail(doc, p)
    victim = dr.rng.choice([r for r in d["replicas"] if r != d["leader"]])
    dr.cluster.brokers[victim].kill()
    rest = set(dr.cluster.brokers) - {victim}
    dr.run.wait_for(
        f"follower {victim} of {TOPIC}/{p} killed: out of every ISR",
        lambda d: (
            dr.run.settled(d, rest) and all(victim not in x["isr"] for x in d["partitions_detail"])
        ),
    )
    dr.progress(f"follower {victim} killed")
    dr.cluster.brokers[victim].start()
    dr.heal_and_rejoin(f"follower {victim} restarted")


def _d_pause_leader(dr: DataRun) -> None:
    p, doc = dr.pick()
    victim = _leader_of(doc, p)
    proc = dr.cluster.brokers[victim].proc
    assert proc is not None
    pause(proc)
    try:
        dr.run.wait_for(
            f"leader {victim} of {TOPIC}/{p} paused past lag limit and lease: new leader",
            _new_leader(p, victim),
        )
        time.sleep(dr.lag_and_lease())  # well past both, whatever the new leader took
        dr.progress(f"leader {victim} paused")
    finally:
        resume(proc)
    dr.heal_and_rejoin(f"leader {victim} resumed")


def _d_cut_leader_from_followers(dr: DataRun) -> None:
    p, doc = dr.pick()
    victim = _leader_of(doc, p)
    others = [broker_host(n) for n in dr.cluster.brokers if n != victim]
    dr.net.isolate(broker_host(victim), others)
    try:
        # the leader keeps etcd: it stays leader, and shrinks its ISR to itself
        dr.run.wait_for(
            f"leader {victim} of {TOPIC}/{p} cut from its followers: ISR shrunk to it",
            lambda d: _detail(d, p)["isr"] == [victim] or _leader_of(d, p) != victim,
        )
        time.sleep(dr.lag_and_lease())
    finally:
        dr.net.heal()
    dr.heal_and_rejoin(f"leader {victim} reconnected to its followers")


def _d_cut_leader_from_etcd(dr: DataRun) -> None:
    p, doc = dr.pick()
    victim = _leader_of(doc, p)
    dr.net.partition(broker_host(victim), ETCD_HOST)
    try:
        dr.run.wait_for(
            f"leader {victim} of {TOPIC}/{p} cut from etcd: new leader", _new_leader(p, victim)
        )
        # once its session is gone it names no brokers in Metadata, and its
        # clients move on to the next bootstrap broker (a stall here was the
        # stale view it used to answer with)
        dr.progress(f"leader {victim} cut from etcd")
    finally:
        dr.net.heal()
    dr.heal_and_rejoin(f"leader {victim} reconnected to etcd")


def _d_isolate_follower(dr: DataRun) -> None:
    p, doc = dr.pick()
    d = _detail(doc, p)
    victim = dr.rng.choice([r for r in d["replicas"] if r != d["leader"]])
    # from everything, the clients too (a broker cut from etcd and the other
    # brokers but not from the clients is what the minority partition and
    # the leader cut from etcd cover)
    others = [ETCD_HOST, CLIENT_HOST] + [broker_host(n) for n in dr.cluster.brokers if n != victim]
    dr.net.isolate(broker_host(victim), others)
    _cut_off(
        dr, victim, f"follower {victim} of {TOPIC}/{p} isolated: out of every ISR",
        f"follower {victim} isolated", f"follower {victim} rejoined",
    )  # fmt: skip


def _cut_off(dr: DataRun, victim: int, out: str, cut: str, healed: str) -> None:
    """With ``victim`` cut off by the caller's rule: the others settle and
    it leaves every ISR (``out``), acknowledgements go on (``cut``); then
    the rule goes and it rejoins (``healed``)."""
    rest = set(dr.cluster.brokers) - {victim}
    try:
        dr.run.wait_for(
            out,
            lambda d: (
                dr.run.settled(d, rest)
                and all(victim not in x["isr"] for x in d["partitions_detail"])
            ),
        )
        dr.progress(cut)
    finally:
        dr.net.heal()
    dr.heal_and_rejoin(healed)


def _d_kill_controller(dr: DataRun) -> None:
    before = dr.run.wait_for("a controller to fault", lambda d: _controller(d) is not None)
    victim = _controller(before)
    assert victim is not None
    dr.cluster.brokers[victim].kill()
    rest = set(dr.cluster.brokers) - {victim}
    _controller_change(dr.run, before, f"controller {victim} killed: successor elected", rest)
    dr.run.wait_for(
        f"controller {victim} dead: partitions re-led", lambda d: dr.run.settled(d, rest)
    )
    dr.progress(f"controller {victim} killed")
    dr.cluster.brokers[victim].start()
    dr.heal_and_rejoin(f"controller {victim} restarted")


def _d_minority_partition(dr: DataRun) -> None:
    """A real split: the leader of a partition alone on one side (no other
    broker, no etcd member: every member shares one address here), the
    other two brokers, the etcd members and the clients on the other."""
    p, doc = dr.pick()
    victim = _leader_of(doc, p)
    majority = [ETCD_HOST, CLIENT_HOST] + [
        broker_host(n) for n in dr.cluster.brokers if n != victim
    ]
    dr.net.split([broker_host(victim)], majority)
    _cut_off(
        dr, victim, f"leader {victim} of {TOPIC}/{p} alone in a minority: the majority re-leads",
        f"broker {victim} in a minority", f"minority broker {victim} healed",
    )  # fmt: skip


def _d_pause_controller(dr: DataRun) -> None:
    before = dr.run.wait_for("a controller to fault", lambda d: _controller(d) is not None)
    victim = _controller(before)
    assert victim is not None
    proc = dr.cluster.brokers[victim].proc
    assert proc is not None
    pause(proc)
    rest = set(dr.cluster.brokers) - {victim}
    try:
        _controller_change(
            dr.run, before, f"controller {victim} paused past its session: successor", rest
        )
        dr.run.wait_for(
            f"controller {victim} paused: partitions re-led", lambda d: dr.run.settled(d, rest)
        )
        dr.progress(f"controller {victim} paused")
    finally:
        resume(proc)
    dr.heal_and_rejoin(f"controller {victim} resumed")


def _d_kill_etcd_member(dr: DataRun) -> None:
    member = dr.rng.choice(dr.cluster.etcd.members)
    member.kill()
    try:
        dr.progress(f"etcd member {member.name} killed (quorum kept)")
        # down past every session and lag limit, data still flowing. (A
        # leader killed meanwhile, as an earlier version did, could find
        # the ISRs shrunk to itself: brokers whose requests went to the
        # dead member may lose their 2 s session while failing over and
        # fall behind; the partitions then stay offline until it is back,
        # as the rules want; docs/reliability.md)
        time.sleep(dr.lag_and_lease() * 1.5)
        dr.progress(f"etcd member {member.name} still down")
    finally:
        member.start()
    dr.cluster.etcd.wait_healthy(dr.run.deadline_s)
    dr.heal_and_rejoin(f"etcd member {member.name} restarted")


def _d_pause_etcd_member(dr: DataRun) -> None:
    member = dr.rng.choice(dr.cluster.etcd.members)
    member.pause()
    try:
        time.sleep(dr.lag_and_lease() * 1.5)  # past every session and lag limit
        dr.progress(f"etcd member {member.name} paused (quorum kept)")
    finally:
        member.resume()
    dr.heal_and_rejoin(f"etcd member {member.name} resumed")


def _d_rolling_restart(dr: DataRun) -> None:
    """Each broker in turn stopped cleanly (SIGTERM), restarted, and the
    cluster whole again (every replica in sync) before the next."""
    for n, child in sorted(dr.cluster.brokers.items()):
        old = _epochs(dr.run.observe())[n]
        code = child.terminate(timeout=dr.run.deadline_s)
        if code != 0:
            dr.run.problems.append(f"rolling restart: broker {n} exited {code} on SIGTERM")
        dr.run.step(f"rolling restart: broker {n} stopped cleanly", 0.0)
        child.start()
        dr.rejoin_restarted({n: old}, f"rolling restart: broker {n} back")


def _d_corrupt_follower_tail(dr: DataRun) -> None:
    """A follower crashes (kill -9) and, while it is down, the last bytes of
    its last batch in its active segment are damaged (bits flipped in place:
    what a bad sector or a torn page leaves). On restart its recovery must
    find the bad batch by CRC, cut the log there and fetch the rest again:
    the final comparison wants its replica byte-identical to the others."""
    p, doc = dr.pick()
    d = _detail(doc, p)
    victim = dr.rng.choice([r for r in d["replicas"] if r != d["leader"]])
    child = dr.cluster.brokers[victim]
    old = _epochs(doc)[victim]
    child.kill()
    damaged = damage_tail(child.data_dir / TOPIC / str(p), dr.rng)
    dr.run.step(f"follower {victim} of {TOPIC}/{p} killed; tail damaged: {damaged}", 0.0)
    child.start()
    dr.rejoin_restarted({victim: old}, f"follower {victim} restarted on a damaged tail")


def damage_tail(partition_dir: Path, rng: random.Random) -> str:
    """Flip bits in the last stored batch of the partition's active segment
    (the highest-based non-empty .log); returns what was done."""
    logs = sorted(partition_dir.glob("*.log"), reverse=True)
    for path in logs:
        data = bytearray(path.read_bytes())
        pos, last = 0, None
        while pos < len(data):
            try:
                h = validate_batch(data, pos, max_batch_bytes=2**31 - 1, end=len(data))
            except (InvalidRecordError, CorruptRecordError, RecordTooLargeError):
                break  # the end of the valid batches
            last = (pos, h.size, h.base_offset, h.last_offset)
            pos += h.size
        if last is None:
            continue
        start, size, base, end = last
        n = rng.randint(1, min(16, size - 61))  # inside the records, past the header
        for i in range(start + size - n, start + size):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
        return f"{n} bytes flipped at the end of batch {base}-{end} in {path.name}"
    return "no batch stored yet: nothing damaged"


def _d_power_cut(dr: DataRun, count: int) -> None:
    """Power lost on ``count`` brokers at once (PowerCutIO's model: what was
    not fsynced may be lost, torn or written back). Each victim is first
    restarted cleanly under the model (powercut_broker.py: the model is
    armed at start, so what is on disk then is durable), the cluster made
    whole, data goes on; then every victim gets SIGUSR1 at once: its data
    directory is rewritten as one post-cut image and it ends. They restart
    as ordinary brokers on those images; flush = sync (the default) keeps
    every acknowledged record."""
    victims = sorted(dr.rng.sample(sorted(dr.cluster.brokers), count))
    for n in victims:
        child = dr.cluster.brokers[n]
        old = _epochs(dr.run.observe())[n]
        child.terminate(timeout=dr.run.deadline_s)
        child.program = [
            "-m", "tailrace.broker.faultkit.powercut_broker",
            "--seed", str(dr.rng.randrange(1 << 32)),
        ]  # fmt: skip
        child.start()
        dr.rejoin_restarted({n: old}, f"broker {n} restarted under the power-cut model")
    dr.progress(f"brokers {victims} under the power-cut model", records=50)
    before = _epochs(dr.run.observe())
    procs = [dr.cluster.brokers[n].proc for n in victims]
    for proc in procs:
        assert proc is not None
        proc.send_signal(signal.SIGUSR1)
    for n in victims:
        child = dr.cluster.brokers[n]
        code = child.stop_by(signal.SIGUSR1, timeout=dr.run.deadline_s)
        images = [line for line in child.log_tail if "power cut" in line]
        dr.run.step(
            f"power cut on broker {n} (exit {code}): {images[-1] if images else 'no image line'}",
            0.0,
        )
        if not images:
            dr.run.problems.append(f"broker {n}: power cut without its image line (exit {code})")
        child.program = list(DEFAULT_PROGRAM)
    rest = set(dr.cluster.brokers) - set(victims)
    if len(rest) >= 2:
        dr.progress(f"power lost on brokers {victims}")
    for n in victims:
        dr.cluster.brokers[n].start()
    dr.rejoin_restarted(
        {n: before[n] for n in victims}, f"brokers {victims} restarted after the power cut"
    )


DEFAULT_PROGRAM = ("-m", "tailrace.broker.cli", "broker")


DATA_FAULTS: dict[str, Callable[[DataRun], None]] = {
    "kill-leader": _d_kill_leader,
    "kill-follower": _d_kill_follower,
    "pause-leader": _d_pause_leader,
    "cut-leader-from-followers": _d_cut_leader_from_followers,
    "cut-leader-from-etcd": _d_cut_leader_from_etcd,
    "isolate-follower": _d_isolate_follower,
    "kill-controller": _d_kill_controller,
    "minority-partition": _d_minority_partition,
    "pause-controller": _d_pause_controller,
    "kill-etcd-member": _d_kill_etcd_member,
    "pause-etcd-member": _d_pause_etcd_member,
    "power-cut-one": functools.partial(_d_power_cut, count=1),
    "power-cut-two": functools.partial(_d_power_cut, count=2),
    "corrupt-follower-tail": _d_corrupt_follower_tail,
    "rolling-restart": _d_rolling_restart,
}


def _start_data(base: Path, deadline_s: float, *, env: dict[str, str] | None = None,
                partitions: int = PARTITIONS, producers: int = 2, rate: float = 100.0,
                close_timeout: float = 120.0) -> tuple[Cluster, Run, Workload]:  # fmt: skip
    cluster = Cluster(
        base,
        env={
            "TAILRACE_CLUSTER_REPLICA_LAG_TIME_MAX_MS": str(LAG_MS),
            # small steps: PowerCutIO reads a whole file at each fsync
            "TAILRACE_TOPIC_DEFAULTS_PREALLOCATE_BYTES": str(64 * 1024),
            **(env or {}),
        },
    )
    run = Run(cluster, deadline_s)
    # before the brokers start: it watches their logs for the roles they take
    work = Workload(
        cluster, run, producers=producers, rate=rate, partitions=partitions,
        close_timeout=close_timeout,
    )  # fmt: skip
    cluster.start()
    everyone = set(cluster.brokers)
    run.wait_for("three brokers and a controller", lambda d: run.settled(d, everyone))
    from tailrace.client import Admin

    bootstrap = ",".join(c.address for c in cluster.brokers.values())
    with Admin(bootstrap) as admin:
        admin.create_topic(TOPIC, partitions, replication_factor=3)
    run.wait_for(
        f"{TOPIC}: {partitions} partitions on three replicas each, all in sync",
        lambda d: (
            d["partitions"] == partitions
            and not d["unplaced_topics"]
            and run.settled(d, everyone)
            and all(len(p["isr"]) == 3 for p in d["partitions_detail"])
        ),
    )
    return cluster, run, work


def _finish_data(cluster: Cluster, run: Run, work: Workload, dr: DataRun) -> dict[str, Any]:
    """Stop the producers, let every replica catch up, read the topic through
    a consumer, stop the brokers and compare every replica's files."""
    work.stop()
    run.wait_for("producers stopped: every replica in sync", dr.whole)
    _wait_caught_up(run, work)
    work.close()
    reads = trio.run(
        functools.partial(read_topic, work.bootstrap, TOPIC, range(work.partitions), timeout=120)
    )
    consumer_report = check(work.history, reads)
    for child in cluster.brokers.values():
        child.kill()  # kill -9: the page cache keeps every write; nothing more is appended
    figures: dict[str, Any] = {"consumer": consumer_report.as_dict()}
    if not consumer_report.ok:
        run.problems.append(f"consumer read: {consumer_report}")
    lost_on_disk = 0
    for n, child in cluster.brokers.items():
        disk = check(work.history, read_topic_dir(str(child.data_dir), TOPIC))
        lost_on_disk = max(lost_on_disk, disk.count("lost"))
        if not disk.ok:
            run.problems.append(f"broker {n}'s files: {disk}")
    for p in range(work.partitions):
        replicas = {f"broker{n}": str(child.data_dir / TOPIC / str(p))
                    for n, child in cluster.brokers.items()}  # fmt: skip
        _logs, problems = compare_replicas(replicas)
        run.problems.extend(f"{TOPIC}/{p}: {x}" for x in problems)
    counts = work.history.counts()
    figures.update(
        acked=counts[ACKED], failed=counts[FAILED], unknown=counts[UNKNOWN],
        lost=max(consumer_report.count("lost"), lost_on_disk),
        duplicated=consumer_report.count("duplicated"),
        records_read=consumer_report.records_read, hw_samples=work.samples,
    )  # fmt: skip
    return figures


def _wait_caught_up(run: Run, work: Workload) -> None:
    """Every replica of every partition reports the same log end, with the
    high watermark there (nothing is being written any more)."""

    def done() -> bool:
        for p in range(work.partitions):
            seen = [work.latest.get((n, p)) for n in run.cluster.brokers]
            if None in seen:
                return False
            ends = {(hw, leo) for _pid, hw, leo in seen}  # type: ignore[misc]
            if len(ends) != 1 or next(iter(ends))[0] != next(iter(ends))[1]:
                return False
        return True

    began = time.monotonic()
    while not done():
        if time.monotonic() - began > run.deadline_s:
            run.problems.append(
                f"replicas not caught up within {run.deadline_s:.0f} s: "
                f"{sorted(work.latest.items())}"
            )
            break
        time.sleep(0.2)
    run.step("every replica caught up", time.monotonic() - began)


def _log_tails(cluster: Cluster, lines: int = 40) -> dict[str, list[str]]:
    """The last log lines of each broker (kept in a failed run's report)."""
    return {f"broker{n}": list(c.log_tail)[-lines:] for n, c in cluster.brokers.items()}


def _stop_data(net: NetFaults, work: Any, cluster: Cluster | None) -> None:
    """Heal the network, close the producers if still running, stop every
    process through its own handle: a data scenario's teardown."""
    net.heal()
    if work is not None and work._thread.is_alive():
        work.close(timeout=30)
    if cluster is not None:
        cluster.stop()


def run_replication(
    base: Path, *, seed: int, rounds: int, deadline_s: float, faults: list[str] | None = None
) -> dict[str, Any]:
    """Scenario ``replication`` (the module docstring says what it checks).
    Round 1 runs every fault once in a seeded order; later rounds a seeded
    random mix of as many."""
    rng = random.Random(seed)
    net = NetFaults()
    cluster, run, work, dr = None, None, None, None
    started = time.monotonic()
    try:
        cluster, run, work = _start_data(base, deadline_s)
        dr = DataRun(run, work, net, rng)
        work.start()
        dr.progress("producers started")
        names = list(faults or DATA_FAULTS)
        done: list[str] = []
        for r in range(rounds):
            todo = names[:] if r == 0 else [rng.choice(names) for _ in names]
            rng.shuffle(todo)
            for name in todo:
                DATA_FAULTS[name](dr)
                done.append(name)
        figures = _finish_data(cluster, run, work, dr)
        problems = run.problems + run.seen.problems
    finally:
        _stop_data(net, work, cluster)
    return {
        "ok": not problems, "problems": problems, "steps": run.steps, "seed": seed,
        "faults": done, "notes": run.notes, "seconds": round(time.monotonic() - started, 1),
        **figures,
        **({} if not problems else {"broker_logs": _log_tails(cluster)}),
    }  # fmt: skip


def run_unclean(
    base: Path, *, seed: int, rounds: int, deadline_s: float, unsafe: bool = False
) -> dict[str, Any]:
    """Scenario ``unclean``, the checker's negative control. One partition,
    replication factor 3, acks=all producers: its follower F is cut off from
    the other two brokers (not from etcd) until the leader drops it from the
    ISR, and acknowledgements go on without it; then the leader L is killed
    (the other in-sync replica G takes over) and G is killed too. The rule:
    no live ISR member, so the partition stays offline until L or G is back
    and nothing acknowledged is lost. With ``unsafe`` the brokers run with
    TAILRACE_FAULT_UNCLEAN_ELECTION=1 (broker/cluster/decisions.py): F
    leads, L and G come back as its followers and truncate to its log, and
    the checker must report the acknowledged records that went with it."""
    rng = random.Random(seed)
    net = NetFaults()
    cluster, run, work = None, None, None
    started = time.monotonic()
    env = {"TAILRACE_FAULT_UNCLEAN_ELECTION": "1"} if unsafe else {}
    try:
        cluster, run, work = _start_data(
            base, deadline_s, env=env, partitions=1, close_timeout=10.0 if unsafe else 120.0
        )
        dr = DataRun(run, work, net, rng)
        work.start()
        dr.progress("producers started")
        for _ in range(rounds):
            _all_in_sync_replicas_die(dr, unsafe)
        figures = _finish_data(cluster, run, work, dr)
        problems = run.problems + run.seen.problems
    finally:
        _stop_data(net, work, cluster)
    return {
        "ok": not problems, "problems": problems, "steps": run.steps, "seed": seed,
        "unsafe": unsafe, "notes": run.notes, "seconds": round(time.monotonic() - started, 1),
        **figures,
        **({} if not problems else {"broker_logs": _log_tails(cluster)}),
    }  # fmt: skip


def _all_in_sync_replicas_die(dr: DataRun, unsafe: bool) -> None:
    doc = dr.run.observe()
    d = _detail(doc, 0)
    leader = d["leader"]
    follower = dr.rng.choice([r for r in d["replicas"] if r != leader])
    (other,) = [r for r in d["replicas"] if r not in (leader, follower)]
    dr.net.isolate(broker_host(follower), [broker_host(leader), broker_host(other)])
    dr.run.wait_for(
        f"follower {follower} cut from the brokers: out of the ISR",
        lambda d: follower not in _detail(d, 0)["isr"],
    )
    dr.progress(f"follower {follower} out of sync", records=100)
    dr.cluster.brokers[leader].kill()
    # (acks=all waits now: one in-sync replica is below min_insync_replicas)
    dr.run.wait_for(f"leader {leader} killed: {other} leads", lambda d: _leader_of(d, 0) == other)
    dr.cluster.brokers[other].kill()
    if unsafe:
        dr.run.wait_for(
            f"{other} killed too: out-of-sync {follower} leads (unclean, the seam)",
            lambda d: _leader_of(d, 0) == follower,
        )
    else:
        dr.run.wait_for(
            f"{other} killed too: offline, out-of-sync {follower} does not lead",
            lambda d: _leader_of(d, 0) == NO_LEADER_ID and follower not in _detail(d, 0)["isr"],
        )
    dr.net.heal()
    dr.cluster.brokers[leader].start()
    dr.cluster.brokers[other].start()
    if unsafe:
        # the producers' sequence numbers run past what the unclean leader
        # holds: their batches are refused from here on; only the check matters
        dr.net.heal()
        dr.run.wait_for(f"brokers {leader} and {other} restarted: in sync again", dr.whole)
    else:
        dr.heal_and_rejoin(f"brokers {leader} and {other} restarted")


#: scenario kip101's lag limit: the follower cut from the next leader must
#: stay in the ISR for the moment that leader lives (a few tenths of a second)
KIP101_LAG_MS = 15_000

TRUNCATE_SEAM = "TAILRACE_FAULT_TRUNCATE_TO_HW"


def run_kip101(
    base: Path, *, seed: int, rounds: int, deadline_s: float, unsafe: bool = False
) -> dict[str, Any]:
    """Scenario ``kip101``, the second negative control (rule 7, KIP-101).
    One partition, replicas L (leader), N (next in line), C; acks=all
    producers. C is cut from N only (it still fetches from L and stays in
    sync). L is killed: N is elected, and C, its follower now in a new
    epoch, must truncate. By epoch (the broker as shipped) it asks N, which
    it cannot reach: it keeps its log. Then N is killed before C fetched
    anything from it, and C, the last in-sync replica, leads. The rule:
    C's log holds every acknowledged record (L acknowledged only what every
    ISR member had), so nothing is lost. With ``unsafe`` (the test-only
    seam TAILRACE_FAULT_TRUNCATE_TO_HW=1, broker/cluster/replicas.py) C cut
    its log at its high watermark on N's epoch, as Kafka did before KIP-101;
    its watermark trails L's by a fetch round, so the acknowledged records
    in between go, and the checker must report them lost."""
    rng = random.Random(seed)
    net = NetFaults()
    cluster, run, work = None, None, None
    started = time.monotonic()
    env = {"TAILRACE_CLUSTER_REPLICA_LAG_TIME_MAX_MS": str(KIP101_LAG_MS)}
    if unsafe:
        env[TRUNCATE_SEAM] = "1"
    truncations: list[str] = []
    try:
        cluster, run, work = _start_data(
            base, deadline_s, env=env, partitions=1, close_timeout=3.0 if unsafe else 120.0
        )
        for child in cluster.brokers.values():
            child.line_hooks.append(
                lambda _pid, line: (
                    truncations.append(line.strip())
                    if "truncating to the high watermark" in line
                    else None
                )
            )
        dr = DataRun(run, work, net, rng)
        work.start()
        dr.progress("producers started", records=50)
        for _ in range(rounds):
            _follower_truncates_then_leads(dr, unsafe)
        figures = _finish_data(cluster, run, work, dr)
        problems = run.problems + run.seen.problems
    finally:
        _stop_data(net, work, cluster)
    return {
        "ok": not problems, "problems": problems, "steps": run.steps, "seed": seed,
        "unsafe": unsafe, "notes": run.notes, "seconds": round(time.monotonic() - started, 1),
        "truncations_to_hw": truncations, **figures,
        **({} if not problems else {"broker_logs": _log_tails(cluster)}),
    }  # fmt: skip


def _follower_truncates_then_leads(dr: DataRun, unsafe: bool) -> None:
    d = _detail(dr.run.observe(), 0)
    leader = d["leader"]
    successor, last = [r for r in d["replicas"] if r != leader]  # election order
    dr.net.partition(broker_host(last), broker_host(successor))
    dr.progress(f"follower {last} cut from {successor} only: in sync through {leader}", 30)
    # and from the leader's answers: its next fetch still arrives (the
    # leader counts the position it names toward the high watermark and
    # acknowledges up to there) but the answer carrying that watermark does
    # not, so `last` holds acknowledged records above its own watermark;
    # the acknowledgements then stop (the ISR waits for `last`)
    dr.net.drop(broker_host(leader), broker_host(last))
    _wait_acks_stop(dr)
    dr.cluster.brokers[leader].kill()
    dr.run.wait_for(
        f"leader {leader} killed: {successor} leads, {last} must truncate",
        lambda d: _leader_of(d, 0) == successor,
    )
    dr.cluster.brokers[successor].kill()  # before `last` could fetch from it
    dr.run.wait_for(
        f"{successor} killed too: {last}, the last in-sync replica, leads",
        lambda d: _leader_of(d, 0) == last,
    )
    dr.net.heal()
    dr.cluster.brokers[leader].start()
    dr.cluster.brokers[successor].start()
    if unsafe:
        # the producers' sequence numbers may run past what the new leader
        # holds: their batches are refused from here on; only the check matters
        dr.run.wait_for(f"brokers {leader} and {successor} restarted: in sync again", dr.whole)
    else:
        dr.heal_and_rejoin(f"brokers {leader} and {successor} restarted")


def _wait_acks_stop(dr: DataRun, quiet_s: float = 1.0) -> None:
    """Until no acknowledgement came for ``quiet_s`` (a deadline guards)."""
    began = time.monotonic()
    last, since = dr.work.acked(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if time.monotonic() - began > dr.run.deadline_s:
            dr.run.problems.append("acknowledgements did not stop")
            break
        time.sleep(0.05)
        now = dr.work.acked()
        if now != last:
            last, since = now, time.monotonic()
    dr.run.step(f"acknowledgements stopped at {last}", time.monotonic() - began)


SCENARIOS = {
    "membership": run_membership,
    "replication": run_replication,
    "unclean": run_unclean,
    "kip101": run_kip101,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds per recovery")
    parser.add_argument("--base", help="directory for data and logs (default: a temporary one)")
    parser.add_argument(
        "--unsafe", action="store_true",
        help="unclean, kip101: run with the scenario's test-only seam (TAILRACE_FAULT_"
        "UNCLEAN_ELECTION=1, TAILRACE_FAULT_TRUNCATE_TO_HW=1)",
    )  # fmt: skip
    parser.add_argument(
        "--faults", help=f"replication: faults, comma-separated (default: {','.join(DATA_FAULTS)})"
    )
    args = parser.parse_args(argv)
    if not in_private_namespace():
        argv_full = [sys.executable, "-m", "tailrace.broker.faultkit.cluster_scenarios"]
        os.execvp("unshare", namespace_argv([*argv_full, *(argv or sys.argv[1:])]))
    bring_up_loopback()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    with tempfile.TemporaryDirectory(prefix="tailrace-cluster-", dir=args.base) as base:
        extra: dict[str, Any] = {"faults": args.faults.split(",")} if args.faults else {}
        if args.unsafe:
            extra["unsafe"] = True
        report = SCENARIOS[args.scenario](
            Path(base), seed=seed, rounds=args.rounds, deadline_s=args.deadline, **extra
        )
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
