"""Where one record's end-to-end latency goes: a timestamp at every hop.

    .venv/bin/python tools/trace_hops.py [--rate 200] [--records 2000]
        [--linger-ms 0] [--flush none]

Three processes, as in ``tailrace bench e2e``: a broker (spawned by this
tool), a producer process (the blocking ``Producer``) and the consumer in
this process (the blocking ``Consumer``). In each, this tool wraps the
functions at the hops below (at import time, in this tool only: nothing is
added to the library's code) so each call appends ``(hop, perf_counter_ns)``
to a list; ``perf_counter_ns`` is ``CLOCK_MONOTONIC`` on Linux, one clock for
every process of the machine. A wrapper costs well under a microsecond.

Beside the hops, each process's cost per record over the timed part, from
/proc (less load-dependent than the microseconds on a busy machine): CPU
time and context switches of all its threads (each voluntary one is a wait
for something: a socket, a lock, a wake-up, a sleep). And what its trio
loops did per request, counted by a trio Instrument in every process (the
same on a busy machine as on a quiet one, as long as each record still gets
its own requests): task steps, event-loop turns (epoll waits; those with a
timeout above zero may block) and tasks spawned, per Produce request in the
producer, per Fetch in the consumer, per request in the broker (its counts
run from its start, warm-up included).

Records are sent on a schedule far slower than one record's trip (200/s:
5 ms apart), so everything that happens between one record's send and the
next belongs to that record: for each record and hop the first event of
that hop in the record's window is taken. The table gives, per hop, the
median and p90 over the records of the time from the previous hop.

Hops (process: what is timed):

* producer: ``send()`` called (the schedule's instant), ``send()`` returned,
  the sender task drained the batch from the accumulator (the trio thread
  woke), the Produce request written to the socket;
* broker: the Produce request dispatched (read and parsed), appended
  (high watermark moved, waiting fetches woken), the waiting fetch's task
  resumed, the fetch response planned, the fetch response written
  (sendfile), and beside that the Produce response written;
* consumer: the fetch response read and matched by the connection's reader,
  the fetcher task resumed with it, the records decoded (``take``; on the
  application's thread since the blocking poll takes buffered records
  there, in the loop's poll task before), ``poll()`` returned in the
  application's thread; and the next Fetch sent, then dispatched by the
  broker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EVENTS: list[tuple[str, int]] = []
_now = time.perf_counter_ns
#: this process's trio loops (every thread's): task steps, event-loop waits
#: (those that may block: a timeout above zero) and tasks spawned
LOOP = {"task_steps": 0, "loop_waits": 0, "blocking_waits": 0, "tasks_spawned": 0}


def count_loops() -> None:
    """Count every trio loop's work in this process from now on (each
    ``trio.run`` started later gets the instrument)."""
    import trio

    class Counter(trio.abc.Instrument):
        def before_task_step(self, task: Any) -> None:
            LOOP["task_steps"] += 1

        def before_io_wait(self, timeout: float) -> None:
            LOOP["loop_waits"] += 1
            if timeout > 0:
                LOOP["blocking_waits"] += 1

        def task_spawned(self, task: Any) -> None:
            LOOP["tasks_spawned"] += 1

    real_run = trio.run

    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["instruments"] = [*kwargs.get("instruments", ()), Counter()]
        return real_run(*args, **kwargs)

    trio.run = run


def _mark(name: str) -> None:
    EVENTS.append((name, _now()))


def _after(owner: Any, attr: str, name: str, when: Any = None) -> None:
    """Wrap ``owner.attr`` (sync) to mark ``name`` when it returns
    (``when(result, args)`` filters)."""
    original = getattr(owner, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when is None or when(result, args):
            EVENTS.append((name, _now()))
        return result

    setattr(owner, attr, wrapper)


def _before(owner: Any, attr: str, name: Any) -> None:
    """Mark ``name`` (or ``name(args)``, None for no mark) when called."""
    original = getattr(owner, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        label = name(args) if callable(name) else name
        if label is not None:
            EVENTS.append((label, _now()))
        return original(*args, **kwargs)

    setattr(owner, attr, wrapper)


def _after_async(owner: Any, attr: str, name: Any) -> None:
    original = getattr(owner, attr)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        label = name(result, args) if callable(name) else name
        if label is not None:
            EVENTS.append((label, _now()))
        return result

    setattr(owner, attr, wrapper)


def _dump(path: str, costs: dict | None = None, loop: dict | None = None) -> None:
    with open(path, "w") as f:
        json.dump({"events": EVENTS, "costs": costs, "loop": loop or dict(LOOP)}, f)


def costs(pid: int | str = "self") -> dict[str, float]:
    """CPU seconds and context switches (voluntary, involuntary; summed over
    the process's threads) of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    out = {
        "cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
        "voluntary_switches": 0,
        "involuntary_switches": 0,
    }
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                out["voluntary_switches"] += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                out["involuntary_switches"] += int(line.split()[1])
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


