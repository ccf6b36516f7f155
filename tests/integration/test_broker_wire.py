"""The broker over real loopback sockets, spoken to in the raw protocol."""

from __future__ import annotations

import resource
import struct

import pytest
import trio
from harness import broker_config

from tailrace.broker.app import Broker
from tailrace.client.errors import BrokerUnavailableError, ErrorCode
from tailrace.client.protocol import (
    ApiVersionsRequest,
    CreatableTopic,
    CreateTopicsRequest,
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
    MetadataRequest,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from tailrace.client.records import build_batch, iter_headers, validate_batch
from tailrace.client.transport import BrokerConnection


async def connect(nursery, address):
    return await BrokerConnection.connect(nursery, address)


async def create(conn, name, partitions=1, **configs):
    response = await conn.request(
        CreateTopicsRequest(
            topics=[
                CreatableTopic(
                    name=name,
                    partitions=partitions,
                    configs={k: str(v) for k, v in configs.items()},
                )
            ]
        )
    )
    assert response.topics[0].error_code == 0, response.topics[0].error_message


def batch(i, n=1, size=100, ts=None):
    ts = 1_700_000_000_000 + i if ts is None else ts
    return build_batch([(ts, None, b"%08d" % (i + k) + b"x" * (size - 8), None) for k in range(n)])


async def produce(conn, topic, data, partition=0, acks=1):
    response = await conn.request(
        ProduceRequest(
            acks=acks,
            timeout_ms=10_000,
            topics=[
                ProduceTopic(
                    name=topic, partitions=[ProducePartition(partition=partition, records=data)]
                )
            ],
        )
    )
    if acks == 0:
        return None
    return response.topics[0].partitions[0]


def fetch_request(
    topic, offset, *, partition=0, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, part_max=1 << 20
):
    return FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        topics=[
            FetchTopic(
                name=topic,
                partitions=[
                    FetchPartition(partition=partition, fetch_offset=offset, max_bytes=part_max)
                ],
            )
        ],
    )


def offsets_in(records) -> list[int]:
    out = []
    for pos, h in iter_headers(records):
        validate_batch(records, pos, max_batch_bytes=1 << 24)
        out.extend(range(h.base_offset, h.last_offset + 1))
    return out


async def test_api_versions_lists_every_api(broker, nursery):
    conn = await connect(nursery, broker.address)
    response = await conn.request(ApiVersionsRequest())
    keys = {v.api_key for v in response.api_versions}
    assert {0, 1, 2, 3, 18, 19, 20, 22, 32, 33} <= keys


async def test_round_trip_across_segment_rolls(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "rolls", segment_bytes=4096, flush="none")
    for i in range(100):
        result = await produce(conn, "rolls", batch(i, size=200))
        assert result.error_code == 0
        assert result.base_offset == i
    meta = await conn.request(MetadataRequest(topics=["rolls"]))
    assert meta.topics[0].partitions[0].segment_count > 5
    got: list[int] = []
    offset = 0
    while offset < 100:
        response = await conn.request(fetch_request("rolls", offset, part_max=3000))
        part = response.topics[0].partitions[0]
        assert part.error_code == 0
        assert part.high_watermark == 100
        got += offsets_in(part.records)
        offset = got[-1] + 1
    assert got == list(range(100))


async def test_fetch_starts_at_the_batch_holding_the_offset(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "mid", flush="none")
    await produce(conn, "mid", batch(0, n=10))
    await produce(conn, "mid", batch(10, n=10))
    response = await conn.request(fetch_request("mid", 15))
    records = response.topics[0].partitions[0].records
    assert offsets_in(records) == list(range(10, 20))


async def test_first_batch_comes_whole_even_above_max_bytes(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "big", flush="none")
    await produce(conn, "big", batch(0, n=1, size=50_000))
    await produce(conn, "big", batch(1, n=1, size=50_000))
    response = await conn.request(fetch_request("big", 0, max_bytes=1000, part_max=1000))
    assert offsets_in(response.topics[0].partitions[0].records) == [0]


