"""The committed-offsets store on a real LogManager in tmp_path: durability
before visibility, reload, snapshots with size retention deleting old
segments, a torn snapshot, corrupt records, and offset expiry."""

from __future__ import annotations

import random

import pytest
import trio

from tailrace.broker.coordinator import OFFSETS_TOPIC, GroupCoordinator, GroupSettings
from tailrace.broker.coordinator.records import (
    KIND_SNAPSHOT_BEGIN,
    OffsetEntry,
    encode_offset,
    encode_snapshot_marker,
)
from tailrace.broker.coordinator.store import OffsetStore, StoreSettings
from tailrace.broker.log.manager import LogManager
from tailrace.client.errors import CoordinatorNotAvailableError
from tailrace.client.protocol import (
    OffsetCommitPartition,
    OffsetCommitRequest,
    OffsetCommitTopic,
    OffsetFetchRequest,
)
from tailrace.client.records import build_batch

SMALL = StoreSettings(
    retention_bytes=32 * 1024,
    segment_bytes=8 * 1024,
    preallocate_bytes=4096,
    cleanup_policy="delete",
)


def _manager(tmp_path) -> LogManager:
    return LogManager.open(str(tmp_path / "data"))


class Recorder:
    """The on_durable callback: what a reader may see."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, tuple[str, int]], OffsetEntry] = {}
        self.calls = 0

    def __call__(self, group, tp, entry) -> None:
        self.calls += 1
        if entry is None:
            self.state.pop((group, tp), None)
        else:
            self.state[(group, tp)] = entry


async def _reload(tmp_path, manager, settings=SMALL) -> Recorder:
    await manager.aclose()
    manager = _manager(tmp_path)
    seen = Recorder()
    try:
        await OffsetStore(manager, seen, settings).load()
    finally:
        await manager.aclose()
    return seen


async def test_entries_become_visible_only_once_durable_and_survive_a_reopen(tmp_path):
    manager = _manager(tmp_path)
    seen = Recorder()
    store = OffsetStore(manager, seen, SMALL)
    await store.ensure_log()
    assert manager.topic(OFFSETS_TOPIC).config.flush == "sync"
    first = store.append([("g", ("t", 0), OffsetEntry(5, "m", 1))])
    second = store.append([("g", ("t", 0), OffsetEntry(9, None, 2))])
    assert seen.calls == 0  # appended, not yet durable: nobody sees it
    assert store.view == {"g": {("t", 0): OffsetEntry(9, None, 2)}}
    await store.wait_durable(second)  # publishes everything up to it, in order
    assert seen.state == {("g", ("t", 0)): OffsetEntry(9, None, 2)}
    assert seen.calls == 2
    await store.wait_durable(first)  # already published: nothing goes backwards
    assert seen.state[("g", ("t", 0))].offset == 9
    deleted = store.append([("g", ("t", 0), None)])
    again = store.append([("h", ("t", 1), OffsetEntry(3, None, 4))])
    await store.wait_durable(deleted)
    await store.wait_durable(again)
    assert (await _reload(tmp_path, manager)).state == {("h", ("t", 1)): OffsetEntry(3, None, 4)}


async def test_snapshots_let_retention_delete_old_segments_without_losing_offsets(tmp_path):
    manager = _manager(tmp_path)
    seen = Recorder()
    store = OffsetStore(manager, seen, SMALL)
    await store.ensure_log()
    rng = random.Random(7)
    expected: dict = {}
    last = None
    for i in range(1500):
        group = f"group-{rng.randrange(6)}"
        tp = (f"topic-{rng.randrange(3)}", rng.randrange(4))
        entry = None if rng.random() < 0.1 else OffsetEntry(i, f"meta-{i}", 1000 + i)
        last = store.append([(group, tp, entry)])
        if entry is None:
            expected.pop((group, tp), None)
        else:
            expected[(group, tp)] = entry
    await store.wait_durable(last)
    assert seen.state == expected
    assert store.snapshots_written >= 3
    plog = manager.get(OFFSETS_TOPIC, 0)
    assert await manager.enforce_retention() > 0
    assert plog.log_start_offset > 0  # the early records are gone from disk
    assert plog.size_bytes >= SMALL.retention_bytes
    assert (await _reload(tmp_path, manager)).state == expected


async def test_a_torn_snapshot_is_ignored(tmp_path):
    manager = _manager(tmp_path)
    seen = Recorder()
    store = OffsetStore(manager, seen, SMALL)
    await store.ensure_log()
    await store.wait_durable(store.append([("g", ("t", 0), OffsetEntry(1, None, 1))]))
    await store.wait_durable(store.append([("g", ("t", 1), OffsetEntry(2, None, 1))]))
    # A snapshot whose end never made it to disk (a crash tore it), holding
    # only one of the two entries; then more commits after the restart.
    begin = encode_snapshot_marker(KIND_SNAPSHOT_BEGIN, 99, 2)
    torn = build_batch(
        [(1, *begin, None), (1, *encode_offset("g", "t", 0, OffsetEntry(1, None, 1)), None)]
    )
    plog = manager.get(OFFSETS_TOPIC, 0)
    await plog.wait_durable(plog.append(torn))
    await store.wait_durable(store.append([("g", ("t", 2), OffsetEntry(3, None, 1))]))
    state = (await _reload(tmp_path, manager)).state
    assert state == {
        ("g", ("t", 0)): OffsetEntry(1, None, 1),
        ("g", ("t", 1)): OffsetEntry(2, None, 1),
        ("g", ("t", 2)): OffsetEntry(3, None, 1),
    }


async def test_a_record_that_does_not_decode_stops_the_coordinator_not_the_broker(tmp_path):
    manager = _manager(tmp_path)
    await manager.create_topic(OFFSETS_TOPIC, 1)
    plog = manager.get(OFFSETS_TOPIC, 0)
    await plog.wait_durable(plog.append(build_batch([(1, b"\x93\x07\x01\x02", b"x", None)])))
    coordinator = GroupCoordinator(manager)
    async with trio.open_nursery() as n:
        await n.start(coordinator.run)
        with trio.fail_after(5):
            while coordinator.status == "loading":  # noqa: ASYNC110 - loads in its task
                await trio.sleep(0.01)
    with pytest.raises(CoordinatorNotAvailableError, match="unknown record kind 7"):
        coordinator.fetch_offsets(OffsetFetchRequest(group_id="g"))
    await manager.aclose()


async def test_offsets_of_an_empty_group_expire_with_tombstones(tmp_path):
    manager = _manager(tmp_path)
    await manager.create_topic("t", 2)
    t = manager.get("t", 0)
    await t.wait_durable(t.append(build_batch([(1, None, b"x", None)] * 10)))
    now = [1_000_000]
    coordinator = GroupCoordinator(
        manager,
        GroupSettings(offsets_retention_ms=60_000),
        store_settings=SMALL,
        clock_ms=lambda: now[0],
    )
    async with trio.open_nursery() as n:
        await n.start(coordinator.run)
        with trio.fail_after(5):
            while coordinator.status == "loading":  # noqa: ASYNC110 - loads in its task
                await trio.sleep(0.01)
        await coordinator.ensure_log()
        for group in ("old", "new"):
            _response, appended = coordinator.commit(
                OffsetCommitRequest(
                    group_id=group,
                    topics=[
                        OffsetCommitTopic(
                            name="t", partitions=[OffsetCommitPartition(partition=0, offset=4)]
                        )
                    ],
                )
            )
            assert appended is not None
            await coordinator.wait_durable(appended)
            now[0] += 30_000
        assert await coordinator.expire_offsets(now[0] + 1) == 1  # "old" is 60 s old
        assert "old" not in coordinator.groups
        assert coordinator.fetch_offsets(OffsetFetchRequest(group_id="old")).topics == []
        assert coordinator.fetch_offsets(OffsetFetchRequest(group_id="new")).topics != []
        n.cancel_scope.cancel()
    state = (await _reload(tmp_path, manager)).state
    assert set(state) == {("new", ("t", 0))}
