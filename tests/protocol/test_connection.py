"""Connection state machines: framing limits, bad requests, pipelining."""

from __future__ import annotations

import struct

import msgpack
import pytest
from protocol_samples import SAMPLES

from tailrace.client.errors import (
    ErrorCode,
    InvalidRequestError,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedVersionError,
)
from tailrace.client.protocol import (
    CLOSED,
    NEED_DATA,
    ApiKey,
    BadRequest,
    ClientConnection,
    FetchPartitionResult,
    FetchResponse,
    FetchTopicResult,
    Limits,
    MetadataRequest,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
    Request,
    SendfileSlice,
    ServerConnection,
    encode_response,
)
from tailrace.client.protocol.frames import LARGE_FRAME


def frame(api_key: int, body: bytes, *, version: int = 0, correlation_id: int = 1) -> bytes:
    return struct.pack(">IHHI", 8 + len(body), api_key, version, correlation_id) + body


def server_events(data: bytes, limits: Limits | None = None):
    server = ServerConnection(limits)
    server.receive_data(data)
    events = []
    while (event := server.next_event()) not in (NEED_DATA, CLOSED):
        events.append(event)
    return events


@pytest.mark.parametrize("length", [0, 7])
def test_length_shorter_than_header_is_fatal(length):
    server = ServerConnection()
    server.receive_data(struct.pack(">I", length) + b"\x00" * 20)
    with pytest.raises(RemoteProtocolError, match="shorter") as info:
        server.next_event()
    assert info.value.fatal
    # the connection stays broken
    with pytest.raises(RemoteProtocolError):
        server.next_event()


@pytest.mark.parametrize("length", [2**32 - 1, 100 * 1024 * 1024, 2**31])
def test_lying_length_is_refused_from_the_prefix_alone(length):
    server = ServerConnection(Limits(max_frame_bytes=1 << 20))
    server.receive_data(struct.pack(">I", length))  # nothing else was sent
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        server.next_event()
    assert server.buffered == 4  # nothing was allocated for the claimed frame


def test_stream_ending_inside_a_frame_is_fatal():
    data = frame(ApiKey.METADATA, msgpack.packb({}))
    server = ServerConnection()
    server.receive_data(data[:-1])
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="ended inside"):
        server.next_event()


def test_clean_end_between_frames():
    server = ServerConnection()
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def test_unknown_api_key_is_answered_not_fatal():
    events = server_events(frame(999, msgpack.packb({})) + frame(ApiKey.METADATA, b"\x80"))
    assert isinstance(events[0], BadRequest)
    assert isinstance(events[0].error, UnsupportedVersionError)
    assert isinstance(events[1], Request)  # the next frame is still served


def test_unsupported_version():
    (event,) = server_events(frame(ApiKey.METADATA, b"\x80", version=9))
    assert isinstance(event.error, UnsupportedVersionError)
    assert "version 9" in event.error.message


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\xc1", "malformed msgpack"),
        (msgpack.packb([1, 2]), "expected map"),
        (msgpack.packb({"topics": "t"}), "topics: expected array"),
        (msgpack.packb({"topics": [1]}), r"topics\[0\]: expected str"),
        (msgpack.packb({"topics": ["x" * 300]}), "exceeds 255"),
        (b"\x91" * 5000, "malformed msgpack"),  # nested far deeper than any schema
        (msgpack.packb({"topics": None}) + b"junk", "follow the message"),
    ],
)
def test_malformed_body_becomes_bad_request(body, match):
    (event,) = server_events(frame(ApiKey.METADATA, body))
    assert isinstance(event, BadRequest)
    assert isinstance(event.error, InvalidRequestError)
    assert event.error.code == ErrorCode.INVALID_REQUEST
    with pytest.raises(InvalidRequestError, match=match):
        raise event.error


def test_integer_out_of_range_names_the_field():
    body = msgpack.packb({"acks": 1, "timeout_ms": 2**40, "topics": []}, use_bin_type=True)
    (event,) = server_events(frame(ApiKey.PRODUCE, body))
    assert "timeout_ms" in event.error.message
    assert "out of range" in event.error.message


def test_bool_is_not_an_integer():
    body = msgpack.packb({"acks": True, "topics": []})
    (event,) = server_events(frame(ApiKey.PRODUCE, body))
    assert "acks" in event.error.message


def test_missing_required_field():
    (event,) = server_events(frame(ApiKey.PRODUCE, msgpack.packb({"acks": 1})))
    assert "topics: required field is missing" in event.error.message


def _produce_body(records_length: int) -> bytes:
    return msgpack.packb(
        {
            "acks": 1,
            "timeout_ms": 10,
            "topics": [
                {"name": "t", "partitions": [{"partition": 0, "records_length": records_length}]}
            ],
        }
    )


