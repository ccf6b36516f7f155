"""One producer process of ``tailrace bench``: ``python -m tailrace.broker.bench.worker``.

Why a process per producer: with ``--producers K`` the producers must not
share one interpreter's GIL, or the bench would measure the GIL. The
orchestrator (workloads.py) starts K of these and speaks JSON lines with
each over its stdin/stdout:

1. orchestrator -> worker: the :class:`ProduceSpec` as one JSON object.
2. worker -> orchestrator: ``{"ready": true}`` once its producer is connected
   and warmed up (one record to the warm-up topic: connection, producer id
   and the first metadata round trip are not part of the measurement).
3. orchestrator -> worker: ``{"start_ns": T}``, a ``time.monotonic_ns()``
   instant shared by all workers (CLOCK_MONOTONIC is one clock for every
   process on the machine, so the workers' schedules and stamps agree).
4. worker -> orchestrator: the result object (counts, times, histogram).

Sending. At full speed (no rate) a record's send time is read just before
``send``. At a constant rate, record ``i`` of worker ``w`` is *scheduled* at
``start + (i * K + w) / rate``; the worker sends whatever is due, then sleeps
until the next one is due. Latency is measured from the scheduled time, not
the actual send: if the producer stalls (a full buffer, a GC pause, a slow
broker), the records that should have gone out during the stall carry the
stall in their latency instead of quietly waiting it out (the "coordinated
omission" correction of wrk2 and HdrHistogram).

Produce-ack latency is taken in the record's done-callback (scheduled or
send time -> acknowledged), for every record or every Nth
(``latency_every``: at full speed a callback per record would cost the
client more than the send and the bench would measure itself). For the
end-to-end mode the worker writes the scheduled time into the first 8 bytes
of the value (big-endian ``monotonic_ns``), and the consumer subtracts it
from the time it got the record.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from .histogram import Histogram

__all__ = ["ProduceSpec", "main"]

_STAMP = struct.Struct(">q")
STAMP_BYTES = _STAMP.size


@dataclass
class ProduceSpec:
    """What one producer process does (JSON-able; see workloads.py)."""

    bootstrap: str
    topic: str
    warmup_topic: str
    record_size: int
    records: int | None  # this worker's share, or None with duration
    duration_s: float | None
    rate: float | None  # this worker's records/s, None = as fast as possible
    phase: int = 0  # this worker's index (schedule offset)
    workers: int = 1
    acks: int = 1
    linger_ms: float = 5
    batch_bytes: int | None = None
    record_format: str = "native"
    stamp: bool = False  # write the scheduled/send time into the value (e2e)
    #: record the produce-ack latency of every Nth record (0: none): a
    #: done-callback per record costs the client more than the send itself
    latency_every: int = 1
    #: "sync": Producer.send, "async": AsyncProducer in trio, "many":
    #: Producer.send_many (see _send_many_loop)
    api: str = "sync"
    #: SecurityConfig fields (file names, never a password), for TLS/SASL brokers
    security: dict[str, Any] | None = None

    def producer_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"acks": self.acks, "linger_ms": self.linger_ms}
        if self.batch_bytes is not None:
            config["batch_bytes"] = self.batch_bytes
        if self.record_format != "native":
            config["record_format"] = self.record_format
        if self.security is not None:
            from tailrace.client.security import SecurityConfig  # workers import lazily

            config["security"] = SecurityConfig(**self.security)
        return config


class _Run:
    """The shared bookkeeping of both send loops."""

    def __init__(self, spec: ProduceSpec) -> None:
        self.spec = spec
        self.hist = Histogram()
        self.errors = 0
        self.first_error: str | None = None
        self.sent = 0
        self.payload = bytes(range(256)) * (spec.record_size // 256 + 1)
        self.payload = self.payload[: spec.record_size]

    def value(self, t_ns: int) -> bytes:
        if self.spec.stamp:
            return _STAMP.pack(t_ns) + self.payload[STAMP_BYTES:]
        return self.payload

    def done(self, t_ns: int, handle: Any) -> None:
        """The done-callback of a record sent (or scheduled) at ``t_ns``;
        bound per record with functools.partial (one C call, no closure)."""
        ack = time.monotonic_ns()
        exc = handle.exception(0)
        if exc is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"
            return
        self.hist.record(ack - t_ns)

    def schedule(self, start_ns: int) -> tuple[int, float]:
        """(first scheduled instant of this worker, ns between its records)."""
        spec = self.spec
        assert spec.rate is not None
        total_rate = spec.rate * spec.workers
        return start_ns + round(spec.phase * 1e9 / total_rate), 1e9 / spec.rate

    def limit(self, start_ns: int) -> tuple[int, int]:
        """(record count limit, deadline ns) of this run."""
        spec = self.spec
        if spec.records is not None:
            return spec.records, 1 << 62
        assert spec.duration_s is not None
        if spec.rate is not None:
            # the schedule itself ends at the duration: every scheduled record
            # is sent, however late (a late record is a latency, not a skip)
            return int(spec.duration_s * spec.rate), 1 << 62
        return 1 << 62, start_ns + int(spec.duration_s * 1e9)


def _run_sync(spec: ProduceSpec, ready: Any, wait_start: Any) -> dict[str, Any]:
    from tailrace.client import Producer

    run = _Run(spec)
    with Producer(spec.bootstrap, **spec.producer_config()) as producer:
        producer.send(spec.warmup_topic, b"warm-up").result(60)
        ready()
        start_ns = wait_start()
        sleep_until(start_ns)
        cpu0 = _cpu()
        send = producer.send
        topic = spec.topic
        now = time.monotonic_ns
        limit, deadline = run.limit(start_ns)
        every = spec.latency_every
        done = run.done
        i = 0
        if spec.api == "many":
            t0, i = _send_many_loop(producer, run, start_ns, limit, deadline)
        elif spec.rate is None:
            t0 = now()
            stamp = spec.stamp
            value = run.payload
            while i < limit:
                chunk_end = min(limit, i + 1000)
                while i < chunk_end:
                    sampled = every and i % every == 0
                    if sampled or stamp:  # the clock is read only when needed
                        t = now()
                        handle = send(topic, run.value(t) if stamp else value)
                        if sampled:
                            handle.add_done_callback(partial(done, t))
                    else:
                        send(topic, value)
                    i += 1
                if now() >= deadline:
                    break
        else:
            first, gap = run.schedule(start_ns)
            t0 = first
            stamp = spec.stamp
            value = run.payload
            while i < limit:
                t = now()
                if t >= deadline:
                    break
                due = min(limit, int((t - first) // gap) + 1)
                while i < due:
                    sampled = every and i % every == 0
                    if sampled or stamp:
                        sched = first + int(i * gap)
                        handle = send(topic, run.value(sched) if stamp else value)
                        if sampled:
                            handle.add_done_callback(partial(done, sched))
                    else:
                        send(topic, value)
                    i += 1
                if i < limit:
                    sleep_until(first + int(i * gap))
        run.sent = i
        producer.flush()
        t1 = now()
        cpu1 = _cpu()
    return _result(run, t0, t1, cpu1 - cpu0)


def _run_async(spec: ProduceSpec, ready: Any, wait_start: Any) -> dict[str, Any]:
    import trio

    from tailrace.client import AsyncProducer

    async def main() -> dict[str, Any]:
        run = _Run(spec)
        async with AsyncProducer(spec.bootstrap, **spec.producer_config()) as producer:
            await (await producer.send(spec.warmup_topic, b"warm-up"))
            ready()
            start_ns = await trio.to_thread.run_sync(wait_start)
            await trio.sleep(max(0, start_ns - time.monotonic_ns()) / 1e9)
            cpu0 = _cpu()
            send_nowait, send = producer.send_nowait, producer.send
            topic = spec.topic
            now = time.monotonic_ns
            limit, deadline = run.limit(start_ns)
            every = spec.latency_every
            done = run.done
            stamp = spec.stamp
            i = 0
            if spec.rate is None:
                t0 = now()
                while i < limit:
                    chunk_end = min(limit, i + 1000)
                    while i < chunk_end:
                        sampled = every and i % every == 0
                        t = now() if sampled or stamp else 0
                        value = run.value(t)
                        try:
                            handle = send_nowait(topic, value)
                        except trio.WouldBlock:
                            handle = await send(topic, value)
                        if sampled:
                            handle.add_done_callback(partial(done, t))
                        i += 1
                    # let the sender task run between chunks
                    await trio.lowlevel.checkpoint()
                    if now() >= deadline:
                        break
            else:
                first, gap = run.schedule(start_ns)
                t0 = first
                while i < limit:
                    t = now()
                    if t >= deadline:
                        break
                    due = min(limit, int((t - first) // gap) + 1)
                    while i < due:
                        sched = first + int(i * gap)
                        value = run.value(sched)
                        try:
                            handle = send_nowait(topic, value)
                        except trio.WouldBlock:
                            handle = await send(topic, value)
                        if every and i % every == 0:
                            handle.add_done_callback(partial(done, sched))
                        i += 1
                    if i < limit:
                        await trio.sleep(max(0, first + int(i * gap) - now()) / 1e9)
            run.sent = i
            await producer.flush()
            t1 = now()
            cpu1 = _cpu()
        return _result(run, t0, t1, cpu1 - cpu0)

    return trio.run(main)


def _send_many_loop(
    producer: Any, run: _Run, start_ns: int, limit: int, deadline: int
) -> tuple[int, int]:
    """``--api many``: Producer.send_many with up to MANY_CHUNK values a
    call (at full speed) or, with a rate, every record that is due, at most
    once every MANY_PACE_NS. The produce-ack latency is sampled once per
    call (every call's at a rate, every 64th call's at full speed): the
    acknowledgement of the call's last record, which is sent last, less the
    scheduled time of its first, which is due first, so the sample bounds
    the latency of every record of the call. Returns (t0, records sent)."""
    spec = run.spec
    now = time.monotonic_ns
    send_many = producer.send_many
    topic = spec.topic
    done = run.done
    i = calls = 0
    if spec.rate is None:
        t0 = now()
        chunk = [run.payload] * MANY_CHUNK
        while i < limit and now() < deadline:
            n = min(MANY_CHUNK, limit - i)
            t = now()
            values = [run.value(t) for _ in range(n)] if spec.stamp else chunk[:n]
            handles = send_many(topic, values)
            if calls % 64 == 0:
                handles[-1].add_done_callback(partial(done, t))
            calls += 1
            i += n
        return t0, i
    first, gap = run.schedule(start_ns)
    payload = run.payload
    while i < limit:
        t = now()
        due = min(limit, int((t - first) // gap) + 1)
        if due > i:
            if spec.stamp:
                values = [run.value(first + int(k * gap)) for k in range(i, due)]
            else:  # one C-level repeat: no Python per record in the load generator
                values = [payload] * (due - i)
            handles = send_many(topic, values)
            handles[-1].add_done_callback(partial(done, first + int(i * gap)))
            i = due
        if i < limit:
            sleep_until(max(first + int(i * gap), t + MANY_PACE_NS))
    return first, i


#: values per Producer.send_many call at full speed (``--api many``)
MANY_CHUNK = 1000
#: with a rate, ``--api many`` calls send_many at most this often (ns).
#: Without a floor, a rate of a few hundred thousand records/s makes the
#: loop call it for every record or two, back to back: a busy loop whose
#: per-call cost (the call, a done-callback, a wake-up) saturated the
#: producer process and left it seconds behind its schedule (2026-12-07:
#: 217,000 of 225,000 records/s, p50 870 ms). 100 µs is about this VM's
#: own sleep granularity; the records due meanwhile carry the wait in
#: their latency, which counts from their scheduled time.
MANY_PACE_NS = 100_000


def sleep_until(t_ns: int) -> None:
    delay = t_ns - time.monotonic_ns()
    if delay > 0:
        time.sleep(delay / 1e9)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _result(run: _Run, t0: int, t1: int, cpu_s: float) -> dict[str, Any]:
    return {
        "sent": run.sent,
        "errors": run.errors,
        "first_error": run.first_error,
        "start_ns": t0,
        "end_ns": t1,
        "cpu_s": cpu_s,
        "latency": run.hist.to_dict(),
    }


def main() -> int:
    """Run one worker over stdin/stdout (the protocol in the module doc)."""
    line = sys.stdin.readline()
    if not line:
        return 2
    spec = ProduceSpec(**json.loads(line))
    out = sys.stdout

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def ready() -> None:
        send({"ready": True})

    def wait_start() -> int:
        msg = sys.stdin.readline()
        if not msg:
            raise SystemExit("the bench stopped before the start signal")
        return int(json.loads(msg)["start_ns"])

    runner = _run_async if spec.api == "async" else _run_sync
    try:
        result = runner(spec, ready, wait_start)
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send(result)
    return 0


def spec_to_json(spec: ProduceSpec) -> str:
    return json.dumps(asdict(spec))


if __name__ == "__main__":
    sys.exit(main())
