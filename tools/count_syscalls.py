"""Count the syscalls and wake-ups one record costs in each thread of e2e.

Runs ``tailrace bench e2e --spawn-broker`` (a broker process, a producer
process, the consumer in the bench's own process) under ``strace -f -ff
-ttt`` with the calls that wait or move bytes, then, per thread, counts the
calls made in the middle of the run (the first and last ``--trim`` seconds
are left out: start-up, connects and the drain at the end), divided by the
records scheduled in that window. Threads are named by their process (from
its ``execve``) and by role: a process's first thread is ``main`` (the
application's thread in the clients), the busiest other one ``trio`` (the
client's background loop). strace slows every call it traces, so the
latencies of a traced run mean nothing; the counts are what this is for.

    .venv/bin/python tools/count_syscalls.py --rate 200 --duration 5
    # against another tree: PYTHONPATH=/tmp/ab-main .venv/bin/python \
    #     tools/count_syscalls.py --tailrace "python -m tailrace.broker.cli"
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

#: the calls counted: waits (futex, epoll, sleeps), socket and file I/O
TRACED = (
    "futex,epoll_wait,epoll_pwait,poll,ppoll,select,pselect6,clock_nanosleep,"
    "read,write,readv,writev,sendto,recvfrom,sendmsg,recvmsg,sendfile,pread64,"
    "pwrite64,fdatasync,fsync,getsockopt,setsockopt"
)
_LINE = re.compile(r"^(\d+\.\d+) (?:<\.\.\. )?([a-z_0-9]+)[( ]")


def _process_of(files: dict[int, Path]) -> dict[int, tuple[str, int]]:
    """tid -> (process name, pid) from execve lines and CLONE_THREAD clones."""
    name: dict[int, str] = {}
    parent: dict[int, int] = {}
    for tid, path in files.items():
        with path.open(errors="replace") as f:
            for line in f:
                if "execve(" in line and "= 0" in line:
                    if "tailrace.broker.cli" in line and '"broker"' in line:
                        name[tid] = "broker"
                    elif "bench.worker" in line:
                        name[tid] = "producer"
                    elif "bench" in line and "e2e" in line:
                        name[tid] = "consumer"
                    else:
                        name.setdefault(tid, "other")
                if "clone" in line and "CLONE_THREAD" in line:
                    m = re.search(r"= (\d+)$", line.strip())
                    if m:
                        parent[int(m.group(1))] = tid
    out = {}
    for tid in files:
        pid = tid
        while pid in parent:
            pid = parent[pid]
        out[tid] = (name.get(pid, "other"), pid)
    return out


def _window(files: dict[int, Path], procs: dict[int, tuple[str, int]], trim: float):
    """The producer's application thread paces with clock_nanosleep: the
    run is from its first such sleep to its last, minus ``trim`` each side."""
    for tid, (name, pid) in procs.items():
        if name == "producer" and tid == pid:
            stamps = [
                float(m.group(1))
                for line in files[tid].open(errors="replace")
                if (m := _LINE.match(line)) and m.group(2) == "clock_nanosleep"
            ]
            if len(stamps) > 10:
                return stamps[0] + trim, stamps[-1] - trim
    raise SystemExit("no paced producer thread found in the trace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--trim", type=float, default=1.0)
    parser.add_argument("--flush", default="none", choices=["none", "interval", "sync"])
    parser.add_argument("--linger-ms", default="0")
    parser.add_argument(
        "--tailrace",
        default=str(Path(sys.executable).with_name("tailrace")),
        help="the command that runs tailrace's CLI",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="count-syscalls-") as tmp:
        bench = [
            *shlex.split(args.tailrace),
            *("bench", "e2e", "--spawn-broker", "--rate", str(args.rate)),
            *("--duration", str(args.duration), "--linger-ms", args.linger_ms),
            *("--flush", args.flush),
        ]
        cmd = ["strace", "-f", "-ff", "-ttt", "-o", f"{tmp}/t"]
        cmd += ["-e", f"trace={TRACED},execve,clone,clone3", *bench]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        files = {int(p.name.split(".")[1]): p for p in Path(tmp).glob("t.*")}
        procs = _process_of(files)
        start, end = _window(files, procs, args.trim)
        records = (end - start) * args.rate
        counts: dict[tuple[str, int, int], collections.Counter[str]] = {}
        for tid, path in files.items():
            c: collections.Counter[str] = collections.Counter()
            for line in path.open(errors="replace"):
                m = _LINE.match(line)
                if m and start <= float(m.group(1)) <= end and "resumed>" not in line:
                    c[m.group(2)] += 1
            if c:
                counts[(procs[tid][0], procs[tid][1], tid)] = c
    print(f"{records:.0f} records in the window ({end - start:.2f} s); calls per record:")
    print("  (per request: the broker's per Produce + Fetch, a client's per own request)")
    busiest: dict[int, tuple[int, int]] = {}  # pid -> (calls, tid) of its busiest other thread
    for (_name, pid, tid), c in counts.items():
        if tid != pid and c.total() > busiest.get(pid, (-1, 0))[0]:
            busiest[pid] = (c.total(), tid)
    # requests in the window: what the clients' trio threads sent (one
    # sendto per Produce and per Fetch request at these rates)
    sent = {
        name: c["sendto"]
        for (name, pid, tid), c in counts.items()
        if name in ("producer", "consumer") and busiest.get(pid, (0, 0))[1] == tid
    }
    produces, fetches = sent.get("producer", 0), sent.get("consumer", 0)
    per_request = {"producer": produces, "consumer": fetches, "broker": produces + fetches}
    print(
        f"  requests per record: Produce {produces / records:.2f}, Fetch {fetches / records:.2f}"
        " (under load records share requests: compare per request, last column)"
    )
    total = 0.0
    for (name, pid, tid), c in sorted(counts.items()):
        if name == "other":
            continue
        role = (
            "main"
            if tid == pid
            else ("trio" if busiest.get(pid, (0, 0))[1] == tid else f"thread {tid}")
        )
        per = c.total() / records
        total += per
        detail = ", ".join(f"{k} {v / records:.2f}" for k, v in c.most_common())
        req = c.total() / max(per_request[name], 1)
        print(f"  {name:9s} {role:5s} {per:5.2f}  per request {req:5.2f}  ({detail})")
    print(f"  total {total:.2f} per record")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
