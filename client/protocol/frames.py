"""Frames: the byte layer under every message, in both directions.

Layout (big-endian)::

    offset size field           type  notes
    0      4    length          u32   bytes after this field: 8 + body + records.
                                      Checked against Limits.max_frame_bytes
                                      before anything is buffered for it.
    4      2    api_key         u16   which API (messages.ApiKey); a response
                                      repeats its request's.
    6      2    api_version     u16   version of that API's schema; a response
                                      repeats its request's.
    8      4    correlation_id  u32   chosen by the client; the response
                                      carries the same value. Responses come
                                      in request order.
    12     ..   body            msgpack map (schema.py)
    ..     ..   records         raw record batches declared by the body's
                                ``*_length`` fields (Produce requests and
                                Fetch responses), possibly empty.

The body's end is found by decoding it (msgpack is self-delimiting); the
records section is whatever follows, and must match the declared lengths
exactly.
"""

from __future__ import annotations

import functools
import mmap
import struct
import sys
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import RemoteProtocolError

__all__ = [
    "FRAME_HEADER",
    "FRAME_HEADER_SIZE",
    "FrameReader",
    "Limits",
    "encode_frame_prefix",
    "split_body",
]

FRAME_HEADER = struct.Struct(
    ">"
    "I"  # length: bytes after this field
    "H"  # api_key
    "H"  # api_version
    "I"  # correlation_id
)
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 12
_LENGTH = struct.Struct(">I")
_REST = struct.Struct(">HHI")
#: length counts the 8 bytes of api_key, api_version and correlation_id.
_MIN_LENGTH = 8
_MAX_U32 = 2**32 - 1

