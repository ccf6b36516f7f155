"""The tailrace wire protocol, sans-I/O (no sockets, no trio).

- frames.py: the frame layout and the bounded frame reader;
- schema.py: typed message dataclasses <-> msgpack maps, checked both ways;
- messages/: every API's request and response, and the API table;
- connection.py: ClientConnection and ServerConnection state machines.

docs/protocol.md is the specification; tests/protocol/test_docs.py keeps
its field tables equal to the schemas here.
"""

from .connection import (
    CLOSED,
    NEED_DATA,
    BadRequest,
    ClientConnection,
    Request,
    Response,
    SendfileSlice,
    ServerConnection,
    encode_request,
    encode_response,
)
from .frames import FRAME_HEADER, FRAME_HEADER_SIZE, FrameReader, Limits
from .messages import *  # noqa: F403 - the message classes are the protocol's API
from .messages import __all__ as _messages_all

__all__ = [
    "CLOSED",
    "FRAME_HEADER",
    "FRAME_HEADER_SIZE",
    "NEED_DATA",
    "BadRequest",
    "ClientConnection",
    "FrameReader",
    "Limits",
    "Request",
    "Response",
    "SendfileSlice",
    "ServerConnection",
    "encode_request",
    "encode_response",
    *_messages_all,
]
