"""The bench's latency histogram against a sorted-list oracle."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailrace.broker.bench.histogram import (
    RELATIVE_ERROR,
    Histogram,
    bucket_bounds,
    bucket_of,
)

# latencies in ns: from the exact range up to minutes, and clusters of equal values
samples = st.lists(
    st.one_of(
        st.integers(0, 300),
        st.integers(0, 10**6),
        st.integers(0, 10**11),
        st.sampled_from([1_000, 1_001, 250_000, 5_000_000]),
    ),
    min_size=1,
    max_size=400,
)
quantiles = st.one_of(
    st.sampled_from([0.0, 50.0, 90.0, 99.0, 99.9, 100.0]), st.floats(0, 100, allow_nan=False)
)


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@settings(max_examples=200, deadline=None)
@given(samples, st.lists(quantiles, min_size=1, max_size=6))
def test_percentiles_are_within_the_stated_relative_error(values, qs):
    h = Histogram()
    for v in values:
        h.record(v)
    for q in qs:
        true = nearest_rank(values, q)
        got = h.percentile(q)
        assert got is not None
        assert abs(got - true) <= true * RELATIVE_ERROR, (q, true, got)
    assert h.max == max(values)
    assert h.min == min(values)
    assert h.count == len(values)
    assert h.percentile(100) == max(values)


def test_small_values_are_exact():
    h = Histogram()
    h.record_many(range(256))
    assert [h.percentile(q) for q in (0, 50, 100)] == [0, 127, 255]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**60))
def test_buckets_tile_the_integers(v):
    index = bucket_of(v)
    lo, hi = bucket_bounds(index)
    assert lo <= v <= hi
    assert bucket_of(lo) == bucket_of(hi) == index
    assert bucket_of(hi + 1) == index + 1  # no gaps, no overlaps
    assert (hi - lo) <= lo / 128 or lo < 256


@settings(max_examples=100, deadline=None)
@given(samples, samples)
def test_merge_equals_recording_everything_in_one(a, b):
    ha, hb, both = Histogram(), Histogram(), Histogram()
    ha.record_many(a)
    hb.record_many(b)
    both.record_many(a + b)
    ha.merge(hb)
    assert ha.to_dict() == both.to_dict()
    assert [ha.percentile(q) for q in (1, 50, 99, 99.9)] == [
        both.percentile(q) for q in (1, 50, 99, 99.9)
    ]


@settings(max_examples=50, deadline=None)
@given(samples)
def test_the_json_form_round_trips(values):
    h = Histogram()
    h.record_many(values)
    back = Histogram.from_dict(h.to_dict())
    assert back.to_dict() == h.to_dict()
    assert back.percentile(99) == h.percentile(99)


def test_a_json_form_whose_counts_disagree_is_refused():
    h = Histogram()
    h.record_many([5, 6, 7])
    data = h.to_dict()
    data["count"] = 4
    with pytest.raises(ValueError, match="add up"):
        Histogram.from_dict(data)


def test_empty_histogram_and_bad_quantiles():
    h = Histogram()
    assert h.percentile(50) is None
    assert h.summary_ms()["p99"] is None
    with pytest.raises(ValueError, match="between 0 and 100"):
        h.percentile(101)


def test_a_negative_sample_counts_as_zero():
    h = Histogram()
    h.record(-5)
    h.record(10)
    assert h.min == 0
    assert h.percentile(0) == 0


def test_summary_is_in_milliseconds():
    h = Histogram()
    h.record_many([1_000_000] * 99 + [50_000_000])  # 1 ms x99, one 50 ms
    s = h.summary_ms()
    assert abs(s["p50"] - 1.0) <= RELATIVE_ERROR
    assert abs(s["p99"] - 1.0) <= RELATIVE_ERROR
    assert s["max"] == 50.0
    assert s["count"] == 100
