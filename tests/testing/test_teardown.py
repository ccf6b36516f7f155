"""A test broker leaves nothing behind: threads, descriptors, processes,
temporary files."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest

import tailrace.testing
from tailrace.client import Consumer, Producer


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _children() -> set[str]:
    kids: set[str] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                kids.update(f.read().split())
        except FileNotFoundError:
            continue  # the thread ended between the listing and the open
    return kids


def _threads() -> set[threading.Thread]:
    # trio's worker-thread cache (threads named "Trio thread N") keeps idle
    # workers for the next trio.run of the process and ends them after 10 s
    # idle: a pool owned by trio, not something a broker left running
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread")}


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory of this test alone (other processes on the
    machine make their own tailrace-* directories in /tmp)."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_close_leaves_nothing_behind(process: bool, private_tmp: Path):
    threads, fds, children = _threads(), _fds(), _children()
    with tailrace.testing.broker(process=process) as b:
        data_dir = b.data_dir
        assert data_dir.parent.parent == private_tmp
        with b.unique_topic("leak") as topic:
            with Producer(b.bootstrap) as producer:
                producer.send(topic, b"x").result(10)
            with Consumer(b.bootstrap, auto_offset_reset="earliest") as consumer:
                consumer.assign([(topic, 0)])
                for _ in range(50):
                    if consumer.poll(timeout_ms=200):
                        break
            if process:
                b.kill()
                b.start()
            else:
                b.restart()
        assert data_dir.is_dir()
        assert _threads() != threads  # the broker's own are there while it runs
    assert not data_dir.exists()
    # nothing new is left; what was there before may have ended meanwhile
    # (an earlier test's client thread finishing its close)
    assert _threads() - threads == set()
    assert _fds() - fds == set()
    assert _children() - children == set()
    assert list(private_tmp.iterdir()) == []


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path, private_tmp: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    threads, fds = _threads(), _fds()
    with pytest.raises(tailrace.testing.BrokerStartError):
        tailrace.testing.broker(data_dir=blocker).start()
    with pytest.raises(tailrace.testing.BrokerStartError):
        tailrace.testing.broker(settings={"no_such_setting": 1}).start()
    assert _threads() == threads
    assert _fds() == fds
    assert list(private_tmp.iterdir()) == []
