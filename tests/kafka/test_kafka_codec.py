"""The Kafka codec (sans-I/O) against an independent one: every advertised
(api, version) encoded by kafka-python 3 decodes here and re-encodes with
kio to the same bytes; every response kio encodes here decodes with
kafka-python and re-encodes to the same bytes. Plus golden bytes for the
rules clients depend on, the KIP-511 fallback, trailing bytes and the
close-on-unsupported rule."""

from __future__ import annotations

import io
import struct

import pytest
from kafka_samples import ALL, CLASSES, frame, request, sample
from kio.serial import entity_reader, entity_writer

from tailrace.broker.kafka.codec import (
    NEED_DATA,
    KafkaBadRequest,
    KafkaRequest,
    KafkaServerConnection,
    encode_response,
    response_class,
)
from tailrace.broker.kafka.entities import ZERO, empty_body, error_body, make
from tailrace.broker.kafka.errors import KafkaLocalProtocolError, KafkaRemoteProtocolError
from tailrace.broker.kafka.versions import ADVERTISED
from tailrace.client.errors import InvalidRequestError, UnsupportedVersionError
from tailrace.client.protocol import Limits


def _decode_one(data: bytes) -> KafkaRequest | KafkaBadRequest:
    conn = KafkaServerConnection(Limits())
    conn.receive_data(data)
    event = conn.next_event()
    assert conn.next_event() is NEED_DATA
    return event


@pytest.mark.parametrize(("api_key", "version"), ALL)
def test_every_advertised_request_decodes_and_reencodes_byte_for_byte(api_key, version):
    req = sample(api_key, version)
    data = frame(req, version, correlation_id=-7, client_id="cli")
    event = _decode_one(data)
    assert type(event) is KafkaRequest
    assert (event.api_key, event.api_version) == (api_key, version)
    assert (event.correlation_id, event.client_id, event.size) == (-7, "cli", len(data))
    assert type(event.body).__version__ == version
    out = io.BytesIO()
    entity_writer(type(event.body))(out, event.body)
    assert data.endswith(out.getvalue())
    body_only = bytes(req.encode(version=version))
    assert out.getvalue() == body_only


def _response_entity(api_key: int, version: int):
    """A kio response of (api_key, version) with some content."""
    cls = response_class(api_key, version)
    if api_key == 18:
        return make(
            cls,
            {
                "error_code": error_body(cls, 0).error_code,
                "api_keys": [
                    {"api_key": k, "min_version": lo, "max_version": hi}
                    for k, (lo, hi) in sorted(ADVERTISED.items())
                ],
                "throttle_time": ZERO,
            },
        )
    return empty_body(cls)


@pytest.mark.parametrize(("api_key", "version"), ALL)
def test_every_advertised_response_decodes_with_kafka_python(api_key, version):
    req = sample(api_key, version)
    event = _decode_one(frame(req, version, correlation_id=99))
    data = encode_response(event, _response_entity(api_key, version))
    (size,) = struct.unpack_from(">i", data)
    assert size == len(data) - 4
    decoded = CLASSES[api_key][1].decode(data[4:], version=version, header=True)
    assert decoded.header.correlation_id == 99
    decoded.with_header(correlation_id=99)
    # (kafka-python 3.0.12: a response takes its version from decode, not encode)
    assert bytes(decoded.encode(header=True)) == data[4:]


def test_api_versions_v3_response_golden_bytes_header_v0_and_no_tags():
    event = _decode_one(frame(request(18, 3), 3, correlation_id=5))
    cls = response_class(18, 3)
    entity = make(
        cls,
        {
            "error_code": error_body(cls, 0).error_code,
            "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 4}],
            "throttle_time": ZERO,
        },
    )
    assert encode_response(event, entity) == bytes.fromhex(
        "00000013"  # size
        "00000005"  # correlation id; header v0: no tagged-field byte
        "0000"  # error code
        "02"  # compact array: 1 entry
        "0012"
        "0000"
        "0004"
        "00"  # api key 18, 0-4, no tags
        "00000000"  # throttle
        "00"  # no tagged fields (none of the four default-valued ones)
    )


def test_flexible_response_gets_header_v1_with_empty_tags():
    event = _decode_one(frame(request(22, 4), 4, correlation_id=1))
    data = encode_response(event, error_body(response_class(22, 4), 0))
    assert data[4:9] == bytes.fromhex("0000000100")


def test_unsupported_api_versions_version_gets_the_kip511_v0_body():
    data = bytearray(frame(request(18, 4), 4, correlation_id=8))
    struct.pack_into(">h", data, 6, 5)  # ApiVersions v5
    conn = KafkaServerConnection(Limits())
    conn.receive_data(bytes(data))
    event = conn.next_event()
    assert type(event) is KafkaBadRequest
    assert isinstance(event.error, UnsupportedVersionError)
    assert conn.error_response(event, event.error) == bytes.fromhex(
        "0000001000000008002300000001001200000004"
    )


