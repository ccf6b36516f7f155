"""The bench worker's ``--api many`` loop at a rate, driven against a
stand-in producer (the loop's logic only; the real producer and broker are
run by test_bench_smoke.py): every scheduled record goes out once, calls are
at least MANY_PACE_NS apart, and each call's latency sample counts from the
scheduled time of its first record."""

from __future__ import annotations

import time
from typing import Any

from tailrace.broker.bench import worker


class _Handle:
    def __init__(self, log: list[Any]) -> None:
        self._log = log

    def add_done_callback(self, fn: Any) -> None:
        self._log.append(fn)


class _Producer:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (monotonic ns, values)
        self.callbacks: list[Any] = []
        self.values = 0

    def send_many(self, topic: str, values: list[bytes]) -> list[_Handle]:
        assert topic == "t"
        assert all(type(v) is bytes and len(v) == 100 for v in values)
        self.calls.append((time.monotonic_ns(), len(values)))
        self.values += len(values)
        return [_Handle(self.callbacks)]


def _spec(rate: float, records: int) -> worker.ProduceSpec:
    return worker.ProduceSpec(
        bootstrap="127.0.0.1:1", topic="t", warmup_topic="w", record_size=100,
        records=records, duration_s=None, rate=rate, api="many",
    )  # fmt: skip


def test_many_at_a_rate_sends_every_record_once_in_paced_calls():
    spec = _spec(rate=100_000, records=20_000)  # 0.2 s of schedule
    run = worker._Run(spec)
    producer = _Producer()
    start = time.monotonic_ns()
    limit, deadline = run.limit(start)
    first, sent = worker._send_many_loop(producer, run, start, limit, deadline)
    elapsed = time.monotonic_ns() - start
    assert sent == producer.values == 20_000
    # a busy loop would call for every record or two (about 10,000 calls);
    # paced, the calls are at least MANY_PACE_NS apart
    assert len(producer.calls) <= elapsed // worker.MANY_PACE_NS + 1
    # (the loop's wake-ups are MANY_PACE_NS apart; the calls' own times
    # jitter by how long each call took, so their median gap is checked)
    gaps = sorted(b[0] - a[0] for a, b in zip(producer.calls, producer.calls[1:], strict=False))
    assert gaps[len(gaps) // 2] >= worker.MANY_PACE_NS
    # one sample per call, from the scheduled time of the call's first record
    assert len(producer.callbacks) == len(producer.calls)
    gap = 1e9 / spec.rate
    firsts, index = [], 0
    for _, count in producer.calls:
        firsts.append(first + int(index * gap))
        index += count
    assert [cb.args[0] for cb in producer.callbacks] == firsts


def test_many_at_a_rate_stamps_each_value_with_its_own_schedule():
    spec = _spec(rate=50_000, records=2_000)
    spec.stamp = True
    run = worker._Run(spec)
    seen: list[int] = []

    class _Stamped(_Producer):
        def send_many(self, topic: str, values: list[bytes]) -> list[_Handle]:
            seen.extend(worker._STAMP.unpack_from(v)[0] for v in values)
            return super().send_many(topic, values)

    start = time.monotonic_ns()
    limit, deadline = run.limit(start)
    first, sent = worker._send_many_loop(_Stamped(), run, start, limit, deadline)
    assert sent == 2_000
    assert seen == [first + int(k * 1e9 / spec.rate) for k in range(2_000)]
