"""The benchmark workloads: produce, consume, end-to-end, idle partitions.

Each ``run_*`` takes a :class:`BenchConfig` and a :class:`Target` (where the
broker is, and its PID when known) and returns a :class:`BenchResult`.

What is timed:

* **produce**: K producer processes (worker.py) send N records in total;
  from the first send to the moment ``flush()`` returned in the last
  producer. Latency: a record's send (or scheduled send, with ``--rate``)
  to its acknowledgement, through the record handle's done-callback, for
  every record with ``--rate`` and every 64th at full speed (worker.py says
  why). The records the log gained are counted from its end offsets.
* **consume**: the same producers fill the topic first (not timed); then a
  fresh consumer in this process, ``auto_offset_reset="earliest"``, reads
  every record from the start of each partition to the end offsets read after
  the fill, touching each record's value; from ``assign()`` to the last
  record. Latency: how long each ``poll()`` call took to return records
  (stalls in the fetch pipeline show up here).
* **e2e**: a consumer in this process is positioned at the end of every
  partition before the producers start; each record's value begins with its
  (scheduled) send time, and its latency is the moment ``poll()`` returned it
  minus that time. Use ``--rate``: at full speed the figure is mostly time
  spent queued in the producer's buffer.
* **idle**: a topic of P partitions and no records; the broker's resident
  memory, then a restart and the time until it listens again.

Broker CPU seconds are the difference of /proc/PID/stat around the timed part;
peak RSS is VmHWM at the end (the peak of the broker's life so far).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import secrets
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from tailrace.client import Admin, Consumer, SecurityConfig
from tailrace.client.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from .histogram import Histogram
from .procstats import CLK_TCK, ProcSample, cpu_times, sample, wait_for_idle
from .spawn import SpawnedBroker
from .worker import STAMP_BYTES, ProduceSpec

__all__ = ["BenchConfig", "BenchError", "BenchResult", "Target", "run"]

MODES = ("produce", "consume", "e2e", "idle")
_MIB = 1 << 20
_STAMP = struct.Struct(">q")
#: a consumer that sees nothing new for this long while records are still
#: expected gives up (a lost record must end the run, not hang it)
STALL_TIMEOUT_S = 30.0
#: the idle mode lets the broker finish start-up work before reading its memory
IDLE_SETTLE_S = 0.5
#: the longest --wait-idle waits for a quiet machine before running anyway
WAIT_IDLE_MAX_S = 300.0


class BenchError(Exception):
    """The benchmark could not run (a producer failed, records went missing)."""


@dataclass
class BenchConfig:
    mode: str
    topic: str | None = None
    records: int | None = None
    duration_s: float | None = None
    record_size: int = 100
    partitions: int = 1
    producers: int = 1
    acks: int = 1  # 0, 1 or -1 (all)
    flush: str | None = None  # topic flush mode when the bench creates the topic
    #: replicas of the topics the bench creates (None: the cluster's default)
    replication_factor: int | None = None
    linger_ms: float = 5
    batch_bytes: int | None = None
    #: the producers' record format: "native" (magic 1) or "kafka" (magic 2)
    record_format: str = "native"
    rate: float | None = None
    api: str = "sync"
    #: produce-ack latency of every Nth record; None: every 64th at full
    #: speed, and with a rate every record up to 20,000 records/s, then
    #: about 20,000 a second (a done-callback costs the client more than a
    #: send: see worker.py)
    latency_every: int | None = None
    #: wait until the machine is this many percent idle before the timed part
    wait_idle: float | None = None

    @property
    def sample_every(self) -> int:
        if self.latency_every is not None:
            return self.latency_every
        if self.rate is None:
            return 64
        return max(1, math.ceil(self.rate / 20_000))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.mode != "idle" and (self.records is None) == (self.duration_s is None):
            raise ValueError("give exactly one of --records and --duration")
        if self.records is not None and self.records < 1:
            raise ValueError("--records must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("--duration must be positive")
        if self.record_size < (STAMP_BYTES if self.mode == "e2e" else 0):
            raise ValueError(
                f"e2e records carry an {STAMP_BYTES}-byte send time: --record-size >= 8"
            )
        if self.partitions < 1 or self.producers < 1:
            raise ValueError("--partitions and --producers must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("--rate must be positive")
        if self.acks not in (0, 1, -1):
            raise ValueError("--acks must be 0, 1 or all (-1)")
        if self.replication_factor is not None and self.replication_factor < 1:
            raise ValueError("--replication-factor must be at least 1")
        if self.latency_every is not None and self.latency_every < 1:
            raise ValueError("--latency-every must be at least 1")


@dataclass
class Target:
    """The broker under test: its address, and its PID when known for certain."""

    bootstrap: str
    pid: int | None = None
    pid_source: str | None = None  # "spawned" or "listener"
    spawned: SpawnedBroker | None = None
    #: TLS and SASL settings of the listener (None: plaintext, no authentication)
    security: SecurityConfig | None = None

    @property
    def clients(self) -> dict[str, Any]:
        """Keyword arguments every client of the bench takes."""
        return {} if self.security is None else {"security": self.security}


@dataclass
class BenchResult:
    mode: str
    records: int
    elapsed_s: float
    record_size: int
    latency: Histogram | None
    latency_kind: str | None
    errors: int = 0
    first_error: str | None = None
    broker_cpu_s: float | None = None
    broker_rss_mib: float | None = None
    client_cpu_s: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records_per_sec(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def mib_per_sec(self) -> float:
        return self.records_per_sec * self.record_size / _MIB

    def to_json(self, config: BenchConfig, target: Target) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "records": self.records,
            "elapsed_s": round(self.elapsed_s, 6),
            "records_per_sec": round(self.records_per_sec, 1),
            "mib_per_sec": round(self.mib_per_sec, 3),
            "latency_ms": self.latency.summary_ms() if self.latency is not None else None,
            "latency_kind": self.latency_kind,
            "errors": self.errors,
        }
        if self.first_error:
            out["first_error"] = self.first_error
        if self.broker_cpu_s is not None:
            out["broker_cpu_s"] = round(self.broker_cpu_s, 3)
        if self.broker_rss_mib is not None:
            out["broker_rss_mib"] = round(self.broker_rss_mib, 1)
        if target.pid is not None:
            out["broker_pid_source"] = target.pid_source
        out["client_cpu_s"] = {k: round(v, 3) for k, v in self.client_cpu_s.items()}
        out.update(self.extra)
        cfg = asdict(config)
        cfg["bootstrap"] = target.bootstrap
        cfg["spawned_broker"] = target.spawned is not None
        out["config"] = cfg
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
        return out


class Status:
    """Progress lines on stderr, only when a person is watching (a TTY)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()

    def __call__(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --- producer processes ----------------------------------------------------------


class ProducerPool:
    """K worker processes (worker.py), started, released together, collected.

    Each worker's stderr goes to a temporary file, shown if it fails.
    ``command`` replaces the worker's command line (default: this package's
    worker.py) with another program that speaks the same JSON-lines
    protocol over its stdin/stdout (tools/bench_kafka_clients.py runs the
    Kafka clients that way).
    """

    def __init__(self, specs: list[Any], command: list[str] | None = None) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[Any] = []
        self.results: list[dict[str, Any] | None] = [None] * len(specs)
        self._collector: threading.Thread | None = None
        try:
            for spec in specs:
                # closed in close(), with the process
                log = tempfile.TemporaryFile(mode="w+", prefix="tailrace-bench-worker-")  # noqa: SIM115
                self.logs.append(log)
                proc = subprocess.Popen(
                    command or [sys.executable, "-m", "tailrace.broker.bench.worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                )  # fmt: skip
                self.procs.append(proc)
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(asdict(spec)) + "\n")
                proc.stdin.flush()
            for i in range(len(self.procs)):
                msg = self._read(i)
                if not msg.get("ready"):
                    raise BenchError(self._failure(i, msg))
        except BaseException:
            self.close()
            raise

    def _read(self, i: int) -> dict[str, Any]:
        stdout = self.procs[i].stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            return {"error": "the producer process exited"}
        return json.loads(line)

    def _failure(self, i: int, msg: dict[str, Any]) -> str:
        log = self.logs[i]
        log.seek(0)
        tail = log.read()[-2000:].strip()
        text = f"producer {i}: {msg.get('error', msg)}"
        return f"{text}\n{tail}" if tail else text

    def start(self, delay_s: float = 0.05) -> int:
        """Release every worker at one instant ``delay_s`` from now; returns it
        (monotonic ns). A thread collects the results as they come."""
        start_ns = time.monotonic_ns() + int(delay_s * 1e9)
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"start_ns": start_ns}) + "\n")
            proc.stdin.flush()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()
        return start_ns

    def _collect(self) -> None:
        for i in range(len(self.procs)):
            self.results[i] = self._read(i)

    def finished(self) -> bool:
        return self._collector is not None and not self._collector.is_alive()

    def wait(self) -> list[dict[str, Any]]:
        """Every worker's result; raises BenchError for a failed worker."""
        assert self._collector is not None
        self._collector.join()
        out = []
        for i, res in enumerate(self.results):
            if res is None or "error" in res:
                raise BenchError(self._failure(i, res or {}))
            out.append(res)
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                if proc.stdin is not None:
                    # a worker that already died leaves a broken pipe: nothing to tell it
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
                if not self.finished():
                    proc.terminate()  # interrupted mid-run: do not finish sending
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        for log in self.logs:
            log.close()

    def __enter__(self) -> ProducerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _security_fields(security: SecurityConfig | None) -> dict[str, Any] | None:
    """A SecurityConfig as JSON for the producer processes (file names only:
    a password given inline is refused, it would travel on a pipe)."""
    if security is None:
        return None
    if security.ssl_context is not None or security.password is not None:
        raise BenchError("bench passes TLS and SASL settings as files: use --password-file")
    fields = ("tls", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_mechanism", "username")
    out = {f: getattr(security, f) for f in fields}
    out["ssl_check_hostname"] = security.ssl_check_hostname
    out["password_file"] = security.password_file
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in out.items()}


