"""Benchmark of a replicated cluster (issue 16): one etcd member and three
``tailrace broker`` processes on 127.0.0.1, each started and killed through
its own Popen handle. A benchmark, not a test: nothing here is asserted.

    python tools/bench_cluster.py [throughput] [failover] [catchup] [--json]

throughput: records/s and MiB/s of 100 B records at full speed, then the
    produce-ack latency (p50/p99) at half that rate, for RF=3 acks=all,
    RF=1 acks=1 and RF=1 acks=all, through ``tailrace bench``'s workloads
    (producer processes, a fixed-rate schedule without coordinated
    omission).
failover: kill -9 of a partition's leader, then the time until the first
    acks=all write sent after the kill is acknowledged (by the new leader:
    the old one is dead and reaped before the probe is sent). The killed
    broker is restarted and back in the ISR before the next kill.
    Configurations (``--failover``): ``defaults`` (every setting at its
    default: the other brokers notice the dead port at once,
    cluster.peer_liveness), ``lease`` (peer_liveness off: the dead broker's
    lease must expire, as a paused or unreachable broker's always must),
    ``lease-fast`` (the same with a 1 s session and a faster etcd).
catchup: a follower is stopped (kill -9), N MiB are written to the leader
    (acks=1), the follower is started again; timed from its process start,
    and from its registration in etcd, until the leader puts it back into
    the ISR (which it does once the follower's log end reached its own).

Everything runs on one machine: etcd, the three brokers and the clients
share its cores, so these figures say what this machine does, not what a
cluster of separate machines would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from tailrace.broker.bench.workloads import BenchConfig, Status, Target, run
from tailrace.broker.cluster.state import NO_LEADER, ClusterView
from tailrace.broker.cluster.status import read_view
from tailrace.broker.faultkit.etcd_cluster import EtcdCluster, free_port
from tailrace.client import Admin, Producer

_MIB = 1 << 20
PREFIX = "/tailrace"


# --- the cluster ---------------------------------------------------------------------


@dataclass
class Node:
    """One broker process on 127.0.0.1, handled only through its Popen."""

    node_id: int
    port: int
    data_dir: Path
    endpoints: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"broker{self.node_id}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "tailrace.broker.cli", "broker",
                    "--node-id", str(self.node_id),
                    "--cluster-etcd", ",".join(self.endpoints),
                    "--listen", self.address,
                    "--data-dir", str(self.data_dir),
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                # the caller's TAILRACE_* settings do not leak in
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")},
                    **self.env,
                },
            )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap: when this returns the process is gone."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, grace: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()


class Cluster:
    """etcd (1 member) and brokers 1-3 under ``base``."""

    def __init__(
        self,
        base: Path,
        *,
        session_timeout_ms: int | None = None,
        etcd_heartbeat_ms: int = 100,
        etcd_election_ms: int = 1000,
        broker_env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.etcd = EtcdCluster(
            base / "etcd", members=1, heartbeat_ms=etcd_heartbeat_ms, election_ms=etcd_election_ms
        )
        env: dict[str, str] = {}
        if session_timeout_ms is not None:
            env["TAILRACE_CLUSTER_SESSION_TIMEOUT_MS"] = str(session_timeout_ms)
        env.update(broker_env or {})
        self.broker_env = env
        self.nodes: dict[int, Node] = {}

    def start(self) -> Cluster:
        self.etcd.start()
        for n in (1, 2, 3):
            self.nodes[n] = Node(
                n, free_port(), self.base / f"broker{n}", self.etcd.endpoints, self.broker_env
            )
            self.nodes[n].start()
        self.wait(lambda v: len(v.brokers) == 3 and v.controller is not None, "3 brokers")
        return self

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes.values())

    def view(self) -> ClusterView:
        return trio.run(read_view, self.etcd.endpoints, PREFIX)

    def wait(
        self, ok: Callable[[ClusterView], bool], what: str, timeout: float = 120.0, poll=0.05
    ) -> ClusterView:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                view = self.view()
                if ok(view):
                    return view
            for n in self.nodes.values():
                if n.proc is not None and n.proc.poll() is not None and n.proc.returncode != -9:
                    raise RuntimeError(f"broker {n.node_id} exited; see {n.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster never reached: {what}")
            time.sleep(poll)

    def partition(self, topic: str, p: int = 0) -> Any:
        found = self.view().partitions.get((topic, p))
        return None if found is None else found[0]

    def close(self) -> None:
        for n in self.nodes.values():
            n.kill()
        self.etcd.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _pct(values: list[float], q: float) -> float:
    """The q-quantile, nearest rank (with 20 samples p99 is the largest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": round(_pct(values, 0.50), 3),
        "p99": round(_pct(values, 0.99), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


# --- throughput and latency ----------------------------------------------------------


def throughput(
    cluster: Cluster, *, records: int, duration: float, flushes: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for flush in flushes:
        for rf, acks in ((3, -1), (1, 1), (1, -1)):
            base = {"mode": "produce", "replication_factor": rf, "acks": acks, "flush": flush}
            target = Target(cluster.bootstrap)
            load0 = _load()
            full = run(BenchConfig(records=records, **base), target, Status())
            rate = max(1.0, round(full.records / full.elapsed_s / 2, -2))
            half = run(BenchConfig(duration_s=duration, rate=rate, **base), target, Status())
            row = {
                "flush": flush,
                "replication_factor": rf,
                "acks": "all" if acks == -1 else str(acks),
                "records": full.records,
                "records_per_sec": round(full.records / full.elapsed_s),
                "mib_per_sec": round(full.records * full.record_size / full.elapsed_s / _MIB, 2),
                "full_speed_latency_ms": _latency(full),
                "half_rate": rate,
                "half_rate_records": half.records,
                "half_rate_latency_ms": _latency(half),
                "errors": full.errors + half.errors,
                "load": [load0, _load()],
            }
            rows.append(row)
            _progress(
                f"flush={flush} RF={rf} acks={row['acks']}: {row['records_per_sec']:,} records/s; "
                f"at {rate:,.0f}/s p50 {row['half_rate_latency_ms']['p50']} "
                f"p99 {row['half_rate_latency_ms']['p99']} ms"
            )
    return rows


def _latency(result: Any) -> dict[str, Any]:
    s = result.latency.summary_ms()
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}


def _progress(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


# --- failover ------------------------------------------------------------------------


def _wait_in_sync(cluster: Cluster, topic: str) -> Any:
    view = cluster.wait(
        lambda v: (
            len(v.brokers) == 3
            and (found := v.partitions.get((topic, 0))) is not None
            and found[0].leader != NO_LEADER
            and len(found[0].isr) == 3
        ),
        f"{topic} fully in sync",
    )
    return view.partitions[(topic, 0)][0]


def failover(cluster: Cluster, *, kills: int, label: str) -> dict[str, Any]:
    """``kills`` times: kill -9 the leader of a 1-partition RF=3 topic, send
    one acks=all record at once, time its acknowledgement; then restart the
    killed broker and wait until it is back in the ISR."""
    topic = f"failover-{label}"
    with Admin(cluster.bootstrap) as admin:
        admin.create_topic(topic, 1, {"flush": "none"}, replication_factor=3)
    to_ack: list[float] = []
    to_leader: list[float] = []
    load0 = _load()
    with Producer(
        cluster.bootstrap, acks="all", linger_ms=0, delivery_timeout_ms=120_000
    ) as producer:
        for i in range(kills):
            state = _wait_in_sync(cluster, topic)
            producer.send(topic, b"warm", partition=0).result(60)  # connected to the leader
            leader = cluster.nodes[state.leader]
            # at a random point of the leader's keepalive cycle (every third
            # of the lease TTL): the loop's own rhythm would otherwise kill
            # at about the same point each time and bias the distribution
            time.sleep(random.uniform(0.0, 2.0))
            t0 = time.monotonic()
            leader.kill()  # returns once the process is reaped
            future = producer.send(topic, b"probe-%d" % i, partition=0)
            elected = _watch_election(cluster, topic, state.leader_epoch, t0)
            future.result(120)
            t_ack = time.monotonic() - t0
            t_elected = elected()
            to_ack.append(t_ack)
            if t_elected is not None:
                to_leader.append(t_elected)
            new = cluster.partition(topic)
            _progress(
                f"{label} kill {i + 1}/{kills}: broker {state.leader} (epoch "
                f"{state.leader_epoch}) -> {new.leader} (epoch {new.leader_epoch}); new leader "
                f"in etcd after {t_elected if t_elected is None else round(t_elected, 3)} s, "
                f"first ack after {t_ack:.3f} s"
            )
            leader.start()
    return {
        "label": label,
        "kills": kills,
        "kill_to_ack_s": _summary(to_ack),
        "kill_to_new_leader_in_etcd_s": _summary(to_leader),
        "samples_s": [round(x, 3) for x in to_ack],
        "load": [load0, _load()],
    }


def _watch_election(cluster: Cluster, topic: str, epoch: int, t0: float) -> Callable[[], Any]:
    """Poll etcd (every 20 ms, in a thread) for the partition's next leader
    epoch; the returned function gives seconds from ``t0`` (None: not seen)."""
    seen: list[float] = []

    def poll() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                state = cluster.partition(topic)
                if state is not None and state.leader_epoch > epoch and state.leader != NO_LEADER:
                    seen.append(time.monotonic() - t0)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()

    def result() -> float | None:
        thread.join(130)
        return seen[0] if seen else None

    return result


# --- follower catch-up ---------------------------------------------------------------


def _log_bytes(data_dir: Path, topic: str) -> int:
    """Bytes of batches in the partition's segment files: their sizes less
    the zeros preallocated past the data (log.preallocate_bytes)."""
    total = 0
    for f in sorted((data_dir / topic / "0").glob("*.log")):
        with contextlib.suppress(OSError), open(f, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            end = size
            while end > 0:  # back over the trailing zeros, 1 MiB at a time
                start = max(0, end - _MIB)
                fh.seek(start)
                chunk = fh.read(end - start).rstrip(b"\0")
                if chunk:
                    end = start + len(chunk)
                    break
                end = start
            total += end
    return total


def catchup(cluster: Cluster, *, mib: int, record_size: int) -> dict[str, Any]:
    topic = "catchup"
    with Admin(cluster.bootstrap) as admin:
        admin.create_topic(topic, 1, {"flush": "none"}, replication_factor=3)
    state = _wait_in_sync(cluster, topic)
    follower_id = next(r for r in state.replicas if r != state.leader)
    follower, leader = cluster.nodes[follower_id], cluster.nodes[state.leader]
    load0 = _load()
    follower.kill()
    cluster.wait(lambda v: follower_id not in v.brokers, f"broker {follower_id}'s lease gone")
    count = -(-mib * _MIB // record_size // 1000) * 1000  # whole send_many calls
    value = bytes(range(256)) * (record_size // 256 + 1)
    values = [value[:record_size]] * 1000
    t_fill = time.monotonic()
    with Producer(cluster.bootstrap, acks=1, linger_ms=5) as producer:
        for _ in range(count // 1000):
            producer.send_many(topic, values, partition=0)
        producer.flush()
    fill_s = time.monotonic() - t_fill
    copied = (_log_bytes(leader.data_dir, topic) - _log_bytes(follower.data_dir, topic)) / _MIB
    t0 = time.monotonic()
    follower.start()
    t_registered = t_isr = None
    deadline = t0 + 600
    while t_isr is None and time.monotonic() < deadline:
        now = time.monotonic() - t0
        with contextlib.suppress(Exception):
            view = cluster.view()
            if t_registered is None and follower_id in view.brokers:
                t_registered = now
            found = view.partitions.get((topic, 0))
            if found is not None and follower_id in found[0].isr:
                t_isr = now
        time.sleep(0.02)
    out: dict[str, Any] = {
        "mib_written": round(count * record_size / _MIB, 1),
        "record_size": record_size,
        "log_mib_to_copy": round(copied, 1),
        "fill_s": round(fill_s, 2),
        "start_to_registered_s": None if t_registered is None else round(t_registered, 3),
        "start_to_isr_s": None if t_isr is None else round(t_isr, 3),
        "load": [load0, _load()],
    }
    if t_registered is not None and t_isr is not None:
        out["mib_per_sec_from_registration"] = round(copied / (t_isr - t_registered), 1)
    if t_isr is not None:
        out["mib_per_sec_from_start"] = round(copied / t_isr, 1)
    _progress(f"catch-up: {out}")
    return out


# --- the report ----------------------------------------------------------------------

#: failover configurations: label -> (session_timeout_ms, etcd heartbeat, etcd election,
#: cluster.peer_liveness); "lease" and "lease-fast" leave a dead broker to its lease,
#: as a paused or unreachable one always is
FAILOVER = {
    "defaults": (None, 100, 1000, True),
    "lease": (None, 100, 1000, False),
    "lease-fast": (1000, 50, 500, False),
}


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"machine: {os.cpu_count()} CPUs, load {report['load_start']} at start; "
        f"etcd: 1 member; brokers 1-3 on 127.0.0.1",
    ]
    if "throughput" in report:
        lines += [
            "",
            "produce, 100 B records, 1 partition, 1 producer process "
            "(full speed; latency at half that rate)",
            f"{'flush':<6} {'RF':>2} {'acks':>4} {'records/s':>10} {'MiB/s':>6}  "
            f"{'rate':>8} {'p50 ms':>8} {'p99 ms':>8}",
        ]
        for r in report["throughput"]:
            lat = r["half_rate_latency_ms"]
            lines.append(
                f"{r['flush']:<6} {r['replication_factor']:>2} {r['acks']:>4} "
                f"{r['records_per_sec']:>10,} {r['mib_per_sec']:>6.2f}  {r['half_rate']:>8,.0f} "
                f"{lat['p50']:>8.3f} {lat['p99']:>8.3f}"
            )
    for f in report.get("failover", []):
        a, e = f["kill_to_ack_s"], f["kill_to_new_leader_in_etcd_s"]
        lines += [
            "",
            f"failover ({f['label']}: {f['settings']}), {f['kills']} kills of the leader",
            f"  kill -9 -> new leader in etcd: p50 {e.get('p50')} s, p99 {e.get('p99')} s",
            f"  kill -9 -> first acks=all ack:  p50 {a.get('p50')} s, p99 {a.get('p99')} s "
            f"(min {a.get('min')}, max {a.get('max')})",
        ]
    if "catchup" in report:
        c = report["catchup"]
        lines += [
            "",
            f"follower catch-up: {c['log_mib_to_copy']} MiB of log ({c['record_size']} B "
            f"records, flush none)",
            f"  process start -> registered {c['start_to_registered_s']} s, "
            f"-> back in the ISR (its log end reached the leader's) {c['start_to_isr_s']} s",
            f"  {c.get('mib_per_sec_from_registration')} MiB/s from registration, "
            f"{c.get('mib_per_sec_from_start')} MiB/s from process start",
        ]
    lines.append(f"\nload at end: {report['load_end']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help="throughput, failover, catchup (all)"
    )
    parser.add_argument(
        "--records", type=int, default=2_000_000, help="records of the full-speed runs (100 B)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="half-rate run, seconds")
    parser.add_argument("--flush", default="none", help="flush modes, comma-separated")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument(
        "--failover",
        default="defaults,lease,lease-fast",
        help=f"configurations: {', '.join(FAILOVER)}",
    )
    parser.add_argument("--catchup-mib", type=int, default=256)
    parser.add_argument("--catchup-record-size", type=int, default=1024)
    parser.add_argument(
        "--dir",
        type=Path,
        help="data and logs here (a new or empty directory, kept); default: a temp dir",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()
    sections = args.sections or ["throughput", "failover", "catchup"]
    unknown = set(sections) - {"throughput", "failover", "catchup"}
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    report: dict[str, Any] = {"load_start": _load(), "cpus": os.cpu_count()}
    with contextlib.ExitStack() as stack:
        if args.dir is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cluster-")))
        else:
            base = args.dir.resolve()
            if base.exists() and any(base.iterdir()):
                parser.error(f"--dir {base} is not empty (etcd and the brokers would reuse it)")
        if "throughput" in sections:
            with Cluster(base / "throughput") as cluster:
                report["throughput"] = throughput(
                    cluster,
                    records=args.records,
                    duration=args.duration,
                    flushes=args.flush.split(","),
                )
        if "failover" in sections:
            report["failover"] = []
            for label in args.failover.split(","):
                session, hb, election, liveness = FAILOVER[label]
                with Cluster(
                    base / f"failover-{label}",
                    session_timeout_ms=session,
                    etcd_heartbeat_ms=hb,
                    etcd_election_ms=election,
                    broker_env={} if liveness else {"TAILRACE_CLUSTER_PEER_LIVENESS": "false"},
                ) as cluster:
                    result = failover(cluster, kills=args.kills, label=label)
                result["settings"] = (
                    f"cluster.session_timeout_ms={session or 'default 6000'}, "
                    f"cluster.peer_liveness={'default true' if liveness else 'false'}, "
                    f"etcd --heartbeat-interval {hb} --election-timeout {election}"
                )
                report["failover"].append(result)
        if "catchup" in sections:
            with Cluster(base / "catchup") as cluster:
                report["catchup"] = catchup(
                    cluster, mib=args.catchup_mib, record_size=args.catchup_record_size
                )
    report["load_end"] = _load()
    sys.stdout.write(_table(report))
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
