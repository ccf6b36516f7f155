"""Helpers for testing the Kafka group handlers without the Kafka listener:
kio request entities built per version, handed to the handlers with a real
broker's context, replies awaited and round-tripped through kio's codec."""

from __future__ import annotations

import dataclasses
import datetime
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from kio.index import load_payload_module
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from tailrace.broker.kafka.groups import GROUP_HANDLERS
from tailrace.broker.server.connection import ConnectionInfo, Later


@dataclass
class KafkaRequest:
    """What the Kafka front-end hands a handler (PLAN.md's KafkaRequest)."""

    api_key: int
    api_version: int
    body: Any
    correlation_id: int = 1
    client_id: str | None = "kafka-test"


def _build(api_key: int, version: int, name: str, kind: EntityType, values: dict, /) -> Any:
    cls = getattr(load_payload_module(api_key, version, kind), name)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def request(api_key: int, version: int, name: str, /, **values: Any) -> Any:
    """A request (or nested request entity) of ``version``; fields the
    version lacks are dropped."""
    return _build(api_key, version, name, EntityType.request, values)


def ms(n: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=n)


def roundtrip(entity: Any) -> Any:
    """Encode with kio, decode, encode again: the bytes must agree and the
    whole frame must be consumed."""
    cls = type(entity)
    buf = io.BytesIO()
    entity_writer(cls)(buf, entity)
    data = buf.getvalue()
    decoded, size = entity_reader(cls)(data, 0)
    assert size == len(data)
    again = io.BytesIO()
    entity_writer(cls)(again, decoded)
    assert again.getvalue() == data
    return decoded


def info(listener: str, principal: str = "User:ANONYMOUS") -> ConnectionInfo:
    conn = ConnectionInfo(listener, "127.0.0.1:40000", False)
    conn.principal = principal
    return conn


class Caller:
    """Calls handlers as the Kafka front-end would."""

    def __init__(self, ctx: Any, conn: ConnectionInfo) -> None:
        self.ctx = ctx
        self.conn = conn

    def send(self, body: Any, client_id: str | None = "kafka-test") -> Any:
        """The handler's immediate reply (an entity or a Later)."""
        req = KafkaRequest(int(body.__api_key__), int(body.__version__), body, client_id=client_id)
        return GROUP_HANDLERS[req.api_key](self.ctx, self.conn, req)

    async def call(self, body: Any, client_id: str | None = "kafka-test") -> Any:
        """The final reply, round-tripped through kio."""
        reply = self.send(body, client_id)
        if type(reply) is Later:
            reply = await reply.fn(*reply.args)
        assert type(reply).__name__.endswith("Response")
        assert reply.__version__ == body.__version__
        return roundtrip(reply)

    def now(self, body: Any) -> Any:
        """A reply that must come at once (not held)."""
        reply = self.send(body)
        assert type(reply) is not Later, f"{type(body).__name__} was held"
        return roundtrip(reply)


class Pending:
    """A held reply being awaited in a task of the test's nursery."""

    def __init__(self, nursery: trio.Nursery, later: Later) -> None:
        assert type(later) is Later
        self.done = trio.Event()
        self.value: Any = None
        nursery.start_soon(self._run, later)

    async def _run(self, later: Later) -> None:
        self.value = roundtrip(await later.fn(*later.args))
        self.done.set()

    async def result(self) -> Any:
        await self.done.wait()
        return self.value


async def settle() -> None:
    """Let every runnable task run (held replies resolve synchronously; their
    tasks only need scheduling)."""
    await trio.testing.wait_all_tasks_blocked()


def pick(items: Any, key: Callable[[Any], Any]) -> dict:
    return {key(x): x for x in items}