def test_records_length_past_the_frame_end():
    (event,) = server_events(frame(ApiKey.PRODUCE, _produce_body(100) + b"x" * 10))
    assert isinstance(event, BadRequest)
    assert "past the end" in event.error.message


def test_records_section_with_undeclared_bytes():
    (event,) = server_events(frame(ApiKey.PRODUCE, _produce_body(3) + b"x" * 10))
    assert "7 bytes follow" in event.error.message


def test_records_arrive_as_views_of_the_frame():
    (event,) = server_events(frame(ApiKey.PRODUCE, _produce_body(4) + b"abcd"))
    records = event.body.topics[0].partitions[0].records
    assert isinstance(records, memoryview)
    assert bytes(records) == b"abcd"


@pytest.mark.parametrize("size", [4, 3000, 5000, 70_000])
def test_records_after_the_body_are_split_off_at_any_payload_size(size):
    """Small payloads are decoded in one call, larger ones with an Unpacker
    (frames.split_body): both give the same body and records."""
    records = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    (event,) = server_events(frame(ApiKey.PRODUCE, _produce_body(size) + records))
    assert isinstance(event, Request)
    got = event.body.topics[0].partitions[0].records
    assert isinstance(got, memoryview)
    assert bytes(got) == records


def test_unknown_keys_are_ignored_for_forward_compatibility():
    (event,) = server_events(frame(ApiKey.METADATA, msgpack.packb({"future_field": 1})))
    assert isinstance(event, Request)
    assert event.body == MetadataRequest(topics=None)


def test_oversize_body_is_refused():
    limits = Limits(max_body_bytes=1024)
    body = msgpack.packb({"topics": ["a" * 200] * 10})
    (event,) = server_events(frame(ApiKey.METADATA, body), limits)
    assert isinstance(event, BadRequest)


def test_pipelined_requests_come_out_in_order():
    client = ClientConnection()
    wire = b""
    for i in range(5):
        _, prefix, buffers = client.send_request(MetadataRequest(topics=[f"t{i}"]))
        wire += prefix + b"".join(buffers)
    events = server_events(wire)
    assert [e.body.topics for e in events] == [[f"t{i}"] for i in range(5)]
    assert [e.correlation_id for e in events] == [0, 1, 2, 3, 4]


def test_error_response_decodes_on_the_client():
    client = ClientConnection()
    _, prefix, _ = client.send_request(MetadataRequest())
    server = ServerConnection()
    server.receive_data(prefix)
    request = server.next_event()
    client.receive_data(server.error_response(request, InvalidRequestError("nope")))
    response = client.next_event()
    assert response.body.error_code == ErrorCode.INVALID_REQUEST
    assert response.body.error_message == "nope"
    assert response.body.topics == []


def test_error_response_to_an_unknown_api():
    server = ServerConnection()
    server.receive_data(frame(999, b"\x80"))
    bad = server.next_event()
    data = server.error_response(bad, bad.error)
    _length, key, _version, cid = struct.unpack_from(">IHHI", data)
    assert (key, cid) == (999, 1)
    assert msgpack.unpackb(data[12:])["error_code"] == ErrorCode.UNSUPPORTED_VERSION


def test_acks_zero_produce_expects_no_response():
    client = ClientConnection()
    request = ProduceRequest(
        acks=0,
        topics=[ProduceTopic(name="t", partitions=[ProducePartition(partition=0, records=b"")])],
    )
    client.send_request(request)
    assert client.in_flight == 0
    client.send_request(MetadataRequest())
    assert client.in_flight == 1


def test_client_refuses_a_response_to_nothing():
    client = ClientConnection()
    prefix, _ = encode_response(ApiKey.METADATA, 0, 0, SAMPLES[ApiKey.METADATA][1])
    client.receive_data(prefix)
    with pytest.raises(RemoteProtocolError, match="to no request"):
        client.next_event()


def test_client_refuses_an_out_of_order_response():
    client = ClientConnection()
    client.send_request(MetadataRequest())
    client.send_request(MetadataRequest())
    prefix, _ = encode_response(ApiKey.METADATA, 0, 1, SAMPLES[ApiKey.METADATA][1])
    client.receive_data(prefix)
    with pytest.raises(RemoteProtocolError, match="does not match"):
        client.next_event()
    with pytest.raises(RemoteProtocolError):
        client.next_event()  # and stays broken


def test_client_refuses_a_malformed_response_body():
    client = ClientConnection()
    client.send_request(MetadataRequest())
    client.receive_data(frame(ApiKey.METADATA, msgpack.packb({"topics": 5}), correlation_id=0))
    with pytest.raises(RemoteProtocolError, match="METADATA response"):
        client.next_event()


