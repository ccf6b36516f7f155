"""The broker's security, put together from its configuration.

:class:`BrokerSecurity` is built with the :class:`~tailrace.broker.app.Broker`
(so a bad certificate, users file or ACL file stops start-up with a message
naming it) and serves three moments of a connection's life:

* :meth:`bind`: a bound listener learns its TLS wrapper and, for SASL
  listeners, the gate settings (whether PLAIN may be offered depends on the
  addresses actually bound);
* :meth:`open`: right after accept, under the authentication deadline, the
  TLS handshake (explicit, so that its failure is reported with its reason,
  and a mutual-TLS principal is known before the first request);
* :meth:`attach`: a SASL listener's connection starts with small frame
  limits and a :class:`~.gate.ConnectionGate` in front of the dispatcher.

It also owns the durable ACL store (always open, so ACLs can be prepared
before they are enforced) and the :class:`~.authz.Authorization` the
handlers consult when ``security.authorizer`` enforces them.
"""

from __future__ import annotations

import logging
import math
import ssl
from typing import TYPE_CHECKING, Any

import trio

from tailrace.client.errors import AuthenticationError
from tailrace.client.protocol import Limits

from ..server.ratelimit import RateLimitedLogger
from . import audit
from .acl import AclStore
from .authz import Authorization
from .gate import ConnectionGate, GateSettings, limits_before_auth, plain_allowed
from .live_users import LiveUsers
from .principal import tls_principal
from .tls import server_context, ssl_wrapper

if TYPE_CHECKING:
    from ..config import BrokerConfig, ListenerConfig
    from ..server.connection import ConnectionHandler, ConnectionInfo
    from ..server.listeners import BoundListener

__all__ = ["BrokerSecurity"]

log = logging.getLogger(__name__)
tls_failures = RateLimitedLogger(log, per_second=1)


class BrokerSecurity:
    def __init__(self, config: BrokerConfig, limits: Limits) -> None:
        values = config.values
        self.listeners: dict[str, ListenerConfig] = {lc.name: lc for lc in config.listeners}
        self.limits = limits
        self.auth_timeout = values["security.auth_timeout_ms"] / 1000
        self.failure_delay = values["security.auth_failure_delay_ms"] / 1000
        self.limits_before = limits_before_auth(values["security.max_frame_bytes_before_auth"])
        self.contexts: dict[str, ssl.SSLContext] = {
            lc.name: server_context(lc) for lc in config.listeners if lc.tls
        }
        users_file = values["security.users_file"]
        self.users = LiveUsers(users_file) if users_file else None
        self.acl_store = AclStore.open(config.acl_path, super_users=config.super_users)
        self.authz = Authorization(self.acl_store) if config.authorizer_enabled else None
        self.gates: dict[str, GateSettings] = {}

    def bind(self, bound: BoundListener) -> None:
        """Give a freshly bound listener its TLS wrapper and gate settings."""
        lc = self.listeners[bound.name]
        bound.config = lc
        context = self.contexts.get(lc.name)
        if context is not None:
            bound.wrap = ssl_wrapper(context)
        if lc.authentication == "sasl":
            assert self.users is not None  # load_config insists on a users file
            addresses = [s.socket.getsockname()[0] for s in bound.sockets]
            self.gates[lc.name] = GateSettings(
                lc,
                self.users,
                plain_ok=plain_allowed(lc.tls, addresses),
                failure_delay=self.failure_delay,
                limits_after=self.limits,
                limits_before=self.limits_before,
            )

    def deadline(self, listener: BoundListener) -> float:
        """When a new connection on ``listener`` must have finished TLS and
        authentication (infinity when it has neither)."""
        if listener.name in self.gates or listener.name in self.contexts:
            return trio.current_time() + self.auth_timeout
        return math.inf

    async def open(
        self, stream: trio.abc.Stream, listener: BoundListener, info: ConnectionInfo
    ) -> bool:
        """Finish what must happen before the first request: the TLS
        handshake and a mutual-TLS principal. False: drop the connection."""
        if type(stream) is not trio.SSLStream:
            return True
        lc = self.listeners[listener.name]
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            reason = _tls_reason(exc)
            if _not_tls(exc):
                reason += " (the client does not speak TLS)"
                await _send_alert(stream)
            if lc.authentication == "mtls":
                audit.auth_failure(lc.name, info.peer, "mtls", None, f"TLS handshake: {reason}")
            else:
                tls_failures.info(
                    "TLS handshake failed", peer=info.peer, listener=lc.name, reason=reason
                )
            return False
        if lc.authentication == "mtls":
            try:
                info.principal = tls_principal(stream.getpeercert())
            except AuthenticationError as exc:
                audit.auth_failure(lc.name, info.peer, "mtls", None, exc.message)
                return False
        return True

    def attach(
        self,
        handler: ConnectionHandler,
        listener: BoundListener,
        dispatch: Any,
        deadline: trio.CancelScope,
        answers: Any = None,
    ) -> ConnectionGate | None:
        """Put a SASL listener's connection behind its gate (small limits,
        handshake APIs only; ``answers``: the front-end's SaslAnswers, the
        native ones when None); otherwise lift the deadline."""
        settings = self.gates.get(listener.name)
        if settings is None:
            deadline.deadline = math.inf
            return None
        handler.conn.set_limits(settings.limits_before)
        gate = ConnectionGate(settings, handler, dispatch, deadline, answers)
        handler.dispatch = gate.dispatch
        return gate

    def timed_out(
        self, listener: BoundListener, info: ConnectionInfo, gate: ConnectionGate | None
    ) -> None:
        """Record a connection closed by the authentication deadline."""
        what = "TLS handshake" if gate is None else "authentication"
        audit.auth_failure(
            listener.name,
            info.peer,
            gate.mechanism if gate is not None else None,
            None,
            f"{what} not finished within {self.auth_timeout:g} s",
        )


#: What OpenSSL says when the first bytes are not a TLS record at all.
_NOT_TLS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "UNKNOWN_PROTOCOL"}
#: A TLS alert record: content type 21 (alert), version 3.3, length 2, level
#: fatal (2), description protocol_version (70).
TLS_ALERT_PROTOCOL_VERSION = bytes.fromhex("15030300020246")


def _not_tls(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, ssl.SSLError) and cause.reason in _NOT_TLS


async def _send_alert(stream: trio.SSLStream) -> None:
    """Tell a client that spoke plaintext to a TLS listener, the way a TLS
    server does: with an alert record (trio drops the one OpenSSL made). A
    tailrace client reads its first four bytes as a frame length of 352 MB,
    above any client's limit, and reports a TLS peer instead of allocating
    (KAFKA-4090). Best effort: the client may be gone already."""
    with trio.move_on_after(1):
        try:
            await stream.transport_stream.send_all(TLS_ALERT_PROTOCOL_VERSION)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client left: nobody to tell


def _tls_reason(exc: BaseException) -> str:
    """The ssl module's reason behind trio's BrokenResourceError."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError):
        return (cause.reason or str(cause)).lower().replace("_", " ")
    if cause is not None:
        return str(cause) or type(cause).__name__
    return str(exc) or "the connection broke"
