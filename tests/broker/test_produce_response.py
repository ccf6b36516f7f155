"""The produce handler's direct encoding of a plain ProduceResponse
(handlers/produce.py, ``_encode``) against the schema's encoder: the same
frame, byte for byte, for every shape of request; anything with an error
goes through the schema itself."""

from __future__ import annotations

import msgpack
import pytest

from tailrace.broker.handlers.context import BrokerContext
from tailrace.broker.handlers.produce import _encode, _response
from tailrace.broker.services.produce import WriteOutcome
from tailrace.client.errors import NotLeaderOrFollowerError
from tailrace.client.protocol import (
    ApiKey,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
    Request,
)


class _Encoder:
    """The one BrokerContext method the encoding uses, unbound from a broker."""

    encode = BrokerContext.encode


def _request(shape: dict[str, list[int]], correlation_id: int = 7) -> Request:
    body = ProduceRequest(
        acks=1,
        timeout_ms=1000,
        topics=[
            ProduceTopic(
                name=name, partitions=[ProducePartition(partition=p, records=b"") for p in parts]
            )
            for name, parts in shape.items()
        ],
    )
    return Request(ApiKey.PRODUCE, 0, correlation_id, body)


def _outcomes(shape: dict[str, list[int]], **fields) -> list[WriteOutcome]:
    return [
        WriteOutcome(name, p, base_offset=1000 * i + 2**40, log_start_offset=i, **fields)
        for i, (name, p) in enumerate((n, p) for n, ps in shape.items() for p in ps)
    ]


SHAPES = [
    {"t": [0]},
    {"a-topic.with_chars": [3, 0, 7]},
    {"one": [0, 1], "two": [5], "three": [2, 9, 4]},
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "fields",
    [{}, {"duplicate": True}, {"log_append_time": 1_700_000_000_123}, {"base_offset": 2**63 - 1}],
)
def test_the_direct_frame_is_the_schema_frame(shape, fields):
    request = _request(shape, correlation_id=2**31 + 5)
    outcomes = _outcomes(shape)
    for o in outcomes:
        for k, v in fields.items():
            setattr(o, k, v)
    ctx = _Encoder()
    expected = ctx.encode(request, _response(request.body, outcomes))
    assert _encode(ctx, request, outcomes) == expected


def test_an_error_is_encoded_by_the_schema_with_its_message():
    shape = {"t": [0, 1]}
    request = _request(shape)
    outcomes = _outcomes(shape)
    outcomes[1].error = NotLeaderOrFollowerError("not here")
    frame = _encode(_Encoder(), request, outcomes)
    body = msgpack.unpackb(frame[12:])
    first, second = body["topics"][0]["partitions"]
    assert first["error_code"] == 0
    assert second["error_code"] == NotLeaderOrFollowerError.code
    assert second["error_message"] == "not here"


def test_a_plain_answer_is_built_without_the_message_objects(monkeypatch):
    from tailrace.broker.handlers import produce

    def schema_path(*args):
        raise AssertionError("the schema's encoder was used")

    monkeypatch.setattr(produce, "_response", schema_path)
    shape = {"t": [0]}
    frame = _encode(_Encoder(), _request(shape), _outcomes(shape))
    assert msgpack.unpackb(frame[12:])["topics"][0]["partitions"][0]["base_offset"] == 2**40
