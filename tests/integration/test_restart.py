"""A broker process that stops, cleanly or by kill -9, keeps every batch it
acknowledged."""

from __future__ import annotations

import threading
import time

import pytest
from harness import BrokerProcess

from tailrace.client import Admin, Consumer, Producer


def consume_all(address: str, topic: str, partitions: int, expected: int) -> list:
    with Consumer(address, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, p) for p in range(partitions)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < expected and time.monotonic() < deadline:
            got += consumer.poll(timeout_ms=500)
        # and nothing more arrives
        got += consumer.poll(timeout_ms=200)
    return got


def test_sigterm_keeps_everything_and_marks_a_clean_shutdown(tmp_path):
    data = tmp_path / "data"
    with BrokerProcess(data) as proc:
        with Admin(proc.address) as admin:
            admin.create_topic("t", partitions=3)
        with Producer(proc.address, linger_ms=1) as producer:
            futures = [producer.send("t", b"r%d" % i, key=b"%d" % i) for i in range(3000)]
            producer.flush()
        assert all(f.result(10).offset >= 0 for f in futures)
        assert proc.terminate() == 0
    assert (data / "~clean-shutdown").exists()
    with BrokerProcess(data) as proc:
        got = consume_all(proc.address, "t", 3, 3000)
        assert sorted(r.value for r in got) == sorted(b"r%d" % i for i in range(3000))
        assert any("(clean shutdown before)" in line for line in proc.log_lines)


@pytest.mark.parametrize("flush", ["sync", "none"])
def test_kill_9_during_produce_loses_nothing_acknowledged(tmp_path, flush):
    """kill -9 mid-stream: every record whose future resolved is there after a
    restart, exactly once (with flush none too: the data is in the page cache,
    which outlives the process)."""
    data = tmp_path / "data"
    proc = BrokerProcess(data).start()
    try:
        with Admin(proc.address) as admin:
            admin.create_topic("t", partitions=2, config={"flush": flush})
        acked: list[bytes] = []
        lock = threading.Lock()
        producer = Producer(
            proc.address, linger_ms=1, delivery_timeout_ms=2000, request_timeout_ms=1000
        )

        def record(fut, value):
            if fut.exception() is None:
                with lock:
                    acked.append(value)

        i = 0
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            value = b"v%06d" % i
            producer.send("t", value).add_done_callback(lambda f, v=value: record(f, v))
            i += 1
            if i % 500 == 0:
                time.sleep(0.001)
        proc.kill()  # SIGKILL while records are in flight
        producer.close(timeout=5)
        assert acked, "nothing was acknowledged before the kill"
        proc = BrokerProcess(data).start()
        got = consume_all(proc.address, "t", 2, len(acked))
        values = [r.value for r in got]
        assert len(values) == len(set(values)), "a record was stored twice"
        missing = set(acked) - set(values)
        assert not missing, f"{len(missing)} acknowledged records lost"
        assert any("(unclean shutdown before)" in line for line in proc.log_lines)
    finally:
        proc.kill()
