"""SASL against a live broker: SCRAM and PLAIN, refusals, the gate before
authentication (handshake APIs only, small frames, timeout), audit lines,
and users added or broken while the broker runs."""

from __future__ import annotations

import logging
import struct

import pytest
import trio
from sec_helpers import (
    ADMIN,
    host_address,
    make_certs,
    open_tcp,
    raw_connection,
    start_broker,
)

from tailrace.broker.security.gate import plain_allowed
from tailrace.broker.security.users import add_user
from tailrace.client import Acl, AsyncAdmin, SecurityConfig
from tailrace.client.errors import (
    BrokerUnavailableError,
    IllegalSaslStateError,
    SaslAuthenticationError,
    UnsupportedSaslMechanismError,
)
from tailrace.client.protocol import (
    ApiVersionsRequest,
    MetadataRequest,
    SaslAuthenticateRequest,
    SaslHandshakeRequest,
)
from tailrace.client.security.scram import ScramClient

FAST = {"auth_failure_delay_ms": 0}


def _auth_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in caplog.messages if m.startswith("event=auth_failure")]


async def _closed(conn) -> bool:
    """Whether the broker closed the connection (a request then fails)."""
    with trio.fail_after(10):
        try:
            await conn.request(ApiVersionsRequest())
        except BrokerUnavailableError:
            return True
    return False


async def test_scram_success_gives_the_principal_and_lifts_the_gate(nursery, tmp_path):
    b = await start_broker(
        nursery, tmp_path, [{"name": "sasl", "authentication": "sasl"}], users={"alice": "pw-1"}
    )
    async with AsyncAdmin(b.address("sasl"), security=b.admin_security()) as admin:
        await admin.create_topic("t", partitions=1)
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        # authenticated as User:alice, who was granted nothing: sees no topic
        assert await admin.list_topics() == []
    async with AsyncAdmin(b.address("sasl"), security=b.admin_security()) as admin:
        await admin.create_acls([Acl("User:alice", "describe", "topic", "t")])
    async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
        assert [t.name for t in await admin.list_topics()] == ["t"]
    b.broker.shutdown()


async def test_scram_wrong_password_is_refused_audited_and_closed(nursery, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}],
        users={"alice": "pw-1"},
        security=FAST,
    )
    for user in ("alice", "nobody"):  # the same answer for an unknown user
        wrong = SecurityConfig(sasl_mechanism="SCRAM-SHA-256", username=user, password="nope")
        async with AsyncAdmin(b.address("sasl"), security=wrong) as admin:
            with pytest.raises(SaslAuthenticationError, match="invalid user name or password"):
                await admin.list_topics()
    lines = _auth_failures(caplog)
    assert any("username=alice" in m and 'reason="invalid proof"' in m for m in lines)
    assert any("username=nobody" in m and 'reason="unknown user"' in m for m in lines)

    # on the wire: the refusal carries e=invalid-proof, then the broker closes
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, b.address("sasl"))
        await conn.request(SaslHandshakeRequest(mechanism="SCRAM-SHA-256"))
        client = ScramClient("alice", "nope")
        first = await conn.request(SaslAuthenticateRequest(auth_bytes=client.client_first()))
        final = client.receive_server_first(first.auth_bytes)
        answer = await conn.request(SaslAuthenticateRequest(auth_bytes=final))
        assert answer.error_code == 58  # SASL_AUTHENTICATION_FAILED
        assert answer.auth_bytes == b"e=invalid-proof"
        assert await _closed(conn)
    b.broker.shutdown()


async def _scram_exchange(conn, client: ScramClient, alter=None) -> tuple[bytes, object]:
    await conn.request(SaslHandshakeRequest(mechanism="SCRAM-SHA-256"))
    first = await conn.request(SaslAuthenticateRequest(auth_bytes=client.client_first()))
    assert first.error_code == 0
    final = client.receive_server_first(first.auth_bytes)
    if alter is not None:
        final = alter(final)
    return final, await conn.request(SaslAuthenticateRequest(auth_bytes=final))