# --- the broker --------------------------------------------------------------------


def broker_role(out: str, argv: list[str]) -> int:
    from tailrace.broker import app
    from tailrace.broker.handlers import fetch
    from tailrace.broker.log import partition
    from tailrace.broker.server import connection

    _before(
        app.Broker,
        "_dispatch",
        lambda a: {0: "b.produce_dispatched", 1: "b.fetch_dispatched"}.get(a[2].api_key),
    )
    _after(partition.PartitionLog, "append", "b.appended")
    _after(fetch, "_respond", "b.fetch_planned")
    _before(fetch, "_respond", "b.fetch_task_resumed")
    _after_async(
        connection.ConnectionHandler,
        "_write",
        lambda _r, a: "b.produce_answered" if type(a[1]) is bytes else "b.fetch_sent",
    )
    if hasattr(connection.ConnectionHandler, "_write_now"):  # written by the reader
        _after(
            connection.ConnectionHandler,
            "_write_now",
            "b.produce_answered",
            lambda r, a: r is None and type(a[1]) is bytes,
        )
    if hasattr(connection.ConnectionHandler, "answer_now"):  # answered in place
        _after(
            connection.ConnectionHandler,
            "answer_now",
            "b.fetch_sent",
            lambda r, _a: r is connection.ALREADY_WRITTEN,
        )
    from tailrace.broker.cli.main import main

    count_loops()
    try:
        return main(argv)
    finally:
        _dump(out)


# --- the producer ---------------------------------------------------------------


def producer_role(out: str, bootstrap: str, topic: str, records: int, rate: float, config: str):
    from tailrace.client import Producer
    from tailrace.client.producer import accumulator, batch
    from tailrace.client.protocol import ProduceRequest
    from tailrace.client.transport import connection

    _after(accumulator.Accumulator, "drain", "p.sender_drained", lambda r, _a: bool(r))
    _after_async(
        connection.BrokerConnection,
        "send",
        lambda _r, a: "p.request_written" if type(a[1]) is ProduceRequest else None,
    )
    if hasattr(connection.BrokerConnection, "send_from_thread"):  # the direct path
        _after(
            connection.BrokerConnection,
            "send_from_thread",
            "p.request_written",
            lambda r, a: r is not None and type(a[1]) is ProduceRequest,
        )
    _before(batch.ProducerBatch, "complete", "p.acknowledged")
    count_loops()
    with Producer(bootstrap, **json.loads(config)) as producer:
        producer.send(topic, b"warm-up").result(30)
        producer.flush()
        EVENTS.clear()
        before = costs()
        loop_before = dict(LOOP)
        gap = 1e9 / rate
        start = time.monotonic_ns() + 50_000_000
        payload = bytes(100)
        for i in range(records):
            due = start + int(i * gap)
            delay = due - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            t = _now()
            EVENTS.append(("p.send_called", t))
            producer.send(topic, t.to_bytes(8, "big") + payload[8:])
            EVENTS.append(("p.send_returned", _now()))
        producer.flush()
        spent = delta(costs(), before)
        loop = delta(dict(LOOP), loop_before)
    _dump(out, spent, loop)


# --- the consumer and the orchestration -------------------------------------------


def consumer_probes() -> None:
    from tailrace.client.consumer import fetcher
    from tailrace.client.protocol import FetchRequest
    from tailrace.client.transport import connection

    _before(connection.PendingResponse, "_set", "c.response_read")
    _before(fetcher.Fetcher, "_absorb", "c.fetcher_resumed")
    # the decode both poll paths share (take before the blocking poll took
    # records on its own thread: the tool also runs against older trees)
    take = "_take" if hasattr(fetcher.Fetcher, "_take") else "take"
    _after(fetcher.Fetcher, take, "c.decoded", lambda r, _a: len(r) > 0)
    _after_async(
        connection.BrokerConnection,
        "send",
        lambda _r, a: "c.next_fetch_sent" if type(a[1]) is FetchRequest else None,
    )


