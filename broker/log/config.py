"""Per-topic log configuration: one frozen dataclass, validated on the way in.

The broker holds one :class:`LogConfig` of broker-wide defaults; a topic's
effective config is ``defaults.with_overrides(topic_overrides)``. Only the
overrides are stored on disk (see manager.py), so a changed broker default
applies to every topic that did not set the key itself, as in Kafka.

Values may arrive as ints or as decimal strings (AlterConfigs and the admin
CLI carry strings); anything else, an unknown key or a value out of range
raises :class:`InvalidConfigError` naming the key, and nothing changes.
"""

from __future__ import annotations

import dataclasses
import mmap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tailrace.client.errors import InvalidConfigError
from tailrace.client.records import HEADER_SIZE

__all__ = ["CLEANUP_POLICIES", "FLUSH_MODES", "LogConfig"]

KiB = 1024
MiB = 1024 * KiB
DAY_MS = 24 * 3600 * 1000

#: ``sync``: ack after fdatasync (group commit); ``interval``: fdatasync every
#: ``flush_ms``; ``none``: the OS writes back, fsync only on roll and close.
FLUSH_MODES = ("sync", "interval", "none")
#: ``delete``: retention deletes old segments; ``compact``: the log cleaner
#: keeps the latest record of every key (retention off); ``compact,delete``:
#: both (``delete,compact`` is accepted and stored in this order).
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")

