"""The users file: the SCRAM-SHA-256 credentials the broker authenticates against.

Format: JSON (UTF-8), written by :func:`add_user` / :func:`remove_user` (the
``tailrace users add|remove|list`` commands), not meant to be edited by hand::

    {
      "version": 1,
      "users": {
        "alice": {
          "scram-sha-256": {
            "salt": "<base64, 8-128 bytes>",
            "iterations": 4096,
            "stored_key": "<base64, 32 bytes>",
            "server_key": "<base64, 32 bytes>"
          }
        }
      }
    }

Rules:

1. No password is ever stored, only the salted SCRAM credential
   (:class:`ScramCredential`). SASL PLAIN is checked against the same
   credential: the offered password is hashed with the stored salt and
   iterations and compared in constant time.
2. Every write replaces the whole file atomically with mode 0600
   (:func:`~.files.write_atomically`), under an flock of the directory so
   that two concurrent ``users add`` cannot lose an update. Loading a file
   that others may read logs a warning: the stored keys allow an offline
   guess at the passwords.
3. Reading is strict and bounded: at most :data:`MAX_FILE_SIZE` bytes and
   :data:`MAX_USERS` users, exactly the keys above, no duplicate keys, valid
   user names (see :mod:`.principal`), base64 of the right lengths,
   iterations within SCRAM's bounds. Anything else raises
   :class:`InvalidConfigError` naming the file: a broker refuses to start on
   a broken users file rather than guess.
4. Arguments to :func:`add_user` / :func:`remove_user` that are wrong raise
   :class:`InvalidRequestError` and change nothing. Passwords are 1 to
   :data:`MAX_PASSWORD_BYTES` bytes (so that a PLAIN message always fits) and
   must pass SASLprep.
5. :func:`load` returns a snapshot, :class:`Users`, which is the lookup
   callable :class:`ScramServer` and :func:`authenticate_plain` take.
   :func:`reload_if_changed` costs one ``stat`` and returns a fresh snapshot
   only when the file was replaced, so the broker can call it at every
   authentication and pick up ``users add`` without a restart (if the new
   file is broken it raises; the broker should keep the snapshot it has and
   log the error).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping
from typing import IO, Any

from tailrace.client.errors import (
    InvalidConfigError,
    InvalidRequestError,
    PolicyViolationError,
    SaslAuthenticationError,
)
from tailrace.client.security.scram import DEFAULT_ITERATIONS, ScramCredential, saslprep

from .files import load_json, locked_directory, read_bounded, write_atomically
from .principal import validate_username

__all__ = [
    "FORMAT_VERSION",
    "MAX_FILE_SIZE",
    "MAX_PASSWORD_BYTES",
    "MAX_USERS",
    "Users",
    "add_user",
    "list_users",
    "load",
    "read_password",
    "reload_if_changed",
    "remove_user",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_USERS = 10_000
MAX_FILE_SIZE = 8 * 1024 * 1024  # ~300 bytes a user: MAX_USERS fit with room to spare
MAX_PASSWORD_BYTES = 512
_MECHANISM_KEY = "scram-sha-256"
_CREDENTIAL_KEYS = {"salt", "iterations", "stored_key", "server_key"}

StrPath = str | os.PathLike[str]
_Identity = tuple[int, int, int, int]


class Users:
    """An immutable snapshot of a users file; call it with a name to get the
    user's :class:`ScramCredential` (or None)."""

    def __init__(
        self, credentials: Mapping[str, ScramCredential], identity: _Identity | None = None
    ) -> None:
        self._credentials = dict(credentials)
        #: (device, inode, size, mtime_ns) of the file this came from.
        self.identity = identity

    def __call__(self, name: str) -> ScramCredential | None:
        return self._credentials.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._credentials

    def __len__(self) -> int:
        return len(self._credentials)

    def names(self) -> list[str]:
        """The user names, sorted."""
        return sorted(self._credentials)