ORDER = [
    ("p.send_called", "producer: send() called"),
    ("p.send_returned", "producer: send() returned (record in the accumulator)"),
    ("p.sender_drained", "producer: batch drained (by the trio thread, or by send() when direct)"),
    ("p.request_written", "producer: Produce request written to the socket"),
    ("b.produce_dispatched", "broker: Produce read, parsed, dispatched"),
    ("b.appended", "broker: appended, high watermark moved (fetch woken)"),
    ("b.fetch_task_resumed", "broker: the waiting fetch resumed (in place, or its task)"),
    ("b.fetch_planned", "broker: fetch response planned (file slice)"),
    ("b.fetch_sent", "broker: fetch response written"),
    ("c.response_read", "consumer: response read by the connection's reader"),
    ("c.fetcher_resumed", "consumer: records buffered (reader's step, or fetcher task)"),
    ("c.decoded", "consumer: records decoded (take, on the poll's thread)"),
    ("c.poll_returned", "consumer: poll() returned in the application thread"),
]
SIDE = [
    ("b.produce_answered", "broker: Produce response written"),
    ("p.acknowledged", "producer: batch completed (send's handle done)"),
    ("c.next_fetch_sent", "consumer: next Fetch sent"),
    ("b.fetch_dispatched", "broker: next Fetch dispatched (parked for the next record)"),
]


def analyse(events: list[tuple[str, int]], sends: list[int]) -> str:
    by_name: dict[str, list[int]] = {}
    for name, t in sorted(events, key=lambda e: e[1]):
        by_name.setdefault(name, []).append(t)
    import bisect

    rows: dict[str, list[int]] = {name: [] for name, _ in ORDER + SIDE}
    complete = 0
    for i, s in enumerate(sends[:-1]):
        end = sends[i + 1]
        times = {}
        for name, _ in ORDER + SIDE:
            ts = by_name.get(name, [])
            j = bisect.bisect_left(ts, s)
            if j < len(ts) and ts[j] < end:
                times[name] = ts[j]
        if all(name in times for name, _ in ORDER):
            complete += 1
            prev = s
            for name, _ in ORDER:
                rows[name].append(times[name] - prev)
                prev = times[name]
            for name, _ in SIDE:
                if name in times:
                    rows[name].append(times[name] - s)
    lines = [
        f"{complete} of {len(sends) - 1} records seen at every hop",
        "",
        "| hop | from the previous hop, p50 µs | p90 µs |",
        "|---|---|---|",
    ]

    def q(values: list[int], p: float) -> str:
        if not values:
            return "-"
        values = sorted(values)
        return f"{values[min(len(values) - 1, int(p * len(values)))] / 1000:,.0f}"

    total = []
    for i in range(complete):
        total.append(sum(rows[name][i] for name, _ in ORDER[1:]))
    for name, label in ORDER[1:]:
        lines.append(f"| {label} | {q(rows[name], 0.5)} | {q(rows[name], 0.9)} |")
    lines.append(f"| **end to end** | **{q(total, 0.5)}** | **{q(total, 0.9)}** |")
    lines += ["", "| beside the path | from send() called, p50 µs | p90 µs |", "|---|---|---|"]
    for name, label in SIDE:
        lines.append(f"| {label} | {q(rows[name], 0.5)} | {q(rows[name], 0.9)} |")
    if complete:
        lines.append(f"\nmean end to end {statistics.mean(total) / 1000:,.0f} µs")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="main", choices=["main", "broker", "producer"])
    parser.add_argument("--out", default="")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--linger-ms", type=float, default=0.0)
    parser.add_argument("--flush", default="none", choices=["none", "interval", "sync"])
    parser.add_argument("--json-out", default="", help="keep every process's events here")
    args, rest = parser.parse_known_args()
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.role == "broker":
        return broker_role(args.out, rest)
    if args.role == "producer":
        producer_role(args.out, *rest[:2], int(rest[2]), float(rest[3]), rest[4])
        return 0
    return orchestrate(args)


