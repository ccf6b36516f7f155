"""The gateway's JSON mapping, without a server: base64, int64 strings and
omitted zero fields."""

from __future__ import annotations

from tailrace.broker.etcd.codec import (
    Compare,
    Op,
    parse_range,
    parse_txn,
    parse_watch_reply,
    prefix_end,
    range_body,
    txn_body,
)


def test_prefix_end_adds_one_to_the_last_byte_below_0xff() -> None:
    assert prefix_end(b"/t/") == b"/t0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def test_an_empty_range_has_only_a_header() -> None:
    result = parse_range({"header": {"revision": "7"}})
    assert (result.revision, result.kvs, result.count) == (7, (), 0)


def test_a_failed_txn_has_no_succeeded_field() -> None:
    kv_json = {
        "key": "YQ==",
        "value": "MQ==",
        "create_revision": "3",
        "mod_revision": "8",
        "version": "2",
    }
    reply = {
        "header": {"revision": "9"},
        "responses": [{"response_range": {"header": {}, "kvs": [kv_json], "count": "1"}}],
    }
    result = parse_txn(reply)
    assert not result.succeeded
    assert result.revision == 9
    (rng,) = result.ranges
    assert rng is not None
    kv = rng.kvs[0]
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (
        b"a", b"1", 3, 8, 2, 0
    )  # fmt: skip


def test_txn_body_spells_compare_targets_as_the_gateway_wants() -> None:
    body = txn_body(
        [Compare.absent(b"k"), Compare.mod_revision(b"m", 12), Compare.value_equals(b"v", b"x")],
        [Op.put(b"k", b"v", lease=5)],
        [Op.get(b"k")],
    )
    assert body["compare"] == [
        {"key": "aw==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
        {"key": "bQ==", "target": "MOD", "result": "EQUAL", "mod_revision": "12"},
        {"key": "dg==", "target": "VALUE", "result": "EQUAL", "value": "eA=="},
    ]
    assert body["success"] == [{"request_put": {"key": "aw==", "value": "dg==", "lease": "5"}}]
    assert body["failure"] == [{"request_range": {"key": "aw=="}}]


def test_range_body_for_a_prefix() -> None:
    assert range_body(b"/a", prefix=True, revision=4) == {
        "key": "L2E=",
        "range_end": "L2I=",
        "revision": "4",
    }


def test_watch_replies_events_cancellation_and_stream_errors() -> None:
    put = {"key": "YQ==", "create_revision": "4", "mod_revision": "4", "version": "1"}
    events = [{"kv": put}, {"type": "DELETE", "kv": {"key": "Yg==", "mod_revision": "4"}}]
    reply = parse_watch_reply({"result": {"header": {"revision": "4"}, "events": events}})
    assert [(e.type, e.kv.key) for e in reply.events] == [("PUT", b"a"), ("DELETE", b"b")]
    cancelled = parse_watch_reply(
        {"result": {"header": {}, "canceled": True, "compact_revision": "4"}}
    )
    assert cancelled.canceled
    assert cancelled.compact_revision == 4
    broken = parse_watch_reply({"error": {"grpc_code": 14, "message": "etcdserver: no leader"}})
    assert broken.error == "etcdserver: no leader"
