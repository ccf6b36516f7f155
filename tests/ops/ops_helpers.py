"""Helpers for the operability tests: a real HTTP client for the metrics
endpoint, exposition parsing, raw-protocol requests, broker subprocesses
whose JSON logs are read line by line."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import trio
from harness import BrokerProcess, broker_config
from prometheus_client.parser import text_string_to_metric_families

from tailrace.broker.app import Broker
from tailrace.broker.log import StorageIO
from tailrace.client.protocol import (
    CreatableTopic,
    CreateTopicsRequest,
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)
from tailrace.client.records import build_batch

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_get(address: str, path: str, *, method: str = "GET") -> HttpReply:
    """One request over a new loopback connection (h11 as the client)."""
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        headers = [("Host", address), ("Connection", "close")]
        if method != "GET":
            headers.append(("Content-Length", "0"))
        await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=headers)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        return await read_reply(conn, stream)


async def read_reply(conn: h11.Connection, stream: trio.abc.ReceiveStream) -> HttpReply:
    status = 0
    headers: dict[str, str] = {}
    body = bytearray()
    with trio.fail_after(30):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return HttpReply(status, headers, bytes(body))


def parse_samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def scrape(address: str) -> Samples:
    reply = await http_get(address, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_samples(reply.body.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a labelled counter's child that
    was never incremented does not exist yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --- brokers and raw requests --------------------------------------------------


def metered_broker(data_dir: Path, *, io: StorageIO | None = None, **flags: Any) -> Broker:
    """A broker on 127.0.0.1:0 with its metrics endpoint on 127.0.0.1:0."""
    return Broker(broker_config(data_dir, metrics_listen="127.0.0.1:0", **flags), io=io)


def batch(first: int, n: int = 10, size: int = 100) -> bytes:
    ts = 1_700_000_000_000 + first
    return build_batch(
        [(ts, None, b"%08d" % (first + k) + b"x" * (size - 8), None) for k in range(n)]
    )


async def create_topic(conn: Any, name: str, partitions: int = 1) -> None:
    response = await conn.request(
        CreateTopicsRequest(topics=[CreatableTopic(name=name, partitions=partitions, configs={})])
    )
    assert response.topics[0].error_code == 0, response.topics[0].error_message


async def produce(conn: Any, topic: str, data: bytes, partition: int = 0, acks: int = 1) -> Any:
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
    return response


async def fetch(
    conn: Any,
    topic: str,
    offset: int,
    *,
    partition: int = 0,
    max_wait_ms: int = 0,
    min_bytes: int = 1,
) -> Any:
    response = await conn.request(
        FetchRequest(
            max_wait_ms=max_wait_ms,
            min_bytes=min_bytes,
            max_bytes=1 << 20,
            topics=[
                FetchTopic(
                    name=topic,
                    partitions=[
                        FetchPartition(partition=partition, fetch_offset=offset, max_bytes=1 << 20)
                    ],
                )
            ],
        )
    )
    return response.topics[0].partitions[0]


# --- broker subprocesses ---------------------------------------------------------


def broker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tailrace.broker.cli", "broker", *args]


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}


class JsonBroker(BrokerProcess):
    """``tailrace broker --log-format json`` as a child process; every stderr
    line is kept, and the listening and metrics addresses are read from the
    JSON lines as they come."""

    def __init__(self, data_dir: Path, args: tuple[str, ...] = ()) -> None:
        super().__init__(data_dir, *args)
        self.metrics_address = ""

    @property
    def lines(self) -> list[str]:
        return self.log_lines

    def command(self) -> list[str]:
        return broker_command(
            "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
            "--log-format", "json", *self.args,
        )  # fmt: skip

    def child_env(self) -> dict[str, str]:
        return child_env()

    def on_line(self, line: str) -> str | None:
        try:
            obj = json.loads(line)
        except ValueError:
            return None  # the test parses every line itself and fails there
        if obj.get("msg") == "serving metrics and health checks":
            self.metrics_address = obj["address"]
        return obj["address"] if obj.get("msg") == "listening" else None
