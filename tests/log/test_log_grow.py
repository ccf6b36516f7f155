"""Growing a topic's partition count: durable, crash-safe, never shrinking."""

from __future__ import annotations

import json
import os

import pytest
from log_helpers import FaultIO, SimulatedCrash, batch, read_records

from tailrace.broker.log import LogConfig, LogManager
from tailrace.client.errors import InvalidPartitionsError, UnknownTopicOrPartitionError

DEFAULTS = LogConfig(segment_bytes=600, preallocate_bytes=4096, flush="none")


def _open(tmp_path, **kw) -> LogManager:
    return LogManager.open(str(tmp_path / "data"), DEFAULTS, **kw)


async def test_grow_adds_empty_partitions_and_survives_a_restart(tmp_path):
    mgr = _open(tmp_path)
    await mgr.create_topic("orders", 1, {"retention_ms": "3600000"})
    log = mgr.get("orders", 0)
    await log.wait_durable(log.append(batch(2)))
    info = await mgr.grow_topic("orders", 3)
    assert info.partitions == 3
    assert info.config.retention_ms == 3_600_000
    assert mgr.topic("orders").partitions == 3
    new = mgr.get("orders", 2)
    assert (new.log_start_offset, new.high_watermark) == (0, 0)
    await new.wait_durable(new.append(batch(1)))
    assert await mgr.aclose()
    doc = json.loads((tmp_path / "data" / "orders" / "topic.json").read_text())
    assert doc["partitions"] == 3
    assert doc["overrides"] == {"retention_ms": 3600000}
    mgr = _open(tmp_path)
    assert mgr.topic("orders").partitions == 3
    assert [o for o, _v in read_records(mgr.get("orders", 0))] == [0, 1]
    assert [o for o, _v in read_records(mgr.get("orders", 2))] == [0]
    await mgr.aclose()


@pytest.mark.parametrize("count", [0, 1, 2, 10_001, "3"])
async def test_grow_never_shrinks_and_changes_nothing_when_refused(tmp_path, count):
    mgr = _open(tmp_path)
    await mgr.create_topic("t", 2)
    with pytest.raises(InvalidPartitionsError):
        await mgr.grow_topic("t", count)
    assert mgr.topic("t").partitions == 2
    assert sorted(os.listdir(tmp_path / "data" / "t")) == ["0", "1", "topic.json"]
    with pytest.raises(UnknownTopicOrPartitionError):
        await mgr.grow_topic("nope", 3)
    await mgr.aclose()


async def test_a_crash_before_the_commit_leaves_the_old_count_and_a_retry_works(tmp_path):
    mgr = _open(tmp_path)
    await mgr.create_topic("t", 1)
    assert await mgr.aclose()
    io = FaultIO()
    io.crash_at = "topic.grow.dirs"
    mgr = _open(tmp_path, io=io)
    with pytest.raises(SimulatedCrash):
        await mgr.grow_topic("t", 3)
    mgr._abandon()  # the process dies here: the new directories exist, topic.json says 1
    mgr = _open(tmp_path)
    assert mgr.topic("t").partitions == 1
    with pytest.raises(UnknownTopicOrPartitionError):
        mgr.get("t", 1)
    await mgr.grow_topic("t", 3)
    assert mgr.topic("t").partitions == 3
    await mgr.aclose()