async def test_fetch_never_passes_the_high_watermark(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "hw")  # flush = sync: the HW moves after fsync
    for i in range(5):
        await produce(conn, "hw", batch(i))
    response = await conn.request(fetch_request("hw", 0))
    part = response.topics[0].partitions[0]
    assert offsets_in(part.records) == list(range(part.high_watermark))
    assert part.high_watermark == 5
    at_hw = await conn.request(fetch_request("hw", 5))
    assert at_hw.topics[0].partitions[0].error_code == 0
    assert len(at_hw.topics[0].partitions[0].records) == 0
    beyond = await conn.request(fetch_request("hw", 6))
    assert beyond.topics[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE


async def test_long_poll_returns_early_on_append(broker, nursery):
    reader = await connect(nursery, broker.address)
    writer = await connect(nursery, broker.address)
    await create(writer, "lp")
    result = {}

    async def poll():
        start = trio.current_time()
        response = await reader.request(fetch_request("lp", 0, max_wait_ms=20_000))
        result["elapsed"] = trio.current_time() - start
        result["records"] = response.topics[0].partitions[0].records

    async with trio.open_nursery() as n:
        n.start_soon(poll)
        await trio.sleep(0.2)
        assert "records" not in result  # still waiting
        await produce(writer, "lp", batch(0))
    assert offsets_in(result["records"]) == [0]
    assert result["elapsed"] < 10  # long before max_wait_ms


async def test_long_poll_over_several_partitions_wakes_on_any(broker, nursery):
    reader = await connect(nursery, broker.address)
    writer = await connect(nursery, broker.address)
    await create(writer, "lpm", partitions=3, flush="none")
    request = FetchRequest(
        max_wait_ms=60_000,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            FetchTopic(
                name="lpm",
                partitions=[
                    FetchPartition(partition=p, fetch_offset=0, max_bytes=1 << 20) for p in range(3)
                ],
            )
        ],
    )
    got = {}

    async def poll():
        response = await reader.request(request, timeout=120)
        got["parts"] = {p.partition: offsets_in(p.records) for p in response.topics[0].partitions}

    async with trio.open_nursery() as n:
        n.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        await produce(writer, "lpm", batch(0), partition=2)  # only the last one
    assert got["parts"] == {0: [], 1: [], 2: [0]}


async def test_draining_broker_answers_long_polls_at_once(tmp_path, nursery):
    b = Broker(broker_config(tmp_path / "d"))
    listeners = await nursery.start(b.serve)
    conn = await connect(nursery, listeners[0].address)
    await create(conn, "lpd", flush="none")
    got = {}

    async def poll():
        # answered by the drain, long before max_wait_ms (10 minutes)
        response = await conn.request(fetch_request("lpd", 0, max_wait_ms=600_000), timeout=900)
        got["records"] = response.topics[0].partitions[0].records

    async with trio.open_nursery() as n:
        n.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        assert got == {}  # parked in the long poll
        b.shutdown()
    assert len(got["records"]) == 0


async def test_long_poll_returns_empty_at_max_wait(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "lpt")
    start = trio.current_time()
    response = await conn.request(fetch_request("lpt", 0, max_wait_ms=300))
    assert trio.current_time() - start >= 0.29
    assert len(response.topics[0].partitions[0].records) == 0


async def test_long_poll_waits_for_min_bytes(broker, nursery):
    reader = await connect(nursery, broker.address)
    writer = await connect(nursery, broker.address)
    await create(writer, "mb", flush="none")
    done = trio.Event()
    got = {}

    async def poll():
        response = await reader.request(fetch_request("mb", 0, max_wait_ms=20_000, min_bytes=1000))
        got["offsets"] = offsets_in(response.topics[0].partitions[0].records)
        done.set()

    async with trio.open_nursery() as n:
        n.start_soon(poll)
        await produce(writer, "mb", batch(0, size=100))  # ~160 bytes: not enough
        await trio.sleep(0.2)
        assert not done.is_set()
        for i in range(1, 10):
            await produce(writer, "mb", batch(i, size=100))
    assert got["offsets"][0] == 0
    assert len(got["offsets"]) >= 6


async def test_a_long_poll_does_not_delay_other_connections(broker, nursery):
    poller = await connect(nursery, broker.address)
    other = await connect(nursery, broker.address)
    await create(other, "q")
    async with trio.open_nursery() as n:
        n.start_soon(poller.request, fetch_request("q", 0, max_wait_ms=5_000))
        await trio.sleep(0.05)
        with trio.fail_after(2):
            for _ in range(20):
                await other.request(MetadataRequest(topics=["q"]))
        n.cancel_scope.cancel()


