"""Output shapes shared by the subcommands: aligned tables, JSON, bytes.

Human output is aligned plain-text tables (no colour, no box drawing: it
pastes into tickets and greps cleanly). ``--json`` output is one JSON
document on stdout; its shapes are a documented contract
(docs/operations.md), so fields are added, never renamed or removed.

Bytes (keys, values, header values) become JSON text with an encoding
marker beside them: ``{"value": "hello", "value_encoding": "utf-8"}`` when
they are valid UTF-8, ``{"value": "AAE=", "value_encoding": "base64"}``
otherwise, and ``{"value": null, "value_encoding": null}`` for a null value.
A reader that always honours the marker gets the exact bytes back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["bytes_field", "human_size", "table", "write_json"]


def bytes_field(name: str, value: bytes | None) -> dict[str, str | None]:
    """``{name: text, name_encoding: "utf-8" | "base64"}`` (both None for None)."""
    if value is None:
        return {name: None, f"{name}_encoding": None}
    try:
        return {name: value.decode("utf-8"), f"{name}_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {name: base64.b64encode(value).decode("ascii"), f"{name}_encoding": "base64"}


def write_json(obj: Any, out: TextIO) -> None:
    """One indented JSON document and a newline."""
    out.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool]) -> str:
    """Rows under headers, columns two spaces apart; numeric columns are
    right-aligned so digits line up. None shows as '-'."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = []
    for row in [list(headers), *cells]:
        parts = [
            c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'; bytes below 1 KiB stay exact."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")
