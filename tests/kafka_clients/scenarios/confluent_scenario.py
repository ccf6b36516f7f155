"""The client scenario with confluent-kafka (librdkafka); see common.py.

Run by the pytest side in a confluent-kafka virtualenv (2.16 or 2.0.2):
plan on stdin, results on stdout.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import common
import confluent_kafka
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 20.0


def base_conf(plan: dict[str, Any], user: dict[str, str] | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": plan["bootstrap"], "client.id": plan["client_id"]}
    sec = plan.get("security")
    if sec:
        creds = user or sec
        conf.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": sec["mechanism"],
                "sasl.username": creds["username"],
                "sasl.password": creds["password"],
                "ssl.ca.location": sec["cafile"],
            }
        )
    return conf


def convert(msg: Any) -> dict[str, Any]:
    _, ts = msg.timestamp()
    return common.record(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(), ts)


def create(plan: dict[str, Any]) -> dict[str, Any]:
    admin = AdminClient(base_conf(plan))
    topic = plan["topic"]
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=plan["partitions"], replication_factor=1)],
        operation_timeout=TIMEOUT_S,
    )
    futures[topic].result(TIMEOUT_S)
    meta = admin.list_topics(topic, timeout=TIMEOUT_S)
    return {"partitions": len(meta.topics[topic].partitions)}


def delete(plan: dict[str, Any]) -> dict[str, Any]:
    admin = AdminClient(base_conf(plan))
    topic = plan["topic"]
    admin.delete_topics([topic], operation_timeout=TIMEOUT_S)[topic].result(TIMEOUT_S)
    listed = admin.list_topics(timeout=TIMEOUT_S).topics
    return {"listed_after": topic in listed}


def send(
    plan: dict[str, Any], records: list[dict[str, Any]], codec: str, conf_extra: dict[str, Any]
) -> list[list[int]]:
    """Produce ``records`` with one producer; their (partition, offset), in order."""
    conf = {
        **base_conf(plan),
        "acks": "all",
        "enable.idempotence": plan["idempotent"],
        "compression.type": codec,
        "linger.ms": 20,
        **conf_extra,
    }
    producer = Producer(conf)
    delivered: list[Any] = [None] * len(records)

    def report(i: int) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            delivered[i] = err if err is not None else [msg.partition(), msg.offset()]

        return on_delivery

    for i, rec in enumerate(records):
        producer.produce(
            plan["topic"],
            value=common.b(rec["value"]),
            key=common.b(rec["key"]),
            partition=rec["partition"],
            timestamp=rec["timestamp"],
            headers=common.headers_of(rec),
            on_delivery=report(i),
        )
    left = producer.flush(TIMEOUT_S)
    if left:
        raise TimeoutError(f"{left} records not delivered after {TIMEOUT_S} s")
    for d in delivered:
        if not isinstance(d, list):
            raise KafkaException(d)
    return delivered


def produce(plan: dict[str, Any]) -> dict[str, Any]:
    deliveries: dict[int, list[int]] = {}
    for codec in plan["codecs"]:
        chosen = [(i, r) for i, r in enumerate(plan["records"]) if r["codec"] == codec]
        got = send(plan, [r for _, r in chosen], codec, {})
        deliveries.update({i: d for (i, _), d in zip(chosen, got, strict=True)})
    return {"deliveries": [deliveries[i] for i in range(len(plan["records"]))]}


def consumer(plan: dict[str, Any], user: dict[str, str] | None = None, **extra: Any) -> Consumer:
    return Consumer(
        {
            **base_conf(plan, user),
            "group.id": plan["group"] + "-assign",  # required; assign() uses no group
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **extra,
        }
    )


def watermarks(plan: dict[str, Any]) -> dict[str, list[int]]:
    c = consumer(plan)
    try:
        return {
            str(p): list(
                c.get_watermark_offsets(TopicPartition(plan["topic"], p), timeout=TIMEOUT_S)
            )
            for p in range(plan["partitions"])
        }
    finally:
        c.close()


def drain(c: Consumer, want: int) -> list[dict[str, Any]]:
    """Consume until ``want`` records arrived (or the timeout)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < want and time.monotonic() < deadline:
        for msg in c.consume(num_messages=500, timeout=0.2):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            got.append(convert(msg))
    return got


def read(plan: dict[str, Any], user: dict[str, str] | None = None) -> dict[str, Any]:
    """assign() every partition from the beginning; read to the high watermarks."""
    c = consumer(plan, user)
    try:
        parts = range(plan["partitions"])
        highs = [
            c.get_watermark_offsets(TopicPartition(plan["topic"], p), timeout=TIMEOUT_S)[1]
            for p in parts
        ]
        c.assign([TopicPartition(plan["topic"], p, OFFSET_BEGINNING) for p in parts])
        return {"records": drain(c, sum(highs))}
    finally:
        c.close()