def _specs(
    cfg: BenchConfig, target: Target, topic: str, *, stamp: bool, latency_every: int
) -> list[ProduceSpec]:
    k = cfg.producers
    specs = []
    for w in range(k):
        share = None
        if cfg.records is not None:
            share = cfg.records // k + (1 if w < cfg.records % k else 0)
        specs.append(
            ProduceSpec(
                bootstrap=target.bootstrap,
                security=_security_fields(target.security),
                topic=topic,
                warmup_topic=f"{topic}-warmup",
                record_size=cfg.record_size,
                records=share,
                duration_s=cfg.duration_s,
                rate=None if cfg.rate is None else cfg.rate / k,
                phase=w,
                workers=k,
                acks=cfg.acks,
                linger_ms=cfg.linger_ms,
                batch_bytes=cfg.batch_bytes,
                record_format=cfg.record_format,
                stamp=stamp,
                latency_every=latency_every,
                api=cfg.api,
            )
        )
    return [s for s in specs if s.records is None or s.records > 0]


def _merge(results: list[dict[str, Any]]) -> tuple[int, int, int, int, str | None, Histogram]:
    """(sent, start_ns, end_ns, errors, first_error, latency) over all workers."""
    hist = Histogram()
    errors = 0
    first_error = None
    for r in results:
        hist.merge(Histogram.from_dict(r["latency"]))
        errors += r["errors"]
        first_error = first_error or r["first_error"]
    return (
        sum(r["sent"] for r in results),
        min(r["start_ns"] for r in results),
        max(r["end_ns"] for r in results),
        errors,
        first_error,
        hist,
    )


