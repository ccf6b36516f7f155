"""SASL authentication of one connection, before it may do anything else.

A listener with ``authentication = "sasl"`` puts a :class:`ConnectionGate`
in front of the broker's dispatcher for each connection. Until the client
has authenticated, the gate:

1. answers only ApiVersions (passed through), SaslHandshake and
   SaslAuthenticate; any other request is answered with ILLEGAL_SASL_STATE
   and the connection is closed;
2. keeps the connection's frame limit small
   (``security.max_frame_bytes_before_auth``, 64 KiB by default, with a
   body bound to match): a larger length prefix closes the connection
   before anything is allocated for it (Kafka CVE-2022-34917);
3. counts on the broker's deadline (``security.auth_timeout_ms``) to close a
   connection that does not finish in time.

The exchange: SaslHandshake names the mechanism (SCRAM-SHA-256 or PLAIN,
among the listener's ``sasl_mechanisms``; PLAIN only where
:func:`plain_allowed` says so), then SaslAuthenticate carries the
mechanism's messages (:mod:`tailrace.client.security.scram` and
``.plain`` do the work; SCRAM's server signature in the last answer lets
the client check the broker knows its credential). On success the
connection's principal becomes ``User:<name>``, its limits the broker's
normal ones, and the gate steps aside (the connection dispatches straight
to the handlers: no cost per request afterwards).

On any failure (wrong password, unknown user, a malformed or out-of-order
message, a mechanism not offered) the broker writes an audit line, waits
``security.auth_failure_delay_ms`` (in this connection's task: other
connections go on), answers with the error and closes the connection. The
error message never says whether the user name exists.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from tailrace.client.errors import (
    BrokerError,
    IllegalSaslStateError,
    SaslAuthenticationError,
    UnsupportedSaslMechanismError,
)
from tailrace.client.protocol import (
    ApiKey,
    Limits,
    Request,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from tailrace.client.security.plain import authenticate_plain
from tailrace.client.security.scram import ScramError, ScramServer

from ..server.connection import CloseConnection, ConnectionHandler, ConnectionInfo, Later
from . import audit
from .principal import sasl_principal

if TYPE_CHECKING:
    from ..config import ListenerConfig
    from .live_users import LiveUsers

__all__ = [
    "ConnectionGate",
    "GateSettings",
    "NativeSaslAnswers",
    "SaslAnswers",
    "limits_before_auth",
    "plain_allowed",
]

SCRAM = "SCRAM-SHA-256"
PLAIN = "PLAIN"


def plain_allowed(tls: bool, addresses: Iterable[str]) -> bool:
    """Whether a listener may offer SASL PLAIN, which sends the password
    itself: over TLS, or when every address it is bound to is a loopback
    address (the password then never leaves the machine). ``addresses`` are
    the bound IP addresses (a name or an unparsable value counts as not
    loopback)."""
    if tls:
        return True
    addresses = list(addresses)
    if not addresses:
        return False
    for address in addresses:
        try:
            if not ipaddress.ip_address(address.split("%", 1)[0]).is_loopback:
                return False
        except ValueError:
            return False
    return True


def limits_before_auth(max_frame_bytes: int) -> Limits:
    """The codec's bounds for a connection that has not authenticated: the
    frame limit, and body, string and list bounds no larger than it."""
    return Limits(
        max_frame_bytes=max_frame_bytes,
        max_body_bytes=max_frame_bytes,
        max_str_len=min(max_frame_bytes, 16 * 1024),
        max_bin_len=min(max_frame_bytes, 16 * 1024),
        max_array_len=1024,
        max_map_len=64,
    )


class GateSettings:
    """What every gate of one listener shares."""

    def __init__(
        self,
        listener: ListenerConfig,
        users: LiveUsers,
        *,
        plain_ok: bool,
        failure_delay: float,
        limits_after: Limits,
        limits_before: Limits,
    ) -> None:
        self.listener = listener
        self.users = users
        self.failure_delay = failure_delay
        self.limits_after = limits_after
        self.limits_before = limits_before
        self.mechanisms = [m for m in listener.sasl_mechanisms if m != PLAIN or plain_ok]
        self.plain_refused = PLAIN in listener.sasl_mechanisms and not plain_ok


class SaslAnswers(Protocol):
    """How a front-end answers the gate's requests on its wire protocol."""

    def handshake(self, request: Any, mechanisms: list[str], error: BrokerError | None) -> bytes:
        """The SaslHandshake response: the offered mechanisms, or an error."""
        ...

    def authenticate(
        self, request: Any, auth_bytes: bytes, error: BrokerError | None
    ) -> bytes | None:
        """The SaslAuthenticate response: the mechanism's next message, or an
        error (None: the framing has no error answer; close)."""
        ...

    def finished(self) -> None:
        """The exchange succeeded (called before the last answer is made):
        the front-end's normal framing from the next request on."""
        ...

    def refusal(self, request: Any, error: BrokerError) -> bytes | None:
        """Any other request's error response; None: close without one."""
        ...


