"""Side-by-side: tailrace, Redis Streams, NATS JetStream and Kafka (tailrace's
Kafka listener and librdkafka's mock cluster, one Kafka client) on the same
workloads.

    .venv/bin/pip install -e '.[bench]'        # redis, nats-py, matplotlib
    # confluent-kafka (the Kafka rows) comes with the test extra
    apt-get install -y redis-server nats-server
    .venv/bin/python tools/compare_peers.py --repeats 3

Workloads, for records of 100 B and 1 KiB:

* produce: N records as fast as the client's best documented batching allows,
  timed until the system holds them all;
* consume: read those N records back from the start;
* e2e: records sent at a fixed rate for a few seconds (2,000 and 20,000
  records/s by default, ``--rates``), each value starting with its scheduled
  send time (8 bytes, CLOCK_MONOTONIC ns); a consumer in another process
  records now - scheduled time (latency from the schedule, so a stall is not
  hidden: no coordinated omission). p50 and p99 are reported.

How each system is driven (the fastest documented way its Python client has):

* tailrace: ``tailrace bench produce|consume|e2e --spawn-broker --json``
  subprocesses (a fresh broker per run), topic flush ``interval`` (fsync
  every second, like Redis's ``appendfsync everysec``) and ``sync`` (fsync
  before every acknowledgement); the blocking Producer with its defaults
  (linger 5 ms) for throughput; for e2e one row per producer linger in
  ``--e2e-linger-ms`` (default 0 and 1 ms: 0 sends a record at once when
  nothing is in flight, as the peers' clients do).
* Redis Streams: Debian's redis-server with ``appendonly yes`` and
  ``appendfsync everysec`` in a temporary directory; redis-py, XADD pipelined
  1000 per round trip, XREAD COUNT 5000; e2e: one XADD per record, XREAD
  BLOCK on the consumer side.
* NATS JetStream: Debian's nats-server ``-js`` with file storage in a
  temporary directory (its default sync interval: 2 minutes); nats-py, core
  publish into the stream's subject flushed every 1000, timed until the
  stream holds all N; pull consumer fetch(1000) with no acks; e2e: acked
  ``publish_async`` at the schedule, pull fetch on the consumer side.
* Kafka protocol, one client for both rows: confluent-kafka (librdkafka)
  against tailrace's Kafka listener (``tailrace-kafka``: a spawned broker
  with ``--kafka-listen``, topic flush ``interval``) and against librdkafka's
  own mock cluster (``kafka-mock``: tools/kafka_mock_cluster.py through the
  confluent-kafka wheel, in memory, one broker; the Kafka-compatible broker
  that runs here, no Apache Kafka). Producer: idempotent (acks=all), linger
  5 ms, 512 KiB batches, 32 MiB buffer, no compression (the native
  producer's settings), timed until ``flush()`` returned; consumer: assign
  from the beginning, ``consume(10000)`` batches (``fetch.queue.backoff.ms``
  10: see tools/bench_kafka_clients.py); e2e: linger 0, one ``produce`` per
  record at the schedule, a consumer assigned at the end offset, polling
  record by record, ``fetch.wait.max.ms`` 50 (the mock answers a waiting
  fetch only at that deadline: see _kafka_consumer).

Every server is started by this tool on a free loopback port in a temporary
directory and stopped through its own process handle. The systems run
interleaved (tailrace, tailrace-sync, redis, nats, tailrace-kafka,
kafka-mock, then again, ``--repeats``
times) and the table shows each figure's median, because on a shared
machine figures drift from minute to minute: only figures from one run are
comparable. A system whose server or Python client is not installed is
skipped with a note. A PNG chart goes to ``--chart`` (default docs/peers.png).

This is a tool, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailrace.broker.bench.histogram import Histogram
from tailrace.broker.bench.procstats import sample, wait_for_idle
from tailrace.broker.faultkit.etcd_cluster import free_port  # below the ephemeral range

ROOT = Path(__file__).resolve().parents[1]
STAMP = struct.Struct(">q")
MIB = 1 << 20
WAIT_S = 120.0  # longest any single wait for a server or for records
#: --wait-idle: each timed part starts once the machine is this idle (percent
#: over 2 s, at most WAIT_IDLE_MAX_S of waiting); None: start at once
WAIT_IDLE: float | None = None
WAIT_IDLE_MAX_S = 120.0


def quiet() -> None:
    """Wait for a quiet moment before a timed part (see --wait-idle)."""
    if WAIT_IDLE is not None:
        wait_for_idle(WAIT_IDLE, WAIT_IDLE_MAX_S)


SYSTEMS = ("tailrace", "tailrace-sync", "redis", "nats", "tailrace-kafka", "kafka-mock")
LABELS = {
    "tailrace": "tailrace (flush interval)",
    "tailrace-sync": "tailrace (flush sync)",
    "redis": "Redis Streams (AOF everysec)",
    "nats": "NATS JetStream (file)",
    "tailrace-kafka": "tailrace Kafka listener (flush interval), confluent-kafka",
    "kafka-mock": "librdkafka mock cluster (memory), confluent-kafka",
}
#: the Kafka-protocol systems: driven by the same confluent-kafka client
KAFKA_SYSTEMS = ("tailrace-kafka", "kafka-mock")
#: the e2e producer's first record goes here, before its schedule starts
WARMUP_TOPIC = "e2e-warmup"
#: the e2e consumer's fetch.wait.max.ms (see _kafka_consumer; default 500)
E2E_FETCH_WAIT_MS = 50
#: an e2e consumer that got records and then nothing for this long stops
E2E_IDLE_S = 10.0


def payload(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def stamped(size: int, t_ns: int) -> bytes:
    return STAMP.pack(t_ns) + payload(size)[STAMP.size :]


# --- servers ---------------------------------------------------------------------


class Server:
    """A peer's server process in a temporary directory on a free loopback port."""

    def __init__(self, name: str, cmd: Callable[[int, str], list[str]]) -> None:
        self.name = name
        self.tmp = tempfile.TemporaryDirectory(prefix=f"compare-{name}-")
        self.port = free_port()
        self.log = open(Path(self.tmp.name) / "server.log", "w")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            cmd(self.port, self.tmp.name),
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tmp.name,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self._log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not listen: {self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        self.log.flush()
        return (Path(self.tmp.name) / "server.log").read_text()[-1000:]

    def cost(self) -> tuple[float, float]:
        """(CPU seconds so far, peak RSS MiB) of the server process."""
        s = sample(self.proc.pid)
        return s.cpu_s, s.hwm_kib / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()
        self.tmp.cleanup()


def redis_server() -> Server:
    return Server(
        "redis",
        lambda port, d: [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", "",
        ],
    )  # fmt: skip


def nats_server() -> Server:
    return Server(
        "nats",
        lambda port, d: ["nats-server", "-js", "-sd", d, "-a", "127.0.0.1", "-p", str(port)],
    )


# --- tailrace ----------------------------------------------------------------------


def tailrace_bench(mode: str, flush: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
    cmd = [sys.executable, "-m", "tailrace.broker.cli", "bench", mode, "--spawn-broker"]
    cmd += ["--json", "--flush", flush, *args]
    if WAIT_IDLE is not None:
        cmd += ["--wait-idle", str(WAIT_IDLE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_tailrace(
    flush: str,
    size: int,
    records: int,
    rates: list[float],
    seconds: float,
    lingers: list[float],
) -> dict:
    common = ["--record-size", str(size)]
    p = tailrace_bench("produce", flush, "--records", str(records), *common)
    c = tailrace_bench("consume", flush, "--records", str(records), *common)
    out = {
        "produce_rps": p["records_per_sec"],
        "produce_server_cpu_s": p.get("broker_cpu_s"),
        "consume_rps": c["records_per_sec"],
        "consume_server_cpu_s": c.get("broker_cpu_s"),
    }
    rss = [x.get("broker_rss_mib") or 0 for x in (p, c)]
    for rate in rates:
        for linger in lingers:
            e = tailrace_bench(
                "e2e", flush, "--rate", str(rate), "--duration", str(seconds),
                "--linger-ms", f"{linger:g}", *common,
            )  # fmt: skip
            key = e2e_key(rate, linger)
            out[f"e2e_p50_ms{key}"] = e["latency_ms"]["p50"]
            out[f"e2e_p99_ms{key}"] = e["latency_ms"]["p99"]
            out[f"e2e_records{key}"] = e["records"]
            rss.append(e.get("broker_rss_mib") or 0)
    out["server_rss_mib"] = max(rss)
    return out


def e2e_key(rate: float, linger: float | None = None) -> str:
    """The suffix of a run's e2e figures: ``@2000`` (peers), ``@2000@l0``
    (tailrace with linger 0 ms)."""
    return f"@{rate:g}" if linger is None else f"@{rate:g}@l{linger:g}"


def e2e_figures(hist: Histogram, rate: float) -> dict:
    key = e2e_key(rate)
    summary = hist.summary_ms()
    return {
        f"e2e_p50_ms{key}": summary["p50"],
        f"e2e_p99_ms{key}": summary["p99"],
        f"e2e_records{key}": hist.count,
    }


# --- Redis Streams -----------------------------------------------------------------


def run_redis(size: int, records: int, rates: list[float], seconds: float) -> dict:
    import redis

    server = redis_server()
    try:
        r = redis.Redis(port=server.port)
        value = payload(size)
        quiet()
        cpu0, _ = server.cost()
        t0 = time.perf_counter()
        for i in range(0, records, 1000):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(1000, records - i)):
                pipe.xadd("bench", {"v": value})
            pipe.execute()
        produce_s = time.perf_counter() - t0
        produce_cpu = server.cost()[0] - cpu0
        quiet()
        cpu1, _ = server.cost()
        t0 = time.perf_counter()
        last, got = "0-0", 0
        while got < records:
            res = r.xread({"bench": last}, count=5000)
            entries = res[0][1]
            got += len(entries)
            last = entries[-1][0]
        consume_s = time.perf_counter() - t0
        cpu2, _ = server.cost()
        out = {
            "produce_rps": records / produce_s,
            "produce_server_cpu_s": produce_cpu,
            "consume_rps": records / consume_s,
            "consume_server_cpu_s": cpu2 - cpu1,
        }
        for rate in rates:
            hist = e2e(_redis_producer, _redis_consumer, server.port, size, rate, seconds)
            out.update(e2e_figures(hist, rate))
        _, rss = server.cost()
        out["server_rss_mib"] = rss
        r.close()
    finally:
        server.stop()
    return out


def _redis_producer(port: int, size: int, schedule: list[int]) -> int:
    import redis

    r = redis.Redis(port=port)
    for t in schedule:
        sleep_until(t)
        r.xadd("e2e", {"v": stamped(size, t)})
    r.close()
    return len(schedule)


def _redis_consumer(port: int, expected: int, ready: Callable[[], None]) -> Histogram:
    import redis

    r = redis.Redis(port=port)
    hist = Histogram()
    last = "$"
    r.xadd("e2e-warmup", {"v": b"x"})
    ready()
    deadline = time.monotonic() + WAIT_S
    while hist.count < expected and time.monotonic() < deadline:
        res = r.xread({"e2e": last}, count=1000, block=1000)
        now = time.monotonic_ns()
        if not res:
            continue
        for entry_id, fields in res[0][1]:
            hist.record(now - STAMP.unpack_from(fields[b"v"])[0])
            last = entry_id
    r.close()
    return hist


# --- NATS JetStream ----------------------------------------------------------------


def run_nats(size: int, records: int, rates: list[float], seconds: float) -> dict:
    server = nats_server()
    try:
        out = asyncio.run(_nats_throughput(server, size, records))
        for rate in rates:
            # the durable consumer continues after the records of the last rate
            hist = e2e(_nats_producer, _nats_consumer, server.port, size, rate, seconds)
            out.update(e2e_figures(hist, rate))
        _, rss = server.cost()
    finally:
        server.stop()
    out["server_rss_mib"] = rss
    return out


async def _nats_throughput(server: Server, size: int, records: int) -> dict:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(f"nats://127.0.0.1:{server.port}")
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench"], storage="file")
    value = payload(size)
    quiet()
    cpu0, _ = server.cost()
    t0 = time.perf_counter()
    for i in range(records):
        await nc.publish("bench", value)
        if i % 1000 == 999:
            await nc.flush()
    await nc.flush()
    deadline = time.monotonic() + WAIT_S
    while (await js.stream_info("BENCH")).state.messages < records:
        if time.monotonic() > deadline:
            raise RuntimeError("NATS did not store every record")
        await asyncio.sleep(0.005)
    produce_s = time.perf_counter() - t0
    produce_cpu = server.cost()[0] - cpu0
    sub = await js.pull_subscribe(
        "bench", durable="c1", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    quiet()
    cpu1, _ = server.cost()
    t0 = time.perf_counter()
    got = 0
    while got < records:
        got += len(await sub.fetch(1000, timeout=5))
    consume_s = time.perf_counter() - t0
    cpu2, _ = server.cost()
    await nc.close()
    return {
        "produce_rps": records / produce_s,
        "produce_server_cpu_s": produce_cpu,
        "consume_rps": records / consume_s,
        "consume_server_cpu_s": cpu2 - cpu1,
    }


async def _nats_stream(port: int) -> Any:
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    js = nc.jetstream()
    # both sides declare the stream; adding an identical stream again is a no-op
    await js.add_stream(name="E2E", subjects=["e2e"], storage="file")
    return nc, js


def _nats_producer(port: int, size: int, schedule: list[int]) -> int:
    async def main() -> int:
        nc, js = await _nats_stream(port)
        for t in schedule:
            delay = (t - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            await js.publish_async("e2e", stamped(size, t))
        await asyncio.wait_for(js.publish_async_completed(), WAIT_S)
        await nc.close()
        return len(schedule)

    return asyncio.run(main())


def _nats_consumer(port: int, expected: int, ready: Callable[[], None]) -> Histogram:
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    async def main() -> Histogram:
        nc, js = await _nats_stream(port)
        sub = await js.pull_subscribe(
            "e2e",
            durable="e2e",
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW),
        )
        ready()
        hist = Histogram()
        deadline = time.monotonic() + WAIT_S
        while hist.count < expected and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(1000, timeout=1)
            except nats.errors.TimeoutError:
                continue
            now = time.monotonic_ns()
            for m in msgs:
                hist.record(now - STAMP.unpack_from(m.data)[0])
        await nc.close()
        return hist

    return asyncio.run(main())


# --- Kafka protocol: tailrace's Kafka listener and librdkafka's mock cluster -----------


class KafkaPeer:
    """A Kafka-protocol server for one run: tailrace with a Kafka listener
    (topics created through the native admin, flush ``interval``) or
    librdkafka's mock cluster (topics created through its stdin)."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.mock: subprocess.Popen[str] | None = None
        self.broker: Any = None
        if system == "tailrace-kafka":
            from tailrace.broker.bench.spawn import SpawnedBroker

            self.broker = SpawnedBroker(kafka=True).start()
            self.pid = self.broker.pid
            self.bootstrap = self.broker.kafka_address
            return
        self.mock = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "kafka_mock_cluster.py"), "--brokers", "1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.mock.stdout is not None
        line = self.mock.stdout.readline().strip()
        if not line.startswith("bootstrap="):
            self.stop()
            raise RuntimeError(f"the mock cluster did not start: {line!r}")
        self.pid = self.mock.pid
        self.bootstrap = line.split("=", 1)[1].split(",")[0]

    def create_topic(self, name: str) -> None:
        if self.broker is not None:
            from tailrace.client import Admin

            with Admin(self.broker.address) as admin:
                admin.create_topic(name, 1, {"flush": "interval"})
            return
        assert self.mock is not None
        assert self.mock.stdin is not None
        assert self.mock.stdout is not None
        self.mock.stdin.write(f"topic {name} 1\n")
        self.mock.stdin.flush()
        answer = self.mock.stdout.readline().strip()
        if not answer.endswith("error=0"):
            raise RuntimeError(f"the mock cluster did not create {name}: {answer!r}")

    def cost(self) -> tuple[float, float]:
        """(CPU seconds so far, peak RSS MiB) of the server process."""
        s = sample(self.pid)
        return s.cpu_s, s.hwm_kib / 1024

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.close()
        if self.mock is not None:
            if self.mock.stdin is not None:
                self.mock.stdin.close()  # end of input: the mock cluster exits
            try:
                self.mock.wait(30)
            except subprocess.TimeoutExpired:
                self.mock.kill()
                self.mock.wait(30)
            if self.mock.stdout is not None:
                self.mock.stdout.close()


def _ck_producer_config(bootstrap: str, linger_ms: float) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "batch.size": 512 * 1024,
        "queue.buffering.max.kbytes": 32 * 1024,
        "queue.buffering.max.messages": 10_000_000,
        "compression.type": "none",
    }


def _ck_consumer(bootstrap: str, fetch_wait_max_ms: int = 500) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "fetch.wait.max.ms": fetch_wait_max_ms,
            "bootstrap.servers": bootstrap,
            "group.id": f"compare-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": 4 * MIB,
            "enable.partition.eof": False,
            "fetch.queue.backoff.ms": 10,
        }
    )


def run_kafka(system: str, size: int, records: int, rates: list[float], seconds: float) -> dict:
    from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

    server = KafkaPeer(system)
    try:
        server.create_topic("bench")
        server.create_topic(WARMUP_TOPIC)
        for rate in rates:
            server.create_topic(f"e2e-{rate:g}")
        failed: list[str] = []
        producer = Producer(
            {
                **_ck_producer_config(server.bootstrap, 5),
                "delivery.report.only.error": True,
                "on_delivery": lambda err, _m: failed.append(str(err)) if err else None,
            }
        )
        producer.list_topics("bench", timeout=30)  # connected, metadata known
        value = payload(size)
        produce, poll = producer.produce, producer.poll
        quiet()
        cpu0, _ = server.cost()
        t0 = time.perf_counter()
        for i in range(records):
            while True:
                try:
                    produce("bench", value)
                    break
                except BufferError:  # the buffer is full: wait 1 ms (whole ms: less spins)
                    poll(0.001)
            if i % 1000 == 0:
                poll(0)
        left = producer.flush(WAIT_S)
        produce_s = time.perf_counter() - t0
        produce_cpu = server.cost()[0] - cpu0
        # destroyed now (its bound methods too), not retrying its
        # connection once the server is gone
        del producer, produce, poll
        if left or failed:
            raise RuntimeError(f"{system}: {left} records undelivered, errors {failed[:1]}")
        consumer = _ck_consumer(server.bootstrap)
        try:
            consumer.list_topics("bench", timeout=30)
            # librdkafka's mock keeps only the last 5 MiB of each partition
            # (rdkafka_mock.c: mpart->max_size, not configurable): the
            # consumer reads what it holds, from its log start
            low, high = consumer.get_watermark_offsets(TopicPartition("bench", 0), timeout=30)
            stored = high - low
            if system == "tailrace-kafka" and stored != records:
                raise RuntimeError(f"{system}: {stored:,} of {records:,} records stored")
            quiet()
            cpu1, _ = server.cost()
            t0 = time.perf_counter()
            consumer.assign([TopicPartition("bench", 0, OFFSET_BEGINNING)])
            got = value_bytes = 0
            deadline = time.monotonic() + WAIT_S
            while got < stored:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{system}: consumed {got:,} of {stored:,}")
                for m in consumer.consume(min(10_000, stored - got), 1.0):
                    if m.error() is not None:
                        raise RuntimeError(f"{system}: {m.error()}")
                    value_bytes += len(m.value())  # touched, as every consumer here does
                    got += 1
            consume_s = time.perf_counter() - t0
            cpu2, _ = server.cost()
        finally:
            consumer.close()
        out = {
            "produce_rps": records / produce_s,
            "produce_server_cpu_s": produce_cpu,
            "consume_rps": stored / consume_s,
            "consume_server_cpu_s": cpu2 - cpu1,
            "consume_records": stored,
        }
        for rate in rates:
            hist = e2e(
                _kafka_producer, _kafka_consumer, (server.bootstrap, f"e2e-{rate:g}"), size,
                rate, seconds,
            )  # fmt: skip
            out.update(e2e_figures(hist, rate))
        _, rss = server.cost()
        out["server_rss_mib"] = rss
    finally:
        server.stop()
    return out


def _kafka_producer(where: tuple[str, str], size: int, schedule: list[int]) -> int:
    from confluent_kafka import Producer

    bootstrap, topic = where
    producer = Producer(_ck_producer_config(bootstrap, 0))
    producer.list_topics(topic, timeout=30)
    # connected and holding its producer id before the schedule starts: an
    # idempotent producer queues every record until InitProducerId is
    # answered, which put ~400 ms of start-up into the first records
    producer.produce(WARMUP_TOPIC, b"warm-up")
    producer.flush(WAIT_S)
    for t in schedule:
        sleep_until(t)
        producer.produce(topic, stamped(size, t))
        producer.poll(0)
    left = producer.flush(WAIT_S)
    return len(schedule) - left


def _kafka_consumer(where: tuple[str, str], expected: int, ready: Callable[[], None]) -> Histogram:
    from confluent_kafka import TopicPartition

    bootstrap, topic = where
    # A waiting fetch: the mock cluster answers it only at this deadline, not
    # when a record arrives (measured: p50 233 ms with librdkafka's default
    # 500, 31 ms with 50), and drops all but the last 5 MiB of a partition,
    # so at 20,000 records/s of 1 KiB a consumer waiting 500 ms lost records
    # to it. tailrace answers a waiting fetch when the record is appended,
    # whatever this is.
    consumer = _ck_consumer(bootstrap, fetch_wait_max_ms=E2E_FETCH_WAIT_MS)
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, high)])  # the end, resolved now
        ready()
        hist = Histogram()
        deadline = time.monotonic() + WAIT_S
        last = None
        while hist.count < expected and time.monotonic() < deadline:
            # poll, not consume(n): consume waits until n records are there
            # (or its timeout), which would be in every record's latency
            m = consumer.poll(0.1)
            if m is not None and m.error() is None:
                hist.record(time.monotonic_ns() - STAMP.unpack_from(m.value())[0])
                last = time.monotonic()
            elif last is not None and time.monotonic() - last > E2E_IDLE_S:
                break  # records lost (e2e_records says how many arrived)
    finally:
        consumer.close()
    return hist


# --- end-to-end at a fixed rate, producer in its own process ------------------------


def _producer_process(fn: Any, port: Any, size: int, conn: Any) -> None:
    schedule = conn.recv()
    conn.send(fn(port, size, schedule))
    conn.close()


def e2e(producer: Any, consumer: Any, port: Any, size: int, rate: float, seconds: float) -> Any:
    """Producer in a child process on a fixed schedule, consumer here
    (``port``: whatever both need to find the server)."""
    n = int(rate * seconds)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_producer_process, args=(producer, port, size, child))
    proc.start()

    def ready() -> None:
        quiet()
        start = time.monotonic_ns() + 500_000_000  # the child is importing its client
        parent.send([start + round(i * 1e9 / rate) for i in range(n)])

    try:
        hist = consumer(port, n, ready)
        if parent.poll(WAIT_S):
            parent.recv()
    finally:
        proc.join(WAIT_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return hist


def sleep_until(t_ns: int) -> None:
    delay = t_ns - time.monotonic_ns()
    if delay > 0:
        time.sleep(delay / 1e9)


# --- the run -------------------------------------------------------------------------


def available(systems: list[str]) -> tuple[list[str], list[str]]:
    notes = []
    keep = []
    for s in systems:
        if s == "redis":
            missing = [m for m in ("redis",) if not _importable(m)]
            binary = shutil.which("redis-server")
        elif s == "nats":
            missing = [m for m in ("nats",) if not _importable(m)]
            binary = shutil.which("nats-server")
        elif s in KAFKA_SYSTEMS:
            # the mock cluster is inside the confluent-kafka wheel's librdkafka
            missing = [m for m in ("confluent_kafka",) if not _importable(m)]
            binary = "tailrace" if s == "tailrace-kafka" else "librdkafka"
        else:
            missing, binary = [], "tailrace"
        if binary is None:
            notes.append(f"{LABELS[s]}: skipped, its server is not installed")
        elif missing:
            notes.append(f"{LABELS[s]}: skipped, Python client {missing[0]} is not installed")
        else:
            keep.append(s)
    return keep, notes


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_one(system: str, size: int, args: argparse.Namespace) -> dict:
    records = args.records if size <= 100 else args.records_1k
    if system in ("tailrace", "tailrace-sync"):
        flush = "interval" if system == "tailrace" else "sync"
        return run_tailrace(flush, size, records, args.rates, args.seconds, args.lingers)
    if system == "redis":
        return run_redis(size, records, args.rates, args.seconds)
    if system in KAFKA_SYSTEMS:
        return run_kafka(system, size, records, args.rates, args.seconds)
    return run_nats(size, records, args.rates, args.seconds)


def medians(runs: list[dict]) -> dict[str, float]:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def table(results: dict, sizes: list[int]) -> str:
    """Throughput: one row per system, medians."""
    head = ["system"]
    for size in sizes:
        unit = "rec/s" if size <= 100 else "MiB/s"
        head += [f"produce {size} B {unit}", f"consume {size} B {unit}"]
    rows = []
    for system, by_size in results.items():
        row = [LABELS[system]]
        for size in sizes:
            m = medians(by_size[size])
            for key in ("produce_rps", "consume_rps"):
                v = m.get(key)
                if v is None:
                    row.append("-")
                elif size <= 100:
                    row.append(f"{v:,.0f}")
                else:
                    row.append(f"{v * size / MIB:,.1f}")
        rows.append(row)
    return _markdown(head, rows)


def e2e_rows(system: str, lingers: list[float]) -> list[tuple[str, float | None]]:
    """(label, linger) of the e2e rows of ``system``: one per linger for
    tailrace, one for a peer."""
    if system in ("tailrace", "tailrace-sync"):
        return [(f"{LABELS[system]}, linger {linger:g} ms", linger) for linger in lingers]
    return [(LABELS[system], None)]


def e2e_table(results: dict, sizes: list[int], rates: list[float], lingers: list[float]) -> str:
    """End to end: p50 / p99 ms per size and rate, medians."""
    head = ["system"] + [
        f"e2e {size} B p50 / p99 ms @ {rate:,.0f}/s" for size in sizes for rate in rates
    ]
    rows = []
    for system, by_size in results.items():
        for label, linger in e2e_rows(system, lingers):
            row = [label]
            for size in sizes:
                m = medians(by_size[size])
                for rate in rates:
                    key = e2e_key(rate, linger)
                    p50, p99 = m.get(f"e2e_p50_ms{key}"), m.get(f"e2e_p99_ms{key}")
                    row.append("-" if p50 is None or p99 is None else f"{p50:.2f} / {p99:.2f}")
            rows.append(row)
    return _markdown(head, rows)


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def chart(
    results: dict, sizes: list[int], rate: float, linger: float, path: Path, caption: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    width = 0.8 / max(1, len(systems))
    panels = [
        ("produce_rps", "produce (records/s, log)", True),
        ("consume_rps", "consume (records/s, log)", True),
        (
            "e2e_p99_ms",
            f"end-to-end p99 at {rate:,.0f} records/s (ms, log; tailrace linger {linger:g} ms)",
            True,
        ),
    ]
    for ax, (key, title, log) in zip(axes, panels, strict=True):
        for i, system in enumerate(systems):
            name = key
            if key == "e2e_p99_ms":
                name += e2e_key(rate, linger if system in ("tailrace", "tailrace-sync") else None)
            values = [medians(results[system][s]).get(name, 0) for s in sizes]
            xs = [x + i * width for x in range(len(sizes))]
            bars = ax.bar(xs, values, width, label=LABELS[system])
            for bar, v in zip(bars, values, strict=True):
                text = f"{v:,.0f}" if key.endswith("rps") else f"{v:.1f}"
                ax.annotate(
                    text,
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7, rotation=90,
                )  # fmt: skip
        ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(sizes))])
        ax.set_xticklabels([f"{s} B" for s in sizes])
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top * (4 if log else 1.3))  # room for the value labels
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(systems), fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(caption, 160)), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} x {cpu}, Linux {platform.release()}, load avg {load}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median shown)")
    p.add_argument("--records", type=int, default=200_000, help="records per 100 B run")
    p.add_argument("--records-1k", type=int, default=100_000, help="records per 1 KiB run")
    p.add_argument("--sizes", default="100,1024", help="record sizes in bytes")
    p.add_argument(
        "--rates", default="2000,20000", help="e2e records/s, comma-separated (one run each)"
    )
    p.add_argument("--seconds", type=float, default=5, help="e2e duration")
    p.add_argument(
        "--e2e-linger-ms",
        default="0,1",
        help="tailrace producer lingers for e2e, comma-separated, one row each (the peers "
        "send each record at once; linger 0 sends at once when nothing is in flight)",
    )
    p.add_argument("--systems", default=",".join(SYSTEMS), help="subset of " + ",".join(SYSTEMS))
    p.add_argument(
        "--chart", default=str(ROOT / "docs" / "peers.png"), help="PNG path ('' for none)"
    )
    p.add_argument("--json-out", help="also write every run's figures here")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=80.0,
        metavar="PCT",
        help="start each timed part once the machine's CPUs are PCT%% idle over 2 s "
        "(at most 120 s of waiting; 0 starts at once)",
    )
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every server started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    global WAIT_IDLE
    WAIT_IDLE = args.wait_idle or None
    sizes = [int(s) for s in args.sizes.split(",")]
    args.rates = [float(r) for r in args.rates.split(",")]
    args.lingers = [float(x) for x in args.e2e_linger_ms.split(",")]
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(wanted) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    systems, notes = available(wanted)
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    results: dict[str, dict[int, list[dict]]] = {s: {z: [] for z in sizes} for s in systems}
    for round_no in range(1, args.repeats + 1):
        for system in systems:
            for size in sizes:
                sys.stderr.write(f"round {round_no}/{args.repeats}: {system} {size} B ... ")
                sys.stderr.flush()
                t = time.monotonic()
                figures = run_one(system, size, args)
                results[system][size].append(figures)
                p99s = ", ".join(
                    f"{k.removeprefix('e2e_p99_ms@')} {v:.2f}"
                    for k, v in figures.items()
                    if k.startswith("e2e_p99_ms")
                )
                sys.stderr.write(
                    f"{time.monotonic() - t:.0f} s: produce {figures['produce_rps']:,.0f}/s, "
                    f"consume {figures['consume_rps']:,.0f}/s, e2e p99 ms (rate@linger) {p99s}\n"
                )
    load_after = os.getloadavg()
    command = "python tools/compare_peers.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    caption = (
        f"{started:%Y-%m-%d %H:%M} UTC · {machine()} · medians of {args.repeats} interleaved "
        f"rounds · {command.strip()}"
    )
    out = sys.stdout
    out.write(f"{caption}\n")
    out.write(
        f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
        f"produce/consume: {args.records:,} records of 100 B, {args.records_1k:,} of larger; "
        + (
            f"each timed part started once the CPUs were {WAIT_IDLE:g}% idle over 2 s "
            "(or after 120 s of waiting)\n\n"
            if WAIT_IDLE
            else "timed parts started at once\n\n"
        )
    )
    out.write(table(results, sizes) + "\n\n")
    out.write(e2e_table(results, sizes, args.rates, args.lingers) + "\n")
    for note in notes:
        out.write(f"\nnote: {note}")
    if systems and args.chart:
        chart(results, sizes, args.rates[0], args.lingers[0], Path(args.chart), caption)
        out.write(f"\nchart: {args.chart}\n")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "caption": caption,
                    "load_before": load_before,
                    "load_after": load_after,
                    "results": {s: {str(z): v for z, v in r.items()} for s, r in results.items()},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