# --- topics ------------------------------------------------------------------------


def _prepare_topics(cfg: BenchConfig, target: Target, status: Status) -> tuple[str, list[str]]:
    """Create the bench topic and the warm-up topic; returns (topic, created)."""
    topic = cfg.topic or f"bench-{cfg.mode}-{secrets.token_hex(4)}"
    created = []
    config = {"flush": cfg.flush} if cfg.flush else {}
    status(f"creating topic {topic} ({cfg.partitions} partitions)")
    with Admin(target.bootstrap, **target.clients) as admin:
        try:
            admin.create_topic(
                topic, cfg.partitions, config, replication_factor=cfg.replication_factor
            )
            created.append(topic)
        except TopicAlreadyExistsError:
            if cfg.topic is None:
                raise
        try:
            admin.create_topic(
                f"{topic}-warmup", 1, config, replication_factor=cfg.replication_factor
            )
            created.append(f"{topic}-warmup")
        except TopicAlreadyExistsError:
            pass
    return topic, created


def _drop_topics(target: Target, created: list[str]) -> None:
    if not created or target.spawned is not None:
        return  # a spawned broker's data directory goes away with it
    with Admin(target.bootstrap, **target.clients) as admin:
        for name in created:  # in a cluster: from every replica
            with contextlib.suppress(UnknownTopicOrPartitionError):
                admin.delete_topic(name)