def _identity(st: os.stat_result) -> _Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _b64_field(entry: Mapping[str, Any], key: str, where: str) -> bytes:
    value = entry[key]
    if not isinstance(value, str):
        raise InvalidConfigError(f"{where}: {key} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidConfigError(f"{where}: {key} is not valid base64") from None


def _parse(data: bytes, where: str) -> dict[str, ScramCredential]:
    doc = load_json(data, where)
    if not isinstance(doc, dict) or set(doc) != {"version", "users"}:
        raise InvalidConfigError(f"{where}: expected an object with 'version' and 'users'")
    version = doc["version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise InvalidConfigError(f"{where}: unsupported version {version!r}")
    users = doc["users"]
    if not isinstance(users, dict):
        raise InvalidConfigError(f"{where}: 'users' must be an object")
    if len(users) > MAX_USERS:
        raise InvalidConfigError(f"{where}: more than {MAX_USERS} users")
    credentials = {}
    for name, entry in users.items():
        try:
            validate_username(name)
        except InvalidRequestError as exc:
            raise InvalidConfigError(f"{where}: {exc.message}") from None
        user_where = f"{where}: user {name!r}"
        if not isinstance(entry, dict) or set(entry) != {_MECHANISM_KEY}:
            raise InvalidConfigError(f"{user_where} must have exactly {_MECHANISM_KEY!r}")
        fields = entry[_MECHANISM_KEY]
        if not isinstance(fields, dict) or set(fields) != _CREDENTIAL_KEYS:
            raise InvalidConfigError(f"{user_where} needs exactly {sorted(_CREDENTIAL_KEYS)}")
        iterations = fields["iterations"]
        if type(iterations) is not int:
            raise InvalidConfigError(f"{user_where}: iterations must be an integer")
        salt, stored_key, server_key = (
            _b64_field(fields, key, user_where) for key in ("salt", "stored_key", "server_key")
        )
        try:
            credentials[name] = ScramCredential(
                salt=salt, iterations=iterations, stored_key=stored_key, server_key=server_key
            )
        except InvalidConfigError as exc:
            raise InvalidConfigError(f"{user_where}: {exc.message}") from None
    return credentials


def _encode(credentials: Mapping[str, ScramCredential]) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    doc = {
        "version": FORMAT_VERSION,
        "users": {
            name: {
                _MECHANISM_KEY: {
                    "salt": b64(c.salt),
                    "iterations": c.iterations,
                    "stored_key": b64(c.stored_key),
                    "server_key": b64(c.server_key),
                }
            }
            for name, c in sorted(credentials.items())
        },
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def load(path: StrPath) -> Users:
    """Read the users file. A missing or invalid file raises :class:`InvalidConfigError`."""
    where = repr(os.fspath(path))
    try:
        data, st = read_bounded(path, MAX_FILE_SIZE)
    except FileNotFoundError:
        raise InvalidConfigError(f"the users file {where} does not exist") from None
    if st.st_mode & 0o077:
        logger.warning(
            "users file %s has mode %o: its credentials are readable by others", where, st.st_mode
        )
    return Users(_parse(data, where), _identity(st))


def reload_if_changed(path: StrPath, users: Users) -> Users:
    """``users`` if the file is the one it was read from, else :func:`load` again."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidConfigError(f"the users file {os.fspath(path)!r} does not exist") from None
    if _identity(st) == users.identity:
        return users
    return load(path)


def _read_for_update(path: StrPath) -> dict[str, ScramCredential]:
    try:
        data, _ = read_bounded(path, MAX_FILE_SIZE)
    except FileNotFoundError:
        return {}
    return _parse(data, repr(os.fspath(path)))


def list_users(path: StrPath) -> list[str]:
    """The user names in the file, sorted; a missing file has none."""
    return sorted(_read_for_update(path))


def add_user(
    path: StrPath,
    name: str,
    password: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    replace: bool = False,
) -> None:
    """Add user ``name`` (or, with ``replace``, change their password).

    Creates the file if missing. An existing user without ``replace``, or
    invalid arguments, raise :class:`InvalidRequestError`; a full file
    raises :class:`PolicyViolationError`.
    """
    validate_username(name)
    if not isinstance(password, str) or not password:
        raise InvalidRequestError("the password must not be empty")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise InvalidRequestError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    try:
        saslprep(password)
        credential = ScramCredential.from_password(password, iterations=iterations)
    except (SaslAuthenticationError, InvalidConfigError) as exc:
        raise InvalidRequestError(exc.message) from None
    with locked_directory(path):
        credentials = _read_for_update(path)
        if name in credentials and not replace:
            raise InvalidRequestError(f"user {name!r} already exists")
        if name not in credentials and len(credentials) >= MAX_USERS:
            raise PolicyViolationError(f"the users file already holds {MAX_USERS} users")
        credentials[name] = credential
        write_atomically(path, _encode(credentials), mode=0o600)


def remove_user(path: StrPath, name: str) -> None:
    """Remove user ``name``; an unknown name raises :class:`InvalidRequestError`."""
    with locked_directory(path):
        credentials = _read_for_update(path)
        if name not in credentials:
            raise InvalidRequestError(f"no user {name!r}")
        del credentials[name]
        write_atomically(path, _encode(credentials), mode=0o600)


def read_password(stream: IO[str]) -> str:
    """Read one password line from ``stream`` (e.g. stdin for
    ``tailrace users add --password-stdin``), without its newline. Reads at
    most :data:`MAX_PASSWORD_BYTES` + 1 characters; longer, or empty, raises
    :class:`InvalidRequestError`."""
    line = stream.readline(MAX_PASSWORD_BYTES + 2)
    password = line.removesuffix("\n")
    if not password:
        raise InvalidRequestError("no password was given")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise InvalidRequestError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return password
