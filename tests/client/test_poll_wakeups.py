"""How often the consumer wakes up when little or nothing arrives: the fetch
loop re-issues a fetch only once the broker's long poll answered, and the
blocking ``Consumer.poll`` takes buffered records on the caller's thread
without a hop to the client's trio thread.

The fetch loop's logic runs under trio's MockClock with autojump over a
scripted client (the only fake: a broker that holds every fetch for its
``max_wait_ms`` and has no records, as a real one does for an idle
partition); the blocking poll runs against a real broker process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import trio
from harness import BrokerProcess

from tailrace.client import Admin, Consumer, Producer
from tailrace.client.background import BackgroundTrio
from tailrace.client.consumer import fetcher as fetcher_module
from tailrace.client.consumer.fetcher import Fetcher
from tailrace.client.consumer.record import TopicPartition
from tailrace.client.protocol import (
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopicResult,
)
from tailrace.client.transport.connection import PendingResponse


class IdleBroker:
    """Answers each fetch after holding it ``max_wait_ms`` (no records)."""

    request_timeout = 30.0
    routed = False  # one broker
    stale = False

    def __init__(self) -> None:
        self.fetches: list[float] = []
        #: the topic's metadata is known: no refresh
        self.topics = {"t": None}

    def leader_for(self, topic: str, partition: int) -> None:
        return None  # the one connection

    async def request(
        self,
        body: FetchRequest,
        *,
        timeout: float,
        lane: str,
        node: int | None = None,
        on_response: object = None,  # the fetcher absorbs the answer itself then
    ) -> FetchResponse:
        assert isinstance(body, FetchRequest)
        self.fetches.append(trio.current_time())
        await trio.sleep(body.max_wait_ms / 1000)
        return FetchResponse(
            topics=[
                FetchTopicResult(
                    name=t.name,
                    partitions=[
                        FetchPartitionResult(partition=p.partition, high_watermark=p.fetch_offset)
                        for p in t.partitions
                    ],
                )
                for t in body.topics
            ]
        )

    def drop(self, lane: str, reason: str) -> None:
        raise AssertionError("no fetch is restarted here")


def fetcher(client: IdleBroker, max_wait_ms: int = 500) -> Fetcher:
    return Fetcher(
        client,  # type: ignore[arg-type]
        auto_offset_reset="latest",
        fetch_min_bytes=1,
        fetch_max_wait_ms=max_wait_ms,
        fetch_max_bytes=1 << 20,
        max_partition_fetch_bytes=1 << 20,
        max_buffer_bytes=1 << 20,
        retry_backoff=0.1,
    )


async def test_an_idle_partition_is_fetched_once_per_long_poll(autojump_clock):
    client = IdleBroker()
    f = fetcher(client, max_wait_ms=500)
    f.assign([TopicPartition("t", 0)])
    f.seek(TopicPartition("t", 0), 10)
    async with trio.open_nursery() as nursery:
        await nursery.start(f.run)
        start = trio.current_time()
        # polls that find nothing, as an application loop makes them
        for _ in range(100):
            with trio.move_on_after(0.1):
                await f.wait_for_data()
            assert len(f.take(100)) == 0
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    # 10 s of polling: one fetch per 500 ms long poll (and the one under
    # way), never one per poll or a loop of empty fetches
    assert elapsed >= 9.99
    assert len(client.fetches) <= elapsed / 0.5 + 1
    gaps = [b - a for a, b in zip(client.fetches, client.fetches[1:], strict=False)]
    assert min(gaps) >= 0.5


def test_a_blocking_poll_takes_buffered_records_without_a_hop(tmp_path, monkeypatch):
    with BrokerProcess(tmp_path / "data") as broker:
        _poll_without_hops(broker.address, monkeypatch)


def _poll_without_hops(address: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with Admin(address) as admin:
        admin.create_topic("hop", 1, {"flush": "none"})
    with Producer(address, linger_ms=0) as producer:
        for i in range(50):
            producer.send("hop", b"%03d" % i, partition=0)
        producer.flush()
    hops: list[object] = []
    real_run = BackgroundTrio.run

    def counting_run(self: BackgroundTrio, fn, *args):  # type: ignore[no-untyped-def]
        hops.append(fn)
        return real_run(self, fn, *args)

    with Consumer(address, auto_offset_reset="earliest") as consumer:
        consumer.assign([("hop", 0)])
        assert consumer.position(("hop", 0)) == 0  # resolved through the loop
        monkeypatch.setattr(BackgroundTrio, "run", counting_run)
        got: list[bytes] = []
        while len(got) < 50:
            got += [r.value for r in consumer.poll(timeout_ms=5000, max_records=7)]
        assert got == [b"%03d" % i for i in range(50)]
        # an empty poll waits on the caller's thread too
        assert len(consumer.poll(timeout_ms=50)) == 0
        assert hops == []  # no poll went through the trio thread
        monkeypatch.undo()
        assert consumer.position(("hop", 0)) == 50


def _count_hops(monkeypatch) -> list[object]:  # type: ignore[no-untyped-def]
    """The functions run on the consumer's trio thread from here on."""
    hops: list[object] = []
    real_run = BackgroundTrio.run

    def counting_run(self: BackgroundTrio, fn, *args):  # type: ignore[no-untyped-def]
        hops.append(getattr(fn, "__name__", fn))
        return real_run(self, fn, *args)

    monkeypatch.setattr(BackgroundTrio, "run", counting_run)
    return hops