_I32_MAX = 2**31 - 1
_I64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The settings of one partition log. Defaults follow Kafka's where it has one.

    Field notes:

    * ``segment_bytes``: roll when the next append would not fit. Positions in
      the offset index are u32, so it is capped at 2**31-1.
    * ``segment_ms``: roll when an append's max timestamp is this far past the
      first batch's max timestamp in the active segment (Kafka's rule).
    * ``segment_index_bytes``: capacity of each index file; a full index rolls.
    * ``index_interval_bytes``: log bytes between offset-index entries.
    * ``retention_ms`` / ``retention_bytes``: -1 means unlimited.
    * ``preallocate_bytes``: the largest step by which the active segment
      grows with posix_fallocate (steps start at 1 MiB and double with the
      file); each step is one mmap window, so it must be a multiple of
      mmap.ALLOCATIONGRANULARITY.
    * ``max_batch_bytes``: largest batch accepted on append.
    * ``producer_id_expiration_ms``: idempotent-producer state is dropped after
      this long without a batch (measured on batch timestamps, as Kafka).
    * ``cleanup_policy``: one of CLEANUP_POLICIES. With ``compact`` every
      record needs a key (INVALID_RECORD otherwise) and the log cleaner
      (cleaner.py) keeps the latest record per key in sealed segments.
    * ``delete_retention_ms``: how long the cleaner keeps a tombstone (a
      record with a null value), from the tombstone's timestamp.
    * ``min_cleanable_dirty_ratio``: clean when the part not yet cleaned is
      at least this share of the cleanable bytes.
    * ``min_compaction_lag_ms`` / ``max_compaction_lag_ms``: a segment is
      cleaned only once its newest record is this old / is cleaned, whatever
      the dirty ratio, once its oldest record is that old.
    * ``min_insync_replicas``: cluster mode: an acks=all write is refused
      (NOT_ENOUGH_REPLICAS) while fewer replicas are in sync; -1 means
      min(2, the topic's replication factor). A single node ignores it.
    """

    segment_bytes: int = 256 * MiB
    segment_ms: int = 7 * DAY_MS
    segment_index_bytes: int = 10 * MiB
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int = -1
    flush: str = "sync"
    flush_ms: int = 1000
    preallocate_bytes: int = 16 * MiB
    max_batch_bytes: int = 8 * MiB
    producer_id_expiration_ms: int = DAY_MS
    cleanup_policy: str = "delete"
    delete_retention_ms: int = DAY_MS
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = _I64_MAX
    min_insync_replicas: int = -1

    #: key -> (minimum, maximum) for the integer keys.
    _INT_RANGES: ClassVar[dict[str, tuple[int, int]]] = {
        "segment_bytes": (1, _I32_MAX),
        "segment_ms": (1, _I64_MAX),
        # two time-index entries (12 bytes each): one for data, one reserved
        # for the final entry written when the segment is sealed.
        "segment_index_bytes": (24, _I32_MAX),
        "index_interval_bytes": (0, _I32_MAX),
        "retention_ms": (-1, _I64_MAX),
        "retention_bytes": (-1, _I64_MAX),
        "flush_ms": (1, _I64_MAX),
        "preallocate_bytes": (mmap.ALLOCATIONGRANULARITY, 1 << 40),
        "max_batch_bytes": (HEADER_SIZE + 1, _I32_MAX),
        "producer_id_expiration_ms": (1, _I64_MAX),
        "delete_retention_ms": (0, _I64_MAX),
        "min_compaction_lag_ms": (0, _I64_MAX),
        "max_compaction_lag_ms": (1, _I64_MAX),
        "min_insync_replicas": (-1, _I32_MAX),
    }

    def __post_init__(self) -> None:
        for key, (lo, hi) in self._INT_RANGES.items():
            value = getattr(self, key)
            if type(value) is not int:
                raise InvalidConfigError(f"{key}: expected an integer, got {value!r}")
            if not lo <= value <= hi:
                raise InvalidConfigError(f"{key}: {value} is outside [{lo}, {hi}]")
        if self.preallocate_bytes % mmap.ALLOCATIONGRANULARITY:
            raise InvalidConfigError(
                f"preallocate_bytes: {self.preallocate_bytes} is not a multiple of "
                f"{mmap.ALLOCATIONGRANULARITY}"
            )
        if self.flush not in FLUSH_MODES:
            raise InvalidConfigError(
                f"flush: {self.flush!r} is not one of {', '.join(FLUSH_MODES)}"
            )
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise InvalidConfigError(
                f"cleanup_policy: {self.cleanup_policy!r} is not one of "
                f"{', '.join(CLEANUP_POLICIES)}"
            )
        ratio = self.min_cleanable_dirty_ratio
        if type(ratio) is not float or not 0.0 <= ratio <= 1.0:
            raise InvalidConfigError(
                f"min_cleanable_dirty_ratio: {ratio!r} is not a number in [0, 1]"
            )
        if self.min_insync_replicas == 0:
            raise InvalidConfigError("min_insync_replicas: 0 is not -1 (the default) or 1 or more")
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms:
            raise InvalidConfigError(
                f"min_compaction_lag_ms: {self.min_compaction_lag_ms} is above "
                f"max_compaction_lag_ms {self.max_compaction_lag_ms}"
            )

    @property
    def compact(self) -> bool:
        """The log cleaner runs on this log (and keys are required)."""
        return self.cleanup_policy != "delete"

    @property
    def delete(self) -> bool:
        """Retention (retention_ms, retention_bytes) deletes old segments."""
        return self.cleanup_policy != "compact"

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> LogConfig:
        """Build from defaults plus ``mapping`` (see :meth:`with_overrides`)."""
        return cls().with_overrides(mapping)

    def with_overrides(self, mapping: Mapping[str, Any]) -> LogConfig:
        """A copy with ``mapping`` applied; raises InvalidConfigError naming the key."""
        changes: dict[str, Any] = {}
        known = self.field_names()
        for key, raw in mapping.items():
            if key not in known:
                raise InvalidConfigError(f"{key}: unknown log config key")
            changes[key] = _coerce(key, raw)
        return dataclasses.replace(self, **changes)

    def to_mapping(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _coerce(key: str, raw: Any) -> Any:
    if key == "flush":
        if not isinstance(raw, str):
            raise InvalidConfigError(f"flush: expected a string, got {raw!r}")
        return raw
    if key == "cleanup_policy":
        if not isinstance(raw, str):
            raise InvalidConfigError(f"cleanup_policy: expected a string, got {raw!r}")
        parts = sorted({p.strip() for p in raw.split(",")})  # "compact" < "delete"
        return ",".join(parts)
    if key == "min_cleanable_dirty_ratio":
        if type(raw) in (int, float):
            return float(raw)
        if isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                pass
            else:
                if value == value:  # not NaN
                    return value
        raise InvalidConfigError(f"{key}: expected a number, got {raw!r}")
    if type(raw) is int:
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        body = text[1:] if text[:1] in "+-" else text
        if body.isdigit() and body.isascii() and len(body) <= 20:
            return int(text)
    raise InvalidConfigError(f"{key}: expected an integer, got {raw!r}")
