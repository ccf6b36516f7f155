"""The client matrix on a Kafka listener with TLS and SASL/SCRAM-SHA-256.

The broker runs from a configuration file as an operator writes it
(docs/operations.md, "Security"): a users file with the admin (a super user)
and alice, a native SCRAM listener on loopback (the ACLs are granted through
it: ACLs are one set for both protocols) and a Kafka listener with TLS and
SCRAM; certificates from a throwaway trustme CA. Every client, as the admin,
creates a topic, produces, reads it back and deletes it; as alice, who may
describe and read that topic but not write it, reads it and is refused a
produce with the client's own authorization error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from harness import BrokerProcess
from kafka_matrix import (
    CLIENTS,
    Client,
    ScenarioRun,
    as_consumed,
    expected_offsets,
    make_plan,
    start_kafka_broker,
    stop,
)

from tailrace.broker.security.users import add_user
from tailrace.client import Acl, Admin, SecurityConfig

ADMIN = {"username": "admin", "password": "admin-secret"}
ALICE = {"username": "alice", "password": "alice-secret"}
STEPS = ["create", "produce", "read", "user", "delete"]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Path]]:
    tmp = tmp_path_factory.mktemp("kafka-secure")
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    pem = tmp / "broker.pem"  # key and certificate chain in one file
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    users = tmp / "users.json"
    for user in (ADMIN, ALICE):
        add_user(users, user["username"], user["password"])
    config = tmp / "broker.toml"
    config.write_text(
        f"""
[[listeners]]
name = "native"
address = "127.0.0.1:0"
authentication = "sasl"
sasl_mechanisms = ["SCRAM-SHA-256"]

[[listeners]]
name = "kafka"
protocol = "kafka"
address = "127.0.0.1:0"
security = "tls"
authentication = "sasl"
sasl_mechanisms = ["SCRAM-SHA-256"]
tls_cert_file = "{pem}"
tls_key_file = "{pem}"

[security]
users_file = "{users}"
super_users = "User:admin"
"""
    )
    proc = start_kafka_broker(tmp / "data", "--config", str(config))
    try:
        yield proc, ca_file
    finally:
        stop(proc)


def grant_alice(broker: BrokerProcess, topic: str, group: str) -> None:
    """describe and read on the topic (and the group her assign() consumer
    names); no write."""
    security = SecurityConfig(sasl_mechanism="SCRAM-SHA-256", **ADMIN)
    with Admin(broker.address, security=security) as admin:
        admin.create_acls(
            [
                Acl("User:alice", operation, resource, name)
                for operation in ("describe", "read")
                for resource, name in (("topic", topic), ("group", group))
            ]
        )


#: every client of the matrix: librdkafka 2.0.2 (confluent-kafka 2.0,
#: Debian's kcat) turns SASL on only when SaslHandshake v0 is advertised,
#: which the Kafka listener serves (docs/kafka.md)
SASL_CLIENTS = CLIENTS


@pytest.fixture(scope="module")
def secure_runs(secure_broker: tuple[BrokerProcess, Path]) -> Iterator[dict[str, ScenarioRun]]:
    broker, ca_file = secure_broker
    security = {"mechanism": "SCRAM-SHA-256", "cafile": str(ca_file), **ADMIN}
    runs = {}
    for client in SASL_CLIENTS:
        topic = f"secure-{client.name.replace('.', '_')}"
        plan = make_plan(
            client,
            broker.kafka_address(),
            topic,
            STEPS,
            per_codec=4,
            codecs=["none", "gzip"],
            security=security,
            user=ALICE,
        )
        grant_alice(broker, topic, plan["group"] + "-assign")
        runs[client.name] = ScenarioRun(client, plan).start()
    try:
        yield runs
    finally:
        for run in runs.values():
            run.wait()


@pytest.fixture(params=SASL_CLIENTS, ids=[c.name for c in SASL_CLIENTS])
def run(request: pytest.FixtureRequest, secure_runs: dict[str, ScenarioRun]) -> ScenarioRun:
    client: Client = request.param
    return secure_runs[client.name]


def produced(plan: dict[str, Any]) -> list[dict[str, Any]]:
    records = plan["records"]
    return sorted(
        as_consumed(records, expected_offsets(records)),
        key=lambda r: (r["partition"], r["offset"]),
    )


def by_position(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["partition"], r["offset"]))


def test_scram_over_tls_create_produce_read_delete(run: ScenarioRun) -> None:
    assert run.step("create") == {"partitions": 3}
    records = run.plan["records"]
    assert run.step("produce")["deliveries"] == [
        [r["partition"], o] for r, o in zip(records, expected_offsets(records), strict=True)
    ]
    assert by_position(run.step("read")["records"]) == produced(run.plan)
    assert run.step("delete") == {"listed_after": False}


def test_acl_refusal_is_the_clients_own_authorization_error(run: ScenarioRun) -> None:
    got = run.step("user")
    # alice may read ...
    assert by_position(got["records"]) == produced(run.plan)
    # ... but not write: refused with the client's own error
    error = got["produce_error"]
    assert error is not None, "alice's produce was accepted without a write ACL"
    assert error["name"] == run.client.authorization_error, error


def kcat_secure(
    broker: BrokerProcess, ca_file: Path, user: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Debian's kcat (librdkafka 2.0.2) with SCRAM-SHA-256 over TLS."""
    path = shutil.which("kcat")
    assert path is not None, "kcat is not installed: run `make debian-tools`"
    return subprocess.run(
        [
            path,
            "-b",
            broker.kafka_address(),
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-256",
            "-X",
            f"sasl.username={user['username']}",
            "-X",
            f"sasl.password={user['password']}",
            "-X",
            f"ssl.ca.location={ca_file}",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kcat_scram_over_tls_lists_produces_and_consumes(
    secure_broker: tuple[BrokerProcess, Path],
) -> None:
    broker, ca_file = secure_broker
    topic = "secure-kcat"
    security = SecurityConfig(sasl_mechanism="SCRAM-SHA-256", **ADMIN)
    with Admin(broker.address, security=security) as admin:
        admin.create_topic(topic, partitions=1)
    listed = kcat_secure(broker, ca_file, ADMIN, "-L", "-J", "-t", topic)
    assert listed.returncode == 0, listed.stderr
    assert [t["topic"] for t in json.loads(listed.stdout)["topics"]] == [topic]
    produced = kcat_secure(broker, ca_file, ADMIN, "-P", "-t", topic, "-K:", stdin="k:v1\nk:v2\n")
    assert produced.returncode == 0, produced.stderr
    got = kcat_secure(
        broker, ca_file, ADMIN, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k=%s\\n"
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ["k=v1", "k=v2"]
    # a wrong password: kcat fails with librdkafka's authentication error
    wrong = kcat_secure(broker, ca_file, {**ADMIN, "password": "wrong"}, "-L", "-m", "10")
    assert wrong.returncode != 0
    assert "Authentication" in wrong.stderr or "authentication" in wrong.stderr, wrong.stderr
