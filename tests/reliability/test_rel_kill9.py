"""Scenario 1: kill -9 of the broker process at random moments during produce.

A real ``tailrace broker`` subprocess, four idempotent producers and a group
committer in this process. At random moments the broker is SIGKILLed (now
and then while it is still starting up, i.e. during recovery) and restarted
on the same port; the producers ride through the restarts (retries within a
long delivery timeout). Afterwards the broker stops cleanly and the oracle
reads the log twice, from the files on disk and through a consumer:

* flush sync and flush none alike (and interval, in the long profile): no
  acknowledged record lost (a process crash keeps the page cache, where
  mmap stores already are), none duplicated, order kept per producer and
  partition, offsets dense, every index entry at a batch start;
* the group's committed offset never goes backwards across a kill.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time

import pytest
import trio
from harness import BrokerProcess
from rel_helpers import committed_offset, create_topic, producing, run_committer
from rel_profile import record_result, seeds, size

from tailrace.broker.faultkit.oracle import History, check, read_topic_dir
from tailrace.broker.faultkit.workload import read_topic

PARTITIONS = 3


async def _start(data, listen: str) -> BrokerProcess:
    return await trio.to_thread.run_sync(lambda: BrokerProcess(data, listen=listen).start())


async def _kill_while_starting(data, listen: str, delay: float) -> None:
    """Spawn a broker and SIGKILL it ``delay`` s later, listening or not."""
    proc = BrokerProcess(data, listen=listen)

    def run() -> None:
        with contextlib.suppress(RuntimeError):  # not listening yet: start() killed it
            proc.start(timeout=delay)
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.send_signal(signal.SIGKILL)
            proc.kill()

    await trio.to_thread.run_sync(run)


# interval acknowledges at append like none: the long profile covers it too
@pytest.mark.parametrize("flush", size(["sync", "none"], ["sync", "interval", "none"]))
async def test_kill_9_during_produce_loses_nothing_acknowledged(tmp_path, flush):
    (seed,) = seeds({"sync": 100, "interval": 150, "none": 200}[flush], short=1, long=1)
    rng = random.Random(seed)
    kills = size(5, 50)
    data = tmp_path / "data"
    history = History()
    commits: list[int] = []
    backwards: list[str] = []
    proc = await _start(data, "127.0.0.1:0")
    listen = proc.address
    early_kills = 0
    started = time.monotonic()
    try:
        await create_topic(
            proc.address,
            "t",
            PARTITIONS,
            flush=flush,
            segment_bytes=200_000,
            index_interval_bytes=4096,
        )
        async with (
            producing(
                listen,
                "t",
                history,
                producers=4,
                partitions=PARTITIONS,
                pad=100,
                config={"delivery_timeout_ms": 120_000, "request_timeout_ms": 3000},
                close_timeout=60,
            ),
            trio.open_nursery() as side,
        ):
            side.start_soon(run_committer, listen, history, "t", commits)
            for k in range(kills):
                await trio.sleep(rng.uniform(0.2, 0.7))
                last_commit = commits[-1] if commits else None
                proc.kill()  # SIGKILL, reaped
                if rng.random() < 0.2:
                    early_kills += 1
                    await _kill_while_starting(data, listen, rng.uniform(0.05, 0.6))
                proc = await _start(data, listen)
                if last_commit is not None:
                    got = await committed_offset(listen, "t")
                    if got is None or got < last_commit:
                        backwards.append(f"kill {k}: committed {got} < acknowledged {last_commit}")
            await trio.sleep(0.3)
            side.cancel_scope.cancel()
        history.finish()
        via_consumer = await read_topic(listen, "t", timeout=120)
        assert await trio.to_thread.run_sync(proc.terminate) == 0
    finally:
        proc.kill()
    assert not backwards, backwards
    counts = history.counts()
    assert counts["acked"] > kills * 100, counts  # the kills hit a busy broker
    for name, reads in (("disk", read_topic_dir(str(data), "t")), ("consumer", via_consumer)):
        report = check(history, reads)
        assert report.ok, f"read from the {name}: {report}\n(seed {seed}, flush {flush})"
    record_result(
        f"kill -9 during produce, flush {flush}",
        runs=1,
        faults=kills + early_kills,
        kills_during_startup=early_kills,
        records_checked=report.records_read,
        acked=report.acked,
        unknown=report.unknown,
        commits_acked=len(commits),
        lost=report.lost,
        seconds=round(time.monotonic() - started, 1),
    )
