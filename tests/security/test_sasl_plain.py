"""SASL PLAIN: message layout, bounds, and verification against SCRAM credentials."""

from __future__ import annotations

import pytest

from tailrace.client.errors import InvalidConfigError, SaslAuthenticationError
from tailrace.client.security.plain import (
    MAX_MESSAGE_SIZE,
    authenticate_plain,
    build_plain_message,
    parse_plain_message,
)
from tailrace.client.security.scram import ScramCredential


def test_build_and_parse_round_trip():
    message = build_plain_message("alice", "pä ss")
    assert message == "\x00alice\x00pä ss".encode()
    parsed = parse_plain_message(message)
    assert (parsed.authzid, parsed.username, parsed.password) == ("", "alice", "pä ss")
    assert "pä ss" not in repr(parsed)
    assert parse_plain_message(build_plain_message("alice", "pw", "alice")).authzid == "alice"


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"alice",
        b"\x00alice",
        b"\x00alice\x00",
        b"\x00\x00pw",
        b"\x00alice\x00pw\x00",
        b"\x00alice\x00p\xffw",
        b"bob\x00alice\x00pw",
        b"\x00alice\x00" + b"p" * MAX_MESSAGE_SIZE,
    ],
)
def test_malformed_messages_raise_the_typed_error(message):
    with pytest.raises(SaslAuthenticationError):
        parse_plain_message(message)


@pytest.mark.parametrize(
    ("username", "password", "authzid"),
    [("", "pw", ""), ("alice", "", ""), ("al\x00ice", "pw", ""), ("alice", "p" * 2000, "")],
)
def test_building_from_bad_arguments_is_refused(username, password, authzid):
    with pytest.raises(InvalidConfigError):
        build_plain_message(username, password, authzid)


def test_authenticate_against_stored_credentials():
    lookup = {"alice": ScramCredential.from_password("right")}.get
    assert authenticate_plain(build_plain_message("alice", "right"), lookup) == "alice"
    with pytest.raises(SaslAuthenticationError) as wrong:
        authenticate_plain(build_plain_message("alice", "wrong"), lookup)
    with pytest.raises(SaslAuthenticationError) as unknown:
        authenticate_plain(build_plain_message("mallory", "right"), lookup)
    # The same answer for both, so names cannot be probed.
    assert wrong.value.message == unknown.value.message
    with pytest.raises(SaslAuthenticationError):
        authenticate_plain(b"\x00alice", lookup)
