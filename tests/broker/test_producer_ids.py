"""The idempotent-producer id allocator with real files: ids unique for the
life of the data directory (restarts and crashes included), a damaged file
refused, and in a cluster blocks taken from a cluster-wide reservation
(here a stand-in for etcd's counter; tests/cluster/test_membership.py runs
the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailrace.broker.producer_ids import BLOCK, FILE_NAME, ProducerIdAllocator
from tailrace.client.errors import RequestTimedOutError, StorageError


async def test_ids_never_repeat_across_restarts(tmp_path: Path) -> None:
    first = ProducerIdAllocator(str(tmp_path))
    ids = [await first.allocate() for _ in range(3)]
    assert ids == [0, 1, 2]
    # a restart (or a crash: the block's end was durable before id 0 left)
    again = ProducerIdAllocator(str(tmp_path))
    assert await again.allocate() == BLOCK


async def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    await ProducerIdAllocator(str(tmp_path)).allocate()
    path = tmp_path / FILE_NAME
    path.write_text(path.read_text().replace("1000", "1001"))
    with pytest.raises(StorageError, match="damaged"):
        ProducerIdAllocator(str(tmp_path))


class Counter:
    """A cluster-wide counter as etcd holds it: reserve(size, at_least)."""

    def __init__(self, start: int = 0) -> None:
        self.next = start
        self.fail = False
        self.calls: list[tuple[int, int]] = []

    async def reserve(self, size: int, at_least: int) -> int:
        self.calls.append((size, at_least))
        if self.fail:
            raise RequestTimedOutError("cannot reach etcd for producer ids")
        start = max(self.next, at_least)
        self.next = start + size
        return start


async def test_cluster_blocks_come_from_the_reservation(tmp_path: Path) -> None:
    counter = Counter(start=7 * BLOCK)  # other brokers took the first seven blocks
    a = ProducerIdAllocator(str(tmp_path))
    a.reserve = counter.reserve
    ids = [await a.allocate() for _ in range(BLOCK + 1)]
    assert ids == list(range(7 * BLOCK, 8 * BLOCK + 1))
    assert counter.calls == [(BLOCK, 0), (BLOCK, 8 * BLOCK)]
    # the file keeps the end of the last block: after a restart this
    # directory never asks for less than that
    b = ProducerIdAllocator(str(tmp_path))
    b.reserve = counter.reserve
    assert await b.allocate() == 9 * BLOCK
    assert counter.calls[-1] == (BLOCK, 9 * BLOCK)


async def test_an_unreachable_reservation_hands_out_nothing_and_is_retried(
    tmp_path: Path,
) -> None:
    counter = Counter()
    a = ProducerIdAllocator(str(tmp_path))
    a.reserve = counter.reserve
    counter.fail = True
    with pytest.raises(RequestTimedOutError):
        await a.allocate()
    assert not (tmp_path / FILE_NAME).exists()
    counter.fail = False
    assert await a.allocate() == 0


async def test_a_block_whose_file_write_failed_is_never_used(tmp_path: Path) -> None:
    counter = Counter()
    a = ProducerIdAllocator(str(tmp_path))
    a.reserve = counter.reserve
    (tmp_path / FILE_NAME).mkdir()  # the rename onto it fails: a disk fault
    with pytest.raises(StorageError):
        await a.allocate()
    (tmp_path / FILE_NAME).rmdir()
    # the reserved block [0, BLOCK) is wasted, not handed out later
    assert await a.allocate() == BLOCK