async def test_scram_altered_nonce_and_replayed_proof_are_refused(nursery, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}],
        users={"alice": "pw-1"},
        security=FAST,
    )
    address = b.address("sasl")

    # a genuine exchange; keep its client-final (with the proof)
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, address)
        client = ScramClient("alice", "pw-1", nonce="fixed-client-nonce")
        captured, answer = await _scram_exchange(conn, client)
        assert answer.error_code == 0
        client.receive_server_final(answer.auth_bytes)  # the broker's signature checks out
        assert (await conn.request(MetadataRequest())).error_code == 0
        await conn.aclose()

    # the same nonce and proof replayed: the server's nonce differs now
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, address)
        replay = ScramClient("alice", "pw-1", nonce="fixed-client-nonce")
        _, answer = await _scram_exchange(conn, replay, alter=lambda _final: captured)
        assert answer.error_code == 58
        assert await _closed(conn)

    # a client-final whose combined nonce was tampered with
    def tamper(final: bytes) -> bytes:
        c, r, p = final.split(b",")
        return b",".join([c, r[:-1] + (b"A" if r[-1:] != b"A" else b"B"), p])

    async with trio.open_nursery() as n:
        conn = await raw_connection(n, address)
        _, answer = await _scram_exchange(conn, ScramClient("alice", "pw-1"), alter=tamper)
        assert answer.error_code == 58
        assert await _closed(conn)
    reasons = " ".join(_auth_failures(caplog))
    assert reasons.count("the nonce is not the one this exchange agreed") == 2
    b.broker.shutdown()


async def test_plain_over_tls_and_loopback_but_not_on_a_plaintext_host_address(
    nursery, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    certs = make_certs(tmp_path)
    pem = str(certs.broker_pem)
    listeners = [
        {"name": "loop", "authentication": "sasl"},
        {
            "name": "tls",
            "authentication": "sasl",
            "security": "tls",
            "tls_cert_file": pem,
            "tls_key_file": pem,
        },
    ]
    host = host_address()
    if host is not None:
        listeners.append({"name": "lan", "authentication": "sasl", "address": f"{host}:0"})
    b = await start_broker(
        nursery, tmp_path, listeners, users={"alice": "pw-1"}, certs=certs, security=FAST
    )
    plain = {"sasl_mechanism": "PLAIN", "username": "alice", "password": "pw-1"}
    for name, extra in (("loop", {}), ("tls", {"ssl_cafile": certs.ca_file})):
        async with AsyncAdmin(b.address(name), security=SecurityConfig(**plain, **extra)) as a:
            assert await a.list_topics() == []
        wrong = SecurityConfig(**{**plain, "password": "x"}, **extra)
        async with AsyncAdmin(b.address(name), security=wrong) as a:
            with pytest.raises(SaslAuthenticationError, match="invalid user name or password"):
                await a.list_topics()

    # the decision itself, by address
    assert plain_allowed(False, ["127.0.0.1"])
    assert plain_allowed(False, ["::1", "127.0.0.2"])
    assert plain_allowed(True, ["0.0.0.0"])
    assert not plain_allowed(False, ["0.0.0.0"])
    assert not plain_allowed(False, ["127.0.0.1", "192.0.2.10"])
    assert not plain_allowed(False, ["localhost"])
    assert not plain_allowed(False, [])

    if host is not None:
        # a live listener on this machine's own non-loopback address
        async with AsyncAdmin(b.address("lan"), security=SecurityConfig(**plain)) as a:
            with pytest.raises(UnsupportedSaslMechanismError, match="PLAIN is refused"):
                await a.list_topics()
        assert any("listener=lan" in m and "mechanism not offered" in m for m in caplog.messages)
        # SCRAM on the same listener works
        async with AsyncAdmin(b.address("lan"), security=b.scram("alice")) as a:
            assert await a.list_topics() == []
    b.broker.shutdown()


async def test_requests_before_authentication_and_the_frame_limit(nursery, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}],
        users={"alice": "pw-1"},
        security=FAST,
    )
    address = b.address("sasl")
    async with trio.open_nursery() as n:
        # ApiVersions is allowed before authentication; Metadata is not
        conn = await raw_connection(n, address)
        versions = await conn.request(ApiVersionsRequest())
        assert {17, 36} <= {v.api_key for v in versions.api_versions}
        response = await conn.request(MetadataRequest())
        assert response.error_code == 34  # ILLEGAL_SASL_STATE
        assert "before authentication" in response.error_message
        assert await _closed(conn)

        # SaslAuthenticate before SaslHandshake
        conn = await raw_connection(n, address)
        response = await conn.request(SaslAuthenticateRequest(auth_bytes=b"n,,n=a,r=x"))
        assert response.error_code == 34
        assert await _closed(conn)

        # the Admin client reports the same refusal by its type
        async with AsyncAdmin(address) as admin:
            with pytest.raises(IllegalSaslStateError, match="requires SASL"):
                await admin.list_topics()
    assert any("METADATA request before authentication" in m for m in _auth_failures(caplog))

    # A frame longer than 64 KiB before authentication: the broker closes the
    # connection on reading the 4-byte length, without waiting for the body
    # (it never arrives) or allocating for it.
    for length in (64 * 1024 + 1, 1 << 20, 0x7FFFFFFF):
        stream = await open_tcp(address)
        await stream.send_all(struct.pack(">I", length))
        with trio.fail_after(10):
            assert await stream.receive_some(100) == b""
        await stream.aclose()

    # once authenticated, the broker's normal limit applies again
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, address)
        client = ScramClient("alice", "pw-1")
        _, answer = await _scram_exchange(conn, client)
        assert answer.error_code == 0
        big = MetadataRequest(topics=[f"t{i:05d}" for i in range(10_000)])  # ~80 KB frame
        response = await conn.request(big)
        assert response.error_code == 0
        assert len(response.topics) == 10_000
        await conn.aclose()
    b.broker.shutdown()


