"""The data directory: topic names, crash-safe create/delete, durable
configs, the recovery-point checkpoint and the clean-shutdown marker."""

from __future__ import annotations

import functools
import json
import os
import threading

import pytest
import trio
from log_helpers import FaultIO, SimulatedCrash, batch, read_records

from tailrace.broker.log import LogConfig, LogManager, validate_topic_name
from tailrace.broker.log.manager import parse_checkpoint
from tailrace.client.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    StorageError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

DEFAULTS = LogConfig(segment_bytes=600, preallocate_bytes=4096, flush="none")


def _overwrite(path: str, pos: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(data)


def _open(tmp_path, **kw) -> LogManager:
    return LogManager.open(str(tmp_path / "data"), DEFAULTS, **kw)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "/abs", "x" * 250, "a b", "é", "~x", "a\x00b", "tab\t", None, 7],
)
async def test_invalid_topic_names_are_refused_before_any_path(tmp_path, name):
    mgr = _open(tmp_path)
    before = sorted(os.listdir(tmp_path / "data"))
    with pytest.raises(InvalidTopicError):
        await mgr.create_topic(name, 1)
    with pytest.raises(InvalidTopicError):
        await mgr.delete_topic(name)
    assert sorted(os.listdir(tmp_path / "data")) == before
    assert sorted(os.listdir(tmp_path)) == ["data"]
    await mgr.aclose()


def test_valid_topic_names():
    for name in ("x" * 249, "a.b-c_D9", ".hidden", "..."):
        assert validate_topic_name(name) == name


async def test_create_append_and_reload(tmp_path):
    mgr = _open(tmp_path)
    info = await mgr.create_topic("orders", 3, {"retention_ms": "3600000", "flush": "sync"})
    assert info.config.retention_ms == 3_600_000
    assert info.overrides == {"retention_ms": 3_600_000, "flush": "sync"}
    log = mgr.get("orders", 2)
    await log.wait_durable(log.append(batch(2)))
    with pytest.raises(UnknownTopicOrPartitionError):
        mgr.get("orders", 3)
    with pytest.raises(TopicAlreadyExistsError):
        await mgr.create_topic("orders", 1)
    assert await mgr.aclose()
    assert sorted(os.listdir(tmp_path / "data" / "orders")) == ["0", "1", "2", "topic.json"]
    doc = json.loads((tmp_path / "data" / "orders" / "topic.json").read_text())
    assert doc == {
        "format": 1,
        "name": "orders",
        "partitions": 3,
        "overrides": {"flush": "sync", "retention_ms": 3600000},
    }
    mgr = _open(tmp_path)
    assert mgr.clean_start
    assert mgr.topic("orders").config.flush == "sync"
    assert mgr.topic("orders").config.segment_bytes == 600  # broker default
    assert [o for o, _v in read_records(mgr.get("orders", 2))] == [0, 1]
    await mgr.aclose()


async def test_bad_create_arguments_change_nothing(tmp_path):
    mgr = _open(tmp_path)
    with pytest.raises(InvalidPartitionsError):
        await mgr.create_topic("t", 0)
    with pytest.raises(InvalidConfigError, match="segment_bytes"):
        await mgr.create_topic("t", 1, {"segment_bytes": -5})
    with pytest.raises(InvalidConfigError, match="bogus"):
        await mgr.create_topic("t", 1, {"bogus": 1})
    with pytest.raises(InvalidConfigError, match="flush"):
        await mgr.create_topic("t", 1, {"flush": "sometimes"})
    assert mgr.topics() == {}
    assert sorted(os.listdir(tmp_path / "data")) == ["~lock"]
    await mgr.aclose()


async def test_crash_while_creating_leaves_no_half_made_topic(tmp_path):
    io = FaultIO()
    io.crash_at = "topic.create.staged"
    mgr = _open(tmp_path, io=io)
    with pytest.raises(SimulatedCrash):
        await mgr.create_topic("t", 2)
    mgr._abandon()  # the process dies here
    mgr = _open(tmp_path)
    assert mgr.topics() == {}
    assert sorted(os.listdir(tmp_path / "data")) == ["~lock"]
    await mgr.create_topic("t", 2)  # and the name is free
    await mgr.aclose()


