"""Recovery of a large log says what it is doing: a line every few seconds
(here: every segment, the interval set to 0) with the partition, segments
and bytes scanned and the time, then a summary."""

from __future__ import annotations

import logging

from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.broker.log import partition as partition_module
from tailrace.client.records import build_batch

SMALL = LogConfig.from_mapping(
    {
        "segment_bytes": 4096,
        "index_interval_bytes": 1024,
        "preallocate_bytes": 4096,
        "flush": "none",
    }
)


def _fill(path, batches: int) -> int:
    log = PartitionLog.open(str(path), SMALL)
    for i in range(batches):
        log.append(build_batch([(1_000 + i, None, b"v" * 500, None) for _ in range(3)]))
    segments = len(log.segments)
    log.abandon()  # a crash: the next open recovers every segment
    return segments


def _fields(caplog, msg: str) -> list[dict]:
    return [
        r.fields
        for r in caplog.records
        if r.name == "tailrace.broker.log.partition" and r.getMessage() == msg
    ]


def test_recovery_logs_progress_and_a_summary(tmp_path, caplog, monkeypatch):
    path = tmp_path / "events" / "0"
    segments = _fill(path, 20)
    assert segments >= 5
    monkeypatch.setattr(partition_module, "RECOVERY_PROGRESS_INTERVAL_S", 0.0)
    with caplog.at_level(logging.INFO, logger="tailrace.broker.log.partition"):
        log = PartitionLog.open(str(path), SMALL, recovery_point=None, clean=False)
    try:
        total = log.size_bytes
        assert log.log_end_offset == 60
    finally:
        log.close()

    progress = _fields(caplog, "recovery progress")
    assert [p["segments_scanned"] for p in progress] == [
        f"{n}/{segments}" for n in range(1, segments)
    ]
    scanned = [p["bytes_scanned"] for p in progress]
    assert scanned == sorted(scanned)
    assert 0 < scanned[-1] < total
    assert {p["partition"] for p in progress} == {"events-0"}
    assert all(p["elapsed_s"] >= 0 for p in progress)
    [summary] = _fields(caplog, "recovered")
    assert summary["partition"] == "events-0"
    assert summary["segments_scanned"] == segments
    assert summary["bytes_scanned"] == total
    assert summary["log_end_offset"] == 60


def test_a_recovery_shorter_than_the_interval_adds_no_lines(tmp_path, caplog, monkeypatch):
    path = tmp_path / "events" / "0"
    _fill(path, 20)
    monkeypatch.setattr(partition_module, "RECOVERY_PROGRESS_INTERVAL_S", 1e9)
    with caplog.at_level(logging.INFO, logger="tailrace.broker.log.partition"):
        PartitionLog.open(str(path), SMALL, recovery_point=None, clean=False).close()
    assert _fields(caplog, "recovery progress") == []
    assert _fields(caplog, "recovered") == []
