"""Kafka's wire protocol, server side, as a sans-I/O state machine.

Like the native codec (:mod:`tailrace.client.protocol.connection`): feed
received bytes with ``receive_data`` (``b""`` for end of stream), pull events
with ``next_event``, turn response entities into bytes with
:func:`encode_response`. Nothing here does I/O or imports trio. Message
schemas are kio's (generated from Kafka's JSON schemas); this module only
frames them.

Framing (big-endian)::

    i32  size             bytes after this field; checked against
                          Limits.max_frame_bytes before anything is buffered
    i16  api_key          request header v1 (v2 for flexible versions adds
    i16  api_version      tagged fields after client_id)
    i32  correlation_id
    i16  client_id        nullable string: length (-1 null) then UTF-8 bytes
    ..   [tagged fields]  v2 only: uvarint count, then (uvarint tag, uvarint
                          size, bytes) each; skipped, every length bounded by
                          the frame
    ..   body             kio entity of (api_key, api_version); trailing bytes
                          after it are ignored (librdkafka 2.16 sends some)

Responses: i32 size, response header v0 (correlation_id) or v1 for flexible
versions (correlation_id + an empty tagged-field section), then the body.
ApiVersions answers always with header v0 (KIP-511). No tagged field is ever
written with a value (kio writes only non-default tags; nothing here sets
one): librdkafka before 2.2 cannot skip them.

Rules:

1. A frame whose size is below 8 or above the limit, or a stream that ends
   inside a frame, raises :class:`KafkaRemoteProtocolError` (fatal): close.
2. A well-framed request of an API or version not in
   :data:`.versions.ADVERTISED` becomes a :class:`KafkaBadRequest`. For
   ApiVersions :meth:`error_response` answers with the KIP-511 v0 body
   (error 35 and the ApiVersions range) so the client retries with a version
   it finds there; for any other API it returns None: Kafka closes the
   connection, and so does the broker (logged).
3. A body that does not decode is a :class:`KafkaBadRequest` too (closed).
4. Only :class:`KafkaRemoteProtocolError` escapes ``next_event``.
5. After a SaslHandshake v0 the mechanism's tokens travel as bare frames
   (i32 size, then the token: no header) until the exchange ends. The SASL
   gate turns that on and off (:attr:`KafkaServerConnection.raw_tokens`);
   meanwhile each frame is a :class:`KafkaSaslToken`, bounded by the same
   (pre-authentication) frame limit, and the answer is framed the same way
   (:func:`encode_token`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.api_versions.v0.response import ApiVersion as ApiVersionV0
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.errors import ErrorCode as KafkaErrorCode
from kio.serial import entity_reader, entity_writer
from kio.serial.errors import SerialError
from kio.static.primitive import i16

from tailrace.client.errors import BrokerError, InvalidRequestError, UnsupportedVersionError
from tailrace.client.protocol import CLOSED, NEED_DATA, Limits
from tailrace.client.protocol.frames import FrameReader

from .errors import KafkaLocalProtocolError, KafkaRemoteProtocolError, kafka_code
from .versions import ADVERTISED, KafkaApi, api_name

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "KafkaBadRequest",
    "KafkaRequest",
    "KafkaSaslToken",
    "KafkaServerConnection",
    "encode_response",
    "encode_token",
    "request_class",
    "response_class",
]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


@dataclass(slots=True)
class KafkaRequest:
    """A decoded request: ``body`` is the kio request entity."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any
    #: bytes of the whole frame, for metrics and budgets
    size: int = 0


@dataclass(slots=True)
class KafkaBadRequest:
    """A well-framed request this broker cannot serve (see rules 2 and 3)."""

    api_key: int
    api_version: int
    correlation_id: int
    error: BrokerError
    size: int = 0


@dataclass(slots=True)
class KafkaSaslTokenBody:
    auth_bytes: bytes


@dataclass(slots=True)
class KafkaSaslToken:
    """A bare SASL token after a SaslHandshake v0 (rule 5). It stands in
    for a SaslAuthenticate: ``body.auth_bytes`` is the token; the answer is
    a bare token too, and on failure the connection closes (Kafka has no
    error frame for this framing)."""

    body: KafkaSaslTokenBody
    size: int = 0
    api_key: int = KafkaApi.SASL_AUTHENTICATE
    api_version: int = 0
    correlation_id: int = 0


#: (api_key, api_version) -> (request class, its reader, response class,
#: flexible), filled on first use: kio's schema modules take 2-3 ms each to
#: import, and loading all of the advertised pairs at import time cost the
#: broker's start-up about 0.2 s (docs/testing.md). A client uses a handful.
_SCHEMAS: dict[tuple[int, int], tuple[type, Callable, type, bool]] = {}