async def test_crash_while_deleting_finishes_the_delete(tmp_path):
    io = FaultIO()
    mgr = _open(tmp_path, io=io)
    await mgr.create_topic("t", 2)
    mgr.get("t", 0).append(batch(1))
    io.crash_at = "topic.delete.renamed"
    with pytest.raises(SimulatedCrash):
        await mgr.delete_topic("t")
    mgr._abandon()
    assert [n for n in os.listdir(tmp_path / "data") if n.startswith("~deleting-")]
    mgr = _open(tmp_path)
    assert mgr.topics() == {}
    assert sorted(os.listdir(tmp_path / "data")) == ["~lock"]
    await mgr.aclose()


async def test_delete_keeps_readers_working_until_release(tmp_path):
    mgr = _open(tmp_path)
    await mgr.create_topic("t", 1)
    log = mgr.get("t", 0)
    log.append(batch([b"kept"]))
    held = log.read(0, 1000)
    data = held.read_bytes()
    await mgr.delete_topic("t")
    with pytest.raises(UnknownTopicOrPartitionError):
        mgr.get("t", 0)
    with pytest.raises(StorageError):
        log.append(batch(1))
    assert held.read_bytes() == data
    held.release()
    assert not os.path.exists(tmp_path / "data" / "t")
    await mgr.aclose()


async def test_clean_marker_and_checkpoint(tmp_path):
    mgr = _open(tmp_path)
    assert not mgr.clean_start
    await mgr.create_topic("t", 2)
    for k in range(10):
        mgr.get("t", 0).append(batch(1, ts=1000 + k, size=100))
    await mgr.flush_due()  # none mode: syncs the segments sealed by rolls
    await mgr.checkpoint()
    points = parse_checkpoint((tmp_path / "data" / "~recovery-points").read_bytes())
    assert points == {("t", 0): mgr.get("t", 0).recovery_point, ("t", 1): 0}
    assert 0 < points[("t", 0)] < 10
    assert not (tmp_path / "data" / "~clean-shutdown").exists()
    assert await mgr.aclose()
    assert (tmp_path / "data" / "~clean-shutdown").exists()
    points = parse_checkpoint((tmp_path / "data" / "~recovery-points").read_bytes())
    assert points == {("t", 0): 10, ("t", 1): 0}
    mgr = _open(tmp_path)
    assert mgr.clean_start
    assert not (tmp_path / "data" / "~clean-shutdown").exists()  # removed at open
    mgr._abandon()  # crash
    mgr = _open(tmp_path)
    assert not mgr.clean_start
    assert mgr.get("t", 0).log_end_offset == 10
    await mgr.aclose()


async def test_checkpoint_file_damage_means_full_recovery(tmp_path):
    mgr = _open(tmp_path)
    await mgr.create_topic("t", 1)
    mgr.get("t", 0).append(batch(3))
    await mgr.aclose()
    path = tmp_path / "data" / "~recovery-points"
    data = bytearray(path.read_bytes())
    data[30] ^= 1
    path.write_bytes(bytes(data))
    (tmp_path / "data" / "~clean-shutdown").unlink()
    with pytest.raises(ValueError, match="CRC"):
        parse_checkpoint(bytes(data))
    mgr = _open(tmp_path)
    assert mgr.get("t", 0).log_end_offset == 3
    await mgr.aclose()


async def test_corrupt_partition_is_refused_alone(tmp_path):
    mgr = _open(tmp_path)
    await mgr.create_topic("t", 2)
    for p in (0, 1):
        for _k in range(3):
            mgr.get("t", p).append(batch(1, size=50))
    seg_path = mgr.get("t", 1).segments[0].log_path
    await mgr.aclose()
    (tmp_path / "data" / "~clean-shutdown").unlink()  # force recovery
    _overwrite(seg_path, 40, b"\xff\xff")
    mgr = _open(tmp_path)
    assert mgr.get("t", 0).log_end_offset == 3
    with pytest.raises(StorageError, match="corrupt log data"):
        mgr.get("t", 1)
    assert ("t", 1) in mgr.failed
    await mgr.checkpoint()  # keeps the refused partition's recovery point
    points = parse_checkpoint((tmp_path / "data" / "~recovery-points").read_bytes())
    assert points[("t", 1)] == 3
    assert not await mgr.aclose()  # no clean marker while a partition is refused
    assert not (tmp_path / "data" / "~clean-shutdown").exists()


