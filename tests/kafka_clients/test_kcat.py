"""Debian's kcat (1.7.1, librdkafka 2.0.2) against a real broker's Kafka listener:
metadata (-L), produce (-P), consume from the beginning (-C -o beginning -e),
a balanced group consumer (-G) whose commits the native admin sees, and
offsets by timestamp (-Q). ``make test`` installs kcat (``make kcat``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from typing import Any

import pytest
from harness import BrokerProcess

from tailrace.client import Admin

TIMEOUT_S = 60


def kcat(broker: BrokerProcess, *args: str, stdin: str | None = None) -> str:
    """Run kcat on the broker's Kafka listener; its stdout. A failure says why."""
    path = shutil.which("kcat")
    if path is None:
        raise AssertionError("kcat is not installed: run `make kcat` (apt-get install kcat)")
    done = subprocess.run(
        [path, "-b", broker.kafka_address(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"kcat {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
    return done.stdout


def create_topic(broker: BrokerProcess, name: str, partitions: int = 3) -> None:
    """Topics come from the native admin: kcat has no way to create one."""
    with Admin(broker.address) as admin:
        admin.create_topic(name, partitions=partitions)


def consumed(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def fields(msg: dict[str, Any]) -> tuple[Any, ...]:
    return (msg["partition"], msg["offset"], msg["key"], msg["payload"], msg["headers"])


LINES = "k1:first value\nk2:second\tvalue\n:no key\n"


def want(partition: int, start: int = 0) -> list[tuple[Any, ...]]:
    headers = ["h1", "one", "h2", "two"]
    return [
        (partition, start, "k1", "first value", headers),
        (partition, start + 1, "k2", "second\tvalue", headers),
        (partition, start + 2, "", "no key", headers),
    ]


def produce(broker: BrokerProcess, topic: str, partition: int, codec: str = "none") -> None:
    kcat(
        broker,
        *("-P", "-t", topic, "-p", str(partition), "-K:", "-z", codec),
        *("-H", "h1=one", "-H", "h2=two"),
        stdin=LINES,
    )


@pytest.fixture
def broker(kafka_broker: BrokerProcess) -> BrokerProcess:
    """The module's broker (conftest.py): one for all the kcat tests."""
    return kafka_broker


def test_kcat_lists_the_broker_and_the_topic(broker: BrokerProcess) -> None:
    create_topic(broker, "kcat-meta")
    meta = json.loads(kcat(broker, "-L", "-J", "-t", "kcat-meta"))
    # one broker, advertised at the address kcat connected to
    assert [b["name"] for b in meta["brokers"]] == [broker.kafka_address()]
    (topic,) = meta["topics"]
    assert topic["topic"] == "kcat-meta"
    assert "error" not in topic, topic
    assert sorted(p["partition"] for p in topic["partitions"]) == [0, 1, 2]


def test_kcat_produces_and_consumes_from_the_beginning(broker: BrokerProcess) -> None:
    create_topic(broker, "kcat-pc")
    produce(broker, "kcat-pc", 0, "lz4")
    produce(broker, "kcat-pc", 2, "gzip")
    produce(broker, "kcat-pc", 2)
    out = kcat(broker, "-C", "-t", "kcat-pc", "-o", "beginning", "-e", "-J")
    got = sorted(fields(m) for m in consumed(out))
    assert got == sorted(want(0) + want(2) + want(2, start=3))


def test_kcat_group_consumer_reads_everything_and_commits(broker: BrokerProcess) -> None:
    create_topic(broker, "kcat-group")
    for p in range(3):
        produce(broker, "kcat-group", p, "snappy")
    out = kcat(broker, "-G", "kcat-g", "-o", "beginning", "-e", "-J", "kcat-group")
    got = sorted(fields(m) for m in consumed(out))
    assert got == sorted(want(0) + want(1) + want(2))
    # the group's commits are the broker's: the native admin reads them
    with Admin(broker.address) as admin:
        offsets = admin.describe_group("kcat-g").offsets
    assert {(o.topic, o.partition): o.committed_offset for o in offsets} == {
        ("kcat-group", p): 3 for p in range(3)
    }


def test_kcat_queries_offsets_by_timestamp(broker: BrokerProcess) -> None:
    create_topic(broker, "kcat-time", partitions=1)
    before = int(time.time() * 1000) - 1
    produce(broker, "kcat-time", 0)
    between = int(time.time() * 1000) + 1
    while int(time.time() * 1000) <= between:  # the next records are stamped later
        time.sleep(0.001)
    produce(broker, "kcat-time", 0)
    after = int(time.time() * 1000) + 60_000

    def query(ts: int) -> int:
        out = kcat(broker, "-Q", "-t", f"kcat-time:0:{ts}")
        m = re.search(r"kcat-time \[0\] offset (-?\d+)", out)
        assert m, out
        return int(m.group(1))

    assert query(before) == 0
    assert query(between) == 3
    assert query(after) == -1
