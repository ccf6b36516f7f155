"""TLS listeners against real clients: round trips, mutual TLS, refusals."""

from __future__ import annotations

import logging

import pytest
import trio
from sec_helpers import make_certs, raw_connection, start_broker

from tailrace.broker.metrics import definitions as metrics
from tailrace.client import Acl, AsyncAdmin, AsyncConsumer, AsyncProducer, SecurityConfig
from tailrace.client.errors import (
    BrokerUnavailableError,
    TlsHandshakeError,
    TopicAuthorizationError,
)
from tailrace.client.protocol import ApiVersionsRequest, Limits, MetadataRequest


def _copied() -> float:
    return metrics.FETCH_BYTES["copy"]._value.get()


def _sendfiled() -> float:
    return metrics.FETCH_BYTES["sendfile"]._value.get()


async def test_produce_consume_round_trip_over_tls_uses_the_copy_path(nursery, tmp_path):
    certs = make_certs(tmp_path)
    pem = str(certs.broker_pem)
    b = await start_broker(
        nursery,
        tmp_path,
        [
            {"name": "local"},
            {"name": "tls", "security": "tls", "tls_cert_file": pem, "tls_key_file": pem},
        ],
        certs=certs,
        security={"authorizer": "off"},
    )
    tls = SecurityConfig(ssl_cafile=certs.ca_file)
    async with AsyncAdmin(b.address("tls"), security=tls) as admin:
        await admin.create_topic("t", partitions=1)
    async with AsyncProducer(b.address("tls"), security=tls) as producer:
        handles = [await producer.send("t", f"v{i}".encode() * 500) for i in range(50)]
        offsets = [(await h).offset for h in handles]
    assert offsets == list(range(50))

    copied, sendfiled = _copied(), _sendfiled()
    got: list[bytes] = []
    async with AsyncConsumer(b.address("tls"), security=tls, auto_offset_reset="earliest") as c:
        c.assign([("t", 0)])
        while len(got) < 50:
            got += [r.value for r in await c.poll(timeout_ms=5000)]
    assert got == [f"v{i}".encode() * 500 for i in range(50)]
    # TLS encrypts in user space: the fetch was copied, not sendfile'd
    assert _copied() - copied >= sum(len(v) for v in got)
    assert _sendfiled() == sendfiled

    # the plaintext listener of the same broker keeps zero-copy
    sendfiled = _sendfiled()
    async with AsyncConsumer(b.address("local"), auto_offset_reset="earliest") as c:
        c.assign([("t", 0)])
        seen = 0
        while seen < 50:
            seen += len(await c.poll(timeout_ms=5000))
    assert _sendfiled() - sendfiled >= sum(len(v) for v in got)
    b.broker.shutdown()


