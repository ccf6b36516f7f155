"""ACLs: matching rules, deny by default, super users, and the durable store."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tailrace.broker.security import files
from tailrace.broker.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclFilter,
    AclStore,
    Authorizer,
    Operation,
    PatternType,
    ResourceType,
)
from tailrace.client.errors import InvalidConfigError, InvalidRequestError, PolicyViolationError

ALICE = "User:alice"
BOB = "User:bob"


def test_deny_by_default():
    authorizer = Authorizer()
    for op in Operation:
        assert not authorizer.authorize(ALICE, op, "topic", "orders")
    assert not Authorizer([AclBinding(BOB, "read", "topic", "orders")]).authorize(
        ALICE, "read", "topic", "orders"
    )


def test_literal_binding_matches_exactly():
    authorizer = Authorizer([AclBinding(ALICE, "read", "topic", "orders")])
    assert authorizer.authorize(ALICE, "read", "topic", "orders")
    assert not authorizer.authorize(ALICE, "write", "topic", "orders")
    assert not authorizer.authorize(ALICE, "read", "topic", "orders2")
    assert not authorizer.authorize(ALICE, "read", "topic", "order")
    assert not authorizer.authorize(ALICE, "read", "group", "orders")


def test_prefixed_binding_matches_names_starting_with_it():
    authorizer = Authorizer(
        [
            AclBinding(ALICE, "write", "topic", "sales.", PatternType.PREFIXED),
            AclBinding(ALICE, "write", "topic", "sales.eu.", "prefixed"),
            AclBinding(ALICE, "read", "group", "app-", "prefixed"),
        ]
    )
    assert authorizer.authorize(ALICE, "write", "topic", "sales.")
    assert authorizer.authorize(ALICE, "write", "topic", "sales.orders")
    assert authorizer.authorize(ALICE, "write", "topic", "sales.eu.orders")
    assert not authorizer.authorize(ALICE, "write", "topic", "sales")
    assert not authorizer.authorize(ALICE, "write", "topic", "xsales.orders")
    assert authorizer.authorize(ALICE, "read", "group", "app-1")
    assert not authorizer.authorize(ALICE, "read", "topic", "app-1")


def test_wildcards_for_principal_and_resource():
    authorizer = Authorizer(
        [
            AclBinding("*", "read", "topic", "public"),
            AclBinding(BOB, "describe", "topic", "*"),
        ]
    )
    assert authorizer.authorize(ALICE, "read", "topic", "public")
    assert authorizer.authorize("User:ANONYMOUS", "read", "topic", "public")
    assert authorizer.authorize(BOB, "describe", "topic", "anything")
    assert not authorizer.authorize(ALICE, "describe", "topic", "anything")
    assert not authorizer.authorize(BOB, "read", "topic", "anything")


def test_describe_is_implied_by_using_operations():
    for op in ("read", "write", "alter", "delete"):
        authorizer = Authorizer([AclBinding(ALICE, op, "topic", "orders")])
        assert authorizer.authorize(ALICE, "describe", "topic", "orders")
        assert not authorizer.authorize(ALICE, "describe", "topic", "other")
    authorizer = Authorizer([AclBinding(ALICE, "create", "topic", "orders")])
    assert not authorizer.authorize(ALICE, "describe", "topic", "orders")
    # ...and not the other way round.
    authorizer = Authorizer([AclBinding(ALICE, "describe", "topic", "orders")])
    assert not authorizer.authorize(ALICE, "read", "topic", "orders")


def test_super_users_bypass_and_are_validated():
    authorizer = Authorizer(super_users=["User:admin"])
    assert authorizer.authorize("User:admin", "delete", "cluster", CLUSTER_NAME)
    assert not authorizer.authorize(ALICE, "delete", "cluster", CLUSTER_NAME)
    for bad in (["*"], ["admin"], ["User:"], ["User:a\nb"]):
        with pytest.raises(InvalidConfigError):
            Authorizer(super_users=bad)


def test_unknown_operation_is_an_error():
    with pytest.raises(InvalidRequestError):
        Authorizer().authorize(ALICE, "own", "topic", "orders")


@pytest.mark.parametrize(
    "fields",
    [
        ("alice", "read", "topic", "orders", "literal"),
        ("Group:x", "read", "topic", "orders", "literal"),
        ("User:", "read", "topic", "orders", "literal"),
        ("User:a\x00", "read", "topic", "orders", "literal"),
        (ALICE, "own", "topic", "orders", "literal"),
        (ALICE, "read", "table", "orders", "literal"),
        (ALICE, "read", "topic", "orders", "glob"),
        (ALICE, "read", "topic", "", "literal"),
        (ALICE, "read", "topic", "x" * 256, "literal"),
        (ALICE, "read", "topic", "bad\tname", "literal"),
        (ALICE, "read", "topic", "*", "prefixed"),
        (ALICE, "create", "cluster", "other", "literal"),
        (ALICE, "create", "cluster", CLUSTER_NAME, "prefixed"),
        (ALICE, "read", "topic", 42, "literal"),
    ],
)
def test_invalid_bindings_are_refused(fields):
    with pytest.raises(InvalidRequestError):
        AclBinding(*fields)


def test_prefix_lookup_over_many_bindings():
    bindings = [AclBinding(f"User:u{i}", "read", "topic", f"t{i}.", "prefixed") for i in range(500)]
    bindings += [AclBinding(f"User:u{i}", "write", "topic", f"t{i}") for i in range(500)]
    authorizer = Authorizer(bindings)
    assert authorizer.authorize("User:u7", "read", "topic", "t7.x")
    assert not authorizer.authorize("User:u7", "read", "topic", "t8.x")
    assert authorizer.authorize("User:u499", "write", "topic", "t499")
    assert not authorizer.authorize("User:u499", "write", "topic", "t49")


def test_store_changes_take_effect_at_once_and_survive_reload(tmp_path):
    path = tmp_path / "acls.json"
    store = AclStore.open(path, super_users=["User:admin"])
    assert store.bindings() == []
    assert not store.authorizer.authorize(ALICE, "read", "topic", "orders")

    grant = AclBinding(ALICE, "read", "topic", "orders")
    assert store.add([grant]) == [grant]
    assert store.authorizer.authorize(ALICE, "read", "topic", "orders")
    assert store.add([grant]) == []  # already there

    reopened = AclStore.open(path)
    assert reopened.bindings() == [grant]
    assert reopened.authorizer.authorize(ALICE, "read", "topic", "orders")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["acls.json"]

    assert store.remove(AclFilter(principal=ALICE)) == [grant]
    assert not store.authorizer.authorize(ALICE, "read", "topic", "orders")
    assert AclStore.open(path).bindings() == []


def test_filters_select_bindings(tmp_path):
    store = AclStore.open(tmp_path / "acls.json")
    a = AclBinding(ALICE, "read", "topic", "orders")
    b = AclBinding(ALICE, "write", "topic", "sales.", "prefixed")
    c = AclBinding(BOB, "read", "group", "app")
    store.add([a, b, c])
    assert store.bindings(AclFilter(principal=ALICE)) == sorted([a, b])
    assert store.bindings(AclFilter(operation="read")) == sorted([a, c])
    assert store.bindings(AclFilter(resource_type=ResourceType.GROUP)) == [c]
    assert store.bindings(AclFilter(pattern_type="prefixed")) == [b]
    assert store.bindings(AclFilter(resource_name="orders", operation="write")) == []
    assert store.remove(AclFilter(resource_type="topic", operation="read")) == [a]
    assert store.bindings() == sorted([b, c])
    assert store.remove(AclFilter()) == sorted([b, c])
    with pytest.raises(InvalidRequestError):
        AclFilter(operation="own")


def test_binding_cap_is_enforced_and_changes_nothing(tmp_path):
    store = AclStore.open(tmp_path / "acls.json", max_bindings=2)
    store.add([AclBinding(ALICE, "read", "topic", "a"), AclBinding(ALICE, "read", "topic", "b")])
    before = (tmp_path / "acls.json").read_bytes()
    with pytest.raises(PolicyViolationError):
        store.add([AclBinding(ALICE, "read", "topic", "c")])
    assert (tmp_path / "acls.json").read_bytes() == before
    assert len(store.bindings()) == 2
    with pytest.raises(InvalidConfigError, match="more than 1"):
        AclStore.open(tmp_path / "acls.json", max_bindings=1)
    with pytest.raises(InvalidRequestError):
        store.add(["not a binding"])


def test_failed_write_leaves_acls_unchanged(tmp_path, monkeypatch):
    store = AclStore.open(tmp_path / "acls.json")
    grant = AclBinding(ALICE, "read", "topic", "orders")

    def failing_replace(*args, **kwargs):
        raise OSError(28, "injected ENOSPC")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="ENOSPC"):
        store.add([grant])
    monkeypatch.undo()
    assert store.bindings() == []
    assert not store.authorizer.authorize(ALICE, "read", "topic", "orders")
    assert os.listdir(tmp_path) == []


def test_corrupt_acl_files_are_refused(tmp_path):
    path = tmp_path / "acls.json"
    good = {
        "principal": ALICE,
        "operation": "read",
        "resource_type": "topic",
        "resource_name": "orders",
        "pattern_type": "literal",
    }
    for doc in (
        b"",
        b"{",
        b"[" * 100_000,
        json.dumps({"version": 1}).encode(),
        json.dumps({"version": 9, "bindings": []}).encode(),
        json.dumps({"version": 1, "bindings": {}}).encode(),
        json.dumps({"version": 1, "bindings": [{**good, "operation": "own"}]}).encode(),
        json.dumps({"version": 1, "bindings": [{**good, "extra": 1}]}).encode(),
        json.dumps({"version": 1, "bindings": [["User:alice"]]}).encode(),
        b'{"version": 1, "bindings": [], "bindings": []}',
    ):
        path.write_bytes(doc)
        with pytest.raises(InvalidConfigError):
            AclStore.open(path)
    path.write_bytes(json.dumps({"version": 1, "bindings": [good]}).encode())
    assert AclStore.open(path).bindings() == [AclBinding(**good)]