def test_client_response_limit_protects_against_a_lying_server():
    client = ClientConnection(Limits(max_frame_bytes=1024))
    client.send_request(MetadataRequest())
    client.receive_data(struct.pack(">I", 352_518_912))  # a TLS alert read as a length
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        client.next_event()


def test_encoding_refuses_bad_arguments_locally():
    client = ClientConnection()
    with pytest.raises(LocalProtocolError, match="acks"):
        client.send_request(ProduceRequest(acks=1000, topics=[]))
    with pytest.raises(LocalProtocolError, match="not a request"):
        client.send_request(object())
    with pytest.raises(LocalProtocolError, match="no version"):
        client.send_request(MetadataRequest(), api_version=3)


def test_sendfile_placeholders_are_counted_in_the_frame_length():
    response = FetchResponse(
        topics=[
            FetchTopicResult(
                name="t",
                partitions=[FetchPartitionResult(partition=0, records=SendfileSlice(1000, "src"))],
            )
        ]
    )
    prefix, parts = encode_response(ApiKey.FETCH, 0, 3, response)
    (length,) = struct.unpack_from(">I", prefix)
    assert length == len(prefix) - 4 + 1000
    assert parts[0].source == "src"
    server = ServerConnection()
    with pytest.raises(LocalProtocolError):
        server.send_response(Request(ApiKey.FETCH, 0, 3, None), response)


def test_large_frames_can_be_read_straight_into_their_own_buffer():
    """A transport with recv_into gets a buffer of the frame's exact size for
    a large frame; fed that way or with receive_data, the events are equal."""
    big = b"r" * (LARGE_FRAME + 1000)
    body = msgpack.packb(
        {
            "acks": 1,
            "timeout_ms": 10,
            "topics": [{"name": "t", "partitions": [{"partition": 0, "records_length": len(big)}]}],
        }
    )
    data = frame(ApiKey.PRODUCE, body + big) + frame(ApiKey.METADATA, b"\x80", correlation_id=2)
    server = ServerConnection(Limits(max_frame_bytes=4 << 20))
    assert server.receive_buffer() is None  # nothing known yet
    server.receive_data(data[:100])
    pos = 100
    events = []
    while pos < len(data):
        target = server.receive_buffer()
        if target is None:
            chunk = data[pos : pos + 5000]
            server.receive_data(chunk)
            pos += len(chunk)
        else:
            n = min(len(target), 7000, len(data) - pos)
            target[:n] = data[pos : pos + n]
            server.received_into(n)
            pos += n
        while (event := server.next_event()) is not NEED_DATA:
            events.append(event)
    assert [e.correlation_id for e in events] == [1, 2]
    assert bytes(events[0].body.topics[0].partitions[0].records) == big
    assert isinstance(events[1], Request)


def test_stream_ending_inside_a_large_frame_is_fatal():
    server = ServerConnection(Limits(max_frame_bytes=4 << 20))
    server.receive_data(struct.pack(">IHHI", 8 + LARGE_FRAME * 2, 3, 0, 1))
    target = server.receive_buffer()
    assert target is not None
    target[:10] = b"x" * 10
    server.received_into(10)
    server.received_into(0)  # end of stream
    with pytest.raises(RemoteProtocolError, match="ended inside a frame"):
        server.next_event()


def test_a_large_frame_buffer_is_reused_only_once_released():
    big = b"r" * (LARGE_FRAME * 2)
    body = msgpack.packb(
        {
            "acks": 1,
            "timeout_ms": 10,
            "topics": [{"name": "t", "partitions": [{"partition": 0, "records_length": len(big)}]}],
        }
    )
    server = ServerConnection(Limits(max_frame_bytes=4 << 20))

    def receive(cid):
        data = frame(ApiKey.PRODUCE, body + big, correlation_id=cid)
        server.receive_data(data[:100])
        pos = 100
        while pos < len(data):
            target = server.receive_buffer()
            n = min(len(target), len(data) - pos)
            target[:n] = data[pos : pos + n]
            server.received_into(n)
            pos += n
            del target
        event = server.next_event()
        assert bytes(event.body.topics[0].partitions[0].records) == big
        return event

    first = receive(1)
    held = first.body.topics[0].partitions[0].records.obj
    second = receive(2)  # the first frame is still referenced: a new buffer
    assert second.body.topics[0].partitions[0].records.obj is not held
    # (an id, not a reference: a reference would keep the buffer in use)
    buffer_two = id(second.body.topics[0].partitions[0].records.obj)
    del second
    third = receive(3)  # the second one was released: reused
    assert id(third.body.topics[0].partitions[0].records.obj) == buffer_two
    assert bytes(first.body.topics[0].partitions[0].records) == big  # untouched