async def test_alter_config_is_durable_and_applied(tmp_path):
    mgr = _open(tmp_path)
    await mgr.create_topic("t", 1, {"retention_ms": 1000})
    log = mgr.get("t", 0)
    info = await mgr.alter_topic_config(
        "t", {"flush": "interval", "flush_ms": "250"}, ["retention_ms"]
    )
    assert info.overrides == {"flush": "interval", "flush_ms": 250}
    assert log.config.flush == "interval"
    assert log.config.retention_ms == DEFAULTS.retention_ms
    with pytest.raises(InvalidConfigError, match="flush_ms"):
        await mgr.alter_topic_config("t", {"flush_ms": "soon"})
    assert log.config.flush_ms == 250
    await mgr.aclose()
    mgr = _open(tmp_path)
    assert mgr.topic("t").overrides == {"flush": "interval", "flush_ms": 250}
    await mgr.aclose()


async def test_data_dir_is_locked(tmp_path):
    mgr = _open(tmp_path)
    with pytest.raises(StorageError, match="in use"):
        _open(tmp_path)
    await mgr.aclose()
    _open(tmp_path)._abandon()


async def test_retention_through_the_manager(tmp_path):
    mgr = _open(tmp_path)
    await mgr.create_topic("t", 1, {"retention_bytes": 700})
    for k in range(20):
        mgr.get("t", 0).append(batch(1, ts=1000 + k, size=100))
    assert await mgr.enforce_retention() > 0
    assert mgr.get("t", 0).log_start_offset > 0
    await mgr.aclose()


def test_log_config_validation():
    cfg = LogConfig.from_mapping({"segment_bytes": "1048576", "retention_ms": -1})
    assert (cfg.segment_bytes, cfg.retention_ms) == (1 << 20, -1)
    assert cfg.with_overrides({"flush": "none"}).flush == "none"
    for bad, key in (
        ({"segment_bytes": 0}, "segment_bytes"),
        ({"retention_ms": -2}, "retention_ms"),
        ({"preallocate_bytes": 5000}, "preallocate_bytes"),
        ({"index_interval_bytes": 1.5}, "index_interval_bytes"),
        ({"flush_ms": True}, "flush_ms"),
        ({"max_batch_bytes": "12abc"}, "max_batch_bytes"),
        ({"segment_bytes": 2**31}, "segment_bytes"),
        ({"nope": 1}, "nope"),
    ):
        with pytest.raises(InvalidConfigError, match=key):
            LogConfig.from_mapping(bad)


async def test_flush_due_syncs_only_partitions_that_need_it(tmp_path):
    io = FaultIO()
    now = [1_000_000]
    mgr = _open(tmp_path, io=io, clock_ms=lambda: now[0])
    await mgr.create_topic("slow", 3, {"flush": "interval", "flush_ms": 1000})
    await mgr.create_topic("acks0", 1, {"flush": "sync"})
    mgr.get("slow", 1).append(batch(2))
    mgr.get("acks0", 0).append(batch(1))  # appended, nobody waits for the ack
    io.calls.clear()
    await mgr.flush_due()
    # the sync-mode partition is synced (its data becomes visible); the
    # interval one waits for its interval
    assert io.calls["fdatasync"] == 1
    assert mgr.get("acks0", 0).high_watermark == 1
    assert mgr.get("slow", 1).recovery_point == 0
    now[0] += 1000
    await mgr.flush_due()
    assert io.calls["fdatasync"] == 2
    assert mgr.get("slow", 1).recovery_point == 2
    await mgr.flush_due()  # nothing left to do anywhere
    assert io.calls["fdatasync"] == 2
    await mgr.aclose()


class CheckpointSeen(FaultIO):
    """Signals (from the worker thread) when a checkpoint file is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def rename(self, src: str, dst: str) -> None:
        super().rename(src, dst)
        if dst.endswith("~recovery-points"):
            self.written.set()


async def test_run_maintenance_flushes_and_checkpoints(tmp_path, autojump_clock):
    io = CheckpointSeen()
    mgr = _open(tmp_path, io=io)
    await mgr.create_topic("t", 1, {"flush": "sync"})
    log = mgr.get("t", 0)
    log.append(batch(3))  # acks=0: nobody waits, the loop's flush publishes it
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(
                mgr.run_maintenance,
                flush_tick_ms=10,
                checkpoint_interval_ms=1000,
                retention_check_ms=1000,
            )
        )
        await log.wait_for_high_watermark(2)
        # virtual time runs on while this thread waits: the loop gets there
        assert await trio.to_thread.run_sync(io.written.wait, 60)
        nursery.cancel_scope.cancel()
    points = parse_checkpoint((tmp_path / "data" / "~recovery-points").read_bytes())
    assert points == {("t", 0): 3}
    await mgr.aclose()
