"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as two sans-I/O state machines.

Nothing here touches a socket, a file or a clock: each side is fed the peer's
message as bytes and returns the bytes to send back. The broker carries them
in its SASL requests; how they travel is the wire protocol's business.

The exchange::

    client                                      server
    ScramClient.client_first()        ──►  ScramServer.receive_client_first()
      n,,n=<user>,r=<cnonce>                  looks the user up (callback)
    ScramClient.receive_server_first() ◄──    r=<cnonce><snonce>,s=<salt>,i=<n>
      c=biws,r=<cnonce><snonce>,p=<proof> ──►  ScramServer.receive_client_final()
    ScramClient.receive_server_final() ◄──    v=<server signature>

Rules both sides enforce:

1. Every message is at most :data:`MAX_MESSAGE_SIZE` bytes, checked before it
   is decoded, and must be UTF-8 made of ``x=value`` attributes in the order
   the RFC gives. Anything else raises :class:`SaslAuthenticationError`; a
   message at the wrong moment (or after the exchange ended, successfully or
   not) raises :class:`IllegalSaslStateError`. No other exception escapes a
   ``receive_*`` method for any input. Refusals are :class:`ScramError`, a
   SaslAuthenticationError carrying the RFC 5802 server-error-value; the
   server also offers it as a server-final-message (:attr:`ScramServer.error_final`).
2. Nonces: the client's is :data:`NONCE_BYTES` random bytes in base64. The
   server appends a random suffix of its own. The client refuses a server
   nonce that does not *start with* its nonce and add something; the server
   refuses a client-final whose nonce does not *end with* the combined nonce
   (Kafka CVE-2024-56128 was a server that skipped this check; Kafka's fix
   checks the same suffix, because librdkafka 2.0.2 sends its own nonce
   again before the combined one, and the proof signs whatever was sent).
   A proof captured from one exchange is therefore useless in another: the
   server nonce differs.
3. Channel binding is not supported. The gs2 header must be ``n,,`` or
   ``y,,`` ("client could bind, thinks the server cannot" — true, so RFC 5802
   section 6 lets it pass); ``p=...`` is refused with
   ``channel-binding-not-supported``. The client-final's ``c=`` must be the
   base64 of the header the client sent (``biws`` for ``n,,``).
4. An authorization identity (``a=``) is accepted only when it names the
   user being authenticated: tailrace has no proxy authorization.
5. ``m=`` (reserved mandatory extension) is refused; other extensions are
   checked for form and ignored.
6. The server keeps only :class:`ScramCredential` (salt, iterations,
   StoredKey, ServerKey), never a password. Proofs and signatures are compared
   with :func:`hmac.compare_digest`.
7. Iteration counts lie in [:data:`MIN_ITERATIONS`, :data:`MAX_ITERATIONS`].
   The client refuses a server that asks for fewer (a rogue server would make
   an offline guess at the password cheaper) or more (a rogue server would
   make the client spin; 1,000,000 rounds take about 0.25 s here).
8. An unknown user gets a normal-looking server-first message with a salt
   derived from the name and a per-process secret, and fails at the proof
   like a wrong password, so the exchange does not reveal which names exist.
   The server's :attr:`ScramServer.failure_reason` says what really happened,
   for the audit log; the exception message (which may go on the wire) does
   not.
9. Passwords go through SASLprep (RFC 4013, :func:`saslprep`) before
   hashing, as RFC 5802 asks, so that ``"I\\u00adX"`` and ``"IX"`` are the same
   password. User names are not prepared: they are compared exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import IllegalSaslStateError, InvalidConfigError, SaslAuthenticationError

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_ITERATIONS",
    "MAX_MESSAGE_SIZE",
    "MECHANISM",
    "MIN_ITERATIONS",
    "NONCE_BYTES",
    "SALT_BYTES",
    "CredentialLookup",
    "ScramClient",
    "ScramCredential",
    "ScramError",
    "ScramServer",
    "escape_saslname",
    "saslprep",
    "unescape_saslname",
]

MECHANISM = "SCRAM-SHA-256"
#: Largest SCRAM message either side accepts or builds, in bytes.
MAX_MESSAGE_SIZE = 1024
MIN_ITERATIONS = 4096
DEFAULT_ITERATIONS = 4096
MAX_ITERATIONS = 1_000_000
#: Random bytes in a nonce (client's, and the server's suffix) before base64.
NONCE_BYTES = 24
#: Random bytes in a new credential's salt.
SALT_BYTES = 16
_KEY_BYTES = 32  # SHA-256 digest size
_MIN_SALT_BYTES = 8
_MAX_SALT_BYTES = 128

