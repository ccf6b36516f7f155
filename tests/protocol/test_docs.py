"""docs/protocol.md matches the code: its generated section is what the
schemas and the error table render to today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "protocol_tables", ROOT / "tools" / "protocol_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_match_the_schemas():
    tool = _tool()
    assert tool.current() == tool.render(), (
        "docs/protocol.md is stale: run `python tools/protocol_tables.py --write`"
    )


def test_every_api_and_error_code_is_documented():
    from tailrace.client.errors import ErrorCode
    from tailrace.client.protocol.messages import APIS, ApiKey

    text = (ROOT / "docs" / "protocol.md").read_text()
    for key in APIS:
        assert f"### {ApiKey(key).name} (api_key {int(key)}" in text
    for code in ErrorCode:
        assert f"| {int(code)} | {code.name} |" in text