def _partition_count(target: Target, topic: str) -> int:
    with Admin(target.bootstrap, **target.clients) as admin:
        return len(admin.describe_topic(topic).partitions)


def _end_offsets(target: Target, topic: str) -> dict[int, tuple[int, int]]:
    with Admin(target.bootstrap, **target.clients) as admin:
        return admin.topic_offsets(topic)


def _stored_since(target: Target, topic: str, before: dict[int, tuple[int, int]]) -> int:
    """Records appended to ``topic`` since ``before`` (its end offsets then).
    The bench must be the topic's only writer for this to mean anything."""
    after = _end_offsets(target, topic)
    return sum(last - before.get(p, (0, 0))[1] for p, (_first, last) in after.items())


# --- broker cost -------------------------------------------------------------------


def _broker_sample(target: Target) -> ProcSample | None:
    if target.pid is None:
        return None
    try:
        return sample(target.pid)
    except OSError:
        return None


@dataclass
class Window:
    """What was true when the timed part began."""

    broker: ProcSample | None
    machine: tuple[int, int]  # (idle, total) CPU jiffies, /proc/stat
    idle_pct: float | None  # measured by --wait-idle, else None


def _window_start(cfg: BenchConfig, target: Target, status: Status) -> Window:
    idle = None
    if cfg.wait_idle is not None:
        status(f"waiting until the machine is {cfg.wait_idle:g}% idle")
        idle = wait_for_idle(cfg.wait_idle, WAIT_IDLE_MAX_S)
        status(f"machine {idle:.0f}% idle: running")
    return Window(_broker_sample(target), cpu_times(), idle)


def _broker_cost(result: BenchResult, before: Window, target: Target) -> None:
    """The broker's CPU and peak RSS, and what the whole machine was doing,
    over the timed part. ``other_cpu_s`` is the machine's busy CPU time
    minus the bench's own processes and the broker: other people's work,
    which is what makes a figure drift on a shared machine."""
    after = _broker_sample(target)
    if before.broker is not None and after is not None:
        result.broker_cpu_s = after.cpu_s - before.broker.cpu_s
        result.broker_rss_mib = after.hwm_kib / 1024
    idle0, total0 = before.machine
    idle1, total1 = cpu_times()
    busy = ((total1 - total0) - (idle1 - idle0)) / CLK_TCK
    result.extra["machine_busy_cpu_s"] = round(busy, 2)
    if result.broker_cpu_s is not None:
        ours = result.broker_cpu_s + sum(result.client_cpu_s.values())
        result.extra["other_cpu_s"] = round(max(0.0, busy - ours), 2)
    if before.idle_pct is not None:
        result.extra["machine_idle_pct_before"] = round(before.idle_pct, 1)


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- the modes ---------------------------------------------------------------------