async def test_unknown_topic_and_bad_batches_change_nothing(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "v", flush="none")
    assert (
        await produce(conn, "nope", batch(0))
    ).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    good = batch(0)
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    assert (await produce(conn, "v", bytes(corrupt))).error_code == ErrorCode.CORRUPT_MESSAGE
    two = good + batch(1)
    assert (await produce(conn, "v", two)).error_code == ErrorCode.INVALID_RECORD
    bad_magic = bytearray(good)
    bad_magic[16] = 9
    assert (await produce(conn, "v", bytes(bad_magic))).error_code == ErrorCode.INVALID_RECORD
    assert (await produce(conn, "v", good)).base_offset == 0  # nothing was written before


async def test_produce_with_acks_zero_gets_no_response_and_lands(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "a0", flush="none")
    for i in range(10):
        assert await produce(conn, "a0", batch(i), acks=0) is None
    response = await conn.request(fetch_request("a0", 0))  # answered after the produces
    assert offsets_in(response.topics[0].partitions[0].records) == list(range(10))


async def test_a_single_broker_answers_acks_all_as_acks_1(broker, nursery):
    """acks=-1 (all, the producers' default) on a broker without replicas:
    answered once the topic's flush mode is satisfied, like acks=1; any
    other value is refused and changes nothing."""
    conn = await connect(nursery, broker.address)
    await create(conn, "all", flush="sync")
    for i in range(3):
        part = await produce(conn, "all", batch(i), acks=-1)
        assert (part.error_code, part.base_offset) == (0, i)
    response = await conn.request(fetch_request("all", 0))  # fsynced: below the HW
    assert offsets_in(response.topics[0].partitions[0].records) == [0, 1, 2]
    refused = await conn.request(
        ProduceRequest(
            acks=-2,
            timeout_ms=10_000,
            topics=[
                ProduceTopic(
                    name="all", partitions=[ProducePartition(partition=0, records=batch(3))]
                )
            ],
        )
    )
    assert refused.error_code == ErrorCode.INVALID_REQUEST
    assert "acks must be 0, 1 or -1" in refused.error_message
    assert (await produce(conn, "all", batch(3))).base_offset == 3


async def test_list_offsets(broker, nursery):
    conn = await connect(nursery, broker.address)
    await create(conn, "lo", flush="none")
    for i in range(5):
        await produce(conn, "lo", batch(i, ts=1000 * (i + 1)))

    async def lookup(ts):
        response = await conn.request(
            ListOffsetsRequest(
                topics=[
                    ListOffsetsTopic(
                        name="lo", partitions=[ListOffsetsPartition(partition=0, timestamp=ts)]
                    )
                ]
            )
        )
        p = response.topics[0].partitions[0]
        return p.offset, p.timestamp

    assert await lookup(-2) == (0, -1)
    assert await lookup(-1) == (5, -1)
    assert await lookup(2500) == (2, 3000)
    assert await lookup(99_999) == (-1, -1)


async def test_auto_create_topics(tmp_path, nursery):
    b = Broker(broker_config(tmp_path / "d", auto_create_topics=True))
    listeners = await nursery.start(b.serve)
    conn = await connect(nursery, listeners[0].address)
    assert (await produce(conn, "fresh", batch(0))).error_code == 0
    meta = await conn.request(MetadataRequest(topics=["fresh"]))
    assert meta.topics[0].error_code == 0
    b.shutdown()


# --- hostile clients ---------------------------------------------------------


async def raw_socket(address):
    host, port = address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


@pytest.mark.parametrize("length", [2**32 - 1, 100 * 1024 * 1024, 3])
async def test_lying_length_closes_only_that_connection(broker, nursery, length):
    good = await connect(nursery, broker.address)
    await create(good, "h")
    bad = await raw_socket(broker.address)
    await bad.send_all(struct.pack(">I", length) + b"\x00" * 16)
    with trio.fail_after(5):
        assert await bad.receive_some(100) == b""  # the broker hung up
    await bad.aclose()
    assert (await produce(good, "h", batch(0))).error_code == 0


