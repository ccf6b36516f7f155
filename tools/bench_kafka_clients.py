"""Kafka clients next to the native ones, on one broker in one run.

    .venv/bin/python tools/bench_kafka_clients.py --rounds 3 --wait-idle 80 --json-out /tmp/kc.json

One ``tailrace broker`` child (SpawnedBroker, native listener and a Kafka
listener, both on loopback port 0) serves every workload of the run.
Each round, for each record size (``--sizes``, default 100 B and 1 KiB):

produce, each into a fresh topic of its own (one partition, ``--flush``):

* ``native``: the native Producer, native batches (magic 1): the bench's own
  producer process (broker/bench/worker.py), exactly as ``tailrace bench
  produce`` drives it (linger 5 ms, 512 KiB batches, idempotent, acks=1);
* ``native-magic2``: the same producer writing Kafka's magic-2 batches
  (``record_format="kafka"``, the batches a Kafka consumer is served by
  sendfile);
* ``confluent-kafka``: confluent-kafka (librdkafka) on the Kafka listener,
  idempotent (acks=all), linger 5 ms, ``batch.size`` 512 KiB, 32 MiB of
  buffer, no compression: the native producer's settings.

consume, each a fresh client reading one of those topics from its start
(both clients fetch at most 4 MiB per partition, the native consumer's
default; confluent-kafka with ``fetch.queue.backoff.ms`` 10, see
_ck_consume):

* ``native <- native``: the native Consumer reading native batches: the
  native fetch the goals compare against;
* ``native <- magic2``: the native Consumer reading the native producer's
  magic-2 batches (sendfile; the client decodes magic 2);
* ``ck <- ck magic2``: confluent-kafka reading what confluent-kafka wrote
  (sendfile, no conversion);
* ``ck <- native magic2``: confluent-kafka reading the native producer's
  magic-2 batches (the same batches as ``native <- magic2``);
* ``ck <- native``: confluent-kafka reading native batches, which the broker
  down-converts to magic 2 on the copy path (client/records/convert.py).

The down-conversion cost is the broker CPU of ``ck <- native`` minus that of
``ck <- native magic2`` (the same producer, batching and client; only the
stored format differs), per MiB of record values.

Every client runs in a process of its own (the native producer in the
bench's worker, the others in this file's ``--child`` mode, which speaks the
worker's JSON-lines protocol), set up and warmed up before the clock starts
(connection, metadata, producer id), then released at one instant. The
broker's CPU is read from /proc/PID/stat around each timed part; rates count
value bytes. The workloads of a phase run in alternating order from round to
round, and the table shows medians over the rounds with the range beside
them, the load average (1 min) seen at each workload, and the goal ratios of
issue 14 computed per round. Each timed part starts once the machine was
``--wait-idle`` percent idle over 2 s (or after ``--wait-idle-max`` seconds).

Defaults: 3,000,000 records of 100 B and 1,000,000 of 1 KiB per workload
(a sendfile consumer's broker CPU must span many 10 ms clock ticks), flush
``none`` (the broker is CPU-bound, not waiting for fsync), 3 rounds: about
5 minutes on a quiet 2-core machine. ``--profile-broker FILE`` runs the
broker under cProfile (``python -m pstats FILE`` reads it).

This is a tool, not a test: it asserts nothing (tests/bench runs it tiny).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1 << 20
GIB = 1 << 30
#: the native producer's defaults (client/producer), given to confluent-kafka too
LINGER_MS = 5.0
BATCH_BYTES = 512 * 1024
BUFFER_BYTES = 32 * MIB
#: the native consumer's max_partition_fetch_bytes, given to confluent-kafka too
PARTITION_FETCH_BYTES = 4 * MIB
STALL_S = 30.0
#: confluent-kafka consumers: see _ck_consume
FETCH_QUEUE_BACKOFF_MS = 10

PRODUCE = ("native", "native-magic2", "confluent-kafka")
#: consume workload -> (client, the produce workload whose topic it reads)
CONSUME = {
    "native <- native": ("native", "native"),
    "native <- magic2": ("native", "native-magic2"),
    "ck <- ck magic2": ("ck", "confluent-kafka"),
    "ck <- native magic2": ("ck", "native-magic2"),
    "ck <- native": ("ck", "native"),
}
LABELS = {
    "native": "native producer (magic 1)",
    "native-magic2": "native producer, magic 2",
    "confluent-kafka": "confluent-kafka producer (magic 2)",
    "native <- native": "native consumer <- native batches (native fetch)",
    "native <- magic2": "native consumer <- magic 2 (sendfile)",
    "ck <- ck magic2": "confluent-kafka <- its own magic 2 (sendfile)",
    "ck <- native magic2": "confluent-kafka <- native producer's magic 2 (sendfile)",
    "ck <- native": "confluent-kafka <- native batches (down-converted)",
}


@dataclass
class ClientSpec:
    """One client process of this tool (``--child``), as JSON on its stdin."""

    kind: str  # "ck-produce", "ck-consume" or "native-consume"
    bootstrap: str
    topic: str
    record_size: int
    records: int  # to send, or to read
    partitions: int = 1
    warmup_topic: str = ""
    linger_ms: float = LINGER_MS
    batch_bytes: int = BATCH_BYTES
    buffer_bytes: int = BUFFER_BYTES
    partition_fetch_bytes: int = PARTITION_FETCH_BYTES


# --- the client processes (--child) --------------------------------------------------


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _sleep_until(t_ns: int) -> None:
    delay = t_ns - time.monotonic_ns()
    if delay > 0:
        time.sleep(delay / 1e9)


def _ck_produce(spec: ClientSpec, ready: Any, wait_start: Any) -> dict[str, Any]:
    from confluent_kafka import Producer

    failed: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": spec.bootstrap,
            "enable.idempotence": True,
            "linger.ms": spec.linger_ms,
            "batch.size": spec.batch_bytes,
            "queue.buffering.max.kbytes": spec.buffer_bytes // 1024,
            "queue.buffering.max.messages": 10_000_000,
            "compression.type": "none",
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
        }
    )
    producer.list_topics(spec.topic, timeout=30)  # its metadata before the clock
    producer.produce(spec.warmup_topic, b"warm-up")
    if producer.flush(60) or failed:
        raise RuntimeError(f"warm-up produce failed: {failed[:1]}")
    ready()
    _sleep_until(wait_start())
    value = (bytes(range(256)) * (spec.record_size // 256 + 1))[: spec.record_size]
    produce, poll, topic = producer.produce, producer.poll, spec.topic
    cpu0 = _cpu()
    t0 = time.monotonic_ns()
    for i in range(spec.records):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:  # the buffer is full: wait 1 ms (whole ms: less spins)
                poll(0.001)
        if i % 1000 == 0:
            poll(0)
    left = producer.flush(120)
    t1 = time.monotonic_ns()
    cpu1 = _cpu()
    return {
        "sent": spec.records - left,
        "errors": len(failed) + left,
        "first_error": failed[0]
        if failed
        else (f"{left} undelivered after flush" if left else None),
        "start_ns": t0,
        "end_ns": t1,
        "cpu_s": cpu1 - cpu0,
    }


def _ck_consume(spec: ClientSpec, ready: Any, wait_start: Any) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": spec.bootstrap,
            # required by the client; assign() uses no group protocol and
            # nothing is committed
            "group.id": f"bench-{secrets.token_hex(4)}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": spec.partition_fetch_bytes,
            "enable.partition.eof": False,
            # librdkafka stops fetching for fetch.queue.backoff.ms (1 s by
            # default) whenever its prefetch queue holds queued.min.messages
            # (100,000): against a broker that answers a 4 MiB fetch in a few
            # ms, the default makes the client sit idle for most of the run
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
    )
    try:
        consumer.list_topics(spec.topic, timeout=30)  # connected before the clock
        ready()
        _sleep_until(wait_start())
        cpu0 = _cpu()
        t0 = time.monotonic_ns()
        consumer.assign(
            [TopicPartition(spec.topic, p, OFFSET_BEGINNING) for p in range(spec.partitions)]
        )
        got = value_bytes = errors = 0
        first_error = None
        last = time.monotonic()
        while got < spec.records:
            # consume(n) waits for n messages (or the timeout): never more than are left
            msgs = consumer.consume(min(10_000, spec.records - got), 1.0)
            if not msgs:
                if time.monotonic() - last > STALL_S:
                    raise RuntimeError(f"got {got:,} of {spec.records:,}, then nothing")
                continue
            last = time.monotonic()
            for m in msgs:
                if m.error() is not None:
                    errors += 1
                    first_error = first_error or str(m.error())
                    continue
                value_bytes += len(m.value())
                got += 1
        t1 = time.monotonic_ns()
        cpu1 = _cpu()
    finally:
        consumer.close()
    return _consumed(spec, got, value_bytes, errors, first_error, t0, t1, cpu1 - cpu0)


def _native_consume(spec: ClientSpec, ready: Any, wait_start: Any) -> dict[str, Any]:
    from tailrace.client import Consumer

    with Consumer(
        spec.bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=spec.partition_fetch_bytes,
    ) as consumer:
        ready()
        _sleep_until(wait_start())
        cpu0 = _cpu()
        t0 = time.monotonic_ns()
        consumer.assign([(spec.topic, p) for p in range(spec.partitions)])
        got = value_bytes = 0
        last = time.monotonic()
        while got < spec.records:
            records = consumer.poll(timeout_ms=1000)
            if not records:
                if time.monotonic() - last > STALL_S:
                    raise RuntimeError(f"got {got:,} of {spec.records:,}, then nothing")
                continue
            last = time.monotonic()
            for r in records:  # touch every value, as `tailrace bench consume` does
                value_bytes += len(r.value)
                got += 1
        t1 = time.monotonic_ns()
        cpu1 = _cpu()
    return _consumed(spec, got, value_bytes, 0, None, t0, t1, cpu1 - cpu0)


def _consumed(
    spec: ClientSpec,
    got: int,
    value_bytes: int,
    errors: int,
    first_error: str | None,
    t0: int,
    t1: int,
    cpu_s: float,
) -> dict[str, Any]:
    if value_bytes != got * spec.record_size:
        errors += 1
        first_error = first_error or f"read {value_bytes:,} value bytes in {got:,} records"
    return {
        "sent": got,
        "errors": errors,
        "first_error": first_error,
        "start_ns": t0,
        "end_ns": t1,
        "cpu_s": cpu_s,
    }


CHILDREN = {"ck-produce": _ck_produce, "ck-consume": _ck_consume, "native-consume": _native_consume}


def child_main() -> int:
    """One client process: the JSON-lines protocol of broker/bench/worker.py."""
    line = sys.stdin.readline()
    if not line:
        return 2
    spec = ClientSpec(**json.loads(line))

    def send(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def wait_start() -> int:
        msg = sys.stdin.readline()
        if not msg:
            raise SystemExit("stopped before the start signal")
        return int(json.loads(msg)["start_ns"])

    try:
        result = CHILDREN[spec.kind](spec, lambda: send({"ready": True}), wait_start)
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send(result)
    return 0


# --- the orchestrator ----------------------------------------------------------------


class Run:
    """The broker and what the run measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        from tailrace.broker.bench.spawn import SpawnedBroker

        self.args = args
        launcher: tuple[str, ...] = ("-m", "tailrace.broker.cli")
        if args.profile_broker:
            launcher = ("-m", "cProfile", "-o", args.profile_broker, *launcher)
        self.broker = SpawnedBroker(kafka=True, launcher=launcher)

    def timed(self, specs: list[Any], command: list[str] | None) -> dict[str, Any]:
        """Start the client processes, wait until they are ready (and the
        machine is quiet), release them, and measure the broker around it."""
        from tailrace.broker.bench.procstats import CLK_TCK, cpu_times, sample, wait_for_idle
        from tailrace.broker.bench.workloads import BenchError, ProducerPool

        with ProducerPool(specs, command) as pool:
            idle = None
            if self.args.wait_idle:
                idle = wait_for_idle(self.args.wait_idle, self.args.wait_idle_max)
            load = os.getloadavg()[0]
            before = sample(self.broker.pid)
            machine0 = cpu_times()
            pool.start()
            results = pool.wait()
            after = sample(self.broker.pid)
            machine1 = cpu_times()
        errors = sum(r["errors"] for r in results)
        if errors:
            first = next((r["first_error"] for r in results if r["first_error"]), "unnamed")
            raise BenchError(f"{errors} errors, the first: {first}")
        broker_cpu = after.cpu_s - before.cpu_s
        client_cpu = sum(r["cpu_s"] for r in results)
        busy = ((machine1[1] - machine0[1]) - (machine1[0] - machine0[0])) / CLK_TCK
        return {
            "records": sum(r["sent"] for r in results),
            "elapsed_s": (max(r["end_ns"] for r in results) - min(r["start_ns"] for r in results))
            / 1e9,
            "broker_cpu_s": broker_cpu,
            "client_cpu_s": client_cpu,
            "other_cpu_s": max(0.0, busy - broker_cpu - client_cpu),
            "load_avg_1m": load,
            "idle_pct_before": idle,
        }

    def produce(self, workload: str, topic: str, size: int, records: int) -> dict[str, Any]:
        from tailrace.broker.bench.worker import ProduceSpec

        warmup = f"{topic}-warmup"
        if workload == "confluent-kafka":
            spec: Any = ClientSpec(
                "ck-produce", self.broker.kafka_address, topic, size, records, warmup_topic=warmup
            )
            command = [sys.executable, str(Path(__file__).resolve()), "--child"]
        else:
            spec = ProduceSpec(
                bootstrap=self.broker.address,
                topic=topic,
                warmup_topic=warmup,
                record_size=size,
                records=records,
                duration_s=None,
                rate=None,
                linger_ms=LINGER_MS,
                batch_bytes=BATCH_BYTES,
                record_format="kafka" if workload == "native-magic2" else "native",
                latency_every=0,
            )
            command = None
        before = self.end_offsets(topic)
        out = self.timed([spec], command)
        stored = sum(
            last - before.get(p, (0, 0))[1] for p, (_, last) in self.end_offsets(topic).items()
        )
        if stored != out["records"]:
            from tailrace.broker.bench.workloads import BenchError

            raise BenchError(f"{workload}: sent {out['records']:,}, the log gained {stored:,}")
        return out

    def consume(self, workload: str, topic: str, size: int) -> dict[str, Any]:
        client, _source = CONSUME[workload]
        expected = sum(last - first for first, last in self.end_offsets(topic).values())
        spec = ClientSpec(
            "ck-consume" if client == "ck" else "native-consume",
            self.broker.kafka_address if client == "ck" else self.broker.address,
            topic,
            size,
            expected,
        )
        out = self.timed([spec], [sys.executable, str(Path(__file__).resolve()), "--child"])
        if out["records"] != expected:
            from tailrace.broker.bench.workloads import BenchError

            raise BenchError(f"{workload}: read {out['records']:,} of {expected:,}")
        return out

    def admin(self) -> Any:
        from tailrace.client import Admin

        return Admin(self.broker.address)

    def end_offsets(self, topic: str) -> dict[int, tuple[int, int]]:
        with self.admin() as admin:
            return admin.topic_offsets(topic)

    def round(self, round_no: int, size: int) -> dict[str, dict[str, Any]]:
        records = self.args.records if size <= 100 else self.args.records_1k
        tag = secrets.token_hex(3)
        topics = {w: f"kc-{round_no}-{size}-{w}-{tag}" for w in PRODUCE}
        with self.admin() as admin:
            for topic in topics.values():
                admin.create_topic(topic, 1, {"flush": self.args.flush})
                admin.create_topic(f"{topic}-warmup", 1, {"flush": self.args.flush})
        out: dict[str, dict[str, Any]] = {}
        try:
            for w in _order(PRODUCE, round_no):
                out[w] = self.produce(w, topics[w], size, records)
                _progress(round_no, size, w, out[w])
            for w in _order(tuple(CONSUME), round_no):
                out[w] = self.consume(w, topics[CONSUME[w][1]], size)
                _progress(round_no, size, w, out[w])
        finally:
            with self.admin() as admin:  # the disk space goes back
                for topic in topics.values():
                    admin.delete_topic(topic)
                    admin.delete_topic(f"{topic}-warmup")
        for figures in out.values():
            _derive(figures, size)
        return out