def run_produce(cfg: BenchConfig, target: Target, status: Status) -> BenchResult:
    topic, created = _prepare_topics(cfg, target, status)
    try:
        status(f"starting {cfg.producers} producer process(es)")
        every = cfg.sample_every
        start_offsets = _end_offsets(target, topic)
        with ProducerPool(_specs(cfg, target, topic, stamp=False, latency_every=every)) as pool:
            before = _window_start(cfg, target, status)
            status("producing")
            pool.start()
            results = pool.wait()
        sent, t0, t1, errors, first_error, hist = _merge(results)
        stored = _stored_since(target, topic, start_offsets)
        if stored < sent and cfg.acks:
            # the callbacks see only the sampled records; the log sees them all
            errors = max(errors, sent - stored)
            first_error = first_error or f"{sent - stored:,} records sent are not in the log"
        result = BenchResult(
            mode="produce",
            records=min(sent - errors, stored),
            elapsed_s=(t1 - t0) / 1e9,
            record_size=cfg.record_size,
            latency=hist,
            latency_kind="produce-ack (scheduled send -> ack)"
            if cfg.rate
            else "produce-ack (send -> ack)",
            errors=errors,
            first_error=first_error,
            client_cpu_s={"producers": sum(r["cpu_s"] for r in results)},
            extra={"sent": sent, "stored": stored, "latency_every": every},
        )
        _broker_cost(result, before, target)
        return result
    finally:
        _drop_topics(target, created)


def run_consume(cfg: BenchConfig, target: Target, status: Status) -> BenchResult:
    topic, created = _prepare_topics(cfg, target, status)
    try:
        status("filling the topic (not timed)")
        with ProducerPool(_specs(cfg, target, topic, stamp=False, latency_every=0)) as pool:
            pool.start()
            pool.wait()
        ends = _end_offsets(target, topic)
        expected = sum(last - first for first, last in ends.values())
        partitions = [(topic, p) for p in sorted(ends)]
        hist = Histogram()
        got = 0
        with Consumer(target.bootstrap, auto_offset_reset="earliest", **target.clients) as consumer:
            before = _window_start(cfg, target, status)
            cpu0 = _self_cpu()
            status(f"consuming {expected:,} records")
            now = time.monotonic_ns
            t0 = now()
            consumer.assign(partitions)
            last_progress = t0
            value_bytes = 0
            while got < expected:
                t = now()
                records = consumer.poll(timeout_ms=1000)
                t_end = now()
                if records:
                    hist.record(t_end - t)
                    # touch every record, as any real consumer does (poll may
                    # hand out records lazily: counting alone would skip that)
                    if cfg.api == "many":
                        values = records.values()
                        value_bytes += sum(map(len, values))
                        got += len(values)
                    else:
                        for r in records:
                            value_bytes += len(r.value)
                            got += 1
                    last_progress = t_end
                elif t_end - last_progress > STALL_TIMEOUT_S * 1e9:
                    raise BenchError(
                        f"the consumer got {got:,} of {expected:,} records and then nothing "
                        f"for {STALL_TIMEOUT_S:g} s"
                    )
            t1 = now()
            cpu1 = _self_cpu()
        if value_bytes != got * cfg.record_size and cfg.topic is None:
            raise BenchError(
                f"the consumer read {value_bytes:,} value bytes in {got:,} records, "
                f"expected {cfg.record_size} bytes each"
            )
        result = BenchResult(
            mode="consume",
            records=got,
            elapsed_s=(t1 - t0) / 1e9,
            record_size=cfg.record_size,
            latency=hist,
            latency_kind="poll (call -> records returned)",
            client_cpu_s={"consumer": cpu1 - cpu0},
        )
        _broker_cost(result, before, target)
        return result
    finally:
        _drop_topics(target, created)