#: How the server finds a user's credential: the name in, None when unknown.
CredentialLookup = Callable[[str], "ScramCredential | None"]

# RFC 5802 section 7: printable = %x21-2B / %x2D-7E (no comma).
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+\Z")
# saslname = 1*(value-safe-char / "=2C" / "=3D"); value-safe-char excludes NUL, "=" and ",".
_SASLNAME = re.compile(r"(?:[^\x00=,]|=2C|=3D)+\Z")
# attr-val = ALPHA "=" value; value = 1*value-char (anything but NUL and ",").
_ATTRIBUTE = re.compile(r"[A-Za-z]=[^\x00,]+\Z")
_ITERATIONS = re.compile(r"[1-9][0-9]{0,9}\Z")

# Per-process secret that makes the fake salt of an unknown user stable for
# the life of the broker (a salt that changed on every attempt would give the
# name away) and unpredictable to outsiders.
_FAKE_SALT_KEY = secrets.token_bytes(32)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ScramError(SaslAuthenticationError):
    """A SCRAM exchange was refused (the wire code is SaslAuthenticationError's).

    ``server_error`` is the RFC 5802 server-error-value that names the
    failure (``invalid-encoding``, ``invalid-proof``...), for a protocol that
    reports it in a server-final-message ``e=...``.
    """

    def __init__(self, message: str, server_error: str = "other-error") -> None:
        super().__init__(f"{MECHANISM}: {message}")
        self.server_error = server_error


def _fail(message: str, server_error: str = "invalid-encoding") -> ScramError:
    return ScramError(message, server_error)


def _unb64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _fail(f"{what} is not valid base64") from None


# --- SASLprep ----------------------------------------------------------------

_PROHIBITED = (
    stringprep.in_table_c12,  # non-ASCII space
    stringprep.in_table_c21_c22,  # control characters
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogates
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties / deprecated
    stringprep.in_table_c9,  # tagging characters
)


def saslprep(text: str) -> str:
    """Prepare a password per RFC 4013 (SASLprep) and return it.

    Maps non-ASCII spaces to U+0020, drops characters "commonly mapped to
    nothing" (soft hyphen, zero-width joiners...), applies NFKC, then refuses
    prohibited characters and malformed bidirectional text with
    :class:`SaslAuthenticationError`. Unassigned code points are allowed (the
    RFC's rule for queries), so that passwords with newer characters such as
    emoji still work; both ends run this same function, so they agree.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    for c in prepared:
        if any(prohibited(c) for prohibited in _PROHIBITED):
            raise _fail(
                f"the password contains a prohibited character U+{ord(c):04X}", "other-error"
            )
    if any(stringprep.in_table_d1(c) for c in prepared) and (
        any(stringprep.in_table_d2(c) for c in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        raise _fail("the password mixes right-to-left and left-to-right text", "other-error")
    return prepared


# --- user names ----------------------------------------------------------------


def escape_saslname(name: str) -> str:
    """Escape a user name for the ``n=`` attribute: ``=`` as ``=3D``, ``,`` as ``=2C``."""
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_saslname(value: str) -> str:
    """Undo :func:`escape_saslname`; a stray ``=`` or a NUL raises
    :class:`SaslAuthenticationError` (RFC 5802: ``invalid-username-encoding``)."""
    if not _SASLNAME.match(value):
        raise _fail("invalid-username-encoding", "invalid-username-encoding")
    return value.replace("=2C", ",").replace("=3D", "=")


# --- credentials -----------------------------------------------------------


def _salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)


def _check_iterations(iterations: int) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise InvalidConfigError(f"SCRAM iterations must be an integer, not {iterations!r}")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise InvalidConfigError(
            f"SCRAM iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS},"
            f" not {iterations}"
        )


@dataclass(frozen=True)
class ScramCredential:
    """What the server stores for a user (RFC 5802 section 3), never the password.

    ``stored_key`` = H(HMAC(SaltedPassword, "Client Key")) checks a client's
    proof; ``server_key`` = HMAC(SaltedPassword, "Server Key") signs the
    server's answer. Neither lets their holder log in as the user. Invalid
    fields raise :class:`InvalidConfigError`.
    """

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_iterations(self.iterations)
        if not isinstance(self.salt, bytes) or not (
            _MIN_SALT_BYTES <= len(self.salt) <= _MAX_SALT_BYTES
        ):
            raise InvalidConfigError(
                f"a SCRAM salt must be {_MIN_SALT_BYTES} to {_MAX_SALT_BYTES} bytes"
            )
        for name in ("stored_key", "server_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != _KEY_BYTES:
                raise InvalidConfigError(f"a SCRAM-SHA-256 {name} must be {_KEY_BYTES} bytes")

    @classmethod
    def from_password(
        cls, password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
    ) -> ScramCredential:
        """Derive the credential for ``password`` with a fresh random salt
        (or ``salt``, for test vectors). A password SASLprep refuses raises
        :class:`SaslAuthenticationError`."""
        _check_iterations(iterations)
        if salt is None:
            salt = secrets.token_bytes(SALT_BYTES)
        salted = _salted_password(password, salt, iterations)
        return cls(
            salt=salt,
            iterations=iterations,
            stored_key=hashlib.sha256(_hmac(salted, b"Client Key")).digest(),
            server_key=_hmac(salted, b"Server Key"),
        )

    def verify_password(self, password: str) -> bool:
        """True when ``password`` is the one this credential was made from.

        Used by SASL PLAIN: the password is hashed with the stored salt and
        iterations and the StoredKeys compared in constant time.
        """
        try:
            salted = _salted_password(password, self.salt, self.iterations)
        except SaslAuthenticationError:
            return False
        stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
        return hmac.compare_digest(stored_key, self.stored_key)


def _fake_credential(username: str) -> ScramCredential:
    """A credential for a user that does not exist: stable salt, keys nobody knows."""
    salt = _hmac(_FAKE_SALT_KEY, username.encode("utf-8"))[:SALT_BYTES]
    return ScramCredential(
        salt=salt,
        iterations=DEFAULT_ITERATIONS,
        stored_key=secrets.token_bytes(_KEY_BYTES),
        server_key=secrets.token_bytes(_KEY_BYTES),
    )


# --- message parsing -----------------------------------------------------------


def _text(data: bytes, what: str) -> str:
    """Bound, then decode a message. Never raises anything but the typed error."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > MAX_MESSAGE_SIZE:
        raise _fail(f"{what} is {len(data)} bytes, over the {MAX_MESSAGE_SIZE}-byte limit")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(f"{what} is not UTF-8") from None


