"""``tailrace users``, ``tailrace acls`` and the security options of the
client commands, as processes against a broker process with a TLS+SASL
listener."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import trustme
from cli_helpers import cli_env, run_cli
from harness import BrokerProcess

PASSWORDS = {"admin": "admin pass", "alice": "alice pass"}


def _users(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    for name, password in PASSWORDS.items():
        r = run_cli(
            "users", "add", name, "--users-file", str(path), "--password-stdin",
            stdin=f"{password}\n".encode(),
        )  # fmt: skip
        assert r.code == 0, r.err
        assert r.out.decode() == f"added user {name} (principal User:{name})\n"
        (tmp_path / f"{name}.pass").write_text(password + "\n")
    return path


def test_users_add_list_remove(tmp_path):
    path = _users(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "admin pass" not in path.read_text()  # credentials, never the password
    r = run_cli("users", "list", "--users-file", str(path))
    assert (r.code, r.out.decode()) == (0, "admin\nalice\n")
    env = cli_env(TAILRACE_SECURITY_USERS_FILE=str(path))
    r = run_cli("users", "list", "--json", env=env)
    assert json.loads(r.out.decode()) == {"users": ["admin", "alice"]}

    r = run_cli("users", "add", "alice", "--password-stdin", stdin=b"x\n", env=env)
    assert r.code == 1
    assert r.err == "tailrace: user 'alice' already exists\n"
    r = run_cli("users", "add", "bob", env=env)  # stdin is not a terminal
    assert r.code == 2
    assert "--password-stdin" in r.err
    r = run_cli("users", "add", "bob", "--password-stdin", stdin=b"\n", env=env)
    assert (r.code, r.err) == (1, "tailrace: no password was given\n")
    r = run_cli("users", "remove", "alice", env=env)
    assert (r.code, r.out.decode()) == (0, "removed user alice\n")
    r = run_cli("users", "remove", "alice", env=env)
    assert (r.code, r.err) == (1, "tailrace: no user 'alice'\n")
    r = run_cli("users", "list")
    assert r.code == 2
    assert "TAILRACE_SECURITY_USERS_FILE" in r.err


@pytest.fixture
def secure_broker(tmp_path):
    users = _users(tmp_path)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    pem = tmp_path / "broker.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    config = tmp_path / "broker.toml"
    config.write_text(
        '[[listeners]]\nname = "local"\naddress = "127.0.0.1:0"\n'
        '[[listeners]]\nname = "external"\naddress = "127.0.0.1:0"\nsecurity = "tls"\n'
        f'authentication = "sasl"\ntls_cert_file = "{pem}"\ntls_key_file = "{pem}"\n'
        f'[security]\nusers_file = "{users}"\nsuper_users = "User:admin"\n'
        "auth_failure_delay_ms = 0\n"
    )
    broker = BrokerProcess(tmp_path / "data", "--config", str(config), listen=None).start()
    try:
        for _ in range(200):
            bound = re.findall(r"listening .*address=(\S+)", "\n".join(broker.log_lines))
            if len(bound) == 2:
                break
            time.sleep(0.05)
        yield broker, bound[1]
    finally:
        broker.kill()


def _as(tmp_path: Path, user: str, address: str) -> list[str]:
    return [
        "--bootstrap", address, "--ca-file", str(tmp_path / "ca.pem"),
        "--sasl-mechanism", "SCRAM-SHA-256", "--username", user,
        "--password-file", str(tmp_path / f"{user}.pass"),
    ]  # fmt: skip


def test_acls_and_security_options(secure_broker, tmp_path):
    _, tls = secure_broker
    admin, alice = _as(tmp_path, "admin", tls), _as(tmp_path, "alice", tls)
    r = run_cli("topics", "create", "orders", *admin)
    assert (r.code, r.out.decode()) == (0, "created topic orders (1 partition)\n"), r.err

    r = run_cli("topics", "list", *alice)
    assert r.code == 0
    assert "orders" not in r.out.decode()
    r = run_cli(
        "acls", "add", "--principal", "User:alice", "--operation", "read",
        "--operation", "describe", "--topic", "ord", "--prefixed", *admin,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.out.decode() == (
        "granted User:alice read on topic ord (prefix)\n"
        "granted User:alice describe on topic ord (prefix)\n"
    )
    r = run_cli("topics", "list", *alice)
    assert "orders" in r.out.decode()
    r = run_cli("acls", "list", "--json", *admin)
    assert json.loads(r.out.decode())["acls"] == [
        {
            "principal": "User:alice",
            "operation": op,
            "resource_type": "topic",
            "resource_name": "ord",
            "pattern_type": "prefixed",
        }
        for op in ("describe", "read")
    ]
    # alice may not manage ACLs
    r = run_cli("acls", "list", *alice)
    assert r.code == 1
    assert r.err == (
        "tailrace: User:alice may not describe the cluster's ACLs (needs describe on the cluster)\n"
    )

    r = run_cli("acls", "remove", *admin)
    assert r.code == 2
    assert "--all" in r.err
    r = run_cli("acls", "remove", "--principal", "User:alice", "--operation", "read", *admin)
    assert r.code == 0
    assert r.out.decode().endswith("removed 1 ACL\n")

    # the environment stands in for the options
    env = cli_env(
        tls,
        TAILRACE_CA_FILE=str(tmp_path / "ca.pem"),
        TAILRACE_SASL_MECHANISM="SCRAM-SHA-256",
        TAILRACE_USERNAME="alice",
        TAILRACE_PASSWORD_FILE=str(tmp_path / "alice.pass"),
    )
    r = run_cli("topics", "list", env=env)
    assert (r.code, "orders" in r.out.decode()) == (0, True), r.err


def test_refusals_say_which_layer_refused(secure_broker, tmp_path):
    _, tls = secure_broker
    (tmp_path / "wrong.pass").write_text("nope\n")
    wrong = _as(tmp_path, "alice", tls)
    wrong[wrong.index("--password-file") + 1] = str(tmp_path / "wrong.pass")
    r = run_cli("topics", "list", *wrong)
    assert r.code == 1
    assert r.err == (
        "tailrace: SASL SCRAM-SHA-256 authentication as 'alice' failed: "
        "SCRAM-SHA-256: invalid user name or password\n"
    )
    r = run_cli("topics", "list", "--bootstrap", tls, "--tls")  # a CA nobody trusts
    assert r.code == 1
    assert r.err.startswith(f"tailrace: TLS handshake with {tls} failed: the broker's certificate")
    r = run_cli("topics", "list", "--bootstrap", tls)  # plaintext on the TLS port
    assert r.code == 1
    assert "the peer speaks TLS here and this end does not" in r.err
    r = run_cli("topics", "list", "--bootstrap", tls, "--ca-file", str(tmp_path / "ca.pem"))
    assert r.code == 1
    assert "requires SASL" in r.err
    r = run_cli("topics", "list", "--bootstrap", tls, "--sasl-mechanism", "PLAIN")
    assert r.code == 2
    assert "needs --username and --password-file" in r.err


def test_bench_over_tls_and_sasl(secure_broker, tmp_path):
    _, tls = secure_broker
    r = run_cli(
        "bench", "produce", *_as(tmp_path, "admin", tls), "--records", "2000", "--json",
        timeout=120,
    )  # fmt: skip
    assert r.code == 0, r.err
    result = json.loads(r.out.decode().splitlines()[-1])
    assert (result["records"], result["errors"]) == (2000, 0)