def _order(items: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    """Forward in odd rounds, reversed in even ones (interleaving)."""
    return items if round_no % 2 else items[::-1]


def _derive(f: dict[str, Any], size: int) -> None:
    value_bytes = f["records"] * size
    f["records_per_sec"] = f["records"] / f["elapsed_s"] if f["elapsed_s"] > 0 else 0.0
    f["mib_per_sec"] = f["records_per_sec"] * size / MIB
    f["broker_cpu_s_per_gib"] = f["broker_cpu_s"] / (value_bytes / GIB)
    f["client_cpu_s_per_gib"] = f["client_cpu_s"] / (value_bytes / GIB)


def _progress(round_no: int, size: int, workload: str, f: dict[str, Any]) -> None:
    sys.stderr.write(
        f"round {round_no} {size} B {workload}: {f['records'] / f['elapsed_s']:,.0f} rec/s, "
        f"broker {f['broker_cpu_s']:.2f} CPU-s, load {f['load_avg_1m']:.2f}\n"
    )
    sys.stderr.flush()


def ratios(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, list[float]]:
    """The goal ratios and the down-conversion cost, one value per round."""
    out: dict[str, list[float]] = {
        "ck_produce_vs_native": [],
        "ck_consume_cpu_vs_native_fetch": [],
        "ck_consume_native_magic2_cpu_vs_native_fetch": [],
        "down_conversion_broker_ms_per_mib": [],
    }
    for r in rounds:
        out["ck_produce_vs_native"].append(
            r["confluent-kafka"]["records_per_sec"] / r["native"]["records_per_sec"]
        )
        base = r["native <- native"]["broker_cpu_s_per_gib"]
        if base > 0:
            out["ck_consume_cpu_vs_native_fetch"].append(
                r["ck <- ck magic2"]["broker_cpu_s_per_gib"] / base
            )
            out["ck_consume_native_magic2_cpu_vs_native_fetch"].append(
                r["ck <- native magic2"]["broker_cpu_s_per_gib"] / base
            )
        conv = (
            r["ck <- native"]["broker_cpu_s_per_gib"]
            - r["ck <- native magic2"]["broker_cpu_s_per_gib"]
        )
        out["down_conversion_broker_ms_per_mib"].append(conv / 1024 * 1000)
    return out


def _fmt_range(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def report(results: dict[int, list[dict[str, dict[str, Any]]]]) -> str:
    lines = []
    for size, rounds in results.items():
        lines.append(f"\n{size} B records, medians of {len(rounds)} rounds (range)\n")
        lines.append(
            "| workload | records/s | MiB/s | broker CPU s/GiB | client CPU s/GiB | load avg 1m |"
        )
        lines.append("|---|---|---|---|---|---|")
        for w in (*PRODUCE, *CONSUME):
            runs = [r[w] for r in rounds]
            loads = [x["load_avg_1m"] for x in runs]
            lines.append(
                f"| {LABELS[w]} | {_fmt_range([x['records_per_sec'] for x in runs], ',.0f')} "
                f"| {_fmt_range([x['mib_per_sec'] for x in runs], ',.1f')} "
                f"| {_fmt_range([x['broker_cpu_s_per_gib'] for x in runs], '.2f')} "
                f"| {_fmt_range([x['client_cpu_s_per_gib'] for x in runs], '.2f')} "
                f"| {min(loads):.1f}-{max(loads):.1f} |"
            )
        r = ratios(rounds)
        lines.append("")
        lines.append(
            f"* confluent-kafka produce / native produce: "
            f"{_fmt_range(r['ck_produce_vs_native'], '.2f')} (goal >= 0.80)"
        )
        if r["ck_consume_cpu_vs_native_fetch"]:
            lines.append(
                "* broker CPU/GiB, confluent-kafka consumer of magic 2 / native fetch: "
                f"{_fmt_range(r['ck_consume_cpu_vs_native_fetch'], '.2f')} (its own batches), "
                f"{_fmt_range(r['ck_consume_native_magic2_cpu_vs_native_fetch'], '.2f')} "
                "(the native producer's magic 2) (goal <= 1.5)"
            )
        lines.append(
            "* down-conversion, broker CPU per MiB of values (ck <- native minus "
            f"ck <- native magic2): {_fmt_range(r['down_conversion_broker_ms_per_mib'], '.1f')} ms"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} x {cpu}, Linux {platform.release()}, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--child"]:
        return child_main()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians shown)")
    p.add_argument("--sizes", default="100,1024", help="record sizes in bytes, comma-separated")
    # enough bytes that a sendfile consumer's broker CPU is many clock ticks
    # (10 ms each): 286 MiB at 100 B, 1 GiB at 1 KiB
    p.add_argument("--records", type=int, default=3_000_000, help="records per 100 B run")
    p.add_argument("--records-1k", type=int, default=1_000_000, help="records per larger run")
    p.add_argument(
        "--flush", default="none", choices=("none", "interval", "sync"), help="topic flush mode"
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="PCT",
        help="start each timed part once the CPUs are PCT%% idle over 2 s (0: at once)",
    )
    p.add_argument(
        "--wait-idle-max", type=float, default=120.0, help="longest wait for --wait-idle, s"
    )
    p.add_argument(
        "--profile-broker",
        metavar="FILE",
        help="run the broker under cProfile, its stats to FILE when the run ends "
        "(read them with: python -m pstats FILE); the figures then include its overhead",
    )
    p.add_argument("--json-out", help="write every round's figures and the summary here")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the tables")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    run = Run(args)
    results: dict[int, list[dict[str, dict[str, Any]]]] = {s: [] for s in sizes}
    with run.broker:
        for round_no in range(1, args.rounds + 1):
            for size in sizes:
                results[size].append(run.round(round_no, size))
    load_after = os.getloadavg()
    command = "python tools/bench_kafka_clients.py " + " ".join(argv)
    doc = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "command": command.strip(),
        "machine": machine(),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "config": {
            "rounds": args.rounds,
            "records_100b": args.records,
            "records_larger": args.records_1k,
            "flush": args.flush,
            "wait_idle": args.wait_idle,
            "profiled_broker": bool(args.profile_broker),
            "linger_ms": LINGER_MS,
            "batch_bytes": BATCH_BYTES,
            "buffer_bytes": BUFFER_BYTES,
            "partition_fetch_bytes": PARTITION_FETCH_BYTES,
            "ck_fetch_queue_backoff_ms": FETCH_QUEUE_BACKOFF_MS,
        },
        "results": {str(s): r for s, r in results.items()},
        "ratios": {str(s): ratios(r) for s, r in results.items()},
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=1))
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"{doc['started']} · {doc['machine']} · {doc['command']}")
    print(
        f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {', '.join(f'{x:.2f}' for x in load_after)}; flush {args.flush}"
    )
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
