"""Securing a client's connections: TLS context and SASL exchange from a
:class:`~tailrace.client.security.SecurityConfig`.

:func:`connection_options` turns a SecurityConfig into the two hooks
:class:`~.pool.BrokerClient` takes: ``ssl_context`` (the TLS handshake runs
in ``BrokerConnection.connect``) and ``authenticate``, awaited right after
each connect, before any other request:

1. SaslHandshake with the configured mechanism (the broker answers
   UNSUPPORTED_SASL_MECHANISM naming what it offers, or ILLEGAL_SASL_STATE
   when the listener does not use SASL);
2. SCRAM-SHA-256: client-first, then client-final with the proof; the last
   answer must carry the server signature, which proves the broker holds
   our credential (a wrong one raises even though the broker said yes).
   PLAIN: one message with the password (use it over TLS).

A refusal raises the typed error of the broker's code, with its message
(:class:`SaslAuthenticationError` for wrong credentials); the broker closes
the connection after a failed attempt. The password is read (from
``password_file``) at each connect, so a rotated secret is picked up.
"""

from __future__ import annotations

from typing import Any

import trio

from ..errors import InvalidConfigError, SaslAuthenticationError, error_for_code
from ..protocol import SaslAuthenticateRequest, SaslHandshakeRequest
from ..security import SecurityConfig
from ..security.plain import build_plain_message
from ..security.scram import ScramClient
from .connection import BrokerConnection

__all__ = ["connection_options", "sasl_authenticate"]


def connection_options(security: SecurityConfig | None) -> dict[str, Any]:
    """``ssl_context`` and ``authenticate`` for BrokerClient (empty for None)."""
    if security is None:
        return {}
    if not isinstance(security, SecurityConfig):
        raise TypeError(f"security must be a SecurityConfig, not {type(security).__name__}")
    options: dict[str, Any] = {"ssl_context": security.build_ssl_context()}
    if security.sasl_mechanism is not None:

        async def authenticate(conn: BrokerConnection) -> None:
            await sasl_authenticate(conn, security)

        options["authenticate"] = authenticate
    return options


def _check(response: Any, step: str) -> None:
    if response.error_code:
        raise error_for_code(response.error_code, f"{step}: {response.error_message or ''}")


async def sasl_authenticate(conn: BrokerConnection, security: SecurityConfig) -> None:
    """Run the SASL exchange of ``security`` on a fresh connection."""
    mechanism = security.sasl_mechanism
    username = security.username
    if mechanism is None or username is None:  # SecurityConfig makes this impossible
        raise InvalidConfigError("SASL needs a mechanism and a user name")
    password = security.resolve_password()
    step = f"SASL {mechanism} authentication as {username!r} failed"
    _check(await conn.request(SaslHandshakeRequest(mechanism=mechanism)), step)
    if mechanism == "PLAIN":
        message = build_plain_message(username, password)
        _check(await conn.request(SaslAuthenticateRequest(auth_bytes=message)), step)
        return
    client = ScramClient(username, password)
    first = await conn.request(SaslAuthenticateRequest(auth_bytes=client.client_first()))
    _check(first, step)
    # the password derivation (PBKDF2) takes milliseconds: off the event loop
    final = await trio.to_thread.run_sync(client.receive_server_first, first.auth_bytes)
    answer = await conn.request(SaslAuthenticateRequest(auth_bytes=final))
    _check(answer, step)
    try:
        client.receive_server_final(answer.auth_bytes)
    except SaslAuthenticationError as exc:
        raise SaslAuthenticationError(f"{step}: {exc.message}") from None
