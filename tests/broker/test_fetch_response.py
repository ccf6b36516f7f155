"""The fetch handler's direct encoding of a plain FetchResponse
(handlers/fetch.py, ``_respond_plain``) against the schema's encoder
(``_respond_schema``): the same prefix byte for byte and the same records
parts, for every shape of request; a response with an error goes through
the schema."""

from __future__ import annotations

import pytest

from tailrace.broker.handlers.context import BrokerContext
from tailrace.broker.handlers.fetch import _respond_plain, _respond_schema
from tailrace.broker.services.fetch import ReadOutcome
from tailrace.client.protocol import (
    ApiKey,
    FetchPartition,
    FetchRequest,
    FetchTopic,
    Request,
    SendfileSlice,
)


class _Encoder:
    """The one BrokerContext method the encoding uses, unbound from a broker."""

    encode_parts = BrokerContext.encode_parts


class _Slice:
    """Stands for a segment's file slice: the encoders only read its length."""

    def __init__(self, length: int) -> None:
        self.length = length


def _request(shape: dict[str, list[int]]) -> Request:
    body = FetchRequest(
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            FetchTopic(
                name=name, partitions=[FetchPartition(partition=p, fetch_offset=0) for p in parts]
            )
            for name, parts in shape.items()
        ],
    )
    return Request(ApiKey.FETCH, 0, 2**31 + 9, body)


def _outcomes(shape: dict[str, list[int]], lengths: list[int | None]) -> list[ReadOutcome]:
    pairs = [(n, p) for n, ps in shape.items() for p in ps]
    return [
        ReadOutcome(
            name, p, 0, 1 << 20, high_watermark=2**40 + i, log_start_offset=i,
            slice=None if length is None else _Slice(length),
        )
        for i, ((name, p), length) in enumerate(zip(pairs, lengths, strict=True))
    ]  # fmt: skip


def _parts(streamed) -> list:
    return [
        ("slice", p.length, id(p.source)) if type(p) is SendfileSlice else ("bytes", bytes(p))
        for p in streamed.parts
    ]


@pytest.mark.parametrize(
    ("shape", "lengths"),
    [
        ({"t": [0]}, [None]),
        ({"t": [0]}, [61]),
        ({"a-topic.with_chars": [3, 0, 7]}, [100, None, 1 << 20]),
        ({"one": [0, 1], "two": [5], "three": [2, 9, 4]}, [None, 70, 80, None, None, 5000]),
    ],
)
def test_the_direct_frame_is_the_schema_frame(shape, lengths):
    request = _request(shape)
    outcomes = _outcomes(shape, lengths)
    plain = _respond_plain(request, outcomes)
    schema = _respond_schema(_Encoder(), request, outcomes)
    assert plain.prefix == schema.prefix
    assert _parts(plain) == _parts(schema)
