"""A real ``tailrace broker`` process with a Kafka listener, for the client matrix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import BrokerProcess


def start_kafka_broker(data_dir: Path, *args: str) -> BrokerProcess:
    """``tailrace broker`` on loopback port 0 with a Kafka listener (port 0)."""
    proc = BrokerProcess(data_dir, *args).start()
    try:
        proc.kafka_address()
    except BaseException:
        proc.kill()
        raise
    return proc


def stop(proc: BrokerProcess) -> None:
    """SIGTERM (a clean stop), SIGKILL if it does not stop."""
    try:
        proc.terminate()
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for a whole module: the clients run side by side on it."""
    proc = start_kafka_broker(
        tmp_path_factory.mktemp("kafka") / "data", "--kafka-listen", "127.0.0.1:0"
    )
    try:
        yield proc
    finally:
        stop(proc)
