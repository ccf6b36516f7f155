"""SASL on a Kafka listener: the same users file, mechanisms, gate and audit
as native listeners, answered in Kafka's messages; real clients
(kafka-python 3 with SCRAM-SHA-256, aiokafka with PLAIN on loopback) and
a raw exchange for the refusals."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from harness import ThreadedBroker
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.protocol.metadata import MetadataRequest
from kafka_samples import RawKafkaClient, request

from tailrace.broker.config import load_config
from tailrace.broker.security.users import add_user
from tailrace.client.security.scram import ScramClient

ADMIN = ("admin", "admin-secret")


class SaslKafkaBroker:
    """A broker whose Kafka listener requires SASL (a users file with the
    admin super user), and a plain Kafka listener beside it."""

    def __init__(self, tmp_path: Path) -> None:
        users = tmp_path / "users.json"
        add_user(users, *ADMIN, iterations=4096)
        config = tmp_path / "broker.toml"
        config.write_text(
            '[[listeners]]\nname = "native"\naddress = "127.0.0.1:0"\n'
            '[[listeners]]\nname = "kafka-sasl"\naddress = "127.0.0.1:0"\n'
            'protocol = "kafka"\nauthentication = "sasl"\n'
            '[[listeners]]\nname = "kafka-plain"\naddress = "127.0.0.1:0"\n'
            'protocol = "kafka"\n'
            f'[security]\nusers_file = "{users}"\nsuper_users = "User:{ADMIN[0]}"\n'
            "auth_failure_delay_ms = 0\n"
        )
        self.threaded = ThreadedBroker(
            tmp_path / "data",
            config=load_config(str(config), env={}, flags={"data_dir": str(tmp_path / "data")}),
        )
        bound = {b.name: b.address for b in self.threaded.broker.listeners}
        self.sasl_address = bound["kafka-sasl"]
        self.plain_address = bound["kafka-plain"]

    def stop(self) -> None:
        self.threaded.stop()


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[SaslKafkaBroker]:
    b = SaslKafkaBroker(tmp_path)
    try:
        yield b
    finally:
        b.stop()


def test_kafka_python_authenticates_with_scram(sasl_broker):
    admin = KafkaAdminClient(
        bootstrap_servers=sasl_broker.sasl_address,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=ADMIN[0],
        sasl_plain_password=ADMIN[1],
    )
    try:
        admin.create_topics([NewTopic("scrammed", 2, 1)])
        assert "scrammed" in admin.list_topics()
    finally:
        admin.close()


def test_aiokafka_authenticates_with_plain_on_loopback(sasl_broker):
    async def scenario() -> list[str]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=sasl_broker.sasl_address,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username=ADMIN[0],
            sasl_plain_password=ADMIN[1],
        )
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    assert isinstance(asyncio.run(scenario()), list)


def _handshake(c: RawKafkaClient, mechanism: str):
    return c.call(request(17, 1, mechanism=mechanism), 1)


def test_a_wrong_scram_proof_is_refused_and_closes(sasl_broker):
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        hs = _handshake(c, "SCRAM-SHA-256")
        assert hs.error_code == 0
        assert set(hs.mechanisms) == {"SCRAM-SHA-256", "PLAIN"}
        scram = ScramClient(ADMIN[0], "not-the-password")
        first = c.call(request(36, 1, auth_bytes=scram.client_first()), 1)
        assert first.error_code == 0
        final = scram.receive_server_first(first.auth_bytes)
        refused = c.call(request(36, 1, auth_bytes=final), 1)
        assert refused.error_code == 58  # SASL_AUTHENTICATION_FAILED
        assert c.closed_by_peer()


def test_the_right_scram_exchange_then_requests_work(sasl_broker):
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        _handshake(c, "SCRAM-SHA-256")
        scram = ScramClient(*ADMIN)
        first = c.call(request(36, 0, auth_bytes=scram.client_first()), 0)
        done = c.call(request(36, 0, auth_bytes=scram.receive_server_first(first.auth_bytes)), 0)
        assert done.error_code == 0
        scram.receive_server_final(done.auth_bytes)  # the broker knows the credential
        meta = c.call(request(3, 8, topics=None), 8)
        assert meta.brokers[0].port == int(sasl_broker.sasl_address.rsplit(":", 1)[1])


def test_requests_before_authentication_are_refused(sasl_broker):
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        versions = c.call(request(18, 3), 3)  # ApiVersions is allowed
        assert versions.error_code == 0
        pid = c.call(request(22, 4), 4)
        assert pid.error_code == 34  # ILLEGAL_SASL_STATE, then the close
        assert c.closed_by_peer()
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        topic = MetadataRequest.MetadataRequestTopic(name="x")
        c.send(request(3, 8, topics=[topic]), 8)  # no top-level error code: closed
        assert c.closed_by_peer()
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        assert _handshake(c, "GSSAPI").error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        assert c.closed_by_peer()


def test_a_listener_without_sasl_says_so(sasl_broker):
    with RawKafkaClient(sasl_broker.plain_address) as c:
        hs = _handshake(c, "SCRAM-SHA-256")
        assert (hs.error_code, list(hs.mechanisms)) == (33, [])
        auth = c.call(request(36, 1, auth_bytes=b"x"), 1)
        assert auth.error_code == 34


# --- SaslHandshake v0: the tokens as bare size-prefixed frames ----------------------


def _token(c: RawKafkaClient, data: bytes) -> bytes:
    c.sock.sendall(struct.pack(">i", len(data)) + data)
    return c.receive_frame()


def test_handshake_v0_then_bare_scram_tokens_then_requests_work(sasl_broker):
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        hs = c.call(request(17, 0, mechanism="SCRAM-SHA-256"), 0)
        assert hs.error_code == 0
        scram = ScramClient(*ADMIN)
        server_first = _token(c, scram.client_first())
        server_final = _token(c, scram.receive_server_first(server_first))
        scram.receive_server_final(server_final)  # the broker knows the credential
        meta = c.call(request(3, 8, topics=None), 8)  # framed requests again
        assert meta.brokers[0].port == int(sasl_broker.sasl_address.rsplit(":", 1)[1])


def test_handshake_v0_then_a_bare_plain_token_is_answered_empty(sasl_broker):
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        assert c.call(request(17, 0, mechanism="PLAIN"), 0).error_code == 0
        token = b"\0" + ADMIN[0].encode() + b"\0" + ADMIN[1].encode()
        assert _token(c, token) == b""  # Kafka's answer to PLAIN: an empty token
        assert c.call(request(18, 3), 3).error_code == 0


def test_handshake_v0_a_wrong_password_closes_without_an_answer(sasl_broker):
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        assert c.call(request(17, 0, mechanism="SCRAM-SHA-256"), 0).error_code == 0
        scram = ScramClient(ADMIN[0], "not-the-password")
        final = scram.receive_server_first(_token(c, scram.client_first()))
        c.sock.sendall(struct.pack(">i", len(final)) + final)
        assert c.closed_by_peer()  # this framing has no error frame
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        assert c.call(request(17, 0, mechanism="PLAIN"), 0).error_code == 0
        c.sock.sendall(struct.pack(">i", 3) + b"\0x\0")
        assert c.closed_by_peer()


def test_handshake_v0_tokens_keep_the_pre_authentication_frame_limit(sasl_broker):
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        assert c.call(request(17, 0, mechanism="SCRAM-SHA-256"), 0).error_code == 0
        # a length above security.max_frame_bytes_before_auth (64 KiB): closed
        # on the length alone, nothing more is sent
        c.sock.sendall(struct.pack(">i", 64 * 1024 + 1))
        assert c.closed_by_peer()
    with RawKafkaClient(sasl_broker.sasl_address) as c:
        # a mechanism not offered: answered in v0, no bare framing, closed
        hs = c.call(request(17, 0, mechanism="GSSAPI"), 0)
        assert hs.error_code == 33
        assert c.closed_by_peer()
