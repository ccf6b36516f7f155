"""With linger 0, a record that finds nothing in flight and nothing queued
for its partition leaves at once: its latency never waits for a timer. And
an answer completes its records in the step that reads it (no task per
request), while a request that gets no answer still times out.

Deterministic logic tests: the real Accumulator and Sender over a scripted
broker connection (the only fake: what the broker would answer), under
trio's MockClock without autojump, so time stands still unless the test
moves it. A send that waited for any timer would never happen; one that
happens was handed over without a clock advance. The same path against a
real broker is covered by tests/client/test_producer.py.
"""

from __future__ import annotations

import trio
import trio.testing

from tailrace.client.errors import TimeoutError
from tailrace.client.producer.accumulator import Accumulator
from tailrace.client.producer.sender import Sender
from tailrace.client.protocol import (
    InitProducerIdRequest,
    InitProducerIdResponse,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopicResult,
)
from tailrace.client.records import iter_headers
from tailrace.client.transport.connection import PendingResponse


class ScriptedConnection:
    """Records every Produce request (with the trio time it was written);
    the test answers each one when it likes (``answer(i)``), through the
    request's real PendingResponse, as the connection's reader would."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, ProduceRequest]] = []
        self.pending: list[PendingResponse] = []
        self.expired: list[tuple[float, int]] = []
        self.next_offset = 0

    async def send(self, request: ProduceRequest) -> PendingResponse:
        self.sent.append((trio.current_time(), request))
        self.pending.append(PendingResponse(len(self.pending)))
        return self.pending[-1]

    def answer(self, i: int) -> None:
        _, request = self.sent[i]
        topic = request.topics[0]
        results = []
        for p in topic.partitions:
            results.append(
                ProducePartitionResult(partition=p.partition, base_offset=self.next_offset)
            )
            self.next_offset += sum(h.record_count for _pos, h in iter_headers(p.records))
        self.pending[i]._set(
            ProduceResponse(topics=[ProduceTopicResult(name=topic.name, partitions=results)])
        )

    def expire(self, pending: PendingResponse, limit: float) -> None:
        # what BrokerConnection.expire does to the request (the connection
        # it would break is this script)
        self.expired.append((trio.current_time(), pending.correlation_id))
        pending._fail(TimeoutError(f"no response within {limit:g} s"))


class ScriptedClient:
    closed = False
    routed = False  # one broker: everything on the one connection

    def __init__(self) -> None:
        self.conn = ScriptedConnection()

    async def connection(
        self, lane: str = "main", *, node: int | None = None, wait: bool = True
    ) -> ScriptedConnection:
        return self.conn

    def bootstrap_unanswered(self, conn: object) -> bool:
        return False  # one bootstrap address: nowhere else to go

    async def request(self, body: object, timeout: float | None = None) -> object:
        assert isinstance(body, InitProducerIdRequest)
        return InitProducerIdResponse(producer_id=7, producer_epoch=0)


def make(linger: float = 0.0) -> tuple[Accumulator, Sender, ScriptedClient]:
    client = ScriptedClient()
    holder: dict[str, Sender] = {}
    acc = Accumulator(
        batch_bytes=512 * 1024,
        linger=linger,
        buffer_bytes=32 << 20,
        wakeup=lambda: holder["sender"].wakeup(),
    )
    sender = Sender(
        client,  # type: ignore[arg-type]
        acc,
        acks=1,
        idempotent=True,
        max_in_flight=5,
        max_request_bytes=16 << 20,
        compression=0,
        compression_level=6,
        retry_backoff=0.1,
        delivery_timeout=120.0,
        request_timeout=30.0,
    )
    holder["sender"] = sender
    return acc, sender, client


def append(acc: Accumulator, value: bytes, partition: int = 0):
    handle = acc.try_append("t", partition, 1_000, None, value, None, 16 + len(value))
    assert handle is not None
    return handle


async def test_a_lone_record_leaves_before_any_clock_advance(mock_clock):
    acc, sender, client = make(linger=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        await trio.testing.wait_all_tasks_blocked()  # idle, producer id known
        start = trio.current_time()
        handle = append(acc, b"one")
        await trio.testing.wait_all_tasks_blocked()
        assert len(client.conn.sent) == 1
        sent_at, request = client.conn.sent[0]
        assert sent_at == start == trio.current_time()  # no timer was waited for
        assert request.topics[0].partitions[0].partition == 0
        client.conn.answer(0)
        await trio.testing.wait_all_tasks_blocked()
        assert handle.result(0).offset == 0

        # the next lone record, after the first was answered: at once again
        handle = append(acc, b"two")
        await trio.testing.wait_all_tasks_blocked()
        assert [t for t, _ in client.conn.sent] == [start, start]
        client.conn.answer(1)
        await trio.testing.wait_all_tasks_blocked()
        assert handle.result(0).offset == 1
        acc.close()


async def test_with_a_linger_the_record_waits_for_the_clock(mock_clock):
    # the control: the same path with a linger sends nothing until the
    # linger deadline, so the test above would notice a record that waited
    # for a timer (a long linger: the accumulator reads the real clock)
    acc, sender, client = make(linger=60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        await trio.testing.wait_all_tasks_blocked()
        append(acc, b"one")
        await trio.testing.wait_all_tasks_blocked()
        assert client.conn.sent == []
        acc.close()  # seals the open batch: it goes out now
        await trio.testing.wait_all_tasks_blocked()
        assert len(client.conn.sent) == 1
        client.conn.answer(0)


async def test_an_answer_completes_its_records_in_the_step_that_reads_it(mock_clock):
    # The sender keeps no task per request: the response's callback (run by
    # the connection's reader, here by answer()) completes the records at
    # once, and a lone record's answer does not even wake the sender, which
    # has nothing to do.
    acc, sender, client = make(linger=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        await trio.testing.wait_all_tasks_blocked()
        handle = append(acc, b"one")
        await trio.testing.wait_all_tasks_blocked()
        assert len(client.conn.sent) == 1
        client.conn.answer(0)
        # no schedule point since the answer: completed in its step
        assert handle.done()
        assert handle.result(0).offset == 0
        assert not sender._wake.is_set()
        assert sender._awaiting == {}
        acc.close()


async def test_a_request_without_an_answer_times_out_and_is_sent_again(mock_clock):
    acc, sender, client = make(linger=0.0)  # request_timeout 30 s, retry back-off 0.1 s
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        handle = append(acc, b"one")
        await trio.testing.wait_all_tasks_blocked()
        assert len(client.conn.sent) == 1
        mock_clock.jump(29.9)
        await trio.testing.wait_all_tasks_blocked()
        assert client.conn.expired == []  # not before its deadline
        mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        assert client.conn.expired == [(start + 30.0, 0)]
        assert not handle.done()  # retriable: queued again behind the back-off
        mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        assert len(client.conn.sent) == 2
        first, again = (r.topics[0].partitions[0].records for _t, r in client.conn.sent)
        assert first == again  # the same batch, byte for byte (same sequence)
        client.conn.answer(1)
        assert handle.result(0).offset == 0
        acc.close()
