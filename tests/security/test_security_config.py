"""SecurityConfig: validation, password files and the client TLS context."""

from __future__ import annotations

import ssl

import pytest

from tailrace.client.errors import InvalidConfigError
from tailrace.client.security import SecurityConfig


def test_plaintext_without_sasl_is_the_default():
    config = SecurityConfig()
    assert not config.uses_tls
    assert config.build_ssl_context() is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sasl_mechanism": "GSSAPI", "username": "a", "password": "p"},
        {"sasl_mechanism": "PLAIN", "password": "p"},
        {"sasl_mechanism": "PLAIN", "username": "", "password": "p"},
        {"sasl_mechanism": "PLAIN", "username": "a"},
        {"sasl_mechanism": "PLAIN", "username": "a", "password": "p", "password_file": "f"},
        {"sasl_mechanism": "SCRAM-SHA-256", "username": "a", "password": ""},
        {"sasl_mechanism": "SCRAM-SHA-256", "username": "a", "password": "p\x07"},
        {"username": "a", "password": "p"},
        {"ssl_keyfile": "key.pem"},
        {"ssl_context": ssl.create_default_context(), "ssl_cafile": "ca.pem"},
        {"ssl_context": "not a context"},
    ],
)
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(InvalidConfigError):
        SecurityConfig(**kwargs)


def test_password_is_not_in_repr():
    config = SecurityConfig(sasl_mechanism="SCRAM-SHA-256", username="alice", password="hunter2")
    assert "hunter2" not in repr(config)
    assert config.resolve_password() == "hunter2"


def test_password_file_loses_exactly_one_trailing_newline(tmp_path):
    path = tmp_path / "password"
    config = SecurityConfig(sasl_mechanism="PLAIN", username="alice", password_file=path)
    path.write_text("s3cret\n")
    assert config.resolve_password() == "s3cret"
    path.write_text("s3cret ")
    assert config.resolve_password() == "s3cret "
    path.write_text("rotated\n")
    assert config.resolve_password() == "rotated"  # read at every call
    for bad in (b"", b"\n", b"two\n\n", b"\xff\xfe", b"x" * 5000):
        path.write_bytes(bad)
        with pytest.raises(InvalidConfigError):
            config.resolve_password()
    path.unlink()
    with pytest.raises(InvalidConfigError, match="cannot read"):
        config.resolve_password()


def test_built_context_verifies_and_requires_tls12(tmp_path):
    context = SecurityConfig(tls=True).build_ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    relaxed = SecurityConfig(tls=True, ssl_check_hostname=False).build_ssl_context()
    assert relaxed is not None
    assert not relaxed.check_hostname
    assert relaxed.verify_mode == ssl.CERT_REQUIRED


def test_given_context_is_used_as_is():
    mine = ssl.create_default_context()
    config = SecurityConfig(ssl_context=mine, sasl_mechanism="PLAIN", username="a", password="p")
    assert config.uses_tls
    assert config.build_ssl_context() is mine


def test_unusable_tls_files_are_config_errors(tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for config in (
        SecurityConfig(ssl_cafile=tmp_path / "missing.pem"),
        SecurityConfig(ssl_cafile=garbage),
        SecurityConfig(ssl_certfile=garbage),
        SecurityConfig(ssl_certfile=tmp_path / "missing.pem", ssl_keyfile=garbage),
    ):
        assert config.uses_tls
        with pytest.raises(InvalidConfigError, match="TLS context"):
            config.build_ssl_context()
