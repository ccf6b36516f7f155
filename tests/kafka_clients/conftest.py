"""A real ``tailrace broker`` process with a Kafka listener, for the client matrix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import BrokerProcess
from kafka_matrix import start_kafka_broker, stop


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
