"""The records of the ``__consumer_offsets`` topic.

They are ordinary record batches (client/records/batch.py), so the log,
recovery, ``tailrace dump-log`` and the consumer all read them; only the
key and value bytes are the coordinator's. Both are msgpack::

    kind  key                                   value
    0     [0, group: str, topic: str, part: int] [offset: int, metadata: str|nil,
                                                  commit_timestamp_ms: int]
                                                 or nil: a tombstone (deleted)
    1     [1, snapshot_id: int]                  [entry_count: int]   snapshot begins
    2     [2, snapshot_id: int]                  [entry_count: int]   snapshot ends

A record's timestamp is the broker time it was written. An offset record
sets (or, as a tombstone, removes) one committed offset. A snapshot is a
``begin`` record, one offset record per committed offset the coordinator
holds, and an ``end`` record with the same id and count, appended in one
go; on load, a complete snapshot replaces everything before it (which is
what lets the segments before it be deleted), and an incomplete one (a crash
tore it) is ignored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

__all__ = [
    "KIND_OFFSET",
    "KIND_SNAPSHOT_BEGIN",
    "KIND_SNAPSHOT_END",
    "CorruptOffsetsRecord",
    "OffsetEntry",
    "decode_count",
    "decode_key",
    "decode_offset_value",
    "encode_offset",
    "encode_snapshot_marker",
]

KIND_OFFSET = 0
KIND_SNAPSHOT_BEGIN = 1
KIND_SNAPSHOT_END = 2


class CorruptOffsetsRecord(ValueError):
    """A record of ``__consumer_offsets`` that does not decode."""


class OffsetEntry(NamedTuple):
    """One committed offset."""

    offset: int
    metadata: str | None
    commit_timestamp: int


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def encode_offset(
    group: str, topic: str, partition: int, entry: OffsetEntry | None
) -> tuple[bytes, bytes | None]:
    """Key and value bytes of an offset record (value None: a tombstone)."""
    key = _pack([KIND_OFFSET, group, topic, partition])
    if entry is None:
        return key, None
    return key, _pack([entry.offset, entry.metadata, entry.commit_timestamp])


def encode_snapshot_marker(kind: int, snapshot_id: int, count: int) -> tuple[bytes, bytes]:
    return _pack([kind, snapshot_id]), _pack([count])


def decode_key(key: bytes | None) -> tuple[int, tuple]:
    """``(kind, fields)``: ``(0, (group, topic, partition))`` or
    ``(1 | 2, (snapshot_id,))``. Raises CorruptOffsetsRecord."""
    if key is None:
        raise CorruptOffsetsRecord("record without a key")
    try:
        parts = msgpack.unpackb(key)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptOffsetsRecord(f"key does not decode: {exc}") from exc
    if type(parts) is not list or not parts or type(parts[0]) is not int:
        raise CorruptOffsetsRecord(f"key {parts!r} is not [kind, ...]")
    kind = parts[0]
    if kind == KIND_OFFSET:
        if (
            len(parts) != 4
            or type(parts[1]) is not str
            or type(parts[2]) is not str
            or type(parts[3]) is not int
        ):
            raise CorruptOffsetsRecord(f"offset key {parts!r} is not [0, group, topic, partition]")
        return kind, (parts[1], parts[2], parts[3])
    if kind in (KIND_SNAPSHOT_BEGIN, KIND_SNAPSHOT_END):
        if len(parts) != 2 or type(parts[1]) is not int:
            raise CorruptOffsetsRecord(f"snapshot key {parts!r} is not [kind, id]")
        return kind, (parts[1],)
    raise CorruptOffsetsRecord(f"unknown record kind {kind}")


def decode_offset_value(value: bytes | None, timestamp: int) -> OffsetEntry | None:
    """The entry of an offset record, None for a tombstone."""
    if value is None:
        return None
    try:
        parts = msgpack.unpackb(value)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptOffsetsRecord(f"offset value does not decode: {exc}") from exc
    if (
        type(parts) is not list
        or len(parts) != 3
        or type(parts[0]) is not int
        or not (parts[1] is None or type(parts[1]) is str)
        or type(parts[2]) is not int
    ):
        raise CorruptOffsetsRecord(f"offset value {parts!r} is not [offset, metadata, time]")
    return OffsetEntry(parts[0], parts[1], parts[2])


def decode_count(value: bytes | None) -> int:
    """The entry count of a snapshot marker."""
    try:
        parts = msgpack.unpackb(value) if value is not None else None
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptOffsetsRecord(f"snapshot marker does not decode: {exc}") from exc
    if type(parts) is not list or len(parts) != 1 or type(parts[0]) is not int:
        raise CorruptOffsetsRecord(f"snapshot marker value {parts!r} is not [count]")
    return parts[0]
