"""What importing the broker costs: the Kafka front-end loads kio's message
schemas on first use, not at import (each takes 2-3 ms to import, and the
pytest plugin's session broker pays every import), and keeps kio from
importing Hypothesis for strategies the broker never uses. Checked in a
fresh interpreter, where nothing was imported before."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import tailrace.broker.app
from tailrace.broker.kafka import codec
from tailrace.broker.kafka.versions import ADVERTISED

assert "hypothesis" not in sys.modules, "the broker imported hypothesis"
schemas = [m for m in sys.modules if m.startswith("kio.schema.fetch.")]
assert not schemas, f"schemas imported at start-up: {schemas}"
assert not codec._SCHEMAS, sorted(codec._SCHEMAS)

# first use loads the pair, and only it
assert codec.response_class(1, 11).__name__ == "FetchResponse"
assert set(codec._SCHEMAS) == {(1, 11)}
assert "kio.schema.fetch.v11.request" in sys.modules
assert codec._schema(1, ADVERTISED[1][1] + 1) is None

# a later import of Hypothesis, by the user's suite, is not disturbed
import hypothesis.strategies
assert sys.modules["hypothesis"] is not None
"""


def test_broker_import_loads_no_schema_and_no_hypothesis() -> None:
    subprocess.run([sys.executable, "-c", CHECK], check=True, timeout=120)


CHECK_PRESENT = """
import hypothesis
import tailrace.broker.kafka
import sys
assert sys.modules["hypothesis"] is hypothesis
"""


def test_broker_import_keeps_an_already_imported_hypothesis() -> None:
    subprocess.run([sys.executable, "-c", CHECK_PRESENT], check=True, timeout=120)
