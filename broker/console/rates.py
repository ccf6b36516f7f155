"""Rates and latency percentiles from the broker's own Prometheus metrics.

The console shows what ``/metrics`` exposes, from the same instruments
(``metrics.definitions.REGISTRY``: counters and histograms the request path
already keeps), never a second count. Cheap by construction:

* nothing runs while nobody looks: a sample is taken when a page polls,
  at most once per :data:`MIN_INTERVAL_S` whatever the number of viewers
  (the others get the cached series);
* a sample reads the process-wide instruments only (a few dozen numbers,
  no per-partition walk);
* the series keeps the last :data:`KEEP` points.

A point is the difference between two samples: requests, bytes and records
per second, and for produce and fetch the p50 and p99 request latency over
that interval, interpolated inside the histogram bucket as Prometheus's
``histogram_quantile`` does.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from ..metrics.definitions import REGISTRY

__all__ = ["KEEP", "MIN_INTERVAL_S", "RateSeries", "quantile"]

MIN_INTERVAL_S = 1.0
KEEP = 300
_APIS = ("produce", "fetch")
_COUNTERS = {
    "tailrace_received_bytes": "bytes_in",
    "tailrace_sent_bytes": "bytes_out",
    "tailrace_produced_records": "records_in",
}


@dataclass(slots=True)
class _Sample:
    at: float
    requests: dict[str, float]
    totals: dict[str, float]
    #: api -> [(upper bound, cumulative count)]
    buckets: dict[str, list[tuple[float, float]]]


def quantile(
    q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> float:
    """The ``q`` quantile (seconds) of the observations between two
    cumulative bucket snapshots; NaN when there were none."""
    deltas = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in deltas:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            width = count - lower_count
            if width <= 0:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / width
        lower_bound, lower_count = le, count
    return lower_bound


def _sample(registry: CollectorRegistry, now: float) -> _Sample:
    requests: dict[str, float] = {}
    totals: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {api: [] for api in _APIS}
    for family in registry.collect():
        name = family.name
        if name == "tailrace_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    requests[s.labels["api"]] = s.value
        elif name in _COUNTERS:
            for s in family.samples:
                if s.name.endswith("_total"):
                    totals[_COUNTERS[name]] = s.value
        elif name == "tailrace_fetch_bytes":
            totals["fetch_bytes"] = sum(
                s.value for s in family.samples if s.name.endswith("_total")
            )
        elif name == "tailrace_request_duration_seconds":
            for s in family.samples:
                api = s.labels.get("api")
                if s.name.endswith("_bucket") and api in buckets:
                    buckets[api].append((float(s.labels["le"]), s.value))
    return _Sample(now, requests, totals, buckets)


class RateSeries:
    """The console's view of the broker's throughput over time."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.wall = wall
        self._last: _Sample | None = None
        self.points: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEEP)

    def poll(self) -> list[dict[str, Any]]:
        """Take a sample if the last is old enough; the series so far."""
        now = self.clock()
        last = self._last
        if last is not None and now - last.at < MIN_INTERVAL_S:
            return list(self.points)
        current = _sample(self.registry, now)
        self._last = current
        if last is not None:
            self.points.append(self._point(last, current))
        return list(self.points)

    def _point(self, a: _Sample, b: _Sample) -> dict[str, Any]:
        dt = max(b.at - a.at, 1e-9)
        point: dict[str, Any] = {"t": round(self.wall() * 1000)}
        point["requests"] = round(
            sum(b.requests.get(k, 0.0) - a.requests.get(k, 0.0) for k in b.requests) / dt, 2
        )
        for api in _APIS:
            point[f"{api}_rps"] = round((b.requests.get(api, 0) - a.requests.get(api, 0)) / dt, 2)
            after = b.buckets[api]
            # an API first timed after the earlier sample started from zero
            before = a.buckets[api] or [(le, 0.0) for le, _ in after]
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                if after and len(before) == len(after):
                    value = quantile(q, before, after)
                else:
                    value = math.nan
                point[f"{api}_{label}_ms"] = None if math.isnan(value) else round(value * 1000, 3)
        for key in ("bytes_in", "bytes_out", "records_in", "fetch_bytes"):
            point[key] = round((b.totals.get(key, 0.0) - a.totals.get(key, 0.0)) / dt, 1)
        return point
