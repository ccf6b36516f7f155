"""/metrics scraped over real loopback HTTP while a broker serves produce,
fetch and commits: every counter moves by exactly what the requests did.

Counters live in one registry per process, so each test compares two
scrapes around what it does (differences), never absolute values;
per-partition and per-group gauges belong to the broker scraped, so those
are absolute."""

from __future__ import annotations

import pytest
import trio
from ops_helpers import (
    batch,
    create_topic,
    delta,
    fetch,
    metered_broker,
    produce,
    scrape,
    value,
)

from tailrace.broker.server.connection import SMALL_RESPONSE_BYTES
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import (
    OffsetCommitPartition,
    OffsetCommitRequest,
    OffsetCommitTopic,
)
from tailrace.client.records import patch_base_offset
from tailrace.client.transport import BrokerConnection


@pytest.mark.parametrize("zero_copy", [True, False], ids=["sendfile", "copy"])
async def test_produce_fetch_and_commit_move_the_counters_by_their_amounts(
    nursery, tmp_path, zero_copy
):
    broker = metered_broker(tmp_path / "data", fetch_zero_copy=zero_copy)
    listeners = await nursery.start(broker.serve)
    assert broker.metrics is not None
    address = broker.metrics.address
    conn = await BrokerConnection.connect(nursery, listeners[0].address)
    await create_topic(conn, "events", partitions=2)
    before = await scrape(address)

    # 1,000-byte records: the fetch below is larger than SMALL_RESPONSE_BYTES,
    # so the zero-copy listener sends it with sendfile (a smaller response is
    # read and written in one call: the copy path, see the next test)
    batches = [batch(i * 10, n=10, size=1000) for i in range(3)]
    assert sum(map(len, batches)) > SMALL_RESPONSE_BYTES
    for data in batches:
        response = await produce(conn, "events", data)
        assert response.topics[0].partitions[0].error_code == 0
    # a partition that does not exist, and a request-level error (acks 2)
    response = await produce(conn, "events", batch(99, n=4), partition=7)
    assert response.topics[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    response = await produce(conn, "events", batch(99, n=4), acks=2)
    assert response.error_code == ErrorCode.INVALID_REQUEST

    got = await fetch(conn, "events", 0)
    assert got.error_code == 0
    assert bytes(got.records) == b"".join(_with_offsets(batches))
    bad = await fetch(conn, "events", 999)
    assert bad.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    # nothing past the end: the fetch waits (long poll) until max_wait_ms
    empty = await fetch(conn, "events", 30, max_wait_ms=50, min_bytes=1)
    assert empty.error_code == 0
    assert not empty.records

    commit = await conn.request(
        OffsetCommitRequest(
            group_id="billing",
            topics=[
                OffsetCommitTopic(
                    name="events", partitions=[OffsetCommitPartition(partition=0, offset=12)]
                )
            ],
        )
    )
    assert commit.topics[0].partitions[0].error_code == 0

    after = await scrape(address)
    produced = sum(len(b) for b in batches)

    assert delta(before, after, "tailrace_requests_total", api="produce") == 5
    assert delta(before, after, "tailrace_request_errors_total", api="produce") == 1
    assert delta(before, after, "tailrace_request_duration_seconds_count", api="produce") == 5
    assert delta(before, after, "tailrace_requests_total", api="fetch") == 3
    assert delta(before, after, "tailrace_request_errors_total", api="fetch") == 0
    assert delta(before, after, "tailrace_requests_total", api="offset_commit") == 1
    assert delta(before, after, "tailrace_produced_records_total") == 30
    assert delta(before, after, "tailrace_produced_bytes_total") == produced
    path, other = ("sendfile", "copy") if zero_copy else ("copy", "sendfile")
    assert delta(before, after, "tailrace_fetch_bytes_total", path=path) == produced
    assert delta(before, after, "tailrace_fetch_bytes_total", path=other) == 0
    assert delta(before, after, "tailrace_fetch_long_polls_total") == 1
    assert (
        delta(
            before,
            after,
            "tailrace_partition_errors_total",
            api="produce",
            error="unknown_topic_or_partition",
        )
        == 1
    )
    assert (
        delta(
            before,
            after,
            "tailrace_partition_errors_total",
            api="fetch",
            error="offset_out_of_range",
        )
        == 1
    )
    # the wire carried at least the batches, each way
    assert delta(before, after, "tailrace_received_bytes_total") > produced
    assert delta(before, after, "tailrace_sent_bytes_total") > produced
    # flush = sync: each acknowledged produce waited for a sync round
    assert delta(before, after, "tailrace_fsync_duration_seconds_count") >= 1
    assert delta(before, after, "tailrace_fsync_failures_total") == 0

    # scrape-time state of this broker: absolute
    p0 = {"topic": "events", "partition": "0"}
    p1 = {"topic": "events", "partition": "1"}
    assert value(after, "tailrace_partition_high_watermark", **p0) == 30
    assert value(after, "tailrace_partition_log_end_offset", **p0) == 30
    assert value(after, "tailrace_partition_log_start_offset", **p0) == 0
    assert value(after, "tailrace_partition_size_bytes", **p0) == produced
    assert value(after, "tailrace_partition_segments", **p0) == 1
    assert value(after, "tailrace_partition_offline", **p0) == 0
    assert value(after, "tailrace_partition_high_watermark", **p1) == 0
    assert value(after, "tailrace_partitions_offline") == 0
    g0 = {"group": "billing", "topic": "events", "partition": "0"}
    assert value(after, "tailrace_group_committed_offset", **g0) == 12
    assert value(after, "tailrace_group_lag", **g0) == 18
    assert value(after, "tailrace_group_members", group="billing") == 0
    assert value(after, "tailrace_connections_open") == 1
    assert value(after, "tailrace_connections_accepted_total") == 1
    assert value(after, "tailrace_broker_ready") == 1
    assert value(after, "tailrace_process_resident_memory_bytes") > 0
    assert value(after, "tailrace_process_open_fds") > 0

    # lag follows the high watermark, with nothing counted per record
    await produce(conn, "events", batch(30, n=5))
    later = await scrape(address)
    assert value(later, "tailrace_group_lag", **g0) == 23
    assert value(later, "tailrace_partition_high_watermark", **p0) == 35
    await conn.aclose()
    broker.shutdown()


async def test_connections_refused_at_max_connections_are_counted(nursery, tmp_path):
    broker = metered_broker(tmp_path / "data", limits__max_connections=2)
    listeners = await nursery.start(broker.serve)
    assert broker.metrics is not None
    host, port = listeners[0].address.rsplit(":", 1)
    held = [await trio.open_tcp_stream(host, int(port)) for _ in range(2)]
    await _wait_until(lambda: broker.counter.open == 2)
    for _ in range(3):
        extra = await trio.open_tcp_stream(host, int(port))
        with trio.fail_after(10):
            assert await extra.receive_some(1) == b""  # closed at accept
        await extra.aclose()
    samples = await scrape(broker.metrics.address)
    assert value(samples, "tailrace_connections_refused_total") == 3
    assert value(samples, "tailrace_connections_accepted_total") == 2
    assert value(samples, "tailrace_connections_open") == 2
    for stream in held:
        await stream.aclose()
    await _wait_until(lambda: broker.counter.open == 0)
    samples = await scrape(broker.metrics.address)
    assert value(samples, "tailrace_connections_open") == 0
    broker.shutdown()


def _with_offsets(batches: list[bytes]) -> list[bytes]:
    """The batches as stored: base offsets patched (0, 10, 20)."""
    out = []
    for i, b in enumerate(batches):
        data = bytearray(b)
        patch_base_offset(data, 0, i * 10)
        out.append(bytes(data))
    return out


async def _wait_until(check, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 - the broker's accept loop changes it
            await trio.sleep(0.01)


async def test_a_small_fetch_response_is_copied_and_written_in_one_call(nursery, tmp_path):
    # a caught-up consumer's few records: read into memory and written with
    # the response header in one writev (one TCP segment), counted as copied
    broker = metered_broker(tmp_path / "data", fetch_zero_copy=True)
    listeners = await nursery.start(broker.serve)
    assert broker.metrics is not None
    address = broker.metrics.address
    conn = await BrokerConnection.connect(nursery, listeners[0].address)
    await create_topic(conn, "events")
    data = batch(0, n=3)
    assert (await produce(conn, "events", data)).topics[0].partitions[0].error_code == 0
    before = await scrape(address)
    got = await fetch(conn, "events", 0)
    assert bytes(got.records) == b"".join(_with_offsets([data]))
    after = await scrape(address)
    assert delta(before, after, "tailrace_fetch_bytes_total", path="copy") == len(data)
    assert delta(before, after, "tailrace_fetch_bytes_total", path="sendfile") == 0