def _schema(api_key: int, api_version: int) -> tuple[type, Callable, type, bool] | None:
    """The schema entry of an advertised (API, version), or None if it is not one."""
    entry = _SCHEMAS.get((api_key, api_version))
    if entry is None:
        span = ADVERTISED.get(api_key)
        if span is None or not span[0] <= api_version <= span[1]:
            return None
        req = load_request_schema(api_key, api_version)
        resp = load_response_schema(api_key, api_version)
        entry = (req, entity_reader(req), resp, bool(req.__flexible__))
        # Brokers in several threads of one process may both load a pair:
        # the entries are equal, and a dict store is atomic.
        _SCHEMAS[(api_key, api_version)] = entry
    return entry


def request_class(api_key: int, api_version: int) -> type:
    entry = _schema(api_key, api_version)
    if entry is None:
        raise KeyError((api_key, api_version))
    return entry[0]


def response_class(api_key: int, api_version: int) -> type:
    entry = _schema(api_key, api_version)
    if entry is None:
        raise KeyError((api_key, api_version))
    return entry[2]


def _read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise KafkaRemoteProtocolError("request header ends inside a varint", fatal=False)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise KafkaRemoteProtocolError("request header varint longer than 5 bytes", fatal=False)


def _read_header_rest(payload: memoryview, flexible: bool) -> tuple[str | None, int]:
    """client_id and, for header v2, the skipped tagged fields; returns
    (client_id, position of the body)."""
    end = len(payload)
    if end < 2:
        raise KafkaRemoteProtocolError("request header ends before client_id", fatal=False)
    (length,) = _I16.unpack_from(payload, 0)
    pos = 2
    client_id = None
    if length >= 0:
        if pos + length > end:
            raise KafkaRemoteProtocolError(
                f"client_id of {length} bytes overruns the frame", fatal=False
            )
        client_id = bytes(payload[pos : pos + length]).decode("utf-8", "replace")
        pos += length
    elif length != -1:
        raise KafkaRemoteProtocolError(f"client_id length {length}", fatal=False)
    if flexible:
        count, pos = _read_uvarint(payload, pos)
        if count > end - pos:
            raise KafkaRemoteProtocolError(f"{count} header tags in a short frame", fatal=False)
        for _ in range(count):
            _tag, pos = _read_uvarint(payload, pos)
            size, pos = _read_uvarint(payload, pos)
            if size > end - pos:
                raise KafkaRemoteProtocolError(
                    f"header tag of {size} bytes overruns the frame", fatal=False
                )
            pos += size
    return client_id, pos