@pytest.mark.parametrize(("api_key", "version"), [(0, 2), (1, 12), (3, 0), (3, 9), (57, 0)])
def test_other_unsupported_requests_close_the_connection(api_key, version):
    data = bytearray(frame(request(3, 1), 1))
    struct.pack_into(">hh", data, 4, api_key, version)
    conn = KafkaServerConnection(Limits())
    conn.receive_data(bytes(data))
    event = conn.next_event()
    assert type(event) is KafkaBadRequest
    assert conn.error_response(event, event.error) is None


def test_trailing_bytes_after_the_body_are_ignored():
    data = frame(sample(3, 8), 8)
    padded = struct.pack(">i", len(data) - 4 + 3) + data[4:] + b"\x01\x02\x03"
    event = _decode_one(padded)
    assert type(event) is KafkaRequest
    assert [t.name for t in event.body.topics] == ["t"]


def test_a_body_that_does_not_decode_is_a_bad_request_and_closes():
    data = frame(sample(0, 8), 8)
    cut = struct.pack(">i", len(data) - 4 - 10) + data[4:-10]
    event = _decode_one(cut)
    assert type(event) is KafkaBadRequest
    assert isinstance(event.error, InvalidRequestError)
    conn = KafkaServerConnection(Limits())
    assert conn.error_response(event, event.error) is None


def test_flexible_header_tags_are_skipped_and_bounded():
    # ApiVersions v3 with one header tag (tag 0, 2 bytes) before the body
    body = bytes(request(18, 3).encode(version=3))
    header = struct.pack(">hhi", 18, 3, 4) + struct.pack(">h", 1) + b"c" + b"\x01\x00\x02zz"
    event = _decode_one(struct.pack(">i", len(header) + len(body)) + header + body)
    assert type(event) is KafkaRequest
    assert event.client_id == "c"
    lying = struct.pack(">hhi", 18, 3, 4) + b"\xff\xff" + b"\x01\x00\x7f"
    event = _decode_one(struct.pack(">i", len(lying)) + lying)
    assert type(event) is KafkaBadRequest


def test_a_frame_over_the_limit_is_refused_before_it_is_buffered():
    conn = KafkaServerConnection(Limits(max_frame_bytes=1024))
    conn.receive_data(struct.pack(">i", 1025) + b"\x00\x03")
    with pytest.raises(KafkaRemoteProtocolError):
        conn.next_event()
    with pytest.raises(KafkaRemoteProtocolError):  # and every time after
        conn.next_event()


def test_a_negative_size_is_refused():
    conn = KafkaServerConnection(Limits())
    conn.receive_data(struct.pack(">i", -5) + b"\x00" * 8)
    with pytest.raises(KafkaRemoteProtocolError):
        conn.next_event()


def test_pipelined_requests_come_out_in_order_from_any_split():
    frames = [frame(sample(k, v), v, correlation_id=i) for i, (k, v) in enumerate(ALL)]
    data = b"".join(frames)
    conn = KafkaServerConnection(Limits())
    seen = []
    for i in range(0, len(data), 7):
        conn.receive_data(data[i : i + 7])
        while (event := conn.next_event()) is not NEED_DATA:
            seen.append((event.api_key, event.api_version, event.correlation_id))
    assert seen == [(k, v, i) for i, (k, v) in enumerate(ALL)]


def test_encoding_a_response_of_another_api_or_version_is_a_local_error():
    event = _decode_one(frame(request(22, 4), 4))
    with pytest.raises(KafkaLocalProtocolError):
        encode_response(event, error_body(response_class(22, 3), 0))


def test_kio_reads_what_it_writes_for_a_fetch_response_with_records():
    cls = response_class(1, 11)
    entity = make(
        cls,
        {
            "throttle_time": ZERO,
            "error_code": error_body(response_class(22, 0), 0).error_code,
            "session_id": 0,
            "responses": [
                {
                    "topic": "t",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "error_code": error_body(response_class(22, 0), 0).error_code,
                            "high_watermark": 10,
                            "last_stable_offset": 10,
                            "log_start_offset": 0,
                            "aborted_transactions": (),
                            "preferred_read_replica": -1,
                            "records": b"batch-bytes",
                        }
                    ],
                }
            ],
        },
    )
    out = io.BytesIO()
    entity_writer(cls)(out, entity)
    again, size = entity_reader(cls)(out.getvalue(), 0)
    assert again == entity
    assert size == len(out.getvalue())