async def test_mutual_tls_names_the_principal_from_the_certificate(nursery, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    certs = make_certs(tmp_path)
    pem, ca = str(certs.broker_pem), str(certs.ca_file)
    b = await start_broker(
        nursery,
        tmp_path,
        [
            {
                "name": "mtls",
                "security": "tls",
                "authentication": "mtls",
                "tls_cert_file": pem,
                "tls_key_file": pem,
                "tls_client_ca_file": ca,
            },
            {"name": "admin", "authentication": "sasl"},
        ],
        certs=certs,
    )
    async with AsyncAdmin(b.address("admin"), security=b.admin_security()) as admin:
        await admin.create_topic("orders", partitions=1)
        await admin.create_topic("secret", partitions=1)
    alice_pem, alice = certs.client_cert("alice")
    assert alice.startswith("User:CN=alice,")
    async with AsyncAdmin(b.address("admin"), security=b.admin_security()) as admin:
        await admin.create_acls([Acl(alice, "describe", "topic", "orders")])

    as_alice = SecurityConfig(ssl_cafile=ca, ssl_certfile=alice_pem)
    async with AsyncAdmin(b.address("mtls"), security=as_alice) as admin:
        assert [t.name for t in await admin.list_topics()] == ["orders"]
        with pytest.raises(TopicAuthorizationError, match="may not describe 'secret'"):
            await admin.describe_topic("secret")
    (line,) = [m for m in caplog.messages if "event=authz_denied" in m]
    assert f'principal="{alice}"' in line or f"principal={alice}" in line
    b.broker.shutdown()


async def test_mutual_tls_refuses_a_client_without_a_certificate(nursery, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    certs = make_certs(tmp_path)
    pem, ca = str(certs.broker_pem), str(certs.ca_file)
    (tmp_path / "other").mkdir()
    other = make_certs(tmp_path / "other")
    b = await start_broker(
        nursery,
        tmp_path,
        [
            {
                "name": "mtls",
                "security": "tls",
                "authentication": "mtls",
                "tls_cert_file": pem,
                "tls_key_file": pem,
                "tls_client_ca_file": ca,
            }
        ],
        certs=certs,
    )
    stranger_pem, _ = other.client_cert("mallory")  # signed by another CA
    for security in (
        SecurityConfig(ssl_cafile=ca),
        SecurityConfig(ssl_cafile=ca, ssl_certfile=stranger_pem),
    ):
        async with AsyncAdmin(b.address("mtls"), security=security, request_timeout_ms=2000) as a:
            with pytest.raises((BrokerUnavailableError, TlsHandshakeError)) as info:
                await a.list_topics()
        assert "certificate" in str(info.value)
    failures = [m for m in caplog.messages if "event=auth_failure" in m and "listener=mtls" in m]
    assert len(failures) >= 2
    assert all("mechanism=mtls" in m and "TLS handshake" in m for m in failures)
    b.broker.shutdown()


async def test_plaintext_client_on_a_tls_port_fails_cleanly(nursery, tmp_path):
    certs = make_certs(tmp_path)
    pem = str(certs.broker_pem)
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "tls", "security": "tls", "tls_cert_file": pem, "tls_key_file": pem}],
        certs=certs,
        security={"authorizer": "off"},
    )
    # A client with a small frame limit: the broker's TLS alert, read as a
    # length (0x15030300 = 352 MB), is refused from the prefix alone.
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, b.address("tls"))
        conn.codec.set_limits(Limits(max_frame_bytes=1 << 20))
        with pytest.raises(BrokerUnavailableError) as info:
            await conn.request(ApiVersionsRequest())
        assert "352518912" in str(info.value)
        assert "TLS record" in str(info.value)
        assert conn.codec.buffered <= 64  # nothing was allocated for the "frame"
        n.cancel_scope.cancel()
    # and through the library's own client, with its default limits
    async with AsyncAdmin(b.address("tls"), request_timeout_ms=1500) as admin:
        with pytest.raises(BrokerUnavailableError, match="the peer speaks TLS here"):
            await admin.list_topics()
    b.broker.shutdown()


async def test_tls_client_on_a_plaintext_port_and_an_untrusted_broker(nursery, tmp_path, caplog):
    certs = make_certs(tmp_path)
    pem = str(certs.broker_pem)
    b = await start_broker(
        nursery,
        tmp_path,
        [
            {"name": "plain"},
            {"name": "tls", "security": "tls", "tls_cert_file": pem, "tls_key_file": pem},
        ],
        certs=certs,
        security={"authorizer": "off"},
    )
    caplog.set_level(logging.INFO, logger="tailrace.broker.server.connection")
    async with AsyncAdmin(
        b.address("plain"),
        security=SecurityConfig(ssl_cafile=certs.ca_file),
        request_timeout_ms=1500,
    ) as admin:
        with pytest.raises(BrokerUnavailableError, match="closed during the TLS handshake"):
            await admin.list_topics()
    # the broker saw a TLS record where a frame length should be, and said so
    reasons = [str(getattr(r, "fields", {}).get("reason")) for r in caplog.records]
    assert any("TLS record" in r for r in reasons), reasons

    # a broker whose certificate the client's CAs do not vouch for
    ctx = SecurityConfig(tls=True).build_ssl_context()
    with pytest.raises(TlsHandshakeError, match="certificate is not accepted"):
        await raw_connection(nursery, b.address("tls"), ctx)
    b.broker.shutdown()


async def test_tls_listener_without_authentication_is_anonymous(nursery, tmp_path):
    certs = make_certs(tmp_path)
    pem = str(certs.broker_pem)
    b = await start_broker(
        nursery,
        tmp_path,
        [
            {"name": "tls", "security": "tls", "tls_cert_file": pem, "tls_key_file": pem},
            {"name": "admin", "authentication": "sasl"},
        ],
        certs=certs,
    )
    async with AsyncAdmin(b.address("admin"), security=b.admin_security()) as admin:
        await admin.create_topic("t", partitions=1)
    async with trio.open_nursery() as n:
        conn = await raw_connection(
            n, b.address("tls"), SecurityConfig(ssl_cafile=certs.ca_file).build_ssl_context()
        )
        response = await conn.request(MetadataRequest(topics=None))
        # the authorizer is on (a listener authenticates): ANONYMOUS sees nothing
        assert response.topics == []
        await conn.aclose()
    b.broker.shutdown()