async def test_garbage_then_good_client(broker, nursery):
    bad = await raw_socket(broker.address)
    await bad.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(5):
        assert await bad.receive_some(100) == b""
    await bad.aclose()
    good = await connect(nursery, broker.address)
    await good.request(ApiVersionsRequest())


async def test_malformed_body_gets_an_error_response_and_the_connection_lives(broker, nursery):
    stream = await raw_socket(broker.address)
    body = b"\x81\xa6topics\x05"  # {"topics": 5}
    await stream.send_all(struct.pack(">IHHI", 8 + len(body), 3, 0, 42) + body)
    data = b""
    with trio.fail_after(5):
        while len(data) < 4 or len(data) < 4 + struct.unpack_from(">I", data)[0]:
            data += await stream.receive_some(4096)
    _length, api_key, _version, correlation_id = struct.unpack_from(">IHHI", data)
    assert (api_key, correlation_id) == (3, 42)
    import msgpack

    response = msgpack.unpackb(data[12:])
    assert response["error_code"] == ErrorCode.INVALID_REQUEST
    assert "topics" in response["error_message"]
    # still served on the same connection
    ok = b"\x80"
    await stream.send_all(struct.pack(">IHHI", 8 + len(ok), 18, 0, 43) + ok)
    with trio.fail_after(5):
        assert await stream.receive_some(4096)
    await stream.aclose()