def orchestrate(args: argparse.Namespace) -> int:
    from tailrace.broker.bench.spawn import SpawnedBroker
    from tailrace.client import Admin, Consumer

    consumer_probes()
    count_loops()
    here = os.path.abspath(__file__)
    with tempfile.TemporaryDirectory(prefix="trace-hops-") as tmp:
        outs = {k: str(Path(tmp) / f"{k}.json") for k in ("broker", "producer")}
        broker = SpawnedBroker(
            Path(tmp) / "data",
            launcher=[here, "--role", "broker", "--out", outs["broker"], "--"],
        )
        broker.start()
        try:
            bootstrap = broker.address
            topic = "trace-hops"
            with Admin(bootstrap) as admin:
                admin.create_topic(topic, 1, {"flush": args.flush})
            consumer = Consumer(bootstrap, auto_offset_reset="latest")
            consumer.assign([(topic, 0)])
            consumer.seek_to_end()
            consumer.poll(timeout_ms=50)
            config = json.dumps({"linger_ms": args.linger_ms})
            cmd = [sys.executable, here, "--role", "producer", "--out", outs["producer"], "--"]
            cmd += [bootstrap, topic, str(args.records + 1), str(args.rate), config]
            proc = subprocess.Popen(cmd)
            got = 0
            counted: dict[str, dict[str, float]] = {}
            stop = threading.Event()
            deadline = time.monotonic() + args.records / args.rate + 60
            while got < args.records + 2 and time.monotonic() < deadline and not stop.is_set():
                records = consumer.poll(timeout_ms=200)
                if records:
                    EVENTS.append(("c.poll_returned", _now()))
                    got += len(records)
                    if not counted:  # the warm-up record: the timed part starts
                        counted = {"broker": costs(broker.pid), "consumer": costs()}
                        loop_before = dict(LOOP)
                        fetches_before = sum(1 for e in EVENTS if e[0] == "c.next_fetch_sent")
            spent = {
                "broker": delta(costs(broker.pid), counted["broker"]),
                "consumer": delta(costs(), counted["consumer"]),
            }
            loops = {"consumer": delta(dict(LOOP), loop_before)}
            requests = {
                "consumer": sum(1 for e in EVENTS if e[0] == "c.next_fetch_sent") - fetches_before
            }
            proc.wait(60)
            consumer.close()
        finally:
            broker.stop()
        events = list(EVENTS)
        for role, path in outs.items():
            with open(path) as f:
                kept = json.load(f)
            events += [tuple(e) for e in kept["events"]]
            if kept["costs"]:
                spent[role] = kept["costs"]
            loops[role] = kept["loop"]
            if role == "producer":
                requests[role] = sum(1 for e in kept["events"] if e[0] == "p.request_written")
            else:  # the broker's count runs from its start: warm-up included
                dispatched = ("b.produce_dispatched", "b.fetch_dispatched")
                requests[role] = sum(1 for e in kept["events"] if e[0] in dispatched)
    sends = sorted(t for name, t in events if name == "p.send_called")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(events, f)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(
        f"trace_hops: {args.records} records of 100 B at {args.rate:g}/s, linger_ms="
        f"{args.linger_ms:g}, flush={args.flush}; load average after {' '.join(load)}"
    )
    print(analyse(events, sends))
    n = max(1, len(sends))
    print(
        "\n| process, per record | CPU µs | context switches (voluntary + involuntary) |"
        "\n|---|---|---|"
    )
    for role in ("producer", "broker", "consumer"):
        c = spent.get(role)
        if c:
            print(
                f"| {role} | {c['cpu_s'] * 1e6 / n:,.0f} | "
                f"{c['voluntary_switches'] / n:.1f} + {c['involuntary_switches'] / n:.1f} |"
            )
    print(
        "\n| trio loop work, per request | requests | task steps | loop waits "
        "(of which may block) | tasks spawned |\n|---|---|---|---|---|"
    )
    kinds = {
        "producer": "producer, per Produce",
        "broker": "broker, per request (Produce + Fetch)",
        "consumer": "consumer, per Fetch",
    }
    for role, label in kinds.items():
        loop, count = loops.get(role), requests.get(role, 0)
        if loop and count:
            print(
                f"| {label} | {count:,} | {loop['task_steps'] / count:.2f} | "
                f"{loop['loop_waits'] / count:.2f} ({loop['blocking_waits'] / count:.2f}) | "
                f"{loop['tasks_spawned'] / count:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
