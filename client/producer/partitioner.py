"""Choosing a record's partition, exactly as Kafka's default partitioner does.

1. An explicit ``partition`` wins.
2. Otherwise a record with a key goes to ``toPositive(murmur2(key)) %
   partitions``, bit for bit Kafka's ``Utils.murmur2``, so the same key lands
   on the same partition number a Kafka client would pick.
3. A record without a key sticks to one partition until the batch being built
   for it is sealed, then moves to another (Kafka's sticky partitioner, which
   fills batches instead of spraying one record per partition).
"""

from __future__ import annotations

import random

__all__ = ["StickyPartitioner", "murmur2", "partition_for_key"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, as a signed Java int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end4 = length & ~3
    for i in range(0, end4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[end4 + 2] << 16
    if rest >= 2:
        h ^= data[end4 + 1] << 8
    if rest >= 1:
        h ^= data[end4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# Keys repeat (user ids, order ids): remember recent hashes. Bounded.
_CACHE: dict[bytes, int] = {}
_CACHE_MAX = 65536


def partition_for_key(key: bytes, partitions: int) -> int:
    """``toPositive(murmur2(key)) % partitions``."""
    h = _CACHE.get(key)
    if h is None:
        h = murmur2(key) & 0x7FFFFFFF
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = h
    return h % partitions


class StickyPartitioner:
    """Per-topic sticky choice for records without a key."""

    __slots__ = ("_rng", "current")

    def __init__(self, seed: int | None = None) -> None:
        #: topic -> the partition records without a key go to now
        self.current: dict[str, int] = {}
        self._rng = random.Random(seed)

    def partition(self, topic: str, partitions: int) -> int:
        p = self.current.get(topic)
        if p is None or p >= partitions:
            p = self._rng.randrange(partitions)
            self.current[topic] = p
        return p

    def batch_sealed(self, topic: str, partition: int, partitions: int) -> None:
        """The batch for ``partition`` was sealed: stick to another one next."""
        if self.current.get(topic) != partition:
            return
        if partitions <= 1:
            return
        p = self._rng.randrange(partitions - 1)
        self.current[topic] = p if p < partition else p + 1
