"""Kafka's default partitioner, bit for bit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailrace.client.producer import murmur2, partition_for_key
from tailrace.client.producer.partitioner import StickyPartitioner

# Apache Kafka's UtilsTest.testMurmur2 vectors (signed Java ints).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
    (b"", 275646681),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka(key, expected):
    assert murmur2(key) == expected


def test_partition_is_to_positive_of_the_hash_modulo_the_count():
    # toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16
    assert partition_for_key(b"foobar", 50) == 16
    for key, h in KAFKA_VECTORS:
        for n in (1, 2, 3, 7, 12, 100):
            assert partition_for_key(key, n) == (h & 0x7FFFFFFF) % n


@given(st.binary(max_size=64), st.integers(1, 1000))
def test_partition_is_in_range_and_stable(key, n):
    p = partition_for_key(key, n)
    assert 0 <= p < n
    assert partition_for_key(bytes(key), n) == p


def test_sticky_partitioner_moves_only_when_a_batch_is_sealed():
    sticky = StickyPartitioner(seed=1)
    first = sticky.partition("t", 8)
    assert all(sticky.partition("t", 8) == first for _ in range(100))
    sticky.batch_sealed("t", first, 8)
    second = sticky.partition("t", 8)
    assert second != first
    sticky.batch_sealed("t", first, 8)  # a seal elsewhere does not move it
    assert sticky.partition("t", 8) == second
    single = StickyPartitioner(seed=2)
    assert single.partition("u", 1) == 0
    single.batch_sealed("u", 0, 1)
    assert single.partition("u", 1) == 0
