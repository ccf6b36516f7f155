"""Record bytes made presentable, safely.

Records are hostile input: any bytes, any length. What this module returns
is plain text (``str``) that the templates escape (Jinja2 autoescape), so a
value of ``<script>...`` is shown as those characters and never parsed as
markup. On top of that:

* invalid UTF-8 is shown with ``\\xNN`` escapes (``backslashreplace``), and
  control characters other than newline and tab as ``\\xNN`` too, so that
  nothing invisible hides in what a person reads;
* a value longer than :data:`SHOWN_BYTES` is cut there, with the full size
  told and a download link offered (the download is served as an
  attachment, ``application/octet-stream``, never rendered);
* JSON is pretty-printed only when the shown bytes parse as JSON whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["FORMATS", "SHOWN_BYTES", "Shown", "show"]

#: bytes of a key, value or header shown on a page
SHOWN_BYTES = 4096
FORMATS = ("text", "json", "hex")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Shown:
    text: str
    size: int
    truncated: bool
    #: the format actually used (json falls back to text when it does not parse)
    format: str


def _as_text(data: bytes) -> str:
    text = data.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _as_hex(data: bytes) -> str:
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:08x}  {hexes:<47}  {printable}")
    return "\n".join(lines)


def show(data: bytes | None, fmt: str = "text", limit: int = SHOWN_BYTES) -> Shown:
    """``data`` as text in ``fmt`` (text, json or hex), cut at ``limit`` bytes."""
    if data is None:
        return Shown("(null)", 0, False, "text")
    size = len(data)
    cut = data[:limit]
    truncated = size > limit
    if fmt == "hex":
        return Shown(_as_hex(cut), size, truncated, "hex")
    if fmt == "json" and not truncated:
        try:
            parsed = json.loads(cut)
        except (ValueError, UnicodeDecodeError):
            pass
        else:
            return Shown(json.dumps(parsed, indent=2, ensure_ascii=True), size, False, "json")
    return Shown(_as_text(cut), size, truncated, "text")
