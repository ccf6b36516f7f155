"""Groups across real processes: a frozen member process (SIGSTOP) loses
its partitions once its session times out, and committed offsets survive a
broker kill -9 without ever going backwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import trio
from group_helpers import create_topic, start_broker, wire
from harness import ROOT, BrokerProcess

from tailrace.client import Admin, AsyncConsumer, Consumer, Producer
from tailrace.client.errors import TailraceError
from tailrace.client.protocol import DescribeGroupsRequest

MEMBER = """
import sys
from tailrace.client import Consumer

owned = set()

def assigned(ps):
    owned.update(ps)
    print("owns", len(owned), flush=True)

def revoked(ps):
    owned.difference_update(ps)
    print("owns", len(owned), flush=True)

with Consumer(sys.argv[1], group_id="g", session_timeout_ms=1000) as c:
    c.subscribe(["t"], on_assigned=assigned, on_revoked=revoked)
    while True:
        c.poll(timeout_ms=100)
"""


async def test_a_frozen_member_process_loses_its_partitions(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 4, flush="none")
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", MEMBER, b.address], stdout=subprocess.PIPE, cwd=ROOT
    )
    try:
        lines: list[str] = []
        buffer = b""

        async def read_lines() -> None:
            nonlocal buffer
            assert proc.stdout is not None
            while data := await proc.stdout.receive_some(4096):
                buffer += data
                *done, buffer = buffer.split(b"\n")
                lines.extend(x.decode() for x in done)

        nursery.start_soon(read_lines)
        with trio.fail_after(20):
            while "owns 4" not in lines:  # noqa: ASYNC110 - the reader task fills it
                await trio.sleep(0.02)
        mine: set = set()
        async with AsyncConsumer(b.address, group_id="g", session_timeout_ms=5000) as c:
            c.subscribe(["t"], on_assigned=mine.update, on_revoked=mine.difference_update)
            with trio.fail_after(20):
                while len(mine) != 2 or lines[-1] != "owns 2":
                    await c.poll(timeout_ms=20)
            os.kill(proc.pid, signal.SIGSTOP)  # frozen: no more heartbeats
            with trio.fail_after(20):
                while len(mine) != 4:
                    await c.poll(timeout_ms=20)
            async with wire(b.address) as w:
                (g,) = (await w.request(DescribeGroupsRequest(group_ids=["g"]))).groups
            assert [m.member_id for m in g.members] == [c.member_id]
    finally:
        proc.kill()
        os.kill(proc.pid, signal.SIGCONT)
        await proc.wait()


def test_committed_offsets_survive_kill_9_and_never_go_backwards(tmp_path):
    data = tmp_path / "data"
    broker = BrokerProcess(data).start()
    try:
        with Admin(broker.address) as admin:
            admin.create_topic("t", partitions=2, config={"flush": "none"})
        with Producer(broker.address) as producer:
            for i in range(600):
                producer.send("t", b"%d" % i, partition=i % 2)
            producer.flush()
        floor = 0
        for _ in range(3):
            acked = [floor]
            stop = threading.Event()

            def commit_forever(address: str, acked=acked, stop=stop) -> None:
                with Consumer(
                    address, group_id="g", enable_auto_commit=False, request_timeout_ms=1000
                ) as c:
                    c.assign([("t", 0), ("t", 1)])
                    n = acked[0]
                    while not stop.is_set() and n < 300:
                        n += 1
                        try:
                            c.commit({("t", 0): n, ("t", 1): n})
                        except TailraceError:
                            return
                        acked[0] = n

            worker = threading.Thread(target=commit_forever, args=(broker.address,))
            worker.start()
            while acked[0] < floor + 25 and worker.is_alive():
                stop.wait(0.005)
            broker.kill()  # SIGKILL while commits are in flight
            stop.set()
            worker.join(30)
            assert not worker.is_alive()
            broker = BrokerProcess(data).start()
            with Consumer(broker.address, group_id="g", enable_auto_commit=False) as c:
                committed = [c.committed(("t", p)).offset for p in (0, 1)]
            # every acknowledged commit is there; at most the one in flight is newer
            for value in committed:
                assert acked[0] <= value <= acked[0] + 1
            assert min(committed) >= floor
            floor = max(committed)
        assert floor >= 75
    finally:
        broker.kill()
