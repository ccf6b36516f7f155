"""Storage counts what it does: sync rounds and their failures, segments and
bytes deleted by retention (read from the process-wide registry, as
differences)."""

from __future__ import annotations

import errno
import os

import pytest

from tailrace.broker.log import LogConfig, PartitionLog, StorageIO
from tailrace.broker.metrics.definitions import REGISTRY
from tailrace.client.errors import StorageError
from tailrace.client.records import build_batch

SMALL = {"segment_bytes": 4096, "index_interval_bytes": 1024, "preallocate_bytes": 4096}


def _value(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _batch(i: int) -> bytes:
    return build_batch([(1_000 + i, None, b"v" * 500, None) for _ in range(3)])


class FailingSyncIO(StorageIO):
    failing = False

    def fdatasync(self, fd: int) -> None:
        if self.failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fdatasync(fd)


async def test_sync_rounds_and_failures_are_counted(tmp_path):
    io = FailingSyncIO()
    log = PartitionLog.open(
        str(tmp_path / "t" / "0"), LogConfig.from_mapping({**SMALL, "flush": "sync"}), io=io
    )
    rounds = _value("tailrace_fsync_duration_seconds_count")
    failures = _value("tailrace_fsync_failures_total")
    for i in range(3):
        await log.wait_durable(log.append(_batch(i)))
    assert _value("tailrace_fsync_duration_seconds_count") - rounds == 3
    io.failing = True
    with pytest.raises(StorageError):
        await log.wait_durable(log.append(_batch(3)))
    assert log.offline
    assert _value("tailrace_fsync_failures_total") - failures == 1
    assert _value("tailrace_fsync_duration_seconds_count") - rounds == 3
    log.abandon()


async def test_retention_deletions_are_counted(tmp_path):
    cfg = LogConfig.from_mapping({**SMALL, "flush": "none", "retention_bytes": 4096})
    log = PartitionLog.open(str(tmp_path / "t" / "0"), cfg)
    for i in range(30):
        log.append(_batch(i))
    sizes = [s.size for s in log.segments]
    segments = _value("tailrace_retention_deleted_segments_total")
    deleted_bytes = _value("tailrace_retention_deleted_bytes_total")
    deleted = await log.enforce_retention()
    assert deleted >= 2
    assert _value("tailrace_retention_deleted_segments_total") - segments == deleted
    assert _value("tailrace_retention_deleted_bytes_total") - deleted_bytes == sum(sizes[:deleted])
    log.close()