class NativeSaslAnswers:
    """The native protocol's answers (tailrace's own message classes)."""

    def __init__(self, handler: ConnectionHandler) -> None:
        self.conn = handler.conn

    def handshake(
        self, request: Request, mechanisms: list[str], error: BrokerError | None
    ) -> bytes:
        response = SaslHandshakeResponse(mechanisms=list(mechanisms))
        _fill(response, error)
        return self.conn.send_response(request, response)

    def authenticate(self, request: Request, auth_bytes: bytes, error: BrokerError | None) -> bytes:
        response = SaslAuthenticateResponse(auth_bytes=auth_bytes)
        _fill(response, error)
        return self.conn.send_response(request, response)

    def finished(self) -> None:
        """Nothing changes in the native framing."""

    def refusal(self, request: Request, error: BrokerError) -> bytes | None:
        return self.conn.error_response(request, error)


def _fill(response: Any, error: BrokerError | None) -> None:
    if error is not None:
        response.error_code = int(error.code)
        response.error_message = error.message


class ConnectionGate:
    """The authentication state of one connection (see the module doc).

    States: ``start`` -> ``handshaken`` (mechanism chosen) -> [``scram``
    (client-first answered)] -> ``done``; any failure -> ``failed``.
    """

    def __init__(
        self,
        settings: GateSettings,
        handler: ConnectionHandler,
        next_dispatch: Callable[[ConnectionInfo, Any], Any],
        deadline: trio.CancelScope,
        answers: SaslAnswers | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        #: the front-end's way of answering (native unless given)
        self.answers: SaslAnswers = answers if answers is not None else NativeSaslAnswers(handler)
        self.next_dispatch = next_dispatch
        self.deadline = deadline
        self.state = "start"
        self.mechanism: str | None = None
        self._scram: ScramServer | None = None

    @property
    def authenticated(self) -> bool:
        return self.state == "done"

    def dispatch(self, info: ConnectionInfo, request: Request) -> Any:
        key = request.api_key
        if key == ApiKey.API_VERSIONS:
            return self.next_dispatch(info, request)
        if self.state == "failed":
            # pipelined behind a failure: the connection is closing anyway
            return self._refuse(request, IllegalSaslStateError("authentication failed"), 0)
        if key == ApiKey.SASL_HANDSHAKE:
            return self._handshake(info, request)
        if key == ApiKey.SASL_AUTHENTICATE:
            return self._authenticate(info, request)
        name = ApiKey(key).name if key in ApiKey._value2member_map_ else str(key)
        error = IllegalSaslStateError(
            f"{name} before authentication: listener {self.settings.listener.name!r} requires "
            "SASL (SaslHandshake, then SaslAuthenticate) first"
        )
        return self._fail(info, request, error, reason=f"{name} request before authentication")

    # --- steps -------------------------------------------------------------

    def _handshake(self, info: ConnectionInfo, request: Request) -> Any:
        body: SaslHandshakeRequest = request.body
        settings = self.settings
        if self.state != "start":
            error = IllegalSaslStateError("SaslHandshake was already sent on this connection")
            return self._fail(info, request, error, reason="second SaslHandshake")
        mechanism = body.mechanism
        self.mechanism = mechanism[:64]
        if mechanism not in settings.mechanisms:
            if mechanism == PLAIN and settings.plain_refused:
                message = (
                    f"PLAIN is refused on listener {settings.listener.name!r}: it would send "
                    "the password in clear over plaintext on a non-loopback address; use TLS "
                    f"or {SCRAM}"
                )
            else:
                message = (
                    f"mechanism {mechanism!r} is not offered on listener "
                    f"{settings.listener.name!r}; offered: {', '.join(settings.mechanisms)}"
                )
            offered = list(settings.mechanisms)
            return self._fail(
                info,
                request,
                UnsupportedSaslMechanismError(message),
                reason="mechanism not offered",
                answer=lambda error: self.answers.handshake(request, offered, error),
            )
        self.state = "handshaken"
        return self.answers.handshake(request, list(settings.mechanisms), None)

    def _authenticate(self, info: ConnectionInfo, request: Request) -> Any:
        data: bytes = request.body.auth_bytes
        if self.state == "handshaken" and self.mechanism == PLAIN:
            self.state = "plain"
            return Later(self._plain, info, request, data)
        if self.state == "handshaken":
            self._scram = ScramServer(self.settings.users.current())
            try:
                answer = self._scram.receive_client_first(data)
            except SaslAuthenticationError as exc:
                return self._scram_failed(info, request, exc)
            self.state = "scram"
            return self._answer(request, answer)
        if self.state == "scram":
            assert self._scram is not None
            try:
                answer = self._scram.receive_client_final(data)
            except SaslAuthenticationError as exc:
                return self._scram_failed(info, request, exc)
            self._succeed(info, self._scram.username or "")
            return self._answer(request, answer)
        error = IllegalSaslStateError(
            "SaslAuthenticate before SaslHandshake"
            if self.state == "start"
            else "SaslAuthenticate after the exchange ended"
        )
        return self._fail(info, request, error, reason=error.message)

    async def _plain(self, info: ConnectionInfo, request: Request, data: bytes) -> bytes:
        users = self.settings.users.current()
        try:
            # a password derivation (PBKDF2): milliseconds, off the event loop
            user = await trio.to_thread.run_sync(authenticate_plain, data, users)
        except SaslAuthenticationError as exc:
            later = self._fail(info, request, exc, reason=exc.message, username=_plain_user(data))
            return await later.fn(*later.args)
        self._succeed(info, user)
        return self._answer(request, b"")

    def _scram_failed(self, info: ConnectionInfo, request: Request, exc: BrokerError) -> Later:
        server = self._scram
        reason = (server.failure_reason if server else None) or exc.message
        message = exc.message
        # at the proof step, SCRAM reports the failure as server-final "e=..."
        final = b""
        if server is not None and self.state == "scram":
            final = server.error_final or b""
        if isinstance(exc, ScramError) and exc.server_error == "invalid-proof":
            message = f"{SCRAM}: invalid user name or password"
        return self._fail(
            info,
            request,
            SaslAuthenticationError(message),
            reason=reason,
            username=server.attempted_username if server else None,
            answer=lambda error: self.answers.authenticate(request, final, error),
        )

    # --- outcomes ----------------------------------------------------------

    def _answer(self, request: Request, auth_bytes: bytes) -> bytes:
        reply = self.answers.authenticate(request, auth_bytes, None)
        assert reply is not None  # only a failure goes unanswered
        return reply

    def _succeed(self, info: ConnectionInfo, username: str) -> None:
        self.state = "done"
        self._scram = None
        info.principal = sasl_principal(username)
        handler = self.handler
        handler.conn.set_limits(self.settings.limits_after)
        handler.dispatch = self.next_dispatch
        self.answers.finished()
        self.deadline.deadline = math.inf

    def _fail(
        self,
        info: ConnectionInfo,
        request: Request,
        error: BrokerError,
        *,
        reason: str,
        username: str | None = None,
        answer: Callable[[BrokerError], bytes] | None = None,
    ) -> Later:
        """Audit, then answer after the failure delay and close."""
        self.state = "failed"
        self._scram = None
        audit.auth_failure(self.settings.listener.name, info.peer, self.mechanism, username, reason)
        return self._refuse(request, error, self.settings.failure_delay, answer)

    def _refuse(
        self,
        request: Request,
        error: BrokerError,
        delay: float,
        answer: Callable[[BrokerError], bytes] | None = None,
    ) -> Later:
        return Later(self._delayed_refusal, request, error, delay, answer)

    async def _delayed_refusal(
        self,
        request: Request,
        error: BrokerError,
        delay: float,
        answer: Callable[[BrokerError], bytes] | None,
    ) -> bytes | CloseConnection:
        await trio.sleep(delay)
        # Stop reading: the writer sends this answer (and any before it), then
        # the connection closes.
        self.handler.stop_reading()
        reply = answer(error) if answer is not None else self.answers.refusal(request, error)
        if reply is None:  # the protocol has no answer for it: close
            return CloseConnection(f"authentication failed: {error.message}")
        return reply


def _plain_user(data: bytes) -> str | None:
    """The user name a PLAIN message claims, for the audit line (best effort)."""
    try:
        parts = bytes(data[:1024]).decode("utf-8").split("\x00")
    except UnicodeDecodeError:
        return None
    return parts[1] if len(parts) == 3 else None
