"""The two ends of a tailrace connection as sans-I/O state machines.

Like h11: feed received bytes with ``receive_data`` (``b""`` for end of
stream), pull events with ``next_event``, and turn messages into bytes with
``send_*``. Nothing here does I/O or imports trio, so both the broker and the
clients drive it, and tests feed it bytes directly.

Rules:

1. A client may pipeline requests; the server answers them in request order,
   each response repeating its request's api_key, api_version and
   correlation_id. A Produce request with ``acks`` 0 gets no response.
2. Broken framing (a length below 8 or above the limit, or the stream ending
   inside a frame) raises RemoteProtocolError with ``fatal`` True: the
   connection is unusable and must be closed. Every later ``next_event``
   raises again.
3. On the server, a well-framed request whose API or version is unknown, or
   whose body does not match its schema, becomes a :class:`BadRequest` event
   carrying the error to answer with; the connection carries on.
4. On the client, a response that does not match the oldest outstanding
   request, or whose body does not decode, is fatal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import (
    BrokerError,
    InvalidRequestError,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedVersionError,
)
from .frames import FrameReader, Limits, encode_frame_prefix, split_body
from .messages import APIS, SPEC_BY_REQUEST, ApiKey
from .schema import SchemaError, SendfileSlice, decode_message, encode_message

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "BadRequest",
    "ClientConnection",
    "Request",
    "Response",
    "SendfileSlice",
    "ServerConnection",
    "encode_request",
    "encode_response",
]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: next_event(): more bytes are needed.
NEED_DATA = _Sentinel("NEED_DATA")
#: next_event(): the peer ended the stream cleanly, between frames.
CLOSED = _Sentinel("CLOSED")


@dataclass(slots=True)
class Request:
    """A decoded request (server side)."""

    api_key: int
    api_version: int
    correlation_id: int
    body: Any
    #: bytes of the whole frame, for metrics and budgets
    size: int = 0


@dataclass(slots=True)
class BadRequest:
    """A well-framed request the server cannot decode; answer with ``error``."""

    api_key: int
    api_version: int
    correlation_id: int
    error: BrokerError
    size: int = 0


@dataclass(slots=True)
class Response:
    """A decoded response (client side)."""

    api_key: int
    api_version: int
    correlation_id: int
    body: Any
    size: int = 0


def _pack_body(body: dict) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def encode_request(
    request: Any, correlation_id: int, api_version: int = 0
) -> tuple[int, bytes, list]:
    """Encode a request: returns ``(api_key, prefix, record_buffers)``."""
    spec = SPEC_BY_REQUEST.get(type(request))
    if spec is None:
        raise LocalProtocolError(f"{type(request).__name__} is not a request")
    if not spec.min_version <= api_version <= spec.max_version:
        raise LocalProtocolError(f"{spec.key.name} has no version {api_version}")
    if spec.request_type(api_version) is not type(request):
        raise LocalProtocolError(
            f"{type(request).__name__} is not {spec.key.name} version {api_version}'s request"
        )
    try:
        body, buffers = encode_message(request)
    except SchemaError as exc:
        raise LocalProtocolError(f"{spec.key.name} request: {exc}") from exc
    records_length = sum(len(b) for b in buffers)
    prefix = encode_frame_prefix(
        spec.key, api_version, correlation_id, _pack_body(body), records_length
    )
    return spec.key, prefix, buffers


def encode_response(
    api_key: int, api_version: int, correlation_id: int, response: Any
) -> tuple[bytes, list]:
    """Encode a response: returns ``(prefix, parts)``.

    ``parts`` are the records fields in wire order: bytes-like objects, or
    :class:`SendfileSlice` placeholders the caller must write itself.
    """
    spec = APIS.get(api_key)
    if spec is not None and type(response) is not spec.response_type(api_version):
        raise LocalProtocolError(
            f"{type(response).__name__} is not the response of {ApiKey(api_key).name}"
            f" version {api_version}"
        )
    try:
        body, parts = encode_message(response)
    except SchemaError as exc:
        raise LocalProtocolError(f"response: {exc}") from exc
    records_length = sum(len(p) for p in parts)
    return (
        encode_frame_prefix(api_key, api_version, correlation_id, _pack_body(body), records_length),
        parts,
    )


class _Connection:
    __slots__ = ("_error", "_reader", "limits")

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._reader = FrameReader(self.limits)
        self._error: RemoteProtocolError | None = None

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Hand over bytes read from the peer; ``b""`` means end of stream."""
        self._reader.feed(data)

    def set_limits(self, limits: Limits) -> None:
        """Change the bounds (e.g. larger frames once authenticated)."""
        self.limits = limits
        self._reader.limits = limits

    def bytes_wanted(self) -> int:
        """Bytes still missing from the frame being received (a read hint)."""
        return self._reader.bytes_wanted()

    def receive_buffer(self) -> memoryview | None:
        """A buffer to ``recv_into`` while a large frame arrives, or None
        (then use receive_data); see FrameReader.receive_buffer."""
        return self._reader.receive_buffer()

    def received_into(self, n: int) -> None:
        """``n`` bytes were written into the last receive_buffer()."""
        self._reader.received_into(n)

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def _next_frame(self) -> tuple[int, int, int, memoryview] | _Sentinel:
        if self._error is not None:
            raise self._error
        try:
            frame = self._reader.next_frame()
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        if frame is None:
            return CLOSED if self._reader.eof else NEED_DATA
        return frame