def run_e2e(cfg: BenchConfig, target: Target, status: Status) -> BenchResult:
    topic, created = _prepare_topics(cfg, target, status)
    try:
        count = _partition_count(target, topic)
        hist = Histogram()
        got = 0
        unpack = _STAMP.unpack_from
        with Consumer(target.bootstrap, auto_offset_reset="earliest", **target.clients) as consumer:
            partitions = [(topic, p) for p in range(count)]
            consumer.assign(partitions)
            consumer.seek_to_end(partitions)
            for tp in partitions:
                consumer.position(tp)  # resolved now, not during the run
            status(f"starting {cfg.producers} producer process(es)")
            specs = _specs(cfg, target, topic, stamp=True, latency_every=cfg.sample_every)
            with ProducerPool(specs) as pool:
                before = _window_start(cfg, target, status)
                cpu0 = _self_cpu()
                status("producing and consuming")
                start_ns = pool.start()
                expected = cfg.records
                results = None
                now = time.monotonic_ns
                last_progress = now()
                t_last = start_ns
                while expected is None or got < expected:
                    records = consumer.poll(timeout_ms=100)
                    t = now()
                    if records:
                        if cfg.api == "many":
                            for v in records.values():
                                hist.record(t - unpack(v)[0])
                        else:
                            for r in records:
                                hist.record(t - unpack(r.value)[0])
                        got += len(records)
                        last_progress = t_last = t
                        continue
                    if results is None and pool.finished():
                        # every producer is done: expect what they had acknowledged
                        results = pool.wait()
                        expected = sum(r["sent"] - r["errors"] for r in results)
                    elif t - last_progress > STALL_TIMEOUT_S * 1e9:
                        raise BenchError(
                            f"the consumer got {got:,} records"
                            + (f" of {expected:,}" if expected is not None else "")
                            + f" and then nothing for {STALL_TIMEOUT_S:g} s"
                        )
                cpu1 = _self_cpu()
                results = pool.wait()
        sent, t0, _t1, errors, first_error, ack_hist = _merge(results)
        result = BenchResult(
            mode="e2e",
            records=got,
            elapsed_s=(t_last - t0) / 1e9,
            record_size=cfg.record_size,
            latency=hist,
            latency_kind="end-to-end (scheduled send -> consumed)"
            if cfg.rate
            else "end-to-end (send -> consumed)",
            errors=errors,
            first_error=first_error,
            client_cpu_s={
                "producers": sum(r["cpu_s"] for r in results),
                "consumer": cpu1 - cpu0,
            },
            extra={
                "sent": sent,
                "produce_ack_latency_ms": ack_hist.summary_ms(),
            },
        )
        _broker_cost(result, before, target)
        return result
    finally:
        _drop_topics(target, created)


def run_idle(cfg: BenchConfig, target: Target, status: Status) -> BenchResult:
    """P empty partitions: resident memory, and the time to restart on them."""
    broker = target.spawned
    if broker is None:
        raise BenchError("the idle mode restarts the broker: it needs --spawn-broker")
    topic, _created = _prepare_topics(cfg, target, status)
    status("letting the broker settle")
    time.sleep(IDLE_SETTLE_S)
    created_rss = broker.sample().rss_kib / 1024
    status("restarting the broker")
    broker.stop()
    broker.start()
    target.bootstrap = broker.address
    target.pid = broker.pid
    with Admin(broker.address) as admin:
        seen = len(admin.describe_topic(topic).partitions)
    time.sleep(IDLE_SETTLE_S)
    after = broker.sample()
    return BenchResult(
        mode="idle",
        records=0,
        elapsed_s=0.0,
        record_size=cfg.record_size,
        latency=None,
        latency_kind=None,
        broker_cpu_s=after.cpu_s,
        broker_rss_mib=after.hwm_kib / 1024,
        extra={
            "partitions": seen,
            "startup_s": round(broker.startup_s or 0.0, 3),
            "broker_rss_now_mib": round(after.rss_kib / 1024, 1),
            "broker_rss_after_create_mib": round(created_rss, 1),
        },
    )


RUNNERS = {"produce": run_produce, "consume": run_consume, "e2e": run_e2e, "idle": run_idle}


def run(cfg: BenchConfig, target: Target, status: Status | None = None) -> BenchResult:
    status = status or Status()
    try:
        return RUNNERS[cfg.mode](cfg, target, status)
    finally:
        status.done()
