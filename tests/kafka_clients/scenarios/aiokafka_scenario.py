"""The client scenario with aiokafka (asyncio); see common.py.

Run by the pytest side in the aiokafka virtualenv: plan on stdin, results on
stdout.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiokafka
import common
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

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
            ssl_context=create_ssl_context(cafile=sec["cafile"]),
        )
    return conf


def convert(rec: Any) -> dict[str, Any]:
    return common.record(
        rec.partition, rec.offset, rec.key, rec.value, list(rec.headers), rec.timestamp
    )


def _raise_topic_errors(entries: list[Any]) -> None:
    """Admin responses carry one (topic, error_code, ...) per topic."""
    bad = [tuple(e[:2]) for e in entries if e[1] != 0]
    if bad:
        raise RuntimeError(f"topic errors (topic, Kafka error code): {bad}")


async def create(plan: dict[str, Any]) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(request_timeout_ms=TIMEOUT_MS, **base_conf(plan))
    await admin.start()
    try:
        topic = plan["topic"]
        resp = await admin.create_topics(
            [NewTopic(topic, num_partitions=plan["partitions"], replication_factor=1)],
            timeout_ms=TIMEOUT_MS,
        )
        _raise_topic_errors(resp.topic_errors)
        (described,) = await admin.describe_topics([topic])
        return {"partitions": len(described["partitions"])}
    finally:
        await admin.close()


async def delete(plan: dict[str, Any]) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(request_timeout_ms=TIMEOUT_MS, **base_conf(plan))
    await admin.start()
    try:
        topic = plan["topic"]
        resp = await admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        _raise_topic_errors(resp.topic_error_codes)
        return {"listed_after": topic in await admin.list_topics()}
    finally:
        await admin.close()


async def send(
    plan: dict[str, Any],
    records: list[dict[str, Any]],
    codec: str,
    user: dict[str, str] | None = None,
    idempotent: bool | None = None,
) -> list[list[int]]:
    """Produce ``records`` with one producer; their (partition, offset), in order."""
    producer = AIOKafkaProducer(
        acks="all",
        enable_idempotence=plan["idempotent"] if idempotent is None else idempotent,
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        request_timeout_ms=TIMEOUT_MS,
        **base_conf(plan, user),
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                plan["topic"],
                value=common.b(rec["value"]),
                key=common.b(rec["key"]),
                partition=rec["partition"],
                timestamp_ms=rec["timestamp"],
                headers=common.headers_of(rec),
            )
            for rec in records
        ]
        metas = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)
        return [[m.partition, m.offset] for m in metas]
    finally:
        await producer.stop()


async def produce(plan: dict[str, Any]) -> dict[str, Any]:
    deliveries: dict[int, list[int]] = {}
    for codec in plan["codecs"]:
        chosen = [(i, r) for i, r in enumerate(plan["records"]) if r["codec"] == codec]
        got = await send(plan, [r for _, r in chosen], codec)
        deliveries.update({i: d for (i, _), d in zip(chosen, got, strict=True)})
    return {"deliveries": [deliveries[i] for i in range(len(plan["records"]))]}


async def consumer(plan: dict[str, Any], user: dict[str, str] | None = None) -> AIOKafkaConsumer:
    c = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=TIMEOUT_MS,
        **base_conf(plan, user),
    )
    await c.start()
    return c


def partitions(plan: dict[str, Any]) -> list[TopicPartition]:
    return [TopicPartition(plan["topic"], p) for p in range(plan["partitions"])]


async def watermarks(plan: dict[str, Any]) -> dict[str, list[int]]:
    c = await consumer(plan)
    try:
        tps = partitions(plan)
        low = await c.beginning_offsets(tps)
        high = await c.end_offsets(tps)
        return {str(tp.partition): [low[tp], high[tp]] for tp in tps}
    finally:
        await c.stop()


async def drain(c: AIOKafkaConsumer, want: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < want and time.monotonic() < deadline:
        for recs in (await c.getmany(timeout_ms=200)).values():
            got.extend(convert(r) for r in recs)
    return sorted(got, key=lambda r: (r["partition"], r["offset"]))


async def read(plan: dict[str, Any], user: dict[str, str] | None = None) -> dict[str, Any]:
    """assign() every partition, seek to the beginning, read to the high watermarks."""
    c = await consumer(plan, user)
    try:
        tps = partitions(plan)
        highs = await c.end_offsets(tps)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        return {"records": await drain(c, sum(highs.values()))}
    finally:
        await c.stop()


async def times(plan: dict[str, Any]) -> dict[str, Any]:
    """offsets_for_times, then a seek to each found offset and the record there."""
    c = await consumer(plan)
    try:
        topic = plan["topic"]
        out: dict[str, Any] = {"offsets": {}, "first": {}, "beyond": {}}
        for q in plan["time_queries"]:
            tp = TopicPartition(topic, q["partition"])
            found = (await c.offsets_for_times({tp: q["timestamp"]}))[tp]
            key = str(tp.partition)
            out["offsets"][key] = None if found is None else found.offset
            out["first"][key] = None
            if found is not None:
                c.assign([tp])
                c.seek(tp, found.offset)
                got = await drain(c, 1)
                out["first"][key] = got[0] if got else None
        beyond = await c.offsets_for_times(
            {tp: plan["beyond_timestamp"] for tp in partitions(plan)}
        )
        out["beyond"] = {
            str(tp.partition): None if found is None else found.offset
            for tp, found in beyond.items()
        }
        return out
    finally:
        await c.stop()


async def tail(plan: dict[str, Any]) -> dict[str, Any]:
    """Seek every partition to its end, produce one record each, read exactly those."""
    c = await consumer(plan)
    try:
        tps = partitions(plan)
        c.assign(tps)
        await c.seek_to_end(*tps)
        end = {str(tp.partition): await c.position(tp) for tp in tps}  # looks the end up
        deliveries = await send(plan, plan["tail"], "none")
        return {"end": end, "deliveries": deliveries, "records": await drain(c, len(plan["tail"]))}
    finally:
        await c.stop()


class GroupMember(common.Member):
    def __init__(self, plan: dict[str, Any], index: int) -> None:
        super().__init__()
        self.plan = plan
        self.topic = plan["topic"]
        self.index = index
        self.c: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        conf = base_conf(self.plan)
        conf["client_id"] = f"{self.plan['client_id']}-member-{self.index}"
        self.c = AIOKafkaConsumer(
            group_id=self.plan["group"],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=common.SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=common.HEARTBEAT_INTERVAL_MS,
            **conf,
        )
        await self.c.start()
        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                member.on_revoked()

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.on_assigned({tp.partition for tp in assigned})

        self.c.subscribe([self.topic], listener=Listener())

    async def poll(self) -> None:
        assert self.c is not None
        for recs in (await self.c.getmany(timeout_ms=100)).values():
            for r in recs:
                self.consumed(convert(r))

    async def commit(self, offsets: dict[int, int]) -> None:
        assert self.c is not None
        await self.c.commit({TopicPartition(self.topic, p): o for p, o in offsets.items()})

    async def committed(self, parts: list[int]) -> dict[int, int | None]:
        assert self.c is not None
        return {p: await self.c.committed(TopicPartition(self.topic, p)) for p in parts}

    async def close(self) -> None:
        if self.c is not None:
            await self.c.stop()


async def group(plan: dict[str, Any]) -> dict[str, Any]:
    highs = {int(p): hw for p, (_, hw) in (await watermarks(plan)).items()}
    return await common.group_step(lambda i: GroupMember(plan, i), plan["partitions"], highs)


async def user(plan: dict[str, Any]) -> dict[str, Any]:
    """As another user: read (granted), then produce (refused)."""
    creds = plan["user"]
    out = await read(plan, creds)
    try:
        await send(plan, plan["tail"][:1], "none", creds, idempotent=False)
        out["produce_error"] = None
    except KafkaError as exc:
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
            {"library": "aiokafka", "version": aiokafka.__version__},
        )
    )
