"""/health/live and /health/ready over real HTTP: ready flips to 503 while a
partition is offline (a failed fdatasync, through the StorageIO fault seam)
and back to 200 once a restart has recovered it; while the logs load, live
answers and ready says why it is not."""

from __future__ import annotations

import errno
import os
import threading

import trio
from ops_helpers import batch, create_topic, delta, http_get, metered_broker, produce, scrape, value

from tailrace.broker.log import StorageIO
from tailrace.client.errors import ErrorCode
from tailrace.client.transport import BrokerConnection


class FailingSyncIO(StorageIO):
    """fdatasync raises EIO once ``failing`` is set (fsyncgate: the
    partition must go offline, never retry)."""

    def __init__(self) -> None:
        self.failing = False

    def fdatasync(self, fd: int) -> None:
        if self.failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fdatasync(fd)


class GatedOpenIO(StorageIO):
    """Holds the data directory's opening (it runs in a worker thread) until
    ``gate`` is set: a recovery that takes as long as the test wants."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def fsync_dir(self, path: str) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        super().fsync_dir(path)


async def test_ready_is_503_while_a_partition_is_offline_and_200_after_restart(tmp_path):
    data_dir = tmp_path / "data"
    io = FailingSyncIO()
    async with trio.open_nursery() as nursery:
        broker = metered_broker(data_dir, io=io)
        listeners = await nursery.start(broker.serve)
        assert broker.metrics is not None
        address = broker.metrics.address
        conn = await BrokerConnection.connect(nursery, listeners[0].address)
        await create_topic(conn, "events", partitions=2)
        response = await produce(conn, "events", batch(0, n=5))
        assert response.topics[0].partitions[0].error_code == 0

        ready = await http_get(address, "/health/ready")
        assert ready.status == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["reasons"] == []
        before = await scrape(address)

        io.failing = True
        response = await produce(conn, "events", batch(5, n=5))
        assert response.topics[0].partitions[0].error_code == ErrorCode.STORAGE_ERROR

        ready = await http_get(address, "/health/ready")
        assert ready.status == 503
        body = ready.json()
        assert body["status"] == "not ready"
        assert body["reasons"] == ["1 partition(s) offline"]
        assert body["offline_partition_count"] == 1
        assert list(body["offline_partitions"]) == ["events-0"]
        assert "fsync failed" in body["offline_partitions"]["events-0"]
        assert body["logs_loaded"] is True
        assert body["listeners"] == [listeners[0].address]
        live = await http_get(address, "/health/live")
        assert live.status == 200
        assert live.json() == {"status": "live"}

        after = await scrape(address)
        assert delta(before, after, "tailrace_fsync_failures_total") == 1
        assert value(after, "tailrace_partition_offline", topic="events", partition="0") == 1
        assert value(after, "tailrace_partition_offline", topic="events", partition="1") == 0
        assert value(after, "tailrace_partitions_offline") == 1
        assert value(after, "tailrace_broker_ready") == 0
        assert (
            delta(
                before,
                after,
                "tailrace_partition_errors_total",
                api="produce",
                error="storage_error",
            )
            == 1
        )
        await conn.aclose()
        broker.shutdown()

    # restart on the same directory with a disk that works: recovery brings
    # the partition back
    async with trio.open_nursery() as nursery:
        broker = metered_broker(data_dir)
        await nursery.start(broker.serve)
        assert broker.metrics is not None
        ready = await http_get(broker.metrics.address, "/health/ready")
        assert ready.status == 200, ready.body
        samples = await scrape(broker.metrics.address)
        assert value(samples, "tailrace_partition_offline", topic="events", partition="0") == 0
        assert value(samples, "tailrace_partitions_offline") == 0
        assert value(samples, "tailrace_broker_ready") == 1
        # the acknowledged records are back (the unacknowledged batch, still in
        # the page cache here, may be recovered too: it was never promised)
        hw = value(samples, "tailrace_partition_high_watermark", topic="events", partition="0")
        assert hw in (5, 10)
        broker.shutdown()


async def test_live_answers_and_ready_says_loading_while_the_logs_load(tmp_path):
    io = GatedOpenIO()
    broker = metered_broker(tmp_path / "data", io=io)
    async with trio.open_nursery() as nursery:
        started = trio.Event()

        async def serve() -> None:
            await nursery.start(broker.serve)
            started.set()

        nursery.start_soon(serve)
        with trio.fail_after(10):
            while broker.metrics is None or not broker.metrics.address:  # noqa: ASYNC110
                await trio.sleep(0.01)
        address = broker.metrics.address
        try:
            live = await http_get(address, "/health/live")
            assert live.status == 200
            ready = await http_get(address, "/health/ready")
            assert ready.status == 503
            body = ready.json()
            assert body["reasons"][0] == "logs are loading"
            assert body["logs_loaded"] is False
            assert body["listeners"] == []
            samples = await scrape(address)
            assert value(samples, "tailrace_broker_ready") == 0
        finally:
            io.gate.set()
        with trio.fail_after(30):
            await started.wait()
        with trio.fail_after(30):
            while (await http_get(address, "/health/ready")).status != 200:  # noqa: ASYNC110
                await trio.sleep(0.02)  # the group coordinator loads just after start
        broker.shutdown()
