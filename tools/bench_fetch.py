"""Fetch serving: zero-copy (sendfile) versus the copy path, measured on the broker.

For each setting of ``fetch_zero_copy`` (true, false) and each consumer count
(1 and 4), one run:

1. start a broker subprocess on 127.0.0.1 (temporary data directory);
2. fill one partition with ``--gib`` GiB of 1 MiB batches (flush none), not
   timed;
3. start K consumer processes that each read the whole partition from
   offset 0 with pipelined Fetch requests and ``recv_into`` a reused buffer
   (Python receivers that do nothing else, so the broker is what is
   measured);
4. report the aggregate GiB/s, and the broker's CPU seconds, context switches
   (voluntary + involuntary, /proc/PID/status) and I/O syscalls (syscr +
   syscw, /proc/PID/io: each read, write, send and sendfile counts once) per
   GiB served during the read phase.

Usage::

    python tools/bench_fetch.py [--gib 1] [--repeat 1] [--json]

The figures go into docs/benchmarks.md ("Fetch: zero-copy versus copy").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tailrace.client import Admin
from tailrace.client.protocol import (
    ClientConnection,
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from tailrace.client.records import build_batch

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
GiB = 1 << 30
TOPIC = "fetchbench"


def start_broker(data_dir: str, zero_copy: bool) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, TAILRACE_FETCH_ZERO_COPY="true" if zero_copy else "false")
    env.pop("TAILRACE_BOOTSTRAP", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tailrace.broker.cli",
            "broker",
            "--data-dir",
            data_dir,
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    # --log-level WARNING hides the "listening" line: find the port from /proc
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        port = _listening_port(proc.pid)
        if port:
            return proc, f"127.0.0.1:{port}"
        if proc.poll() is not None:
            raise RuntimeError("broker exited: " + proc.stderr.read())
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("broker did not start")


def _listening_port(pid: int) -> int | None:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            m = re.match(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
    except OSError:
        return None
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                return int(parts[1].split(":")[1], 16)
    return None


def proc_counters(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    switches = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    syscalls = 0
    with open(f"/proc/{pid}/io") as fh:
        for line in fh:
            if line.startswith(("syscr", "syscw")):
                syscalls += int(line.split()[1])
    return {"cpu": cpu, "switches": switches, "syscalls": syscalls}


def fill(address: str, gib: float) -> int:
    """Produce ``gib`` GiB as 1 MiB batches over one raw connection."""
    with Admin(address) as admin:
        admin.create_topic(
            TOPIC, partitions=1, config={"flush": "none", "segment_bytes": 256 * MiB}
        )
    batch = build_batch([(int(time.time() * 1000), None, os.urandom(1024), None)] * 1000)
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    codec = ClientConnection()
    total = int(gib * GiB)
    sent = 0
    window = 0
    while sent < total:
        _cid, prefix, bufs = codec.send_request(
            ProduceRequest(
                acks=1,
                topics=[
                    ProduceTopic(
                        name=TOPIC, partitions=[ProducePartition(partition=0, records=batch)]
                    )
                ],
            )
        )
        sock.sendall(prefix + b"".join(bufs))
        sent += len(batch)
        window += 1
        while window >= 8 or (sent >= total and window):
            _read_frame(sock)
            window -= 1
    sock.close()
    return sent


def _read_frame(sock: socket.socket, buf: bytearray | None = None) -> int:
    head = _recv_exact(sock, 4)
    (length,) = struct.unpack(">I", head)
    if buf is None or len(buf) < length:
        data = _recv_exact(sock, length)
        return len(data)
    view = memoryview(buf)
    got = 0
    while got < length:
        n = sock.recv_into(view[got:length])
        if not n:
            raise ConnectionError("closed")
        got += n
    return length


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return bytes(out)


def describe(row: dict) -> str:
    """One result row as a line of text."""
    return (
        f"consumers={row['consumers']:<4d} {row['gib_per_sec']:6.2f} GiB/s in all  "
        f"broker {row['broker_cpu_s_per_gib']:.3f} CPU s/GiB  "
        f"switches {row['broker_switches_per_gib']:>8}/GiB  "
        f"syscalls {row['broker_syscalls_per_gib']:>8}/GiB"
    )


def consumer(address: str, end_offset: int, result: mp.Queue) -> None:
    """Read the partition from 0 to ``end_offset`` with two fetches in flight."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
    codec = ClientConnection()
    buf = bytearray(64 * MiB)
    view = memoryview(buf)
    batch_records = 1000
    offset = 0
    received = 0
    in_flight: list[int] = []
    start = time.perf_counter()
    per_fetch = 8 * MiB

    def request(at: int) -> None:
        _cid, prefix, _ = codec.send_request(
            FetchRequest(
                max_wait_ms=0,
                max_bytes=per_fetch,
                topics=[
                    FetchTopic(
                        name=TOPIC,
                        partitions=[
                            FetchPartition(partition=0, fetch_offset=at, max_bytes=per_fetch)
                        ],
                    )
                ],
            )
        )
        sock.sendall(prefix)
        in_flight.append(at)

    # each 1 MiB batch holds 1000 records: ask ahead by whole fetches
    step = (per_fetch // (1024 * 1000 + 100)) * batch_records
    next_ask = 0
    while next_ask < end_offset and len(in_flight) < 2:
        request(next_ask)
        next_ask += step
    while in_flight:
        head = _recv_exact(sock, 4)
        (length,) = struct.unpack(">I", head)
        got = 0
        while got < length:
            n = sock.recv_into(view[got:length])
            if not n:
                raise ConnectionError("closed")
            got += n
        received += length
        in_flight.pop(0)
        offset += step
        if next_ask < end_offset:
            request(next_ask)
            next_ask += step
    elapsed = time.perf_counter() - start
    sock.close()
    result.put((received, elapsed))


def run_one(zero_copy: bool, consumers: int, gib: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="tailrace-fetch-") as data_dir:
        proc, address = start_broker(data_dir, zero_copy)
        try:
            written = fill(address, gib)
            end_offset = (written // (1024 * 1000 + 100)) * 1000
            queue: mp.Queue = mp.Queue()
            procs = [
                mp.Process(target=consumer, args=(address, end_offset, queue))
                for _ in range(consumers)
            ]
            before = proc_counters(proc.pid)
            start = time.perf_counter()
            for p in procs:
                p.start()
            results = [queue.get(timeout=600) for _ in procs]
            wall = time.perf_counter() - start
            after = proc_counters(proc.pid)
            for p in procs:
                p.join()
        finally:
            proc.terminate()
            proc.wait(30)
            threading.Thread(target=proc.stderr.read, daemon=True).start()
    served = sum(r[0] for r in results) / GiB
    return {
        "fetch_zero_copy": zero_copy,
        "consumers": consumers,
        "gib_served": round(served, 3),
        "gib_per_sec": round(served / wall, 3),
        "broker_cpu_s_per_gib": round((after["cpu"] - before["cpu"]) / served, 3),
        "broker_switches_per_gib": round((after["switches"] - before["switches"]) / served),
        "broker_syscalls_per_gib": round((after["syscalls"] - before["syscalls"]) / served),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=1.0, help="GiB written to the partition")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (best is kept)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for consumers in (1, 4):
        for zero_copy in (True, False):
            best = None
            for _ in range(args.repeat):
                r = run_one(zero_copy, consumers, args.gib)
                if best is None or r["gib_per_sec"] > best["gib_per_sec"]:
                    best = r
            rows.append(best)
            if not args.json:
                print(f"zero_copy={zero_copy!s:5s} {describe(best)}", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
