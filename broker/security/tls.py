"""TLS for listeners: the server-side SSL context and the stream wrapper.

A listener with ``security = "tls"`` wraps every accepted TCP stream in a
``trio.SSLStream`` with the context built here:

* TLS 1.2 or newer (:data:`MIN_VERSION`), the ssl module's default ciphers;
* the listener's certificate chain and key (``tls_cert_file``,
  ``tls_key_file``);
* with ``tls_client_ca_file``: clients must present a certificate signed by
  that CA (``CERT_REQUIRED``), which is what mutual TLS (``authentication =
  "mtls"``) names the principal from.

trio's SSLStream encrypts in user space (``ssl.SSLObject`` over memory
BIOs), so a TLS connection cannot use ``sendfile``: its fetches take the
copy path (pread then send). Plaintext listeners keep zero-copy.

Bad files are reported as :class:`InvalidConfigError` naming the listener
and the file (the ssl module's own message omits the file name), when the
configuration is loaded, so ``tailrace broker --check-config`` finds them.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from tailrace.client.errors import InvalidConfigError

if TYPE_CHECKING:
    from ..config import ListenerConfig

__all__ = ["MIN_VERSION", "server_context", "ssl_wrapper"]

MIN_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(listener: ListenerConfig) -> ssl.SSLContext:
    """The SSL context of a TLS listener; unusable files raise InvalidConfigError."""
    where = f"listener {listener.name!r}"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MIN_VERSION
    for key in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        path = getattr(listener, key)
        if path and not os.path.isfile(path):
            raise InvalidConfigError(f"{where}: {key} {path!r} is not a readable file")
    try:
        context.load_cert_chain(listener.tls_cert_file, listener.tls_key_file or None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InvalidConfigError(
            f"{where}: cannot load the certificate {listener.tls_cert_file!r} with the key "
            f"{listener.tls_key_file!r}: {_reason(exc)}"
        ) from None
    if listener.tls_client_ca_file:
        try:
            context.load_verify_locations(cafile=listener.tls_client_ca_file)
        except (OSError, ValueError) as exc:
            raise InvalidConfigError(
                f"{where}: cannot load the client CA {listener.tls_client_ca_file!r}: "
                f"{_reason(exc)}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def ssl_wrapper(context: ssl.SSLContext) -> Callable[[trio.SocketStream], trio.SSLStream]:
    """A ``BoundListener.wrap`` that puts each accepted stream in TLS (the
    handshake runs at the first read, or when the broker asks for it)."""

    def wrap(stream: trio.SocketStream) -> trio.SSLStream:
        return trio.SSLStream(stream, context, server_side=True, https_compatible=False)

    return wrap


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    return getattr(exc, "strerror", None) or str(exc)
