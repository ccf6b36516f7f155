"""``tailrace bench produce|consume|e2e|idle``: throughput and latency, measured.

The workloads live in :mod:`tailrace.broker.bench` (workloads.py says what
each mode times, worker.py how the constant-rate schedule avoids coordinated
omission); this module is the command line and the report.

``--json`` prints one JSON object as the last line of stdout (keys
``records``, ``records_per_sec``, ``mib_per_sec``, ``latency_ms`` {p50, p99,
p999, max}, ``broker_cpu_s`` and ``broker_rss_mib`` when the broker's PID is
known, and the configuration); otherwise a short human report. Progress goes
to stderr only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

from ..bench.procstats import listener_pid
from ..bench.spawn import BrokerStartError, SpawnedBroker
from ..bench.workloads import BenchConfig, BenchError, BenchResult, Status, Target, run
from .common import UsageError, add_security_options, resolve_security

_DEFAULT_BOOTSTRAP = "127.0.0.1:7420"
_BOOTSTRAP_ENV = "TAILRACE_BOOTSTRAP"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure throughput and latency (produce, consume, e2e, idle)",
        description=(
            "Measure the broker through the client libraries. produce: K producer processes "
            "send records, timed to the last acknowledgement. consume: fill a topic (not "
            "timed), then time a fresh consumer reading it all. e2e: time from each record's "
            "send to its arrival at a consumer. idle: broker memory and restart time with "
            "--partitions empty partitions (needs --spawn-broker). With --rate, records are "
            "sent on a fixed schedule and latency counts from the scheduled time, so a stall "
            "is not hidden."
        ),
        epilog=(
            "examples:\n"
            "  tailrace bench produce --spawn-broker --records 1000000 --flush none\n"
            "  tailrace bench e2e --spawn-broker --rate 10000 --duration 10\n"
            "  tailrace bench consume --spawn-broker --records 20000 --record-size 65536 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("mode", choices=["produce", "consume", "e2e", "idle"])
    p.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help=f"the broker (default: ${_BOOTSTRAP_ENV}, else {_DEFAULT_BOOTSTRAP})",
    )
    add_security_options(p)
    p.add_argument(
        "--spawn-broker",
        action="store_true",
        help="start a broker subprocess in a temporary directory for the run, and report "
        "its CPU seconds and peak RSS",
    )
    p.add_argument("--topic", help="use this topic (created when missing; default: a new one)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--records", type=_positive_int, metavar="N", help="records in total")
    size.add_argument(
        "--duration", type=_positive_float, metavar="S", help="send for S seconds instead"
    )
    p.add_argument("--record-size", type=_non_negative_int, default=100, metavar="BYTES")
    p.add_argument("--partitions", type=_positive_int, default=None, metavar="P")
    p.add_argument(
        "--producers", type=_positive_int, default=1, metavar="K", help="producer processes"
    )
    p.add_argument(
        "--acks",
        choices=["0", "1", "all"],
        default="1",
        help="0: no answer; 1: the leader stored it (default); all: every in-sync replica "
        "has it (a cluster; a single broker refuses it)",
    )
    p.add_argument(
        "--replication-factor",
        type=_positive_int,
        metavar="N",
        help="replicas of the topics the bench creates (a cluster; default: the cluster's)",
    )
    p.add_argument(
        "--flush",
        choices=["sync", "interval", "none"],
        help="the topic's flush mode when the bench creates it (default: the broker's)",
    )
    p.add_argument("--linger-ms", type=float, default=5.0, metavar="MS")
    p.add_argument("--batch-bytes", type=_positive_int, metavar="BYTES")
    p.add_argument(
        "--record-format",
        choices=("native", "kafka"),
        default="native",
        help="the producers' record format: native (magic 1, msgpack) or kafka "
        "(magic 2, Kafka's RecordBatch v2); consume reads what the fill wrote",
    )
    p.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="records/s in total, on a fixed schedule (latency from the scheduled time)",
    )
    p.add_argument(
        "--api",
        choices=["sync", "async", "many"],
        default="sync",
        help="blocking Producer.send per record (default), trio AsyncProducer, or the "
        "batch-level calls: Producer.send_many (1000 values a call) and the consumer's "
        "RecordList.values() (no Record object per record)",
    )
    p.add_argument(
        "--latency-every",
        type=_positive_int,
        metavar="N",
        help="produce-ack latency of every Nth record (default: every 64th at full speed; "
        "with --rate every record up to 20,000/s, then about 20,000 a second: a callback "
        "per record costs the client more than the send)",
    )
    p.add_argument(
        "--wait-idle",
        type=_percent,
        metavar="PCT",
        help="before the timed part, wait (up to 5 minutes) until the machine's CPUs are "
        "PCT%% idle over 2 s: on a shared machine, start in a quiet moment",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on the last line")
    p.set_defaults(func=run_command)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def run_command(args: argparse.Namespace) -> int:
    records, duration = args.records, args.duration
    if args.mode != "idle" and records is None and duration is None:
        records = 1_000_000 if args.rate is None else None
        if records is None:
            duration = 10.0
    partitions = args.partitions
    if partitions is None:
        partitions = 1000 if args.mode == "idle" else 1
    try:
        config = BenchConfig(
            mode=args.mode,
            topic=args.topic,
            records=records,
            duration_s=duration,
            record_size=args.record_size,
            partitions=partitions,
            producers=args.producers,
            acks=-1 if args.acks == "all" else int(args.acks),
            replication_factor=args.replication_factor,
            flush=args.flush,
            linger_ms=args.linger_ms,
            batch_bytes=args.batch_bytes,
            record_format=args.record_format,
            rate=args.rate,
            api=args.api,
            latency_every=args.latency_every,
            wait_idle=args.wait_idle,
        )
    except ValueError as exc:
        sys.stderr.write(f"tailrace bench: {exc}\n")
        return 2
    if args.mode == "idle" and not args.spawn_broker:
        sys.stderr.write("tailrace bench: idle restarts the broker: it needs --spawn-broker\n")
        return 2
    try:
        security = resolve_security(args)
    except UsageError as exc:
        sys.stderr.write(f"tailrace bench: {exc}\n")
        return 2
    if security is not None and args.spawn_broker:
        sys.stderr.write(
            "tailrace bench: --spawn-broker starts a plaintext broker; for TLS or SASL, "
            "start a broker with such a listener and give --bootstrap\n"
        )
        return 2
    status = Status()
    broker: SpawnedBroker | None = None
    # SIGTERM unwinds like Ctrl-C: the spawned broker and the producer
    # processes are stopped through their handles, never left behind
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.spawn_broker:
            status("starting a broker")
            broker = SpawnedBroker().start()
            target = Target(broker.address, broker.pid, "spawned", broker)
        else:
            bootstrap = args.bootstrap or os.environ.get(_BOOTSTRAP_ENV) or _DEFAULT_BOOTSTRAP
            host, _, port = bootstrap.rpartition(":")
            pid = listener_pid(host, int(port)) if port.isdigit() else None
            target = Target(bootstrap, pid, "listener" if pid else None, security=security)
        result = run(config, target, status)
    except (BenchError, BrokerStartError) as exc:
        status.done()
        sys.stderr.write(f"tailrace bench: {exc}\n")
        return 1
    finally:
        try:
            if broker is not None:
                broker.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
    out = sys.stdout
    if args.json:
        out.write(json.dumps(result.to_json(config, target)) + "\n")
    else:
        out.write(human_report(result, config, target))
    out.flush()
    return 1 if result.errors else 0


def _acks_name(acks: int) -> str:
    return "all" if acks == -1 else str(acks)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _ms(summary: dict[str, Any] | None) -> str:
    if not summary or not summary.get("count"):
        return "no samples"
    return (
        f"p50 {summary['p50']:.3f}  p99 {summary['p99']:.3f}  p99.9 {summary['p999']:.3f}  "
        f"max {summary['max']:.3f} ms  ({summary['count']:,} samples)"
    )


def human_report(result: BenchResult, config: BenchConfig, target: Target) -> str:
    """A few aligned lines a person reads at a glance."""
    where = "spawned broker" if target.spawned is not None else target.bootstrap
    lines = [
        f"tailrace bench {config.mode}: {where}, {config.partitions} partition(s), "
        f"{config.record_size} B records, {config.producers} producer(s), "
        f"acks={_acks_name(config.acks)}, "
        f"flush={config.flush or 'broker default'}, linger_ms={config.linger_ms:g}"
        + (f", rate={config.rate:,.0f}/s" if config.rate else "")
        + f", api={config.api}"
        + (f", record_format={config.record_format}" if config.record_format != "native" else "")
    ]
    if config.mode == "idle":
        x = result.extra
        lines.append(
            f"  {x['partitions']:,} idle partitions: restart to listening {x['startup_s']:.3f} s,"
            f" RSS {x['broker_rss_now_mib']:.1f} MiB (peak {result.broker_rss_mib:.1f} MiB)"
        )
        return "\n".join(lines) + "\n"
    lines.append(
        f"  throughput  {result.records:,} records in {result.elapsed_s:.3f} s: "
        f"{result.records_per_sec:,.0f} records/s, {result.mib_per_sec:,.1f} MiB/s"
    )
    if result.latency is not None and result.latency_kind:
        lines.append(f"  latency     {result.latency_kind}: {_ms(result.latency.summary_ms())}")
    ack = result.extra.get("produce_ack_latency_ms")
    if ack:
        lines.append(f"  latency     produce-ack: {_ms(ack)}")
    if result.broker_cpu_s is not None:
        lines.append(
            f"  broker      CPU {result.broker_cpu_s:.2f} s, "
            f"peak RSS {result.broker_rss_mib:.1f} MiB (PID from {target.pid_source})"
        )
    else:
        lines.append("  broker      CPU and RSS unknown (not spawned, PID not found)")
    cpu = ", ".join(f"{k} {v:.2f} s" for k, v in result.client_cpu_s.items())
    lines.append(f"  client CPU  {cpu}")
    if "other_cpu_s" in result.extra:
        lines.append(
            f"  machine     {result.extra['machine_busy_cpu_s']:.2f} CPU-s busy during the run, "
            f"{result.extra['other_cpu_s']:.2f} of them other processes' (drift warning when high)"
        )
    if result.errors:
        lines.append(f"  ERRORS      {result.errors:,} records failed: {result.first_error}")
    return "\n".join(lines) + "\n"