def _attributes(text: str, what: str) -> list[tuple[str, str]]:
    """Split ``a=x,b=y`` into pairs, checking each has the RFC's form."""
    pairs = []
    for part in text.split(","):
        if not _ATTRIBUTE.match(part):
            raise _fail(f"malformed {what}: bad attribute {part[:16]!r}")
        pairs.append((part[0], part[2:]))
    return pairs


def _expect(pairs: list[tuple[str, str]], index: int, name: str, what: str) -> str:
    if index >= len(pairs) or pairs[index][0] != name:
        raise _fail(f"malformed {what}: expected the {name}= attribute")
    return pairs[index][1]


def _check_no_mandatory_extension(pairs: list[tuple[str, str]], what: str) -> None:
    if pairs and pairs[0][0] == "m":
        raise _fail(f"{what}: extensions-not-supported", "extensions-not-supported")


def _check_nonce(nonce: str, what: str) -> str:
    if not _NONCE.match(nonce):
        raise _fail(f"malformed {what}: the nonce has characters outside %x21-7E or a comma")
    return nonce


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


class _Steps:
    """A linear state machine: each step runs once, in order. A failure or a
    step out of order fails it for good; after the last step nothing more is
    accepted (but success stands)."""

    def __init__(self, *steps: str) -> None:
        self._steps = steps
        self._next = 0
        self.failed = False

    def enter(self, step: str) -> None:
        if self.failed:
            raise IllegalSaslStateError(f"{MECHANISM}: the exchange already failed")
        if self._next >= len(self._steps):
            raise IllegalSaslStateError(f"{MECHANISM}: the exchange is over, got {step}")
        if self._steps[self._next] != step:
            self.failed = True  # a message out of order ends the exchange
            raise IllegalSaslStateError(
                f"{MECHANISM}: expected {self._steps[self._next]}, got {step}"
            )
        self._next += 1

    @property
    def finished(self) -> bool:
        return not self.failed and self._next == len(self._steps)


# --- the client ----------------------------------------------------------------


