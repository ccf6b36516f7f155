"""Fuzzing the decoders: whatever bytes arrive, in whatever pieces, the only
exception that may escape is the protocol's RemoteProtocolError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_samples import SAMPLES
from test_golden import GOLDEN

from tailrace.client.errors import RemoteProtocolError
from tailrace.client.protocol import (
    CLOSED,
    NEED_DATA,
    BadRequest,
    ClientConnection,
    Limits,
    MetadataRequest,
    Request,
    Response,
    ServerConnection,
)

GOLDEN_REQUESTS = [req for req, _ in GOLDEN.values()]
LIMITS = Limits(max_frame_bytes=64 * 1024, max_body_bytes=16 * 1024)


@st.composite
def mutated(draw, originals):
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "dup"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            data += data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def stream(originals):
    return st.one_of(st.binary(max_size=512), mutated(originals))


def _chunks(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [c for c in out if c]


def drive(conn, data, cuts, end):
    """Feed ``data`` split at ``cuts``; returns events. Only the protocol's
    RemoteProtocolError may escape."""
    events = []
    try:
        for chunk in _chunks(data, cuts):
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not NEED_DATA:
                if event is CLOSED:
                    return events
                events.append(event)
        if end:
            conn.receive_data(b"")
            while (event := conn.next_event()) not in (NEED_DATA, CLOSED):
                events.append(event)
    except RemoteProtocolError as exc:
        error = exc
    else:
        return events
    # On the server a body error is an event, so whatever escapes is fatal.
    assert error.fatal or isinstance(conn, ClientConnection)
    return events


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=stream(GOLDEN_REQUESTS),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    end=st.booleans(),
)
def test_server_decoder_only_raises_remote_protocol_error(data, cuts, end):
    events = drive(ServerConnection(LIMITS), data, cuts, end)
    for event in events:
        assert isinstance(event, (Request, BadRequest))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    api=st.sampled_from(list(GOLDEN)),
    data=st.data(),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    end=st.booleans(),
)
def test_client_decoder_only_raises_remote_protocol_error(api, data, cuts, end):
    # The client awaits the sample request of ``api`` with correlation id 7,
    # so a mutated golden response gets as far as body decoding.
    client = ClientConnection(LIMITS)
    for _ in range(7):
        client.send_request(MetadataRequest())
    client.abandon_pending()
    client.send_request(SAMPLES[api][0])
    wire = data.draw(st.one_of(st.binary(max_size=512), mutated([GOLDEN[api][1]])))
    events = drive(client, wire, cuts, end)
    for event in events:
        assert isinstance(event, Response)
