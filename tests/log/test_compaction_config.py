"""Compacted-topic settings (cleanup_policy and the cleaner's knobs),
validated on the way in, and what a compacted log refuses: a record
without a key (INVALID_RECORD, nothing written)."""

from __future__ import annotations

import pytest
from log_helpers import config, open_log

from tailrace.broker.log import LogConfig
from tailrace.client.errors import InvalidConfigError, InvalidRecordError
from tailrace.client.records import build_batch, build_kafka_batch


def test_compaction_settings_defaults_and_normalisation() -> None:
    cfg = LogConfig()
    assert (cfg.cleanup_policy, cfg.compact, cfg.delete) == ("delete", False, True)
    assert cfg.delete_retention_ms == 86_400_000
    assert cfg.min_cleanable_dirty_ratio == 0.5
    assert (cfg.min_compaction_lag_ms, cfg.max_compaction_lag_ms) == (0, 2**63 - 1)
    both = LogConfig.from_mapping({"cleanup_policy": "delete, compact"})
    assert (both.cleanup_policy, both.compact, both.delete) == ("compact,delete", True, True)
    only = LogConfig.from_mapping({"cleanup_policy": "compact"})
    assert (only.compact, only.delete) == (True, False)
    # strings, as AlterConfigs and the CLI carry them
    cfg = LogConfig.from_mapping(
        {"min_cleanable_dirty_ratio": "0.25", "min_compaction_lag_ms": "10"}
    )
    assert cfg.min_cleanable_dirty_ratio == 0.25
    assert cfg.min_compaction_lag_ms == 10


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cleanup_policy", "shred", "cleanup_policy"),
        ("cleanup_policy", 1, "cleanup_policy"),
        ("min_cleanable_dirty_ratio", "1.5", "min_cleanable_dirty_ratio"),
        ("min_cleanable_dirty_ratio", "nan", "min_cleanable_dirty_ratio"),
        ("min_cleanable_dirty_ratio", "half", "min_cleanable_dirty_ratio"),
        ("delete_retention_ms", "-1", "delete_retention_ms"),
        ("max_compaction_lag_ms", "0", "max_compaction_lag_ms"),
    ],
)
def test_bad_compaction_settings_are_refused_naming_the_key(key, value, message) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        LogConfig.from_mapping({key: value})


def test_min_lag_above_max_lag_is_refused() -> None:
    with pytest.raises(InvalidConfigError, match="min_compaction_lag_ms"):
        LogConfig.from_mapping({"min_compaction_lag_ms": 10, "max_compaction_lag_ms": 5})


@pytest.mark.parametrize("fmt", ["native", "kafka"])
def test_a_keyless_record_on_a_compacted_topic_is_refused_and_nothing_written(tmp_path, fmt):
    log = open_log(tmp_path / "p", config(cleanup_policy="compact"))
    build = build_batch if fmt == "native" else build_kafka_batch
    good = build([(1, b"k", b"v", None)])
    keyless = build([(1, b"k2", b"v", None), (2, None, b"v", None)])
    log.append(good)
    with pytest.raises(InvalidRecordError, match="no key"):
        log.append(good + keyless)  # one bad record refuses the whole append
    assert log.log_end_offset == 1
    log.append(build([(3, b"k", None, None)]))  # a tombstone has a key: fine
    assert log.log_end_offset == 2
    log.close()


def test_a_keyless_record_is_fine_where_the_topic_is_not_compacted(tmp_path):
    log = open_log(tmp_path / "p", config())
    log.append(build_batch([(1, None, b"v", None)]))
    assert log.log_end_offset == 1
    log.close()


async def test_retention_leaves_a_compact_only_topic_alone(tmp_path):
    log = open_log(
        tmp_path / "p", config(cleanup_policy="compact", retention_ms=1, segment_bytes=200)
    )
    for i in range(10):
        log.append(build_batch([(1_000 + i, b"k%d" % i, b"x" * 80, None)]))
    assert len(log.segments) > 2
    assert await log.enforce_retention(now_ms=10**12) == 0
    log.update_config(config(cleanup_policy="compact,delete", retention_ms=1, segment_bytes=200))
    assert await log.enforce_retention(now_ms=10**12) > 0
    await log.aclose()
