"""Render docs/kafka.md's table of supported Kafka APIs from the code.

The section between ``<!-- BEGIN GENERATED -->`` and ``<!-- END GENERATED
-->`` is the table of :data:`tailrace.broker.kafka.versions.ADVERTISED`;
tests/kafka/test_docs.py fails when the file and the code differ.

Usage::

    python tools/kafka_tables.py          # print the table
    python tools/kafka_tables.py --write  # rewrite docs/kafka.md's section
"""

from __future__ import annotations

import sys
from pathlib import Path

from kio.index import load_request_schema

from tailrace.broker.kafka.versions import ADVERTISED, KafkaApi

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "kafka.md"
BEGIN = "<!-- BEGIN GENERATED -->"
END = "<!-- END GENERATED -->"


def render() -> str:
    lines = [
        "",
        "| API | key | versions | flexible (tagged fields) from |",
        "|---|---|---|---|",
    ]
    for key, (lo, hi) in sorted(ADVERTISED.items()):
        flexible = [v for v in range(lo, hi + 1) if load_request_schema(key, v).__flexible__]
        lines.append(
            f"| {KafkaApi(key).name} | {int(key)} | {lo}-{hi} | "
            f"{f'v{flexible[0]}' if flexible else 'none advertised'} |"
        )
    return "\n".join(lines) + "\n"


def current() -> str:
    text = DOC.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)]


def main() -> int:
    table = render()
    if "--write" not in sys.argv[1:]:
        sys.stdout.write(table)
        return 0
    text = DOC.read_text()
    start = text.index(BEGIN) + len(BEGIN)
    DOC.write_text(text[:start] + table + text[text.index(END) :])
    return 0


if __name__ == "__main__":
    sys.exit(main())
