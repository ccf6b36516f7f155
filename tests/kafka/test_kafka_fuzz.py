"""Fuzzing the Kafka decoder: whatever bytes arrive, in whatever pieces, the
only exception that escapes is the codec's KafkaRemoteProtocolError, and
every event is a request or a bad request the front-end can answer."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_samples import ALL, frame, sample

from tailrace.broker.kafka.codec import (
    CLOSED,
    NEED_DATA,
    KafkaBadRequest,
    KafkaRequest,
    KafkaServerConnection,
)
from tailrace.broker.kafka.errors import KafkaRemoteProtocolError
from tailrace.client.protocol import Limits

ORIGINALS = [frame(sample(k, v), v, correlation_id=i) for i, (k, v) in enumerate(ALL)]
LIMITS = Limits(max_frame_bytes=64 * 1024, max_body_bytes=16 * 1024)


@st.composite
def mutated(draw):
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(ORIGINALS), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "count"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:  # a huge array count or length at some position
            data[pos : pos + 4] = draw(st.sampled_from([b"\x7f\xff\xff\xff", b"\xff\xff\xff\xfe"]))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=512), mutated()), chunk=st.integers(1, 64))
def test_only_the_protocol_error_escapes(data, chunk):
    conn = KafkaServerConnection(LIMITS)
    try:
        for i in range(0, len(data), chunk):
            conn.receive_data(data[i : i + chunk])
            while (event := conn.next_event()) is not NEED_DATA:
                assert type(event) in (KafkaRequest, KafkaBadRequest)
                if type(event) is KafkaBadRequest:
                    reply = conn.error_response(event, event.error)
                    assert reply is None or isinstance(reply, bytes)
        conn.receive_data(b"")
        while (event := conn.next_event()) is not CLOSED:
            assert type(event) in (KafkaRequest, KafkaBadRequest)
    except KafkaRemoteProtocolError:
        pass