async def test_silent_connection_is_closed_at_the_auth_timeout(nursery, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}],
        security={"auth_timeout_ms": 200},
    )
    stream = await open_tcp(b.address("sasl"))
    with trio.fail_after(10):
        assert await stream.receive_some(100) == b""
    await stream.aclose()
    assert any("authentication not finished within 0.2 s" in m for m in _auth_failures(caplog))

    # an authenticated connection outlives the timeout
    async with trio.open_nursery() as n:
        conn = await raw_connection(n, b.address("sasl"))
        _, answer = await _scram_exchange(conn, ScramClient(*ADMIN))
        assert answer.error_code == 0
        await trio.sleep(0.4)
        assert (await conn.request(MetadataRequest())).error_code == 0
        await conn.aclose()
    b.broker.shutdown()


async def test_a_failed_attempt_waits_without_holding_up_others(nursery, tmp_path):
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}],
        users={"alice": "pw-1"},
        security={"auth_failure_delay_ms": 60_000},
    )
    async with trio.open_nursery() as n:
        bad = await raw_connection(n, b.address("sasl"))
        await bad.request(SaslHandshakeRequest(mechanism="PLAIN"))
        refusal = await bad.send(SaslAuthenticateRequest(auth_bytes=b"\x00alice\x00wrong"))
        # meanwhile another client logs in and works
        async with AsyncAdmin(b.address("sasl"), security=b.scram("alice")) as admin:
            assert await admin.list_topics() == []
        assert not refusal.done()  # the refusal is still being held back
        n.cancel_scope.cancel()
    b.broker.shutdown()


async def test_users_added_while_running_and_a_broken_file_keeps_the_last_good(
    nursery, tmp_path, caplog
):
    b = await start_broker(
        nursery, tmp_path, [{"name": "sasl", "authentication": "sasl"}], security=FAST
    )
    bob = SecurityConfig(sasl_mechanism="SCRAM-SHA-256", username="bob", password="pw-b")
    async with AsyncAdmin(b.address("sasl"), security=bob) as admin:
        with pytest.raises(SaslAuthenticationError):
            await admin.list_topics()
    add_user(b.users_file, "bob", "pw-b")
    async with AsyncAdmin(b.address("sasl"), security=bob) as admin:
        assert await admin.list_topics() == []

    caplog.set_level(logging.ERROR, logger="tailrace.broker.security.live_users")
    b.users_file.write_text("{not json")
    async with AsyncAdmin(b.address("sasl"), security=bob) as admin:
        assert await admin.list_topics() == []  # the last good users still log in
    (line,) = [m for m in caplog.messages if "cannot be used" in m]
    assert "keeping the 2 users read before" in line
    b.broker.shutdown()
