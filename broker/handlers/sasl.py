"""SaslHandshake and SaslAuthenticate outside the authentication gate.

On a listener with ``authentication = "sasl"`` these APIs are answered by the
connection's gate (broker/security/gate.py) until the client has
authenticated. They reach these handlers only when there is nothing to do:
on a listener that does not use SASL, or on a connection that already
authenticated (tailrace has no re-authentication). Both answer
ILLEGAL_SASL_STATE, and the connection carries on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import IllegalSaslStateError
from tailrace.client.protocol import Request

from ..server.connection import ConnectionInfo

if TYPE_CHECKING:
    from .context import BrokerContext

__all__ = ["handle_sasl_authenticate", "handle_sasl_handshake"]


def _refuse(info: ConnectionInfo) -> IllegalSaslStateError:
    return IllegalSaslStateError(
        f"no SASL exchange on this connection: it is authenticated as {info.principal} "
        f"(listener {info.listener!r} does not use SASL, or the exchange already succeeded)"
    )


def handle_sasl_handshake(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    raise _refuse(info)


def handle_sasl_authenticate(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    raise _refuse(info)