class ScramClient:
    """The client side of one SCRAM-SHA-256 exchange.

    Call :meth:`client_first`, send it; feed the answer to
    :meth:`receive_server_first`, send what it returns; feed the last answer
    to :meth:`receive_server_final`, which returns only when the server proved
    it knows the credential. ``nonce`` is for test vectors only.
    """

    def __init__(self, username: str, password: str, *, nonce: str | None = None) -> None:
        if not username or "\x00" in username:
            raise InvalidConfigError("a SCRAM user name must be non-empty and contain no NUL")
        if not password:
            raise InvalidConfigError("a SCRAM password must not be empty")
        self.username = username
        self._password = password
        self._nonce = _b64(secrets.token_bytes(NONCE_BYTES)) if nonce is None else nonce
        if not _NONCE.match(self._nonce):
            raise InvalidConfigError("a SCRAM nonce must be printable ASCII without commas")
        self._client_first_bare = f"n={escape_saslname(username)},r={self._nonce}"
        if len(self._client_first_bare) + 3 > MAX_MESSAGE_SIZE:
            raise InvalidConfigError("the SCRAM user name is too long")
        self._server_signature = b""
        self._steps = _Steps("client_first", "server_first", "server_final")

    @property
    def authenticated(self) -> bool:
        """True once the server's signature has been verified."""
        return self._steps.finished

    def client_first(self) -> bytes:
        """The client-first-message: ``n,,n=<user>,r=<nonce>``."""
        self._steps.enter("client_first")
        return f"n,,{self._client_first_bare}".encode()

    def receive_server_first(self, data: bytes) -> bytes:
        """Check the server-first-message and return the client-final-message."""
        self._steps.enter("server_first")
        try:
            return self._server_first(data)
        except BaseException:
            self._steps.failed = True
            raise
        finally:
            self._password = ""

    def _server_first(self, data: bytes) -> bytes:
        what = "server-first-message"
        server_first = _text(data, what)
        pairs = _attributes(server_first, what)
        _check_no_mandatory_extension(pairs, what)
        nonce = _check_nonce(_expect(pairs, 0, "r", what), what)
        salt = _unb64(_expect(pairs, 1, "s", what), "the salt")
        iterations_text = _expect(pairs, 2, "i", what)
        if not (nonce.startswith(self._nonce) and len(nonce) > len(self._nonce)):
            raise _fail("the server nonce does not extend the client nonce")
        if not _MIN_SALT_BYTES <= len(salt) <= _MAX_SALT_BYTES:
            raise _fail(f"the server sent a {len(salt)}-byte salt")
        if not _ITERATIONS.match(iterations_text):
            raise _fail("malformed server-first-message: bad iteration count")
        iterations = int(iterations_text)
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise _fail(
                f"the server asks for {iterations} iterations, outside"
                f" [{MIN_ITERATIONS}, {MAX_ITERATIONS}]"
            )
        salted = _salted_password(self._password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode()

    def receive_server_final(self, data: bytes) -> None:
        """Check the server-final-message; raise unless it carries the
        signature only the holder of our credential can compute."""
        self._steps.enter("server_final")
        try:
            what = "server-final-message"
            pairs = _attributes(_text(data, what), what)
            if pairs[0][0] == "e":
                raise _fail(f"the server refused: {pairs[0][1]}", pairs[0][1])
            signature = _unb64(_expect(pairs, 0, "v", what), "the server signature")
            if not hmac.compare_digest(signature, self._server_signature):
                raise _fail(
                    "the server signature is wrong: the server does not hold our credential"
                )
        except BaseException:
            self._steps.failed = True
            raise


# --- the server ----------------------------------------------------------------


class ScramServer:
    """The server side of one SCRAM-SHA-256 exchange.

    ``lookup`` maps a user name to its :class:`ScramCredential` or None.
    Feed the client's messages to :meth:`receive_client_first` and
    :meth:`receive_client_final`; each returns the answer to send. On
    success :attr:`username` is the authenticated user; on failure the
    methods raise and :attr:`failure_reason` explains it for the audit log.
    ``nonce_suffix`` is for test vectors only.
    """

    def __init__(self, lookup: CredentialLookup, *, nonce_suffix: str | None = None) -> None:
        self._lookup = lookup
        self._suffix = (
            _b64(secrets.token_bytes(NONCE_BYTES)) if nonce_suffix is None else nonce_suffix
        )
        if not _NONCE.match(self._suffix):
            raise InvalidConfigError("a SCRAM nonce must be printable ASCII without commas")
        self._steps = _Steps("client_first", "client_final")
        self._user = ""
        self._known_user = False
        self._credential: ScramCredential | None = None
        self._channel_binding = ""
        self._nonce = ""
        self._client_first_bare = ""
        self._server_first = ""
        #: Why the exchange failed, in more detail than the exception (which
        #: may be sent to the peer and must not tell which user names exist).
        self.failure_reason: str | None = None
        #: The RFC 5802 server-error-value of the failure (never
        #: ``unknown-user``: an unknown user is an ``invalid-proof``).
        self.server_error: str | None = None

    @property
    def username(self) -> str | None:
        """The authenticated user name, once the exchange has succeeded."""
        return self._user if self._steps.finished else None

    @property
    def error_final(self) -> bytes | None:
        """The server-final-message ``e=<server-error-value>`` reporting the
        failure, for a protocol that sends one; None unless the exchange failed."""
        return None if self.server_error is None else f"e={self.server_error}".encode()

    @property
    def attempted_username(self) -> str | None:
        """The user name the client claimed in its first message, if it got that far."""
        return self._user or None

    def receive_client_first(self, data: bytes) -> bytes:
        """Check the client-first-message and return the server-first-message."""
        self._steps.enter("client_first")
        return self._run(self._client_first, data)

    def receive_client_final(self, data: bytes) -> bytes:
        """Check the client's proof and return the server-final-message ``v=...``."""
        self._steps.enter("client_final")
        return self._run(self._client_final, data)

    def _run(self, step: Callable[[bytes], bytes], data: bytes) -> bytes:
        try:
            return step(data)
        except ScramError as exc:
            self._steps.failed = True
            self.server_error = exc.server_error
            if self.failure_reason is None:
                self.failure_reason = exc.message
            raise
        except BaseException:
            self._steps.failed = True
            raise

    def _client_first(self, data: bytes) -> bytes:
        what = "client-first-message"
        text = _text(data, what)
        cbind, _, rest = text.partition(",")
        authzid, comma, bare = rest.partition(",")
        if not comma:
            raise _fail(f"malformed {what}: no gs2 header")
        if cbind.startswith("p="):
            raise _fail("channel-binding-not-supported", "channel-binding-not-supported")
        if cbind not in ("n", "y"):
            raise _fail(f"malformed {what}: bad channel-binding flag")
        pairs = _attributes(bare, what)
        _check_no_mandatory_extension(pairs, what)
        self._user = unescape_saslname(_expect(pairs, 0, "n", what))
        nonce = _check_nonce(_expect(pairs, 1, "r", what), what)
        if authzid and (
            not authzid.startswith("a=") or unescape_saslname(authzid[2:]) != self._user
        ):
            raise _fail(
                "an authorization identity other than the user is not supported", "other-error"
            )
        credential = self._lookup(self._user)
        self._known_user = credential is not None
        self._credential = credential if credential is not None else _fake_credential(self._user)
        self._channel_binding = _b64(f"{cbind},{authzid},".encode())
        self._nonce = nonce + self._suffix
        self._client_first_bare = bare
        self._server_first = (
            f"r={self._nonce},s={_b64(self._credential.salt)},i={self._credential.iterations}"
        )
        return self._server_first.encode()

    def _client_final(self, data: bytes) -> bytes:
        what = "client-final-message"
        text = _text(data, what)
        pairs = _attributes(text, what)
        if len(pairs) < 3 or pairs[-1][0] != "p":
            raise _fail(f"malformed {what}: the proof must come last")
        if _expect(pairs, 0, "c", what) != self._channel_binding:
            raise _fail("channel-bindings-dont-match", "channel-bindings-dont-match")
        sent = _expect(pairs, 1, "r", what).encode()
        if not hmac.compare_digest(sent[-len(self._nonce) :], self._nonce.encode()):
            raise _fail("the nonce is not the one this exchange agreed", "other-error")
        proof = _unb64(pairs[-1][1], "the proof")
        if len(proof) != _KEY_BYTES:
            raise _fail("invalid-proof", "invalid-proof")
        credential = self._credential
        assert credential is not None  # set by _client_first, which _Steps ran first
        without_proof = text.rsplit(",", 1)[0]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_key = _xor(proof, _hmac(credential.stored_key, auth_message))
        valid = hmac.compare_digest(hashlib.sha256(client_key).digest(), credential.stored_key)
        if not (valid and self._known_user):
            self.failure_reason = "unknown user" if not self._known_user else "invalid proof"
            raise _fail("invalid-proof", "invalid-proof")
        return f"v={_b64(_hmac(credential.server_key, auth_message))}".encode()
