"""The ``kafka_broker`` fixture: a real broker with a Kafka listener."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_harness import KafkaBroker


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    b = KafkaBroker(tmp_path / "data")
    try:
        yield b
    finally:
        b.stop()
