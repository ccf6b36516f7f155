"""The users file: round trips, file mode, atomic writes and strict reading."""

from __future__ import annotations

import io
import json
import os
import stat
import threading

import pytest

from tailrace.broker.security import files, users
from tailrace.client.errors import InvalidConfigError, InvalidRequestError
from tailrace.client.security.plain import authenticate_plain, build_plain_message
from tailrace.client.security.scram import ScramClient, ScramServer


def test_add_list_remove_round_trip(tmp_path):
    path = tmp_path / "users.json"
    assert users.list_users(path) == []
    users.add_user(path, "bob", "pw-bob")
    users.add_user(path, "alice", "pw-alice", iterations=8192)
    assert users.list_users(path) == ["alice", "bob"]
    loaded = users.load(path)
    assert loaded.names() == ["alice", "bob"]
    assert loaded("alice").iterations == 8192
    assert loaded("carol") is None
    users.remove_user(path, "bob")
    assert users.list_users(path) == ["alice"]
    with pytest.raises(InvalidRequestError, match="no user"):
        users.remove_user(path, "bob")


def test_file_holds_credentials_not_passwords(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "correct horse")
    text = path.read_text()
    assert "correct horse" not in text
    entry = json.loads(text)["users"]["alice"]["scram-sha-256"]
    assert set(entry) == {"salt", "iterations", "stored_key", "server_key"}


def test_loaded_users_authenticate_scram_and_plain(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "pw")
    lookup = users.load(path)
    client = ScramClient("alice", "pw")
    server = ScramServer(lookup)
    client_final = client.receive_server_first(server.receive_client_first(client.client_first()))
    client.receive_server_final(server.receive_client_final(client_final))
    assert server.username == "alice"
    assert authenticate_plain(build_plain_message("alice", "pw"), lookup) == "alice"


def test_file_mode_is_0600_and_no_temp_files_remain(tmp_path):
    path = tmp_path / "users.json"
    old_umask = os.umask(0)
    try:
        users.add_user(path, "alice", "pw")
        users.add_user(path, "bob", "pw")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["users.json"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "pw")
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(5, "injected EIO")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="injected"):
        users.add_user(path, "bob", "pw")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["users.json"]


def test_existing_user_needs_replace(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "old")
    with pytest.raises(InvalidRequestError, match="already exists"):
        users.add_user(path, "alice", "new")
    assert users.load(path)("alice").verify_password("old")
    users.add_user(path, "alice", "new", replace=True)
    assert users.load(path)("alice").verify_password("new")


@pytest.mark.parametrize(
    ("name", "password", "iterations"),
    [
        ("", "pw", 4096),
        ("a\nb", "pw", 4096),
        ("tab\tname", "pw", 4096),
        (" alice", "pw", 4096),
        ("x" * 256, "pw", 4096),
        ("é" * 128, "pw", 4096),  # 256 bytes
        ("ANONYMOUS", "pw", 4096),
        ("alice", "", 4096),
        ("alice", "p" * 513, 4096),
        ("alice", "bell\x07", 4096),
        ("alice", "pw", 4095),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(tmp_path, name, password, iterations):
    path = tmp_path / "users.json"
    users.add_user(path, "bob", "pw")
    before = path.read_bytes()
    with pytest.raises(InvalidRequestError):
        users.add_user(path, name, password, iterations=iterations)
    assert path.read_bytes() == before


def test_unicode_and_punctuation_names_are_fine(tmp_path):
    path = tmp_path / "users.json"
    for name in ("zoë", "a,b=c", "CN=svc", "x" * 255):
        users.add_user(path, name, "pw")
    assert len(users.load(path)) == 4


def _valid_doc(tmp_path) -> dict:
    path = tmp_path / "seed.json"
    users.add_user(path, "alice", "pw")
    return json.loads(path.read_text())


def _corruptions(doc: dict) -> list[bytes]:
    entry = doc["users"]["alice"]["scram-sha-256"]

    def with_entry(**changes) -> bytes:
        return json.dumps(
            {"version": 1, "users": {"alice": {"scram-sha-256": {**entry, **changes}}}}
        ).encode()

    return [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000,
        b"[]",
        json.dumps({"version": 2, "users": {}}).encode(),
        json.dumps({"version": True, "users": {}}).encode(),
        json.dumps({"version": 1}).encode(),
        json.dumps({"version": 1, "users": {}, "extra": 1}).encode(),
        json.dumps({"version": 1, "users": []}).encode(),
        json.dumps({"version": 1, "users": {"alice": {}}}).encode(),
        json.dumps({"version": 1, "users": {"bad\nname": doc["users"]["alice"]}}).encode(),
        b'{"version": 1, "version": 1, "users": {}}',
        with_entry(iterations=100),
        with_entry(iterations="4096"),
        with_entry(salt="!!"),
        with_entry(stored_key="AAAA"),
        with_entry(server_key=None),
        with_entry(extra="x"),
    ]


def test_garbage_files_are_refused(tmp_path):
    path = tmp_path / "users.json"
    for data in _corruptions(_valid_doc(tmp_path)):
        path.write_bytes(data)
        with pytest.raises(InvalidConfigError):
            users.load(path)
        # A broken file is never overwritten by an update either.
        with pytest.raises(InvalidConfigError):
            users.add_user(path, "bob", "pw")
        assert path.read_bytes() == data


def test_oversize_and_odd_files_are_refused(tmp_path):
    path = tmp_path / "users.json"
    with path.open("wb") as f:
        f.truncate(users.MAX_FILE_SIZE + 1)
    with pytest.raises(InvalidConfigError, match="limit"):
        users.load(path)
    with pytest.raises(InvalidConfigError, match="does not exist"):
        users.load(tmp_path / "missing.json")
    with pytest.raises(InvalidConfigError, match="regular file"):
        users.load(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidConfigError, match="regular file"):  # and does not hang
        users.load(fifo)


def test_readable_by_others_is_warned_about(tmp_path, caplog):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "pw")
    path.chmod(0o644)
    users.load(path)
    assert "readable by others" in caplog.text


def test_reload_if_changed_picks_up_new_users(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "pw")
    snapshot = users.load(path)
    assert users.reload_if_changed(path, snapshot) is snapshot
    users.add_user(path, "bob", "pw")
    fresh = users.reload_if_changed(path, snapshot)
    assert "bob" in fresh
    assert "bob" not in snapshot


def test_read_password_from_a_stream():
    assert users.read_password(io.StringIO("s3cret\nrest\n")) == "s3cret"
    assert users.read_password(io.StringIO("no newline")) == "no newline"
    for bad in ("", "\n", "p" * 600 + "\n"):
        with pytest.raises(InvalidRequestError):
            users.read_password(io.StringIO(bad))


def test_concurrent_adds_lose_no_user(tmp_path):
    path = tmp_path / "users.json"
    names = [f"user{i}" for i in range(8)]
    threads = [threading.Thread(target=users.add_user, args=(path, n, "pw")) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert users.list_users(path) == names
