"""etcd's v3 gRPC-JSON gateway, sans I/O: request bodies and parsed replies.

The gateway's JSON is protobuf's JSON mapping: keys and values are base64,
int64 fields are strings, and a field at its zero value is left out (a
failed txn has no ``succeeded``, an empty range no ``kvs``, a lease that is
gone answers a keepalive with no ``TTL``). Everything here is pure: the
client (client.py) sends what these functions build and hands back what they
parse, so the mapping is tested without a server.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Compare",
    "Event",
    "KeyValue",
    "Op",
    "RangeResult",
    "TxnResult",
    "WatchReply",
    "b64",
    "delete_body",
    "parse_kv",
    "parse_range",
    "parse_txn",
    "parse_watch_reply",
    "prefix_end",
    "put_body",
    "range_body",
    "txn_body",
    "unb64",
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes ``[prefix, end)`` every key starting with
    ``prefix`` (etcd's rule: add one to the last byte below 0xff)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


def _int(obj: Mapping[str, Any], key: str) -> int:
    return int(obj.get(key, 0))


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


def parse_kv(obj: Mapping[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(obj.get("key")),
        value=unb64(obj.get("value")),
        create_revision=_int(obj, "create_revision"),
        mod_revision=_int(obj, "mod_revision"),
        version=_int(obj, "version"),
        lease=_int(obj, "lease"),
    )


@dataclass(frozen=True, slots=True)
class RangeResult:
    #: the store's revision when the range was read
    revision: int
    kvs: tuple[KeyValue, ...]
    count: int
    more: bool = False


def header_revision(reply: Mapping[str, Any]) -> int:
    return _int(reply.get("header") or {}, "revision")


def parse_range(reply: Mapping[str, Any]) -> RangeResult:
    kvs = tuple(parse_kv(kv) for kv in reply.get("kvs", ()))
    return RangeResult(
        header_revision(reply), kvs, _int(reply, "count"), bool(reply.get("more", False))
    )


def range_body(
    key: bytes,
    *,
    prefix: bool = False,
    end: bytes | None = None,
    revision: int = 0,
    limit: int = 0,
    keys_only: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = b64(prefix_end(key))
    elif end is not None:
        body["range_end"] = b64(end)
    if revision:
        body["revision"] = str(revision)
    if limit:
        body["limit"] = str(limit)
    if keys_only:
        body["keys_only"] = True
    return body


def put_body(key: bytes, value: bytes, *, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    return body


def delete_body(key: bytes, *, prefix: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = b64(prefix_end(key))
    return body


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a txn: ``target`` of ``key`` compared with ``value``.

    Use the constructors: :meth:`mod_revision` (zkVersion-style CAS: the key
    was last written at exactly this revision; 0 means absent),
    :meth:`create_revision` (the key is the one created at this revision; 0
    means absent: create-if-absent), :meth:`value_equals`.
    """

    key: bytes
    target: Literal["MOD", "CREATE", "VALUE", "VERSION"]
    value: int | bytes
    result: Literal["EQUAL", "NOT_EQUAL", "GREATER", "LESS"] = "EQUAL"

    @classmethod
    def mod_revision(cls, key: bytes, revision: int) -> Compare:
        return cls(key, "MOD", revision)

    @classmethod
    def create_revision(cls, key: bytes, revision: int) -> Compare:
        return cls(key, "CREATE", revision)

    @classmethod
    def absent(cls, key: bytes) -> Compare:
        return cls(key, "CREATE", 0)

    @classmethod
    def value_equals(cls, key: bytes, value: bytes) -> Compare:
        return cls(key, "VALUE", value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": b64(self.key), "target": self.target, "result": self.result}
        field_name = {
            "MOD": "mod_revision",
            "CREATE": "create_revision",
            "VERSION": "version",
            "VALUE": "value",
        }[self.target]
        if isinstance(self.value, bytes):
            out[field_name] = b64(self.value)
        else:
            out[field_name] = str(self.value)
        return out


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a txn branch: :meth:`put`, :meth:`delete` or :meth:`get`."""

    kind: Literal["put", "delete", "range"]
    body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def put(cls, key: bytes, value: bytes, *, lease: int = 0) -> Op:
        return cls("put", put_body(key, value, lease=lease))

    @classmethod
    def delete(cls, key: bytes, *, prefix: bool = False) -> Op:
        return cls("delete", delete_body(key, prefix=prefix))

    @classmethod
    def get(cls, key: bytes, *, prefix: bool = False) -> Op:
        return cls("range", range_body(key, prefix=prefix))

    def to_json(self) -> dict[str, Any]:
        name = {"put": "request_put", "delete": "request_delete_range", "range": "request_range"}
        return {name[self.kind]: self.body}


def txn_body(
    compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
) -> dict[str, Any]:
    return {
        "compare": [c.to_json() for c in compare],
        "success": [o.to_json() for o in success],
        "failure": [o.to_json() for o in failure],
    }


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    #: the range results of the branch that ran, in order (None for puts and deletes)
    ranges: tuple[RangeResult | None, ...]


def parse_txn(reply: Mapping[str, Any]) -> TxnResult:
    ranges: list[RangeResult | None] = []
    for resp in reply.get("responses", ()):
        inner = resp.get("response_range")
        ranges.append(parse_range(inner) if inner is not None else None)
    return TxnResult(bool(reply.get("succeeded", False)), header_revision(reply), tuple(ranges))


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchReply:
    """One line of a watch stream."""

    revision: int
    events: tuple[Event, ...] = ()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    #: a stream-level error (``{"error": ...}``), e.g. "etcdserver: no leader"
    error: str = ""


def parse_watch_reply(obj: Mapping[str, Any]) -> WatchReply:
    if "error" in obj and "result" not in obj:
        err = obj["error"]
        message = err.get("message", "") if isinstance(err, Mapping) else str(err)
        return WatchReply(0, error=message or "watch stream error")
    result = obj.get("result") or {}
    events = tuple(
        Event(
            "DELETE" if ev.get("type") == "DELETE" else "PUT",
            parse_kv(ev.get("kv") or {}),
            parse_kv(ev["prev_kv"]) if ev.get("prev_kv") else None,
        )
        for ev in result.get("events", ())
    )
    return WatchReply(
        header_revision(result),
        events,
        created=bool(result.get("created", False)),
        canceled=bool(result.get("canceled", False)),
        compact_revision=_int(result, "compact_revision"),
        cancel_reason=str(result.get("cancel_reason", "")),
    )
