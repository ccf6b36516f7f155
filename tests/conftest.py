"""Shared fixtures; the brokers behind them live in harness.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _etcd(tmp_path: Path, members: int) -> Iterator[Any]:
    # imported here: only the cluster tests start etcd
    from tailrace.broker.faultkit.etcd_cluster import EtcdCluster

    # 50/500 ms: quick elections and a 1 s minimum lease TTL (defaults 100/1000)
    for attempt in range(3):
        cluster = EtcdCluster(tmp_path / "etcd", members=members, heartbeat_ms=50, election_ms=500)
        try:
            cluster.start()
            break
        except RuntimeError as exc:
            # a free port picked for a member was taken by another process
            # before etcd bound it (busy machines): new ports, once more
            if "address already in use" not in str(exc) or attempt == 2:
                raise
            shutil.rmtree(tmp_path / "etcd", ignore_errors=True)
    try:
        yield cluster
    finally:
        cluster.stop()
        # each member preallocates ~123 MB of WAL: do not keep it in pytest's tmp dirs
        shutil.rmtree(tmp_path / "etcd", ignore_errors=True)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Any]:
    """One etcd member on a free loopback port (an EtcdCluster); fails when
    the etcd binary is missing (`make debian-tools`)."""
    yield from _etcd(tmp_path, 1)


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[Any]:
    """Three etcd members on free loopback ports (an EtcdCluster)."""
    yield from _etcd(tmp_path, 3)