class KafkaServerConnection:
    """The broker's end of one Kafka connection (bytes in, requests out)."""

    __slots__ = ("_error", "_error_body", "_reader", "limits", "raw_tokens")

    #: the connection machinery answers these through error_response
    BAD_REQUEST = KafkaBadRequest

    def __init__(
        self,
        limits: Limits | None = None,
        error_body: Callable[[KafkaRequest, BrokerError], Any] | None = None,
    ) -> None:
        """``error_body(request, error)``: the front-end's response entity
        carrying only ``error`` (None when the API has no top-level error)."""
        self.limits = limits or Limits()
        self._error_body = error_body
        self._reader = FrameReader(self.limits)
        self._error: KafkaRemoteProtocolError | None = None
        #: frames are bare SASL tokens (rule 5), set by the SASL gate
        self.raw_tokens = False

    # --- bytes in (the same surface as the native ServerConnection) -------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._reader.feed(data)

    def set_limits(self, limits: Limits) -> None:
        self.limits = limits
        self._reader.limits = limits

    def bytes_wanted(self) -> int:
        return self._reader.bytes_wanted()

    def receive_buffer(self) -> memoryview | None:
        return self._reader.receive_buffer()

    def received_into(self, n: int) -> None:
        self._reader.received_into(n)

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    # --- events -------------------------------------------------------------

    def next_event(self) -> KafkaRequest | KafkaBadRequest | KafkaSaslToken | object:
        if self._error is not None:
            raise self._error
        if self.raw_tokens:
            return self._next_token()
        try:
            frame = self._reader.next_frame()
        except KafkaRemoteProtocolError:
            raise
        except Exception as exc:  # the frame reader's RemoteProtocolError
            self._error = KafkaRemoteProtocolError(str(exc))
            raise self._error from exc
        if frame is None:
            return CLOSED if self._reader.eof else NEED_DATA
        api_key, api_version, correlation_id, payload = frame
        if correlation_id >= 1 << 31:
            correlation_id -= 1 << 32  # an i32 on the wire
        size = len(payload) + 12
        entry = _schema(api_key, api_version)
        if entry is None:
            span = ADVERTISED.get(api_key)
            what = (
                f"unknown api_key {api_key}"
                if span is None
                else f"{api_name(api_key)} version {api_version} is not supported "
                f"({span[0]}-{span[1]})"
            )
            return KafkaBadRequest(
                api_key, api_version, correlation_id, UnsupportedVersionError(what), size
            )
        _req, reader, _resp, flexible = entry
        if not payload.readonly:
            # a large frame (FrameReader.LARGE_FRAME, 256 KiB: librdkafka's
            # produce requests of default 1 MB batches) arrives in a writable
            # buffer of its own; kio's Rust readers take read-only buffers
            # only (a writable one: ValueError). A read-only view, no copy:
            # the decoded body holds bytes copies, not views of the buffer.
            payload = payload.toreadonly()
        try:
            client_id, pos = _read_header_rest(payload, flexible)
            body, _used = reader(payload, pos)  # trailing bytes are ignored
        except (
            KafkaRemoteProtocolError,
            SerialError,
            ValueError,
            TypeError,
            OverflowError,
            # kio 0.6.5 raises KeyError for a tagged field it does not know in
            # a flexible body (Kafka would skip it): undecodable here, closed
            KeyError,
        ) as exc:
            return KafkaBadRequest(
                api_key,
                api_version,
                correlation_id,
                InvalidRequestError(
                    f"{api_name(api_key)} v{api_version} request does not decode: "
                    f"{type(exc).__name__}: {exc}"
                ),
                size,
            )
        return KafkaRequest(api_key, api_version, correlation_id, client_id, body, size)

    def _next_token(self) -> KafkaSaslToken | object:
        try:
            token = self._reader.next_raw()
        except Exception as exc:  # the frame reader's RemoteProtocolError
            self._error = KafkaRemoteProtocolError(str(exc))
            raise self._error from exc
        if token is None:
            return CLOSED if self._reader.eof else NEED_DATA
        return KafkaSaslToken(KafkaSaslTokenBody(token), len(token) + 4)

    # --- bytes out ------------------------------------------------------------

    def error_response(
        self, request: KafkaRequest | KafkaBadRequest, error: BrokerError
    ) -> bytes | None:
        """The answer to a request that failed as a whole, or None: close.

        An ApiVersions request of an unsupported version is answered with
        the KIP-511 v0 body; a decoded request whose handler failed, with
        the front-end's ``error_body`` when the API has a top-level error
        code. Kafka closes the connection on everything else."""
        if type(request) is KafkaRequest:
            entity = self._error_body(request, error) if self._error_body else None
            return None if entity is None else encode_response(request, entity)
        if request.api_key == KafkaApi.API_VERSIONS and type(request) is KafkaBadRequest:
            lo, hi = ADVERTISED[KafkaApi.API_VERSIONS]
            body = ApiVersionsResponseV0(
                error_code=KafkaErrorCode(kafka_code(UnsupportedVersionError())),
                api_keys=(
                    ApiVersionV0(
                        api_key=i16(KafkaApi.API_VERSIONS), min_version=i16(lo), max_version=i16(hi)
                    ),
                ),
            )
            return _frame(request.correlation_id, False, body)
        return None


def encode_response(request: KafkaRequest, entity: Any) -> bytes:
    """Frame ``entity`` (a kio response of the request's API and version)."""
    cls = type(entity)
    if cls.__api_key__ != request.api_key or cls.__version__ != request.api_version:
        raise KafkaLocalProtocolError(
            f"{cls.__name__} v{cls.__version__} is not the response to api_key "
            f"{request.api_key} v{request.api_version}"
        )
    flexible_header = bool(cls.__flexible__) and request.api_key != KafkaApi.API_VERSIONS
    return _frame(request.correlation_id, flexible_header, entity)


def encode_token(token: bytes) -> bytes:
    """A bare SASL token frame (rule 5)."""
    return _I32.pack(len(token)) + token


def _frame(correlation_id: int, flexible_header: bool, entity: Any) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    buf.write(_I32.pack(correlation_id))
    if flexible_header:
        buf.write(b"\0")  # response header v1: no tagged fields
    try:
        entity_writer(type(entity))(buf, entity)
    except (SerialError, ValueError, TypeError, struct.error) as exc:
        raise KafkaLocalProtocolError(f"{type(entity).__name__}: {exc}") from exc
    view = buf.getbuffer()
    _I32.pack_into(view, 0, len(view) - 4)
    del view
    return buf.getvalue()
