"""A real broker with a Kafka listener beside its native one (port 0 each)."""

from __future__ import annotations

from pathlib import Path

from harness import ThreadedBroker


class KafkaBroker(ThreadedBroker):
    """A threaded broker with a native and a Kafka listener (both port 0)."""

    def __init__(self, data_dir: Path, **flags: object) -> None:
        super().__init__(data_dir, kafka_listen="127.0.0.1:0", **flags)
        kafka = [b for b in self.broker.listeners if b.config.protocol == "kafka"]
        assert len(kafka) == 1
        self.kafka_address = kafka[0].address
