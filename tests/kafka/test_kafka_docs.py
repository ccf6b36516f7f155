"""docs/kafka.md matches the code: its generated table is what
broker/kafka/versions.py renders to today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "kafka_tables", ROOT / "tools" / "kafka_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_table_matches_the_advertised_versions():
    tool = _tool()
    assert tool.current() == tool.render(), (
        "docs/kafka.md is stale: run `python tools/kafka_tables.py --write`"
    )
