"""Principals from SASL and from real mutual-TLS peer certificates."""

from __future__ import annotations

import ssl

import pytest
import trustme

from tailrace.broker.security.principal import (
    ANONYMOUS,
    sasl_principal,
    tls_principal,
    validate_principal,
)
from tailrace.client.errors import AuthenticationError, InvalidRequestError
from tailrace.client.security import SecurityConfig


def test_sasl_and_anonymous_principals():
    assert sasl_principal("alice") == "User:alice"
    assert ANONYMOUS == "User:ANONYMOUS"
    assert validate_principal("User:CN=alice,O=acme") == "User:CN=alice,O=acme"
    for bad in ("alice", "User:", "user:alice", "User: alice", None):
        with pytest.raises(InvalidRequestError):
            validate_principal(bad)


def test_subject_is_written_in_rfc4514_order():
    cert = {
        "subject": (
            (("countryName", "DE"),),
            (("organizationName", "acme"),),
            (("organizationalUnitName", "ops"),),
            (("commonName", "alice"),),
        )
    }
    assert tls_principal(cert) == "User:CN=alice,OU=ops,O=acme,C=DE"


def test_subject_values_are_escaped_and_multivalued_rdns_joined():
    cert = {
        "subject": (
            (("domainComponent", "example"),),
            (("organizationName", "acme, Inc."),),
            (("commonName", "#1 fan "), ("userId", "a+b")),
            (("emailAddress", 'x"y@z;<>\\'),),
        )
    }
    assert tls_principal(cert) == (
        'User:emailAddress=x\\"y@z\\;\\<\\>\\\\,CN=\\#1 fan\\ +UID=a\\+b,O=acme\\, Inc.,DC=example'
    )


@pytest.mark.parametrize("cert", [{}, {"subject": ()}, None])
def test_no_subject_is_an_authentication_error(cert):
    with pytest.raises(AuthenticationError):
        tls_principal(cert)


def _make_cert(tmp_path, ca: trustme.CA, name: str, **subject: str):
    """A certificate from ``ca`` (cert and key in one PEM file)."""
    path = tmp_path / f"{name}.pem"
    ca.issue_cert("localhost", **subject).private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> ssl.SSLObject:
    """Run a TLS handshake in memory; return the server's end."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {client: False, server: False}
    for _ in range(10):
        for end in (client, server):
            if not done[end]:
                try:
                    end.do_handshake()
                    done[end] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return server
    raise AssertionError("the handshake did not finish")


def test_principal_from_a_real_mutual_tls_handshake(tmp_path):
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_pem = _make_cert(tmp_path, ca, "server")
    client_pem = _make_cert(
        tmp_path, ca, "client", common_name="alice", organization_name="acme, Inc."
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_pem)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(ca_file)
    client_ctx = SecurityConfig(ssl_cafile=ca_file, ssl_certfile=client_pem).build_ssl_context()
    assert client_ctx is not None

    server_end = _handshake(client_ctx, server_ctx)
    # trustme puts CN, then an OU naming the test CA, then O
    principal = tls_principal(server_end.getpeercert())
    assert principal.startswith("User:CN=alice,OU=")
    assert principal.endswith(",O=acme\\, Inc.")

    # A listener that does not require a certificate gets no subject to name.
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    anonymous_ctx = SecurityConfig(ssl_cafile=ca_file).build_ssl_context()
    assert anonymous_ctx is not None
    server_end = _handshake(anonymous_ctx, server_ctx)
    with pytest.raises(AuthenticationError):
        tls_principal(server_end.getpeercert())