def _idle_socket_count() -> int:
    """10,000 idle sockets, within the fd limit (each costs this process two
    descriptors: the client end and the broker's end)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return min(10_000, (soft - 500) // 2)


IDLE_SOCKETS = _idle_socket_count()


async def test_many_idle_sockets_and_a_client_that_never_reads(tmp_path, nursery):
    b = Broker(broker_config(tmp_path / "d", topic_defaults__flush="none"))
    listeners = await nursery.start(b.serve)
    address = listeners[0].address
    conn = await connect(nursery, address)
    await create(conn, "big", partitions=1)
    payload = batch(0, n=100, size=10_000)  # ~1 MB per batch
    for i in range(8):
        await produce(conn, "big", build_batch([(i, None, b"y" * 10_000, None)] * 100))
    idle = [await raw_socket(address) for _ in range(IDLE_SOCKETS)]
    # a consumer that asks for 8 MB and never reads its response
    sluggish = await raw_socket(address)
    from tailrace.client.protocol import ClientConnection

    codec = ClientConnection()
    for _ in range(4):
        _cid, prefix, _ = codec.send_request(
            fetch_request("big", 0, max_bytes=64 << 20, part_max=64 << 20)
        )
        await sluggish.send_all(prefix)
    await trio.sleep(0.2)
    # everyone else is still served promptly
    with trio.fail_after(5):
        for i in range(20):
            assert (await produce(conn, "big", batch(1000 + i))).error_code == 0
        other = await connect(nursery, address)
        response = await other.request(fetch_request("big", 0, max_bytes=1 << 20))
        assert offsets_in(response.topics[0].partitions[0].records)[0] == 0
    assert b.counter.open >= IDLE_SOCKETS
    for s in idle:
        await s.aclose()
    await sluggish.aclose()
    del payload
    b.shutdown()


async def test_idle_connection_is_closed(tmp_path, nursery):
    b = Broker(broker_config(tmp_path / "d", limits__connections_max_idle_ms=200))
    listeners = await nursery.start(b.serve)
    s = await raw_socket(listeners[0].address)
    with trio.fail_after(5):
        assert await s.receive_some(10) == b""
    await s.aclose()
    b.shutdown()


async def test_a_connection_busy_across_several_idle_timeouts_stays_open(tmp_path, nursery):
    """The reader's timer goes off an idle timeout after it was armed, finds
    reads since, and is armed again: a connection in use is never closed."""
    b = Broker(broker_config(tmp_path / "d", limits__connections_max_idle_ms=300))
    listeners = await nursery.start(b.serve)
    conn = await connect(nursery, listeners[0].address)
    start = trio.current_time()
    while trio.current_time() - start < 1.5:  # five idle timeouts
        await conn.request(ApiVersionsRequest())
        await trio.sleep(0.1)
    assert not conn.broken
    b.shutdown()


async def test_a_request_waiting_past_the_idle_timeout_keeps_its_connection(tmp_path, nursery):
    """The idle timer goes off while a long poll is under way: the connection
    stays, the poll is answered, the next request is served, and only then,
    idle with nothing in flight, is the connection closed."""
    b = Broker(broker_config(tmp_path / "d", limits__connections_max_idle_ms=200))
    listeners = await nursery.start(b.serve)
    conn = await connect(nursery, listeners[0].address)
    await create(conn, "idle-poll")
    start = trio.current_time()
    response = await conn.request(fetch_request("idle-poll", 0, max_wait_ms=700))
    assert trio.current_time() - start >= 0.69  # past three idle timeouts
    assert response.topics[0].partitions[0].error_code == 0
    assert (await produce(conn, "idle-poll", batch(0))).error_code == 0
    # then idle: the broker closes it (before a socket opened after it)
    s = await raw_socket(listeners[0].address)
    with trio.fail_after(5):
        assert await s.receive_some(10) == b""
    await s.aclose()
    with pytest.raises(BrokerUnavailableError):
        await conn.request(fetch_request("idle-poll", 1, max_wait_ms=0))
    b.shutdown()


async def test_connections_past_the_limit_are_refused(tmp_path, nursery):
    b = Broker(broker_config(tmp_path / "d", limits__max_connections=3))
    listeners = await nursery.start(b.serve)
    address = listeners[0].address
    kept = [await connect(nursery, address) for _ in range(3)]
    for c in kept:
        await c.request(ApiVersionsRequest())
    extra = await raw_socket(address)
    with trio.fail_after(5):
        assert await extra.receive_some(10) == b""
    await extra.aclose()
    assert b.counter.refused >= 1
    await kept[0].request(ApiVersionsRequest())  # the others are unaffected
    b.shutdown()


async def test_internal_topics_are_read_only_for_clients(broker, nursery):
    from tailrace.client.protocol import (
        AlterConfigResource,
        AlterConfigsRequest,
        DeleteTopicsRequest,
    )

    conn = await connect(nursery, broker.address)
    created = await conn.request(
        CreateTopicsRequest(topics=[CreatableTopic(name="__mine", partitions=1)])
    )
    assert created.topics[0].error_code == ErrorCode.INVALID_TOPIC
    # the broker's own topic: made through the log manager, as the coordinator does
    await broker.broker.manager.create_topic("__internal", 1)
    assert (await produce(conn, "__internal", batch(0))).error_code == ErrorCode.INVALID_TOPIC
    deleted = await conn.request(DeleteTopicsRequest(topics=["__internal"]))
    assert deleted.topics[0].error_code == ErrorCode.INVALID_TOPIC
    altered = await conn.request(
        AlterConfigsRequest(
            resources=[
                AlterConfigResource(
                    resource_type="topic", name="__internal", configs={"flush": "none"}
                )
            ]
        )
    )
    assert altered.resources[0].error_code == ErrorCode.INVALID_TOPIC
    fetched = await conn.request(fetch_request("__internal", 0))  # reading is allowed
    assert fetched.topics[0].partitions[0].error_code == 0


async def test_long_poll_sees_an_append_made_before_its_task_starts(broker, nursery):
    """Regression: the waiting half of a fetch runs in a task that starts
    after the handler looked; an append in that gap used to go unseen until
    max_wait_ms."""
    from tailrace.broker.handlers.fetch import handle_fetch
    from tailrace.broker.server.connection import ConnectionInfo, Later
    from tailrace.client.protocol import Request

    conn = await connect(nursery, broker.address)
    await create(conn, "gap", flush="none")
    ctx = broker.broker.context
    request = Request(1, 0, 1, fetch_request("gap", 0, max_wait_ms=30_000))
    later = handle_fetch(ctx, ConnectionInfo("test", "test", True), request)
    assert isinstance(later, Later)  # nothing to read yet: it will wait
    ctx.manager.get("gap", 0).append(batch(0))  # the append lands in the gap
    with trio.fail_after(5):
        reply = await later.fn(*later.args)
    try:
        records = reply.parts[0]
        assert records.length > 0
    finally:
        reply.release()
