"""The ``cluster`` fixture: real ``tailrace broker`` processes over the
session's real etcd (tests/cluster_harness.py), each killed through its own
handle when the test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import BrokerCluster


@pytest.fixture
def cluster(tmp_path: Path, etcd: Any) -> Iterator[BrokerCluster]:
    c = BrokerCluster(tmp_path, etcd)
    try:
        yield c
    finally:
        c.stop()