def _consume_large(tmp_path, monkeypatch, count: int, max_records: int) -> list[object]:  # type: ignore[no-untyped-def]
    """Produce ``count`` values of 64 KiB, wait until a consumer buffered
    them all, poll them back ``max_records`` at a time (checking every
    value, in order) and return what ran on the consumer's trio thread
    meanwhile."""
    with BrokerProcess(tmp_path / "data") as broker:
        with Admin(broker.address) as admin:
            admin.create_topic("large", 1, {"flush": "none"})
        values = [bytes([i]) * (64 * 1024) for i in range(count)]
        with Producer(broker.address, linger_ms=0) as producer:
            for value in values:
                producer.send("large", value, partition=0)
            producer.flush()
        with Consumer(broker.address, auto_offset_reset="earliest") as consumer:
            consumer.assign([("large", 0)])
            assert consumer.position(("large", 0)) == 0
            tp = TopicPartition("large", 0)
            fetcher = consumer._consumer._fetcher
            deadline = time.monotonic() + 10
            while fetcher.partitions[tp].fetch_offset != count:  # all buffered
                assert time.monotonic() < deadline
                time.sleep(0.005)
            hops = _count_hops(monkeypatch)
            got: list[bytes] = []
            while len(got) < count:
                got += [r.value for r in consumer.poll(timeout_ms=5000, max_records=max_records)]
            assert got == values
            return hops


def test_many_large_values_are_decoded_on_the_trio_thread(tmp_path, monkeypatch):
    """With a mebibyte or more of large values to decode, a blocking poll
    hands the decoding to the trio thread (the main thread's malloc arena
    would give the memory back and fault it in again on every poll); the
    records are the same, in order."""
    hops = _consume_large(tmp_path, monkeypatch, 40, max_records=20)  # 1.25 MiB a poll
    assert "poll" in hops  # the loop's poll decoded them


def test_large_values_polled_a_few_at_a_time_are_taken_on_the_callers_thread(tmp_path, monkeypatch):
    """A poll of a few records decodes less than a mebibyte however much is
    buffered: it stays on the caller's thread (a hop per poll would cost
    more than it saves)."""
    assert _consume_large(tmp_path, monkeypatch, 40, max_records=2) == []


def test_a_corrupt_header_does_not_send_the_poll_to_the_loop():
    """The size check reads two fields of the first buffered batch's header
    before anything validated it: a corrupt one (a negative record count or
    length) leaves the poll on the caller's thread, whose decode raises the
    batch's typed error, rather than failing in the check."""
    f = fetcher(IdleBroker())
    tp = TopicPartition("t", 0)
    big = 2 << 20
    for length, delta in ((big, -1), (-5, 3), (big, 0)):
        header = bytearray(61)
        header[8:12] = length.to_bytes(4, "big", signed=True)
        header[23:27] = delta.to_bytes(4, "big", signed=True)
        f._chunks.clear()
        f._chunks.append(fetcher_module._Chunk(tp, 0, memoryview(bytes(header) + bytes(big)), 0))
        f._buffered = big + 61
        # only the last (one record of 2 MiB) is a batch large values make
        assert f.loop_should_take(10_000) is (delta == 0)


def test_a_few_large_values_are_taken_on_the_callers_thread(tmp_path, monkeypatch):
    """Below a mebibyte buffered, large values are decoded where the poll
    is, as small ones are: no wake-up of the trio thread."""
    assert _consume_large(tmp_path, monkeypatch, 4, max_records=10_000) == []


@contextlib.contextmanager
def assigned_pair(tmp_path, topic: str) -> Iterator[tuple[Consumer, Producer]]:
    """A broker process, ``topic`` (flush none), a consumer assigned to its
    partition 0 from the start (long polls of 30 s) and a linger-0 producer."""
    with BrokerProcess(tmp_path / "data") as broker:
        with Admin(broker.address) as admin:
            admin.create_topic(topic, 1, {"flush": "none"})
        with (
            Consumer(broker.address, auto_offset_reset="earliest", fetch_max_wait_ms=30_000) as c,
            Producer(broker.address, linger_ms=0) as producer,
        ):
            c.assign([(topic, 0)])
            assert c.position((topic, 0)) == 0
            yield c, producer


