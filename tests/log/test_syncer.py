"""The log's sync thread (broker/log/syncer.py): jobs run off the trio
thread, one at a time, results and exceptions come back, a busy or closed
thread hands the job to trio.to_thread, a started job is waited for even
when its caller is cancelled, and close() stops the thread."""

from __future__ import annotations

import os
import threading

import pytest
import trio
import trio.testing
from log_helpers import batch

from tailrace.broker.log.manager import LogManager
from tailrace.broker.log.syncer import SyncThread


async def test_a_job_runs_on_the_sync_thread_and_returns_its_result() -> None:
    syncer = SyncThread()
    try:
        names = [await syncer.run_sync(lambda: threading.current_thread().name) for _ in range(3)]
        assert names == ["tailrace-sync"] * 3
        assert await syncer.run_sync(pow, 2, 10) == 1024
        assert (syncer.jobs_here, syncer.jobs_elsewhere) == (4, 0)
    finally:
        syncer.close()


async def test_a_failing_job_raises_in_the_caller_and_the_thread_goes_on() -> None:
    syncer = SyncThread()

    def fail() -> None:
        raise OSError(5, "Input/output error")

    try:
        with pytest.raises(OSError, match="Input/output error"):
            await syncer.run_sync(fail)
        assert await syncer.run_sync(lambda: "still here") == "still here"
    finally:
        syncer.close()


async def test_while_busy_a_second_job_runs_on_a_trio_worker_thread() -> None:
    syncer = SyncThread()
    release = threading.Event()
    names: dict[str, str] = {}

    def slow() -> None:
        names["slow"] = threading.current_thread().name
        assert release.wait(10)

    def quick() -> None:
        names["quick"] = threading.current_thread().name
        release.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(syncer.run_sync, slow)
            await trio.testing.wait_all_tasks_blocked()
            await syncer.run_sync(quick)  # would deadlock if it queued behind slow
        assert names["slow"] == "tailrace-sync"
        assert names["quick"] != "tailrace-sync"
        assert (syncer.jobs_here, syncer.jobs_elsewhere) == (1, 1)
    finally:
        syncer.close()


async def test_a_started_job_is_waited_for_when_its_caller_is_cancelled() -> None:
    syncer = SyncThread()
    started = threading.Event()
    release = threading.Event()
    finished = []

    def job() -> str:
        started.set()
        assert release.wait(10)
        finished.append(True)
        return "done"

    scope = trio.CancelScope()
    got: list[str] = []

    async def cancel_once_started() -> None:
        await trio.to_thread.run_sync(started.wait, 10)
        scope.cancel()
        await trio.sleep(0.05)  # the caller, cancelled, still waits
        assert not finished
        release.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_once_started)
            with scope:
                got.append(await syncer.run_sync(job))
                await trio.lowlevel.checkpoint()  # the cancellation arrives here
        assert scope.cancelled_caught
        assert finished == [True]  # the cancellation waited for the job
        assert got == ["done"]
        assert await syncer.run_sync(lambda: 7) == 7  # and left nothing behind
    finally:
        syncer.close()


async def test_close_stops_the_thread_and_later_jobs_still_run() -> None:
    syncer = SyncThread()
    await syncer.run_sync(lambda: None)
    thread = syncer._thread
    assert thread is not None
    syncer.close()
    assert not thread.is_alive()
    assert await syncer.run_sync(lambda: threading.current_thread().name) != "tailrace-sync"
    assert syncer.jobs_elsewhere == 1


async def test_a_log_manager_syncs_on_its_sync_thread_and_stops_it_at_close(tmp_path) -> None:
    manager = LogManager.open(str(tmp_path / "data"))
    await manager.create_topic("t", 1, {"flush": "sync"})
    plog = manager.get("t", 0)
    result = plog.append(batch(3))
    await plog.wait_durable(result)
    syncer = manager._syncer
    assert syncer.jobs_here >= 1
    thread = syncer._thread
    assert thread is not None
    assert await manager.aclose()
    assert not thread.is_alive()
    assert os.path.exists(tmp_path / "data")
