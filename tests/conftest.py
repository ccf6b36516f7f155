"""Shared fixtures; the brokers behind them live in harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from harness import BrokerProcess, RunningBroker, ThreadedBroker, broker_config

from tailrace.broker.app import Broker


@pytest.fixture
async def broker(nursery: trio.Nursery, tmp_path: Path) -> RunningBroker:
    """A broker in this test's nursery (flush = sync, the default)."""
    data_dir = tmp_path / "data"
    b = Broker(broker_config(data_dir))
    listeners = await nursery.start(b.serve)
    return RunningBroker(b, listeners[0].address, data_dir)


@pytest.fixture
def threaded_broker(tmp_path: Path) -> Iterator[ThreadedBroker]:
    b = ThreadedBroker(tmp_path / "data")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data")
    try:
        yield proc
    finally:
        proc.kill()