#: msgpack bytes fed to the decoder at first; bodies are small, records big.
_FIRST_FEED = 64 * 1024
#: Payloads up to this size are decoded with one ``msgpack.unpackb`` call
#: (split_body); a produce's records after the body are copied once then.
_ONE_CALL = 4096
#: Frames with at least this many bytes still to come are read straight into
#: a buffer of their own (FrameReader.receive_buffer).
LARGE_FRAME = 256 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds checked before anything is allocated for a peer's bytes.

    ``max_frame_bytes`` bounds a whole frame (the length prefix is checked
    against it before the frame is buffered); the others bound the msgpack
    body and are handed to msgpack's Unpacker explicitly.
    """

    max_frame_bytes: int = 16 * 1024 * 1024
    max_body_bytes: int = 4 * 1024 * 1024
    max_str_len: int = 1024 * 1024
    max_bin_len: int = 1024 * 1024
    max_array_len: int = 100_000
    max_map_len: int = 10_000

    def __post_init__(self) -> None:
        if not 32 <= self.max_frame_bytes <= _MAX_U32:
            raise ValueError(f"max_frame_bytes {self.max_frame_bytes} out of range")
        if self.max_body_bytes < 32:
            raise ValueError(f"max_body_bytes {self.max_body_bytes} out of range")


class FrameReader:
    """Buffers bytes and hands out whole frames (sans-I/O).

    ``feed(b"")`` records end of stream. ``next_frame()`` returns
    ``(api_key, api_version, correlation_id, payload)`` where ``payload`` is a
    memoryview of the frame after its 12-byte header, or None when more bytes
    are needed. A broken frame raises RemoteProtocolError(fatal=True).
    """

    __slots__ = ("_buf", "_eof", "_filled", "_large", "_large_len", "_spare", "_start", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._start = 0
        self._eof = False
        #: a large frame being read straight into its own buffer (see
        #: receive_buffer), and how many of its bytes have arrived
        self._large: bytearray | mmap.mmap | None = None
        self._large_len = 0
        self._filled = 0
        #: the last large frame's buffer, reused once nothing refers to it
        self._spare: bytearray | mmap.mmap | None = None

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as frames."""
        return len(self._buf) - self._start + self._filled

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("data fed after end of stream")
        if not data:
            self._eof = True
            return
        large = self._large
        if large is not None:
            take = min(len(data), self._large_len - self._filled)
            large[self._filled : self._filled + take] = data[:take]
            self._filled += take
            data = data[take:]
            if not data:
                return
        self._buf += data

    def receive_buffer(self) -> memoryview | None:
        """Where a transport that can read into memory (``recv_into``) should
        put the next bytes, or None to use :meth:`feed`.

        Only while a large frame (at least LARGE_FRAME bytes still missing)
        is being received: the frame then gets a buffer of its exact size and
        the bytes go there directly, instead of being copied from a receive
        buffer into the reader's and again into the frame. Report how many
        bytes were written with :meth:`received_into`.
        """
        if self._large is None:
            buf = self._buf
            start = self._start
            avail = len(buf) - start
            if avail < 4:
                return None
            (length,) = _LENGTH.unpack_from(buf, start)
            if not _MIN_LENGTH <= length <= self.limits.max_frame_bytes:
                return None  # next_frame reports it
            if 4 + length - avail < LARGE_FRAME:
                return None
            large = self._reusable_buffer(4 + length)
            with memoryview(buf) as view:
                large[:avail] = view[start:]
            buf.clear()
            self._start = 0
            self._large = large
            self._large_len = 4 + length
            self._filled = avail
        return memoryview(self._large)[self._filled : self._large_len]

    def _reusable_buffer(self, size: int) -> bytearray | mmap.mmap:
        """A buffer of at least ``size`` bytes: the previous large frame's if
        nothing refers to it any more (its memoryviews are gone: in CPython
        the reference count says so exactly), else a new one. Allocating and
        zeroing megabytes per frame costs more than the copy it saves.

        A new one is an anonymous map, not a bytearray: its pages cost
        memory only once bytes arrive in them. A bytearray is zeroed (every
        page touched) at once, so a peer that declared a frame just under
        the limit and sent nothing more made the broker spend the whole
        frame's memory per connection."""
        spare = self._spare
        if spare is not None and len(spare) >= size and sys.getrefcount(spare) <= 3:
            # three references: self._spare, the local name, the argument
            return spare
        spare = mmap.mmap(-1, size)
        self._spare = spare
        return spare

    def received_into(self, n: int) -> None:
        """``n`` bytes were written into the last receive_buffer(); 0 means
        end of stream."""
        if n == 0:
            self._eof = True
        self._filled += n

    def bytes_wanted(self) -> int:
        """How many more bytes complete the frame being received (0 if one is
        already complete or the length prefix is not in yet). Lets a transport
        read a large frame in one go."""
        if self._large is not None:
            return self._large_len - self._filled
        avail = len(self._buf) - self._start
        if avail < 4:
            return 0
        (length,) = _LENGTH.unpack_from(self._buf, self._start)
        return max(0, 4 + length - avail)

    def next_raw(self) -> bytes | None:
        """The next frame as its bare payload: a 4-byte length and that many
        bytes, with no header (Kafka's SASL tokens after a SaslHandshake v0).
        The same bounds as :meth:`next_frame` (the length is checked against
        the limit before anything is buffered for it), except that a payload
        may be empty. None when more bytes are needed."""
        large = self._large
        if large is not None:
            end = self._large_len
            if self._filled < end:
                if self._eof:
                    raise RemoteProtocolError(
                        f"stream ended inside a frame: {self._filled} of {end} bytes"
                    )
                return None
            self._large = None
            self._filled = 0
            return bytes(memoryview(large)[4:end])
        buf = self._buf
        start = self._start
        avail = len(buf) - start
        if avail < 4:
            if self._eof and avail:
                raise RemoteProtocolError(f"stream ended inside a frame's length ({avail} bytes)")
            return None
        (length,) = _LENGTH.unpack_from(buf, start)
        if length > self.limits.max_frame_bytes:
            raise RemoteProtocolError(
                f"frame length {length} exceeds the limit of {self.limits.max_frame_bytes} bytes"
            )
        end = start + 4 + length
        if len(buf) < end:
            if self._eof:
                raise RemoteProtocolError(
                    f"stream ended inside a frame: {avail} of {4 + length} bytes"
                )
            return None
        with memoryview(buf) as view:
            payload = bytes(view[start + 4 : end])
        if end == len(buf):
            buf.clear()
            self._start = 0
        else:
            self._start = end
        return payload

    def next_frame(self) -> tuple[int, int, int, memoryview] | None:
        large = self._large
        if large is not None:
            end = self._large_len
            if self._filled < end:
                if self._eof:
                    raise RemoteProtocolError(
                        f"stream ended inside a frame: {self._filled} of {end} bytes"
                    )
                return None
            self._large = None
            self._filled = 0
            api_key, api_version, correlation_id = _REST.unpack_from(large, 4)
            return api_key, api_version, correlation_id, memoryview(large)[4 + _MIN_LENGTH : end]
        buf = self._buf
        start = self._start
        avail = len(buf) - start
        if avail < 4:
            if self._eof and avail:
                raise RemoteProtocolError(f"stream ended inside a frame's length ({avail} bytes)")
            return None
        (length,) = _LENGTH.unpack_from(buf, start)
        if length < _MIN_LENGTH:
            raise RemoteProtocolError(f"frame length {length} is shorter than a frame header")
        if length > self.limits.max_frame_bytes:
            raise RemoteProtocolError(
                f"frame length {length} exceeds the limit of {self.limits.max_frame_bytes} bytes"
                + _tls_hint(length)
            )
        end = start + 4 + length
        if len(buf) < end:
            if self._eof:
                raise RemoteProtocolError(
                    f"stream ended inside a frame: {avail} of {4 + length} bytes"
                )
            return None
        with memoryview(buf) as view:
            frame = bytes(view[start + 4 : end])
        if end == len(buf):
            buf.clear()
            self._start = 0
        elif end > 1 << 20 or end > len(buf) // 2:
            del buf[:end]
            self._start = 0
        else:
            self._start = end
        api_key, api_version, correlation_id = _REST.unpack_from(frame)
        return api_key, api_version, correlation_id, memoryview(frame)[_MIN_LENGTH:]


