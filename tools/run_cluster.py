"""``make run-cluster`` / ``make stop-cluster``: one etcd member and three
brokers on loopback, for trying cluster mode by hand.

    python tools/run_cluster.py start [--dir ./data/cluster]
    python tools/run_cluster.py stop  [--dir ./data/cluster]

start: etcd on 127.0.0.1:2379 (peers 2380; data and log under DIR/etcd), brokers 1-3 on
127.0.0.1:7421-7423 with Kafka listeners on 127.0.0.1:9093-9095 (data under
DIR/broker<N>, logs in DIR/broker<N>.log), each detached in its own session;
the PIDs go to DIR/pids, one ``name pid`` line each. It returns once every
broker is registered and a controller is elected, and prints the status.

stop: SIGTERM to each broker recorded in DIR/pids (a broker revokes its etcd
lease on the way out), SIGKILL after 15 s; then etcd the same way (5 s).
A PID is signalled only while /proc says it is still that program (a PID
reused by something else after a reboot is left alone).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tailrace.broker.faultkit.etcd_cluster import EtcdCluster

ETCD_PORT = 2379
BROKERS = {1: (7421, 9093), 2: (7422, 9094), 3: (7423, 9095)}


def _alive(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def _read_pids(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        name, _, pid = line.partition(" ")
        if pid.isdigit():
            out.append((name, int(pid)))
    return out


def _marker(name: str) -> str:
    return "etcd" if name == "etcd" else "tailrace.broker.cli"


def start(base: Path) -> int:
    pids_file = base / "pids"
    running = [(n, p) for n, p in _read_pids(pids_file) if _alive(p, _marker(n))]
    if running:
        print(f"already running ({', '.join(f'{n}={p}' for n, p in running)}): make stop-cluster")
        return 1
    base.mkdir(parents=True, exist_ok=True)
    etcd = EtcdCluster(
        base / "etcd", members=1, client_ports=[ETCD_PORT], peer_ports=[ETCD_PORT + 1]
    )
    etcd.start(new_session=True)
    pids = [("etcd", etcd.members[0].pid)]
    pids_file.write_text("".join(f"{n} {p}\n" for n, p in pids))
    endpoint = etcd.endpoints[0]
    for node_id, (port, kafka_port) in BROKERS.items():
        log = open(base / f"broker{node_id}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "tailrace.broker.cli", "broker",
                "--node-id", str(node_id), "--cluster-etcd", endpoint,
                "--listen", f"127.0.0.1:{port}", "--kafka-listen", f"127.0.0.1:{kafka_port}",
                "--data-dir", str(base / f"broker{node_id}"),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        pids.append((f"broker{node_id}", proc.pid))
        pids_file.write_text("".join(f"{n} {p}\n" for n, p in pids))
    status = [sys.executable, "-m", "tailrace.broker.cli", "cluster", "status", "--etcd", endpoint]
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run([*status, "--json"], capture_output=True, text=True, timeout=60)
        if (
            done.returncode == 0
            and '"controller": {' in done.stdout
            and all(f'"node_id": {n},\n      "alive": true' in done.stdout for n in BROKERS)
        ):
            break
        dead = [n for n, p in pids if not _alive(p, _marker(n))]
        if dead or time.monotonic() > deadline:
            print(f"the cluster did not come up ({', '.join(dead) or 'timeout'}); logs in {base}")
            stop(base)
            return 1
        time.sleep(0.3)
    subprocess.run(status, check=False)
    print(f"\netcd {endpoint}; brokers 127.0.0.1:7421-7423 (Kafka 9093-9095)")
    print(f"data, logs and PIDs under {base}; stop with: make stop-cluster")
    return 0


def _stop_one(name: str, pid: int, grace: float) -> None:
    marker = _marker(name)
    if not _alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print(f"stopped {name} (pid {pid})")


def stop(base: Path) -> int:
    pids_file = base / "pids"
    pids = _read_pids(pids_file)
    if not pids:
        print(f"nothing recorded in {pids_file}")
        return 0
    for name, pid in pids:
        if name != "etcd":
            _stop_one(name, pid, 15.0)
    for name, pid in pids:
        if name == "etcd":
            _stop_one(name, pid, 5.0)
    pids_file.unlink()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", default="./data/cluster", type=Path)
    args = parser.parse_args()
    return start(args.dir.resolve()) if args.action == "start" else stop(args.dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
