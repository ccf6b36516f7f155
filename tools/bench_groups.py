"""Consumer-group benchmarks: rebalance time and group consume throughput.

    .venv/bin/python tools/bench_groups.py rebalance [--trials 10] [--rate 20000]
    .venv/bin/python tools/bench_groups.py consume [--records 2000000] [--members 4]

Both spawn a broker (every setting at its default, data in a temporary
directory) and run every group member as a process of its own (the blocking
``Consumer``, defaults: auto commit every 5 s, session timeout 45 s), so
members do not share a GIL. Members are started and connected first and
only then told to subscribe, so interpreter start-up is not timed. Times are
``time.monotonic()``, which is one clock for every process on Linux.

**rebalance**: a topic of ``--partitions`` (12) partitions, flush none, fed
by a producer process at ``--rate`` records/s; three members share it. Each
trial starts a fourth member and measures, from its ``subscribe()`` call:
``join_ms``, until it owns its share (3 partitions: the old owners revoked
them, committed and acknowledged first); ``first_record_ms``, until its first
record; then it closes (leaves the group) and ``leave_ms`` is the time until
the three others own all partitions again. ``others_gap_ms`` is the longest
time any of the three others went without a record during the join (they
report progress every 20 ms while records flow), ``others_gap_before_ms``
the same over an equally long window just before it: the difference is how
long the rebalance stopped them, if at all.

**consume**: ``--records`` records of ``--record-size`` bytes pre-produced
into ``--partitions`` partitions; ``--members`` members subscribe at the same
instant and read until every record was consumed once; throughput is
records over the time from the subscribe to the last record. The same
data is then read by a group of one member, for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# --- the member process ----------------------------------------------------------


def member_main(address: str, group: str, topic: str) -> int:
    """A group member driven over stdin (``go``, ``stop``) reporting JSON
    lines on stdout: ready, subscribed, assigned/revoked (with the number of
    partitions owned), count (records so far, every 20 ms while they flow),
    closed."""
    from tailrace.client import Consumer

    out_lock = threading.Lock()

    def emit(**fields: Any) -> None:
        fields["t"] = time.monotonic()
        with out_lock:
            sys.stdout.write(json.dumps(fields) + "\n")
            sys.stdout.flush()

    go = threading.Event()
    stop = threading.Event()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                go.set()
            elif line.strip() == "stop":
                stop.set()
        stop.set()

    threading.Thread(target=read_commands, daemon=True).start()
    owned: set = set()

    def assigned(partitions: set) -> None:
        owned.update(partitions)
        emit(ev="assigned", n=len(owned))

    def revoked(partitions: set) -> None:
        owned.difference_update(partitions)
        emit(ev="revoked", n=len(owned))

    with Consumer(address, group_id=group, auto_offset_reset="earliest") as consumer:
        emit(ev="ready")
        go.wait()
        emit(ev="subscribed")
        consumer.subscribe([topic], on_assigned=assigned, on_revoked=revoked)
        count = 0
        reported = 0
        size = 0
        last_report = 0.0
        while not stop.is_set():
            records = consumer.poll(timeout_ms=20)
            if records:
                if count == 0:
                    emit(ev="first")
                count += len(records)
                for r in records:
                    size += len(r.value)
            now = time.monotonic()
            # every 20 ms while records flow, and at once when they stop
            if count != reported and (not records or now - last_report >= 0.02):
                emit(ev="count", n=count)
                reported, last_report = count, now
        emit(ev="count", n=count)
    emit(ev="closed", bytes=size)
    return 0


def produce_main(address: str, topic: str, rate: int, record_size: int) -> int:
    """Produce to every partition at ``rate`` records/s until stdin closes."""
    from tailrace.client import Producer

    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    value = b"x" * record_size
    with Producer(address, acks=1, linger_ms=5) as producer:
        start = time.monotonic()
        sent = 0
        i = 0
        while not done.is_set():
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                producer.send(topic, value, key=b"%d" % i)
                i += 1
                sent += 1
            time.sleep(0.005)
    return 0


# --- the orchestrator --------------------------------------------------------------


class Member:
    """One member process and the events it reported."""

    def __init__(self, address: str, group: str, topic: str, events: queue.Queue) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_member", address, group, topic],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        self.owned = 0
        self.count = 0
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.closed = threading.Event()
        self._queue = events
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.events.append(ev)
            if ev["ev"] in ("assigned", "revoked"):
                self.owned = ev["n"]
            elif ev["ev"] == "count":
                self.count = ev["n"]
            elif ev["ev"] == "ready":
                self.ready.set()
            elif ev["ev"] == "closed":
                self.closed.set()
            self._queue.put((self, ev))
        self.closed.set()
        self.ready.set()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def first(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["ev"] == name), None)

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.send("stop")
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the group did not get there in time")
        time.sleep(0.005)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_rebalance(args: argparse.Namespace, address: str) -> dict[str, Any]:
    from tailrace.client import Admin

    with Admin(address) as admin:
        admin.create_topic("rb", partitions=args.partitions, config={"flush": "none"})
    producer = subprocess.Popen(
        [sys.executable, __file__, "_produce", address, "rb", str(args.rate), "100"],
        stdin=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    events: queue.Queue = queue.Queue()
    share = args.partitions // 4
    results: list[dict[str, float]] = []
    base = [Member(address, "rb-group", "rb", events) for _ in range(3)]
    try:
        for m in base:
            m.ready.wait(60)
        for m in base:
            m.send("go")
        wait_until(lambda: sum(m.owned for m in base) == args.partitions)
        for _ in range(args.trials):
            extra = Member(address, "rb-group", "rb", events)
            extra.ready.wait(60)
            extra.send("go")
            wait_until(lambda extra=extra: extra.owned == share and extra.first("first"))
            wait_until(lambda: all(m.owned == share for m in base))
            t0 = extra.first("subscribed")["t"]
            t_join = next(e["t"] for e in extra.events if e["ev"] == "assigned" and e["n"] == share)
            # the others' longest silence while the newcomer joined, and in
            # a window as long just before it (the baseline: reports are
            # every 20 ms while records flow; fetches return in bursts)
            span = t_join - t0

            def longest_gap(lo: float, hi: float) -> float:
                gaps = [0.0]
                for m in base:
                    times = [e["t"] for e in m.events if e["ev"] == "count" and lo <= e["t"] <= hi]
                    gaps.extend(b - a for a, b in itertools.pairwise([lo, *times, hi]))
                return max(gaps)

            t_stop = time.monotonic()
            extra.finish()
            wait_until(lambda: sum(m.owned for m in base) == args.partitions)
            t_back = max(
                e["t"] for m in base for e in m.events if e["ev"] == "assigned" and e["t"] >= t_stop
            )
            results.append(
                {
                    "join_ms": (t_join - t0) * 1000,
                    "first_record_ms": (extra.first("first")["t"] - t0) * 1000,
                    "leave_ms": (t_back - t_stop) * 1000,
                    "others_gap_ms": longest_gap(t0, t_join) * 1000,
                    "others_gap_before_ms": longest_gap(t0 - span, t0) * 1000,
                }
            )
            time.sleep(0.5)
    finally:
        for m in base:
            m.finish()
        assert producer.stdin is not None
        producer.stdin.close()
        producer.wait(60)

    def stats(key: str) -> dict[str, float]:
        values = [r[key] for r in results]
        return {
            "median": round(statistics.median(values), 1),
            "p90": round(percentile(values, 0.9), 1),
            "max": round(max(values), 1),
        }

    return {
        "mode": "rebalance",
        "partitions": args.partitions,
        "rate": args.rate,
        "trials": args.trials,
        **{key: stats(key) for key in results[0]},
    }


def fill(address: str, topic: str, partitions: int, records: int, size: int) -> None:
    from tailrace.client import Admin, Producer

    with Admin(address) as admin:
        admin.create_topic(topic, partitions=partitions, config={"flush": "none"})
    value = b"v" * size
    with Producer(address, linger_ms=5) as producer:
        for i in range(records):
            producer.send(topic, value, partition=i % partitions)
        producer.flush()


def read_with_group(
    address: str, group: str, topic: str, members: int, records: int
) -> tuple[float, float]:
    """(records/s, ms until every member owned its share) for one group."""
    events: queue.Queue = queue.Queue()
    ms = [Member(address, group, topic, events) for _ in range(members)]
    try:
        for m in ms:
            m.ready.wait(60)
        for m in ms:
            m.send("go")
        wait_until(lambda: sum(m.count for m in ms) >= records, timeout=600)
        t0 = min(m.first("subscribed")["t"] for m in ms)
        t1 = max(max((e["t"] for e in m.events if e["ev"] == "count"), default=t0) for m in ms)
        total = sum(m.count for m in ms)
        if total != records:
            raise RuntimeError(f"consumed {total} records, expected {records}")
        settled = t0
        for m in ms:
            owned = [e for e in m.events if e["ev"] in ("assigned", "revoked")]
            if owned:
                settled = max(settled, owned[-1]["t"])
        return records / (t1 - t0), (settled - t0) * 1000
    finally:
        for m in ms:
            m.finish()


def bench_consume(args: argparse.Namespace, address: str) -> dict[str, Any]:
    fill(address, "tput", args.partitions, args.records, args.record_size)
    group_rate, settle_ms = read_with_group(address, "tput-g", "tput", args.members, args.records)
    single_rate, _ = read_with_group(address, "tput-1", "tput", 1, args.records)
    return {
        "mode": "consume",
        "partitions": args.partitions,
        "records": args.records,
        "record_size": args.record_size,
        "members": args.members,
        "group_records_per_s": round(group_rate),
        "group_mib_per_s": round(group_rate * args.record_size / 2**20, 1),
        "group_settle_ms": round(settle_ms, 1),
        "one_member_records_per_s": round(single_rate),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_member":
        return member_main(*sys.argv[2:5])
    if len(sys.argv) > 1 and sys.argv[1] == "_produce":
        a = sys.argv[2:]
        return produce_main(a[0], a[1], int(a[2]), int(a[3]))
    sys.path.insert(0, str(ROOT))
    from tailrace.broker.bench.spawn import SpawnedBroker

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["rebalance", "consume"])
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rate", type=int, default=20_000, help="records/s fed during rebalances")
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--record-size", type=int, default=100)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    with SpawnedBroker() as broker:
        if args.mode == "rebalance":
            result = bench_rebalance(args, broker.address)
        else:
            result = bench_consume(args, broker.address)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