class ServerConnection(_Connection):
    """The broker's end: turns bytes into requests, responses into bytes."""

    __slots__ = ()

    def next_event(self) -> Request | BadRequest | _Sentinel:
        frame = self._next_frame()
        if type(frame) is _Sentinel:
            return frame
        api_key, api_version, correlation_id, payload = frame
        size = len(payload) + 12
        spec = APIS.get(api_key)
        if spec is None:
            return BadRequest(
                api_key,
                api_version,
                correlation_id,
                UnsupportedVersionError(f"unknown api_key {api_key}"),
                size,
            )
        if not spec.min_version <= api_version <= spec.max_version:
            return BadRequest(
                api_key,
                api_version,
                correlation_id,
                UnsupportedVersionError(
                    f"{spec.key.name} version {api_version} is not supported "
                    f"({spec.min_version}-{spec.max_version})"
                ),
                size,
            )
        try:
            body, records = split_body(payload, self.limits)
            request = decode_message(spec.request_type(api_version), body, records)
        except RemoteProtocolError as exc:
            return BadRequest(
                api_key, api_version, correlation_id, InvalidRequestError(str(exc)), size
            )
        except SchemaError as exc:
            return BadRequest(
                api_key,
                api_version,
                correlation_id,
                InvalidRequestError(f"{spec.key.name} request: {exc}"),
                size,
            )
        return Request(api_key, api_version, correlation_id, request, size)

    def send_response(self, request: Request | BadRequest, response: Any) -> bytes:
        """Encode ``response`` to ``request`` as bytes (no placeholders)."""
        prefix, parts = encode_response(
            request.api_key, request.api_version, request.correlation_id, response
        )
        if not parts:
            return prefix
        if any(type(p) is SendfileSlice for p in parts):
            raise LocalProtocolError("send_response cannot write SendfileSlice parts")
        return b"".join([prefix, *parts])

    def error_response(self, request: Request | BadRequest, error: BrokerError) -> bytes:
        """A response of the request's API carrying only a request-level error."""
        spec = APIS.get(request.api_key)
        if spec is None:
            # No schema for an unknown API: answer with the common error shape,
            # which every response schema starts with.
            body = _pack_body({"error_code": int(error.code), "error_message": error.message})
            return encode_frame_prefix(
                request.api_key, request.api_version, request.correlation_id, body, 0
            )
        response = spec.response_type(request.api_version)(
            error_code=int(error.code), error_message=error.message
        )
        return self.send_response(request, response)


class ClientConnection(_Connection):
    """A client's end: numbers requests, matches responses to them."""

    __slots__ = ("_next_correlation_id", "_pending")

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self._next_correlation_id = 0
        # (correlation_id, api_key, api_version) of requests awaiting a response
        self._pending: deque[tuple[int, int, int]] = deque()

    @property
    def in_flight(self) -> int:
        """Requests sent whose responses have not arrived."""
        return len(self._pending)

    def send_request(self, request: Any, api_version: int = 0) -> tuple[int, bytes, list]:
        """Encode ``request``; returns ``(correlation_id, prefix, record_buffers)``.

        Write ``prefix`` then each buffer. A Produce request with acks 0 is
        not awaited: no response will come for it.
        """
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) & 0xFFFFFFFF
        api_key, prefix, buffers = encode_request(request, correlation_id, api_version)
        if not (api_key == ApiKey.PRODUCE and request.acks == 0):
            self._pending.append((correlation_id, api_key, api_version))
        return correlation_id, prefix, buffers

    def next_event(self) -> Response | _Sentinel:
        frame = self._next_frame()
        if type(frame) is _Sentinel:
            return frame
        api_key, api_version, correlation_id, payload = frame
        if not self._pending:
            self._error = RemoteProtocolError(
                f"response with correlation id {correlation_id} to no request"
            )
            raise self._error
        want_id, want_key, want_version = self._pending[0]
        if (correlation_id, api_key, api_version) != (want_id, want_key, want_version):
            self._error = RemoteProtocolError(
                f"response (id {correlation_id}, api {api_key} v{api_version}) does not match "
                f"the oldest request (id {want_id}, api {want_key} v{want_version})"
            )
            raise self._error
        self._pending.popleft()
        try:
            body, records = split_body(payload, self.limits)
            response = decode_message(APIS[api_key].response_type(api_version), body, records)
        except (RemoteProtocolError, SchemaError) as exc:
            self._error = RemoteProtocolError(f"{ApiKey(api_key).name} response: {exc}")
            raise self._error from exc
        return Response(api_key, api_version, correlation_id, response, len(payload) + 12)

    def abandon_pending(self) -> list[int]:
        """Forget every outstanding request (the connection is being dropped);
        returns their correlation ids."""
        ids = [p[0] for p in self._pending]
        self._pending.clear()
        return ids
