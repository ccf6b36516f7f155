"""SaslHandshake and SaslAuthenticate for Kafka clients.

On a listener with ``authentication = "sasl"`` the connection starts behind
the same :class:`~..security.gate.ConnectionGate` as a native one: the same
users file, mechanisms (SCRAM-SHA-256; PLAIN only over TLS or on loopback),
small pre-authentication frame limits, deadline, failure delay and audit
lines. Only the answers are Kafka's (:class:`KafkaSaslAnswers`): kio
SaslHandshake / SaslAuthenticate responses, and for any other request
before authentication the API's own error response (ILLEGAL_SASL_STATE),
or a plain close where the API has no top-level error code.

SaslHandshake is served at v0 and v1. After a v1 handshake the tokens come
in SaslAuthenticate requests. After a v0 handshake (librdkafka before 2.x's
SaslAuthenticate support is negotiated: 2.0.2, so Debian's kcat, turns SASL
on only when v0 is advertised) they come as bare size-prefixed frames, with
no request header, and are answered the same way (codec rule 5): the codec
reads bare frames from the successful v0 handshake until the exchange ends,
under the same pre-authentication frame limit and deadline. A failure in
that framing has no error frame: the connection closes after the failure
delay, as Kafka closes it.

On a listener without SASL both APIs are answered as Kafka does there:
SaslHandshake with UNSUPPORTED_SASL_MECHANISM and no mechanisms,
SaslAuthenticate with ILLEGAL_SASL_STATE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.index import load_response_schema

from tailrace.client.errors import (
    BrokerError,
    IllegalSaslStateError,
    UnsupportedSaslMechanismError,
)

from ..server.connection import ConnectionInfo
from .codec import (
    KafkaRequest,
    KafkaSaslToken,
    KafkaServerConnection,
    encode_response,
    encode_token,
)
from .entities import ZERO, error_body, make
from .errors import kafka_code, kafka_error

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext

__all__ = ["KafkaSaslAnswers", "handle_sasl_authenticate", "handle_sasl_handshake"]


class KafkaSaslAnswers:
    """How the SASL gate answers on one Kafka connection (``codec``: that
    connection's, whose framing a v0 handshake switches to bare tokens)."""

    def __init__(self, codec: KafkaServerConnection | None = None) -> None:
        self.codec = codec

    def handshake(
        self, request: KafkaRequest, mechanisms: list[str], error: BrokerError | None
    ) -> bytes:
        cls = load_response_schema(request.api_key, request.api_version)
        entity = make(cls, {"error_code": kafka_error(error), "mechanisms": list(mechanisms)})
        if request.api_version == 0 and error is None and self.codec is not None:
            self.codec.raw_tokens = True  # the tokens follow as bare frames
        return encode_response(request, entity)

    def authenticate(
        self, request: KafkaRequest | KafkaSaslToken, auth_bytes: bytes, error: BrokerError | None
    ) -> bytes | None:
        if type(request) is KafkaSaslToken:
            # v0 framing: the bare token, or no answer at all (close)
            return None if error is not None else encode_token(bytes(auth_bytes))
        cls = load_response_schema(request.api_key, request.api_version)
        entity = make(
            cls,
            {
                "error_code": kafka_error(error),
                "error_message": error.message if error is not None else None,
                "auth_bytes": bytes(auth_bytes),
                "session_lifetime": ZERO,
            },
        )
        return encode_response(request, entity)

    def finished(self) -> None:
        """The exchange succeeded: requests are framed as usual again."""
        if self.codec is not None:
            self.codec.raw_tokens = False

    def refusal(self, request: Any, error: BrokerError) -> bytes | None:
        """Another API's request before authentication: its own error
        response when it has a top-level error code; None (close) if not."""
        if type(request) is not KafkaRequest:
            return None
        body = error_body(load_response_schema(request.api_key, request.api_version), 0)
        if body is None:
            return None
        return encode_response(request, error_body(type(body), kafka_code(error)))


_ANSWERS = KafkaSaslAnswers()


def handle_sasl_handshake(ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest) -> bytes:
    """A listener without SASL (a SASL listener's gate answers before this)."""
    error = UnsupportedSaslMechanismError(
        f"listener {info.listener!r} does not use SASL authentication"
    )
    return _ANSWERS.handshake(request, [], error)


def handle_sasl_authenticate(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaRequest
) -> bytes:
    error = IllegalSaslStateError(f"listener {info.listener!r} does not use SASL authentication")
    return _ANSWERS.authenticate(request, b"", error)