def times(plan: dict[str, Any]) -> dict[str, Any]:
    """offsets_for_times, then a seek to each found offset and the record there."""
    c = consumer(plan)
    try:
        topic = plan["topic"]
        out: dict[str, Any] = {"offsets": {}, "first": {}, "beyond": {}}
        for q in plan["time_queries"]:
            p = q["partition"]
            (tp,) = c.offsets_for_times([TopicPartition(topic, p, q["timestamp"])], TIMEOUT_S)
            out["offsets"][str(p)] = tp.offset
            out["first"][str(p)] = None
            if tp.offset >= 0:
                c.assign([TopicPartition(topic, p, tp.offset)])
                got = drain(c, 1)
                out["first"][str(p)] = got[0] if got else None
                c.unassign()
        beyond = c.offsets_for_times(
            [TopicPartition(topic, p, plan["beyond_timestamp"]) for p in range(plan["partitions"])],
            TIMEOUT_S,
        )
        out["beyond"] = {str(tp.partition): None if tp.offset < 0 else tp.offset for tp in beyond}
        return out
    finally:
        c.close()


def tail(plan: dict[str, Any]) -> dict[str, Any]:
    """Seek every partition to its end, produce one record each, read exactly those."""
    c = consumer(plan, **{"enable.partition.eof": True})
    try:
        topic = plan["topic"]
        parts = range(plan["partitions"])
        c.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        end: dict[str, int] = {}
        deadline = time.monotonic() + TIMEOUT_S
        # the end of a partition is known once librdkafka reports reaching it
        while len(end) < len(parts) and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
                end[str(msg.partition())] = msg.offset()
            elif msg.error():
                raise KafkaException(msg.error())
            else:
                raise AssertionError(f"a record at the end of the log: {convert(msg)}")
        if len(end) < len(parts):
            raise TimeoutError(f"end of partitions not reached: {end}")
        deliveries = send(plan, plan["tail"], "none", {})
        return {"end": end, "deliveries": deliveries, "records": drain(c, len(plan["tail"]))}
    finally:
        c.close()


class GroupMember(common.ThreadMember):
    def __init__(self, plan: dict[str, Any], index: int) -> None:
        super().__init__()
        self.topic = plan["topic"]
        self.conf = {
            **base_conf(plan),
            "client.id": f"{plan['client_id']}-member-{index}",
            "group.id": plan["group"],
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": common.SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": common.HEARTBEAT_INTERVAL_MS,
        }
        self.c: Consumer | None = None

    def _start(self) -> None:
        self.c = Consumer(self.conf)
        self.c.subscribe(
            [self.topic],
            on_assign=lambda _c, tps: self.on_assigned({tp.partition for tp in tps}),
            on_revoke=lambda _c, _tps: self.on_revoked(),
        )

    def _poll(self) -> None:
        assert self.c is not None
        for msg in self.c.consume(num_messages=500, timeout=0.1):
            if msg.error():
                raise KafkaException(msg.error())
            self.consumed(convert(msg))

    def _commit(self, offsets: dict[int, int]) -> None:
        assert self.c is not None
        self.c.commit(
            offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
            asynchronous=False,
        )

    def _committed(self, partitions: list[int]) -> dict[int, int | None]:
        assert self.c is not None
        got = self.c.committed([TopicPartition(self.topic, p) for p in partitions], TIMEOUT_S)
        return {tp.partition: None if tp.offset < 0 else tp.offset for tp in got}

    def _close(self) -> None:
        if self.c is not None:
            self.c.close()

    async def start(self) -> None:
        await self.call(self._start)

    async def poll(self) -> None:
        await self.call(self._poll)

    async def commit(self, offsets: dict[int, int]) -> None:
        await self.call(self._commit, offsets)

    async def committed(self, partitions: list[int]) -> dict[int, int | None]:
        return await self.call(self._committed, partitions)

    async def close(self) -> None:
        await self.call(self._close)


async def group(plan: dict[str, Any]) -> dict[str, Any]:
    highs = {int(p): hw for p, (_, hw) in watermarks(plan).items()}
    return await common.group_step(lambda i: GroupMember(plan, i), plan["partitions"], highs)


def user(plan: dict[str, Any]) -> dict[str, Any]:
    """As another user: read (granted), then produce (refused)."""
    creds = plan["user"]
    out = read(plan, creds)
    producer = Producer({**base_conf(plan, creds), "acks": "all", "linger.ms": 0})
    errors: list[Any] = []
    rec = plan["tail"][0]
    producer.produce(
        plan["topic"],
        value=common.b(rec["value"]),
        partition=rec["partition"],
        on_delivery=lambda err, _msg: errors.append(err),
    )
    producer.flush(TIMEOUT_S)
    if not errors:
        raise TimeoutError(f"no delivery report after {TIMEOUT_S} s")
    err = errors[0]
    out["produce_error"] = None if err is None else {"name": err.name(), "code": err.code()}
    return out


if __name__ == "__main__":
    sys.exit(
        common.run(
            {
                "create": create,
                "produce": produce,
                "watermarks": watermarks,
                "read": read,
                "times": times,
                "tail": tail,
                "group": group,
                "user": user,
                "delete": delete,
            },
            {
                "library": "confluent-kafka",
                "version": confluent_kafka.version()[0],
                "librdkafka": confluent_kafka.libversion()[0],
            },
        )
    )
