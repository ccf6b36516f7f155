"""The blocking Consumer in a group: rebalance callbacks run on a worker
thread and may call back into the consumer (position, commit) while poll
waits for them; commit_async hands back a handle usable from any thread."""

from __future__ import annotations

import threading

import pytest
from harness import ThreadedBroker

from tailrace.client import Admin, Consumer, Producer
from tailrace.client.errors import NotAssignedError


@pytest.fixture
def broker(tmp_path):
    b = ThreadedBroker(tmp_path / "data", groups__session_timeout_min_ms=100)
    try:
        with Admin(b.address) as admin:
            admin.create_topic("t", partitions=4, config={"flush": "none"})
        with Producer(b.address) as producer:
            for i in range(40):
                producer.send("t", b"%d" % i, partition=i % 4)
            producer.flush()
        yield b
    finally:
        b.stop()


def test_on_revoked_commits_through_the_consumer_and_the_next_owner_starts_there(broker):
    config = {
        "group_id": "g",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 5000,
    }
    revoked_seen: list[set] = []
    with Consumer(broker.address, **config) as first:

        def on_revoked(partitions):
            assert threading.current_thread() is not threading.main_thread()
            first.commit({tp: first.position(tp) for tp in partitions})
            revoked_seen.append(set(partitions))

        first.subscribe(["t"], on_revoked=on_revoked)
        got = []
        while len(got) < 40:
            got += first.poll(timeout_ms=1000)
        assert len(first.assignment()) == 4

        second_got: list = []
        second_owns = threading.Event()
        stop = threading.Event()

        def second_member() -> None:
            with Consumer(broker.address, **config) as second:
                second.subscribe(["t"], on_assigned=lambda ps: second_owns.set())
                while not stop.is_set():
                    second_got.extend(second.poll(timeout_ms=50))

        worker = threading.Thread(target=second_member)
        worker.start()
        try:
            while not (revoked_seen and second_owns.is_set()):
                got += first.poll(timeout_ms=50)
            (moved,) = revoked_seen
            assert len(moved) == 2
            assert first.assignment() == {("t", p) for p in range(4)} - moved
            for tp in moved:
                assert first.committed(tp).offset == 10
            handle = first.commit_async({tp: 3 for tp in moved})  # the second member's now
            with pytest.raises(NotAssignedError):
                handle.result(10)
        finally:
            stop.set()
            worker.join(30)
    assert second_got == []  # it started where the first member stopped
    assert len(got) == 40
