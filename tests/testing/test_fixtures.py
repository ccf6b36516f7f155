"""The plugin's fixtures as this suite gets them: through the pytest11 entry
point of the installed distribution (no conftest defines them)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import tailrace.testing
from tailrace.client import Admin, Consumer, Producer
from tailrace.testing import LocalBroker, ProcessBroker


def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    values: list[bytes] = []
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        for _ in range(50):  # bounded: 50 polls of at most 200 ms
            values += [r.value for r in consumer.poll(timeout_ms=200)]
            if len(values) >= expected:
                break
    return values


def test_importing_the_plugin_imports_neither_trio_nor_the_broker():
    # every pytest run of every project with tailrace installed imports it
    code = (
        "import sys, tailrace.testing.plugin\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'trio'"
        " or m.startswith(('tailrace.broker', 'tailrace.client')))\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_session_broker_serves_native_clients(tailrace_broker: LocalBroker, tailrace_topic: str):
    assert tailrace_broker.kind == "thread"
    with Producer(tailrace_broker.bootstrap) as producer:
        for i in range(3):
            producer.send(tailrace_topic, b"v%d" % i)
        producer.flush()
    assert _read_all(tailrace_broker.bootstrap, tailrace_topic, 3) == [b"v0", b"v1", b"v2"]


def _kafka_topics(kafka_bootstrap: str) -> dict[str, int]:
    """Topic -> partition count, as a Kafka client (librdkafka) sees them."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=30)
    (broker,) = metadata.brokers.values()
    assert f"{broker.host}:{broker.port}" == kafka_bootstrap
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def test_session_broker_serves_kafka_clients(tailrace_broker: LocalBroker, tailrace_topic: str):
    assert tailrace_broker.kafka_bootstrap != tailrace_broker.bootstrap
    assert _kafka_topics(tailrace_broker.kafka_bootstrap)[tailrace_topic] == 1
    # one broker behind both listeners: a topic made through Kafka is a topic
    name = tailrace_broker.unique_name("via-kafka")
    admin = AdminClient({"bootstrap.servers": tailrace_broker.kafka_bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=2)])[name].result(30)
    try:
        assert len(tailrace_broker.admin().describe_topic(name).partitions) == 2
    finally:
        tailrace_broker.delete_topic(name)


def test_session_broker_is_shared(tailrace_broker: LocalBroker, request: pytest.FixtureRequest):
    # the same object (and address) for every test of the session
    again = request.getfixturevalue("tailrace_broker")
    assert again is tailrace_broker
    assert tailrace_broker.bootstrap.startswith("127.0.0.1:")


def test_unique_topics_keep_records_apart(tailrace_broker: LocalBroker):
    with tailrace_broker.unique_topics("orders", "orders") as (first, second):
        assert first != second
        assert first.startswith("orders-")
        assert second.startswith("orders-")
        with Producer(tailrace_broker.bootstrap) as producer:
            producer.send(first, b"only-in-first").result(10)
        assert _read_all(tailrace_broker.bootstrap, first, 1) == [b"only-in-first"]
        offsets = tailrace_broker.admin().topic_offsets(second)
        assert offsets == {0: (0, 0)}
    # deleted on exit
    names = {t.name for t in tailrace_broker.admin().list_topics()}
    assert first not in names
    assert second not in names


def test_create_topic_with_partitions_and_config(tailrace_broker: LocalBroker):
    name = tailrace_broker.unique_name("configured")
    assert tailrace_broker.create_topic(name, partitions=3, flush="sync") == name
    try:
        described = tailrace_broker.admin().describe_topic(name)
        assert len(described.partitions) == 3
        assert described.configs["flush"].value == "sync"
    finally:
        tailrace_broker.delete_topic(name)
    assert name not in {t.name for t in tailrace_broker.admin().list_topics()}


def test_unique_names_are_valid_topic_names_from_any_test_id():
    name = tailrace.testing.unique_name("test_x[param with spaces/and:colons]")
    assert name.startswith("test_x-param-with-spaces-and-colons-")
    assert tailrace.testing.unique_name("test") != tailrace.testing.unique_name("test")
    assert tailrace.testing.unique_name("???").startswith("tailrace-")


def test_fresh_broker_is_empty_and_restarts_on_the_same_address(
    tailrace_fresh_broker: ProcessBroker,
):
    b = tailrace_fresh_broker
    assert b.admin().list_topics() == []
    b.create_topic("kept")
    with Producer(b.bootstrap) as producer:
        producer.send("kept", b"before").result(10)
    addresses = b.bootstrap, b.kafka_bootstrap
    b.restart()
    assert (b.bootstrap, b.kafka_bootstrap) == addresses
    assert any("clean shutdown before" in line for line in b.log_tail)
    assert _read_all(b.bootstrap, "kept", 1) == [b"before"]


def test_fresh_broker_kill_is_a_crash_and_start_recovers(tailrace_fresh_broker: ProcessBroker):
    b = tailrace_fresh_broker
    b.create_topic("crashy", partitions=1)
    with Producer(b.bootstrap) as producer:
        for i in range(5):
            producer.send("crashy", b"r%d" % i)
        producer.flush()
    pid = b.pid
    b.kill()
    assert not b.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = b.bootstrap
    b.start()
    assert b.pid != pid
    assert any("unclean shutdown before" in line for line in b.log_tail)
    assert _kafka_topics(b.kafka_bootstrap) == {"crashy": 1}
    # acknowledged records survive the crash (the page cache outlives the process)
    assert _read_all(b.bootstrap, "crashy", 5) == [b"r%d" % i for i in range(5)]


def test_a_thread_broker_cannot_be_killed_and_says_what_to_use(tailrace_broker: LocalBroker):
    with pytest.raises(NotImplementedError, match="tailrace_fresh_broker"):
        tailrace_broker.kill()
    assert tailrace_broker.running


def test_broker_without_pytest_takes_settings():
    with tailrace.testing.broker(settings={"auto_create_topics": True}) as b:
        with Producer(b.bootstrap) as producer:
            producer.send("made-on-first-produce", b"x").result(10)
        with Admin(b.bootstrap) as admin:
            assert "made-on-first-produce" in {t.name for t in admin.list_topics()}


def test_a_broker_that_died_says_so(tailrace_fresh_broker: ProcessBroker):
    b = tailrace_fresh_broker
    assert b.proc is not None
    b.proc.kill()  # as the OOM killer would: not through kill()
    b.proc.wait(30)
    assert not b.running
    with pytest.raises(RuntimeError, match="exited with code -9"):
        _ = b.bootstrap
    b.start()  # it can come back, on its address, after the death too
    assert b.admin().list_topics() == []
