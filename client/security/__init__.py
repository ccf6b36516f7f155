"""Client security settings, and the SASL mechanisms both ends share.

:class:`SecurityConfig` is what the producer, consumer and admin clients
accept to speak TLS and/or authenticate. :mod:`.scram` and :mod:`.plain` are
sans-I/O: the same code runs the client side here and the server side in the
broker.

Rules of :class:`SecurityConfig` (checked when it is built; a violation
raises :class:`InvalidConfigError`):

1. TLS is on when ``tls`` is true or any TLS option is given. Either pass a
   ready ``ssl_context`` (you own every setting) or the ``ssl_*file``
   options, not both. The context built from the options verifies the
   broker's certificate (against ``ssl_cafile`` or the system store) and its
   host name (unless ``ssl_check_hostname=False``: for brokers reached by an
   address their certificate does not name) and refuses TLS below 1.2.
   ``ssl_certfile`` (with ``ssl_keyfile`` unless the key is in the same PEM)
   presents a client certificate for mutual TLS.
2. ``sasl_mechanism`` is ``"SCRAM-SHA-256"``, ``"PLAIN"`` or None. With a
   mechanism, ``username`` and exactly one of ``password`` and
   ``password_file`` are required; without one, none of them may be given.
3. ``password_file`` is read at each :meth:`SecurityConfig.resolve_password`
   (so a rotated secret is picked up on the next connection), at most
   :data:`MAX_PASSWORD_FILE_SIZE` bytes, UTF-8, with one trailing newline
   stripped.
4. PLAIN sends the password itself: use it over TLS (the broker refuses it
   on non-loopback plaintext listeners).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Literal

from ..errors import InvalidConfigError, SaslAuthenticationError
from .plain import (
    PlainCredentials,
    authenticate_plain,
    build_plain_message,
    parse_plain_message,
)
from .scram import (
    CredentialLookup,
    ScramClient,
    ScramCredential,
    ScramError,
    ScramServer,
    saslprep,
)

__all__ = [
    "MAX_PASSWORD_FILE_SIZE",
    "SASL_MECHANISMS",
    "CredentialLookup",
    "PlainCredentials",
    "SaslMechanism",
    "ScramClient",
    "ScramCredential",
    "ScramError",
    "ScramServer",
    "SecurityConfig",
    "authenticate_plain",
    "build_plain_message",
    "parse_plain_message",
]

SaslMechanism = Literal["SCRAM-SHA-256", "PLAIN"]
SASL_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN")
MAX_PASSWORD_FILE_SIZE = 4096

StrPath = str | os.PathLike[str]


def _check_password(password: str, where: str) -> str:
    if not password:
        raise InvalidConfigError(f"the password {where} is empty")
    try:
        saslprep(password)
    except SaslAuthenticationError as exc:
        raise InvalidConfigError(f"the password {where} cannot be used: {exc.message}") from None
    return password


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    """How a client secures its connections: TLS, SASL, both or neither."""

    tls: bool = False
    ssl_context: ssl.SSLContext | None = None
    ssl_cafile: StrPath | None = None
    ssl_certfile: StrPath | None = None
    ssl_keyfile: StrPath | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: StrPath | None = None

    def __post_init__(self) -> None:
        files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if self.ssl_context is not None:
            if not isinstance(self.ssl_context, ssl.SSLContext):
                raise InvalidConfigError("ssl_context must be an ssl.SSLContext")
            if any(f is not None for f in files):
                raise InvalidConfigError("give either ssl_context or the ssl_*file options")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise InvalidConfigError("ssl_keyfile needs ssl_certfile")
        if self.sasl_mechanism is None:
            if self.username is not None or self.password is not None or self.password_file:
                raise InvalidConfigError("username/password given without a sasl_mechanism")
            return
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise InvalidConfigError(
                f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)},"
                f" not {self.sasl_mechanism!r}"
            )
        if not isinstance(self.username, str) or not self.username or "\x00" in self.username:
            raise InvalidConfigError(f"{self.sasl_mechanism} needs a non-empty username")
        if (self.password is None) == (self.password_file is None):
            raise InvalidConfigError(
                f"{self.sasl_mechanism} needs exactly one of password and password_file"
            )
        if self.password is not None:
            _check_password(self.password, "given")

    @property
    def uses_tls(self) -> bool:
        """Whether connections are wrapped in TLS."""
        return (
            self.tls
            or self.ssl_context is not None
            or self.ssl_cafile is not None
            or (self.ssl_certfile is not None)
        )

    def build_ssl_context(self) -> ssl.SSLContext | None:
        """The client-side TLS context, or None for plaintext.

        Returns ``ssl_context`` as given, else builds one: certificate and host
        name verification on, TLS 1.2 or newer, the client certificate loaded
        for mutual TLS. Unreadable or invalid files raise
        :class:`InvalidConfigError`.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.check_hostname = self.ssl_check_hostname
            if self.ssl_certfile is not None:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        except OSError as exc:  # ssl.SSLError is an OSError
            raise InvalidConfigError(f"cannot build the TLS context: {exc}") from exc
        return context

    def resolve_password(self) -> str:
        """The password: ``password``, or the contents of ``password_file``
        less one trailing newline. Problems raise :class:`InvalidConfigError`."""
        if self.password is not None:
            return self.password
        if self.password_file is None:
            raise InvalidConfigError("no password is configured")
        where = f"in {os.fspath(self.password_file)!r}"
        try:
            with open(self.password_file, "rb") as f:
                data = f.read(MAX_PASSWORD_FILE_SIZE + 1)
        except OSError as exc:
            raise InvalidConfigError(f"cannot read the password file: {exc}") from exc
        if len(data) > MAX_PASSWORD_FILE_SIZE:
            raise InvalidConfigError(f"the password file is over {MAX_PASSWORD_FILE_SIZE} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidConfigError(f"the password {where} is not UTF-8") from None
        return _check_password(text.removesuffix("\n"), where)
