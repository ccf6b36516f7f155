"""A small HDR-style latency histogram: log-bucketed, bounded relative error.

Why not a sorted list: a benchmark records millions of latencies, and
merging the results of several producer processes must not ship every
sample between them. Why not fixed-width buckets: latencies span microseconds
to seconds, and a percentile must be equally precise at both ends.

Layout. Values are non-negative integers (the bench records nanoseconds).
Values below ``2 * SUB`` (``SUB = 128``) get one bucket each, so they are
exact. A larger value ``v`` with ``e = v.bit_length() - 8`` falls in bucket
``e * SUB + (v >> e)``: the top 8 bits of ``v`` select one of 128 buckets of
width ``2**e`` covering ``[128 * 2**e, 256 * 2**e)``. A bucket therefore
spans at most 1/128 of its lower bound, and its midpoint is within 1/256
(0.4 %) of every value in it: better than two significant digits, which is
what HdrHistogram calls ``significant_figures=2``.

Percentiles use the nearest-rank definition: the value at rank
``ceil(q / 100 * count)`` of the sorted samples (rank 1 for q = 0). The
histogram returns the midpoint of the bucket holding that sample, clamped to
the exact minimum and maximum it also keeps, so the answer is within
``RELATIVE_ERROR`` of the true sample (and exact for the first and last rank).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["RELATIVE_ERROR", "Histogram"]

_SUB_BITS = 7
SUB = 1 << _SUB_BITS  # buckets per power of two above the exact range
_EXACT = 2 * SUB  # values below this have a bucket each
_SHIFT = _SUB_BITS + 1

#: The largest |reported - true| / true a percentile can have.
RELATIVE_ERROR = 1 / (2 * SUB)


def bucket_of(value: int) -> int:
    """The bucket index of a non-negative integer."""
    if value < _EXACT:
        return value
    e = value.bit_length() - _SHIFT
    return e * SUB + (value >> e)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``(lowest, highest)`` value that falls in bucket ``index`` (inclusive)."""
    if index < _EXACT:
        return index, index
    e = (index - SUB) // SUB
    top = index - e * SUB  # in [SUB, 2 * SUB)
    lo = top << e
    return lo, lo + (1 << e) - 1


class Histogram:
    """Counts of integer samples in log buckets; mergeable and serialisable.

    ``record`` is one call, a few integer operations and a list increment:
    cheap enough to run for every record of a benchmark.
    """

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (_EXACT + 24 * SUB)  # grows on demand
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def record(self, value: int) -> None:
        """Add one sample (a non-negative int; negatives are counted as 0:
        a clock read a hair early must not crash a benchmark)."""
        if value < _EXACT:
            if value < 0:
                value = 0
            index = value
        else:
            e = value.bit_length() - _SHIFT
            index = e * SUB + (value >> e)
        counts = self.counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
        self.count += 1
        self.total += value
        if self.max is None or value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value

    def record_many(self, values: Iterable[int]) -> None:
        for v in values:
            self.record(v)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s samples to this histogram."""
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        counts = self.counts
        for i, c in enumerate(other.counts):
            if c:
                counts[i] += c
        self.count += other.count
        self.total += other.total
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min

    def percentile(self, q: float) -> int | None:
        """The nearest-rank ``q``-th percentile (0 <= q <= 100), None if empty."""
        if not 0 <= q <= 100:
            raise ValueError("a percentile is between 0 and 100")
        if not self.count:
            return None
        assert self.min is not None
        assert self.max is not None
        rank = max(1, math.ceil(q / 100 * self.count))
        if rank == 1:
            return self.min
        if rank >= self.count:
            return self.max
        seen = 0
        for index, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                lo, hi = bucket_bounds(index)
                mid = (lo + hi + 1) // 2
                return min(max(mid, self.min), self.max)
        raise AssertionError("counts do not add up to count")  # pragma: no cover

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict:
        """A compact JSON-able form: only non-empty buckets."""
        return {
            "buckets": {str(i): c for i, c in enumerate(self.counts) if c},
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Histogram:
        h = cls()
        buckets = {int(k): int(v) for k, v in data["buckets"].items()}
        if buckets:
            top = max(buckets)
            if top >= len(h.counts):
                h.counts.extend([0] * (top + 1 - len(h.counts)))
            for i, c in buckets.items():
                if i < 0 or c < 0:
                    raise ValueError("a histogram bucket index and count are non-negative")
                h.counts[i] = c
        h.count = int(data["count"])
        h.total = int(data["total"])
        h.min = data["min"]
        h.max = data["max"]
        if sum(buckets.values()) != h.count:
            raise ValueError("histogram bucket counts do not add up to its count")
        return h

    def summary_ms(self) -> dict[str, float | int | None]:
        """p50, p99, p99.9, max (and count, mean) in milliseconds, from ns."""

        def ms(v: float | None) -> float | None:
            return None if v is None else round(v / 1e6, 4)

        return {
            "p50": ms(self.percentile(50)),
            "p99": ms(self.percentile(99)),
            "p999": ms(self.percentile(99.9)),
            "max": ms(self.max),
            "mean": ms(self.mean()),
            "count": self.count,
        }