def _tls_hint(length: int) -> str:
    """A hint when the 4 "length" bytes are a TLS record header (content type
    20-23, version 3.x): the peer speaks TLS and this end does not (a
    plaintext client on a TLS port reads the broker's alert as a length)."""
    if 20 <= length >> 24 <= 23 and (length >> 16) & 0xFF == 3:
        return " (these bytes are a TLS record: the peer speaks TLS here and this end does not)"
    return ""


@functools.lru_cache(maxsize=16)
def _unpack_options(limits: Limits) -> dict[str, Any]:
    """msgpack's decoding options for a peer's body: strings as str, map
    keys str or bytes only, and every length bounded by ``limits``."""
    return {
        "raw": False,
        "strict_map_key": True,
        "use_list": True,
        "max_str_len": limits.max_str_len,
        "max_bin_len": limits.max_bin_len,
        "max_array_len": limits.max_array_len,
        "max_map_len": limits.max_map_len,
        "max_ext_len": 0,
    }


def split_body(payload: memoryview, limits: Limits) -> tuple[Any, memoryview]:
    """Decode the msgpack body at the start of ``payload``.

    Returns ``(body, records)``, ``records`` being the rest of the payload.
    Raises RemoteProtocolError(fatal=False): the frame itself was intact.
    """
    total = len(payload)
    if total <= _ONE_CALL and total <= limits.max_body_bytes:
        # A small payload (most requests and responses) is decoded in one C
        # call, without an Unpacker and its buffer per frame. What follows
        # the body (a small produce's records) comes back as ExtraData.
        # Anything else wrong is decoded again below, for its exact error.
        try:
            return msgpack.unpackb(payload, **_unpack_options(limits)), payload[total:]
        except msgpack.ExtraData as extra:
            return extra.unpacked, payload[total - len(extra.extra) :]
        except (ValueError, TypeError, msgpack.UnpackException):
            pass
    unpacker = msgpack.Unpacker(max_buffer_size=limits.max_body_bytes, **_unpack_options(limits))
    fed = min(total, _FIRST_FEED, limits.max_body_bytes)
    try:
        unpacker.feed(payload[:fed])
        while True:
            try:
                body = unpacker.unpack()
                break
            except msgpack.OutOfData:
                if fed >= total:
                    raise RemoteProtocolError(
                        "frame ends inside its msgpack body", fatal=False
                    ) from None
                if fed >= limits.max_body_bytes:
                    raise RemoteProtocolError(
                        f"msgpack body exceeds {limits.max_body_bytes} bytes", fatal=False
                    ) from None
                more = min(total, limits.max_body_bytes)
                unpacker.feed(payload[fed:more])
                fed = more
    except RemoteProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # FormatError, StackError (deep nesting), ExtraData, limit breaches
        # and unhashable map keys all land here.
        raise RemoteProtocolError(
            f"malformed msgpack body: {type(exc).__name__}: {exc}", fatal=False
        ) from exc
    return body, payload[unpacker.tell() :]


def encode_frame_prefix(
    api_key: int, api_version: int, correlation_id: int, body: bytes, records_length: int
) -> bytes:
    """Frame header plus body; ``records_length`` more bytes must follow."""
    length = _MIN_LENGTH + len(body) + records_length
    if length > _MAX_U32:
        raise ValueError(f"frame of {length} bytes does not fit a u32 length")
    return FRAME_HEADER.pack(length, api_key, api_version, correlation_id) + body
