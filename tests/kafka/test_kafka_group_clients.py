"""Classic consumer groups with real Kafka clients against a real broker's
Kafka listener: aiokafka 0.14 as a group of three where one member leaves
and the others take its partitions, commits read back by the client, its
admin and the native API; a kafka-python 3 static member restarted without
a rebalance of the others; a Kafka client refused from a native group with
its own InconsistentGroupProtocolError."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from tailrace.client import Consumer

#: generous: a shared, busy machine; the tests wait for states, not durations
PATIENCE_S = 60.0


async def _until(condition, consumers, what: str) -> None:
    """Let the consumers run (their group work happens while they fetch)
    until ``condition()`` holds."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {PATIENCE_S} s: {what}")
        await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))


def _partitions(c: AIOKafkaConsumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def _covers(consumers, n: int) -> bool:
    """Every partition of the topic assigned, none twice."""
    owned = [_partitions(c) for c in consumers]
    return sum(len(o) for o in owned) == n and set().union(*owned) == set(range(n))


async def _group_of_three(address: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    consumers = []
    try:
        await admin.create_topics([NewTopic("orders", 3, 1)])
        consumers = [
            AIOKafkaConsumer(
                "orders",
                bootstrap_servers=address,
                group_id="billing",
                enable_auto_commit=False,
                session_timeout_ms=6000,
                heartbeat_interval_ms=200,
            )
            for _ in range(3)
        ]
        for c in consumers:
            await c.start()
        await _until(lambda: _covers(consumers, 3), consumers, "three members share 3 partitions")
        assert all(len(_partitions(c)) == 1 for c in consumers)
        for c in consumers:
            await c.commit(
                {tp: OffsetAndMetadata(0, f"by-{tp.partition}") for tp in c.assignment()}
            )

        # one member leaves: the other two take its partition
        leaver, *rest = consumers
        await leaver.stop()
        await _until(lambda: _covers(rest, 3), rest, "two members take over the third's partition")
        committed = {p: await rest[0].committed(TopicPartition("orders", p)) for p in range(3)}
        assert committed == {0: 0, 1: 0, 2: 0}

        (described,) = await admin.describe_consumer_groups(["billing"])
        # (aiokafka returns its old-style struct: a tuple per group)
        error_code, group_id, state, protocol_type, protocol, members = described.groups[0]
        assert (error_code, group_id, state, protocol_type) == (0, "billing", "Stable", "consumer")
        assert protocol in ("range", "roundrobin")
        assert len(members) == 2
        assert ("billing", "consumer") in await admin.list_consumer_groups()
        offsets = await admin.list_consumer_group_offsets("billing")
        assert {tp.partition: (m.offset, m.metadata) for tp, m in offsets.items()} == {
            p: (0, f"by-{p}") for p in range(3)
        }
    finally:
        for c in consumers:
            await c.stop()
        await admin.close()


def test_aiokafka_group_of_three_one_leaves(kafka_broker):
    asyncio.run(_group_of_three(kafka_broker.kafka_address))
    # the native protocol reads the same committed offsets
    with Consumer(kafka_broker.address, group_id="billing") as native:
        for p in range(3):
            committed = native.committed(("orders", p))
            assert committed is not None
            assert (committed.offset, committed.metadata) == (0, f"by-{p}")


async def _join_native_group(address: str) -> None:
    from aiokafka.errors import InconsistentGroupProtocolError

    consumer = AIOKafkaConsumer("orders", bootstrap_servers=address, group_id="native")
    try:
        # (with topics given, aiokafka's start waits for the first assignment)
        with pytest.raises(InconsistentGroupProtocolError):
            await consumer.start()
    finally:
        await consumer.stop()


def test_a_kafka_client_cannot_join_a_native_group(kafka_broker):
    with Consumer(kafka_broker.address, group_id="native") as native:
        from tailrace.client import Admin

        with Admin(kafka_broker.address) as admin:
            admin.create_topic("orders", partitions=2)
        native.subscribe(["orders"])
        native.poll(timeout_ms=100)
        assert native.member_id
        asyncio.run(_join_native_group(kafka_broker.kafka_address))


class _Member(threading.Thread):
    """A kafka-python 3 static group member polling on its own thread."""

    def __init__(self, address: str, instance: str, revoked: list | None = None) -> None:
        super().__init__(name=f"member-{instance}", daemon=True)
        self.address = address
        self.instance = instance
        self.revoked = revoked
        self.assigned: frozenset[int] = frozenset()
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        revoked = self.revoked

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, partitions):
                if revoked is not None:
                    revoked.append({tp.partition for tp in partitions})

            def on_partitions_assigned(self, partitions):
                pass

        consumer = KafkaConsumer(
            bootstrap_servers=self.address,
            group_id="static",
            group_instance_id=self.instance,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=300,
            enable_auto_commit=False,
        )
        try:
            consumer.subscribe(["s"], listener=Listener())
            while not self.halt.is_set():
                consumer.poll(timeout_ms=100)
                self.assigned = frozenset(tp.partition for tp in consumer.assignment())
        except BaseException as exc:
            self.error = exc
        finally:
            consumer.close()  # a static member sends no LeaveGroup

    def stop(self) -> None:
        self.halt.set()
        self.join(PATIENCE_S)
        assert not self.is_alive()
        assert self.error is None, self.error


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {PATIENCE_S} s: {what}"
        time.sleep(0.05)


def test_kafka_python_static_member_restarts_without_a_rebalance(kafka_broker):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    address = kafka_broker.kafka_address
    admin = KafkaAdminClient(bootstrap_servers=address)
    try:
        admin.create_topics([NewTopic("s", 4, 1)])
    finally:
        admin.close()
    revoked: list = []
    # b first, so that it leads (a restarted static leader rebalances, as in Kafka)
    b = _Member(address, "ib", revoked)
    b.start()
    _wait(lambda: b.assigned == {0, 1, 2, 3}, "b alone owns every partition")
    a = _Member(address, "ia")
    a.start()
    _wait(
        lambda: (
            a.assigned
            and b.assigned
            and a.assigned | b.assigned == {0, 1, 2, 3}
            and not a.assigned & b.assigned
        ),
        "a and b share the partitions",
    )
    a_had, b_has, rebalances = a.assigned, b.assigned, len(revoked)
    a.stop()
    a_again = _Member(address, "ia")
    a_again.start()
    _wait(lambda: a_again.assigned == a_had, "the restarted a gets a's partitions back")
    # b went through no rebalance: nothing revoked, same partitions
    assert len(revoked) == rebalances
    assert b.assigned == b_has
    a_again.stop()
    b.stop()
