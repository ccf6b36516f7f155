"""The client scenario with kafka-python (2.3 or 3.x); see common.py.

Run by the pytest side in a kafka-python virtualenv: plan on stdin, results
on stdout.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import common
import kafka
from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.admin import KafkaAdminClient, NewTopic

TIMEOUT_S = 20.0
TIMEOUT_MS = int(TIMEOUT_S * 1000)


def base_conf(plan: dict[str, Any], user: dict[str, str] | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap_servers": plan["bootstrap"], "client_id": plan["client_id"]}
    sec = plan.get("security")
    if sec:
        creds = user or sec
        conf.update(
            security_protocol="SASL_SSL",
            sasl_mechanism=sec["mechanism"],
            sasl_plain_username=creds["username"],
            sasl_plain_password=creds["password"],
            ssl_cafile=sec["cafile"],
        )
    return conf


def convert(rec: Any) -> dict[str, Any]:
    return common.record(rec.partition, rec.offset, rec.key, rec.value, rec.headers, rec.timestamp)


def admin(plan: dict[str, Any]) -> KafkaAdminClient:
    return KafkaAdminClient(request_timeout_ms=TIMEOUT_MS, **base_conf(plan))


def create(plan: dict[str, Any]) -> dict[str, Any]:
    a = admin(plan)
    try:
        topic = plan["topic"]
        a.create_topics(
            [NewTopic(topic, num_partitions=plan["partitions"], replication_factor=1)],
            timeout_ms=TIMEOUT_MS,
        )
    finally:
        a.close()
    # (not KafkaAdminClient.describe_topics: kafka-python 2.3 fails on the
    # "not requested" authorized-operations value every Kafka broker sends)
    c = consumer(plan)
    try:
        return {"partitions": len(c.partitions_for_topic(topic) or ())}
    finally:
        c.close()


def delete(plan: dict[str, Any]) -> dict[str, Any]:
    a = admin(plan)
    try:
        topic = plan["topic"]
        a.delete_topics([topic], timeout_ms=TIMEOUT_MS)
    finally:
        a.close()
    c = consumer(plan)  # (not list_topics: see create)
    try:
        return {"listed_after": topic in c.topics()}
    finally:
        c.close()


def send(
    plan: dict[str, Any],
    records: list[dict[str, Any]],
    codec: str,
    user: dict[str, str] | None = None,
    idempotent: bool | None = None,
) -> list[list[int]]:
    """Produce ``records`` with one producer; their (partition, offset), in order."""
    producer = KafkaProducer(
        acks="all",
        enable_idempotence=plan["idempotent"] if idempotent is None else idempotent,
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        **base_conf(plan, user),
    )
    try:
        futures = [
            producer.send(
                plan["topic"],
                value=common.b(rec["value"]),
                key=common.b(rec["key"]),
                headers=common.headers_of(rec),
                partition=rec["partition"],
                timestamp_ms=rec["timestamp"],
            )
            for rec in records
        ]
        producer.flush(TIMEOUT_S)
        out = []
        for f in futures:
            meta = f.get(TIMEOUT_S)
            out.append([meta.partition, meta.offset])
        return out
    finally:
        producer.close(TIMEOUT_S)


def produce(plan: dict[str, Any]) -> dict[str, Any]:
    deliveries: dict[int, list[int]] = {}
    for codec in plan["codecs"]:
        chosen = [(i, r) for i, r in enumerate(plan["records"]) if r["codec"] == codec]
        got = send(plan, [r for _, r in chosen], codec)
        deliveries.update({i: d for (i, _), d in zip(chosen, got, strict=True)})
    return {"deliveries": [deliveries[i] for i in range(len(plan["records"]))]}


def consumer(plan: dict[str, Any], user: dict[str, str] | None = None) -> KafkaConsumer:
    return KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=TIMEOUT_MS + 10_000,
        **base_conf(plan, user),
    )


def partitions(plan: dict[str, Any]) -> list[TopicPartition]:
    return [TopicPartition(plan["topic"], p) for p in range(plan["partitions"])]


def watermarks(plan: dict[str, Any]) -> dict[str, list[int]]:
    c = consumer(plan)
    try:
        tps = partitions(plan)
        low = c.beginning_offsets(tps)
        high = c.end_offsets(tps)
        return {str(tp.partition): [low[tp], high[tp]] for tp in tps}
    finally:
        c.close()


def drain(c: KafkaConsumer, want: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < want and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            got.extend(convert(r) for r in recs)
    return sorted(got, key=lambda r: (r["partition"], r["offset"]))


def read(plan: dict[str, Any], user: dict[str, str] | None = None) -> dict[str, Any]:
    """assign() every partition, seek to the beginning, read to the high watermarks."""
    c = consumer(plan, user)
    try:
        tps = partitions(plan)
        highs = c.end_offsets(tps)
        c.assign(tps)
        c.seek_to_beginning(*tps)
        return {"records": drain(c, sum(highs.values()))}
    finally:
        c.close()


def times(plan: dict[str, Any]) -> dict[str, Any]:
    """offsets_for_times, then a seek to each found offset and the record there."""
    c = consumer(plan)
    try:
        topic = plan["topic"]
        out: dict[str, Any] = {"offsets": {}, "first": {}, "beyond": {}}
        for q in plan["time_queries"]:
            tp = TopicPartition(topic, q["partition"])
            found = c.offsets_for_times({tp: q["timestamp"]})[tp]
            key = str(tp.partition)
            out["offsets"][key] = None if found is None else found.offset
            out["first"][key] = None
            if found is not None:
                c.assign([tp])
                c.seek(tp, found.offset)
                got = drain(c, 1)
                out["first"][key] = got[0] if got else None
        beyond = c.offsets_for_times({tp: plan["beyond_timestamp"] for tp in partitions(plan)})
        out["beyond"] = {
            str(tp.partition): None if found is None else found.offset
            for tp, found in beyond.items()
        }
        return out
    finally:
        c.close()


def tail(plan: dict[str, Any]) -> dict[str, Any]:
    """Seek every partition to its end, produce one record each, read exactly those."""
    c = consumer(plan)
    try:
        tps = partitions(plan)
        c.assign(tps)
        c.seek_to_end(*tps)
        end = {str(tp.partition): c.position(tp) for tp in tps}  # looks the end up
        deliveries = send(plan, plan["tail"], "none")
        return {"end": end, "deliveries": deliveries, "records": drain(c, len(plan["tail"]))}
    finally:
        c.close()


#: kafka-python 3 keeps the fetch position of a partition it is assigned
#: again across an eager rebalance; 2.3 reads it again from the committed
#: offset (common.Member)
KEEPS_POSITIONS = int(kafka.__version__.split(".")[0]) >= 3


class GroupMember(common.ThreadMember):
    keeps_positions = KEEPS_POSITIONS

    def __init__(self, plan: dict[str, Any], index: int) -> None:
        super().__init__()
        self.plan = plan
        self.topic = plan["topic"]
        self.index = index
        self.c: KafkaConsumer | None = None

    def _start(self) -> None:
        conf = base_conf(self.plan)
        conf["client_id"] = f"{self.plan['client_id']}-member-{self.index}"
        self.c = KafkaConsumer(
            group_id=self.plan["group"],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=common.SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=common.HEARTBEAT_INTERVAL_MS,
            **conf,
        )
        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                member.on_revoked()

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.on_assigned({tp.partition for tp in assigned})

            def on_partitions_lost(self, lost: Any) -> None:  # kafka-python 3 (KIP-429)
                member.on_lost()

        self.c.subscribe(topics=[self.topic], listener=Listener())

    def _poll(self) -> None:
        assert self.c is not None
        for recs in self.c.poll(timeout_ms=100).values():
            for r in recs:
                self.consumed(convert(r))

    def _commit(self, offsets: dict[int, int]) -> None:
        assert self.c is not None
        self.c.commit(
            {
                TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                for p, o in offsets.items()
            }
        )

    def _committed(self, parts: list[int]) -> dict[int, int | None]:
        assert self.c is not None
        return {p: self.c.committed(TopicPartition(self.topic, p)) for p in parts}

    def _close(self) -> None:
        if self.c is not None:
            self.c.close()

    async def start(self) -> None:
        await self.call(self._start)

    async def poll(self) -> None:
        await self.call(self._poll)

    async def commit(self, offsets: dict[int, int]) -> None:
        await self.call(self._commit, offsets)

    async def committed(self, parts: list[int]) -> dict[int, int | None]:
        return await self.call(self._committed, parts)

    async def close(self) -> None:
        await self.call(self._close)


async def group(plan: dict[str, Any]) -> dict[str, Any]:
    highs = {int(p): hw for p, (_, hw) in watermarks(plan).items()}
    return await common.group_step(lambda i: GroupMember(plan, i), plan["partitions"], highs)


def user(plan: dict[str, Any]) -> dict[str, Any]:
    """As another user: read (granted), then produce (refused)."""
    creds = plan["user"]
    out = read(plan, creds)
    try:
        send(plan, plan["tail"][:1], "none", creds, idempotent=False)
        out["produce_error"] = None
    except kafka.errors.KafkaError as exc:
        out["produce_error"] = {"name": type(exc).__name__, "message": str(exc)}
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
            {"library": "kafka-python", "version": kafka.__version__},
        )
    )