def test_the_fetcher_lets_a_waiting_poll_take_before_it_fetches_again(tmp_path, monkeypatch):
    """A response arrives while a blocking poll waits for it: the consumer's
    trio thread stands aside (blocks, so the poll's thread has the
    interpreter at once) until the poll took the records, and only then
    builds the next fetch. The hand-over's bound is raised here so that the
    order is certain on any machine; it is a millisecond as shipped."""
    monkeypatch.setattr(fetcher_module, "HAND_OVER_S", 30.0)
    events: list[str] = []
    real_build = Fetcher._build_request
    real_take = Fetcher._take  # under the fetcher's lock, before the poll lets go

    def build(self, node):  # type: ignore[no-untyped-def]
        request, asked = real_build(self, node)
        if request is not None:
            events.append("fetch built")
        return request, asked

    def take(self, max_records):  # type: ignore[no-untyped-def]
        records = real_take(self, max_records)
        if records:
            events.append("records taken")
        return records

    monkeypatch.setattr(Fetcher, "_build_request", build)
    monkeypatch.setattr(Fetcher, "_take", take)
    with assigned_pair(tmp_path, "hand") as (c, producer):
        for i in range(3):

            def produce_once_waiting(i: int = i) -> None:
                fetcher = c._consumer._fetcher
                deadline = time.monotonic() + 10
                while not fetcher.poll_waiting:  # the poll below waits
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                producer.send("hand", b"%d" % i, partition=0).result(10)

            sender = threading.Thread(target=produce_once_waiting)
            sender.start()
            got = [r.value for r in c.poll(timeout_ms=10_000)]
            sender.join()
            assert got == [b"%d" % i]
        deadline = time.monotonic() + 10
        while events.count("fetch built") < 4:  # the fetch after the last one
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # each arrival: taken by the poll, then the next fetch
    assert events[:7] == ["fetch built", *["records taken", "fetch built"] * 3]


def test_with_no_poll_waiting_the_fetcher_does_not_stand_aside(tmp_path, monkeypatch):
    """Records that arrive while nobody polls are buffered and the next
    fetch goes out at once: the hand-over waits only for a poll that waits."""
    monkeypatch.setattr(fetcher_module, "HAND_OVER_S", 30.0)
    with assigned_pair(tmp_path, "aside") as (c, producer):
        fetcher = c._consumer._fetcher
        for i in range(3):  # three responses, each followed by a fetch
            producer.send("aside", b"%d" % i, partition=0).result(10)
            deadline = time.monotonic() + 10  # far below 30 s a response
            while fetcher.partitions[TopicPartition("aside", 0)].fetch_offset != i + 1:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        assert [r.value for r in c.poll(timeout_ms=5000)] == [b"0", b"1", b"2"]


def test_a_fetch_response_is_buffered_in_the_step_that_reads_it(tmp_path, monkeypatch):
    """The records of a fetch response are buffered (and handed to a
    waiting poll) by the connection's reader as it reads them, not a task
    switch later when the fetch loop resumes."""
    inside_read = threading.local()
    absorbs: list[bool] = []
    real_set = PendingResponse._set
    real_absorb = Fetcher._absorb

    def read(self, result):  # type: ignore[no-untyped-def]
        inside_read.now = True
        try:
            return real_set(self, result)
        finally:
            inside_read.now = False

    def absorb(self, response, epochs):  # type: ignore[no-untyped-def]
        absorbs.append(getattr(inside_read, "now", False))
        return real_absorb(self, response, epochs)

    monkeypatch.setattr(PendingResponse, "_set", read)
    monkeypatch.setattr(Fetcher, "_absorb", absorb)
    with BrokerProcess(tmp_path / "data") as broker:
        with Admin(broker.address) as admin:
            admin.create_topic("step", 1, {"flush": "none"})
        with Producer(broker.address, linger_ms=0) as producer:
            for i in range(5):
                producer.send("step", b"%d" % i, partition=0).result(10)
        with Consumer(broker.address, auto_offset_reset="earliest") as consumer:
            consumer.assign([("step", 0)])
            got: list[bytes] = []
            deadline = time.monotonic() + 10
            while len(got) < 5:
                assert time.monotonic() < deadline
                got += [r.value for r in consumer.poll(timeout_ms=1000)]
    assert got == [b"%d" % i for i in range(5)]
    assert absorbs
    assert all(absorbs), absorbs
