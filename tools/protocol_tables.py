"""Render the message schemas and the error-code table as Markdown.

docs/protocol.md holds this output between the markers
``<!-- BEGIN GENERATED -->`` and ``<!-- END GENERATED -->``;
tests/protocol/test_docs.py fails when the two differ. After changing a
schema, run ``python tools/protocol_tables.py --write``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from tailrace.client import errors
from tailrace.client.protocol.messages import APIS, ApiKey
from tailrace.client.protocol.schema import describe_type

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
BEGIN = "<!-- BEGIN GENERATED -->"
END = "<!-- END GENERATED -->"


def _structs(cls: type, seen: list[type]) -> None:
    if cls in seen:
        return
    seen.append(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        for arg in _walk(hints[f.name]):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                _structs(arg, seen)


def _walk(hint):
    yield hint
    for arg in typing.get_args(hint):
        yield from _walk(arg)


def _table(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls, include_extras=True)
    rows = [f"**{cls.__name__}**", "", "| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        wire_type = describe_type(hints[f.name])
        name = f.name
        if wire_type == "records":
            name = f"{f.name}_length"
            wire_type = "u32 (bytes in the records section)"
        if f.default is not dataclasses.MISSING:
            default = "nil" if f.default is None else repr(f.default)
            if isinstance(f.default, bool):
                default = str(f.default).lower()
            if isinstance(f.default, bytes):
                default = "0 (empty)"
        elif f.default_factory is not dataclasses.MISSING:
            default = "[]" if f.default_factory is list else "{}"
        else:
            default = "required"
        doc = f.metadata.get("doc", "")
        rows.append(f"| `{name}` | {wire_type} | {default} | {doc} |")
    return rows


def _messages(request: type, response: type) -> list[str]:
    out: list[str] = []
    doc = (request.__doc__ or "").strip()
    if doc and not doc.startswith(request.__name__ + "("):
        out.append(" ".join(doc.split()))
        out.append("")
    for root in (request, response):
        seen: list[type] = []
        _structs(root, seen)
        for cls in seen:
            out.extend(_table(cls))
            out.append("")
    return out


def render() -> str:
    out: list[str] = []
    for key in sorted(APIS):
        spec = APIS[key]
        versions = f"{spec.min_version}-{spec.max_version}"
        out.append(f"### {ApiKey(key).name} (api_key {int(key)}, versions {versions})")
        out.append("")
        own = {v for v, _request, _response in spec.versions}
        if own:
            rest = [v for v in range(spec.min_version, spec.max_version + 1) if v not in own]
            out.append(f"Version {', '.join(map(str, rest))}:")
            out.append("")
        out.extend(_messages(spec.request, spec.response))
        for version, request, response in spec.versions:
            out.append(f"Version {version}:")
            out.append("")
            out.extend(_messages(request, response))
    out.append("### Error codes")
    out.append("")
    out.append("| code | name | retriable | exception | meaning |")
    out.append("|---|---|---|---|---|")
    for code in sorted(errors.ErrorCode, key=int):
        cls = errors._REGISTRY.get(code)
        if code == errors.ErrorCode.NONE:
            out.append("| 0 | NONE | - | - | success |")
            continue
        if cls is None:
            continue
        meaning = " ".join((cls.__doc__ or "").split())
        retriable = "yes" if cls.retriable else "no"
        out.append(f"| {int(code)} | {code.name} | {retriable} | `{cls.__name__}` | {meaning} |")
    return "\n".join(out).rstrip() + "\n"


def current() -> str:
    text = DOC.read_text()
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END)
    return text[start:end].strip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update docs/protocol.md in place")
    args = parser.parse_args()
    generated = render()
    if not args.write:
        sys.stdout.write(generated)
        return 0
    text = DOC.read_text()
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END)
    DOC.write_text(text[:start] + "\n" + generated + "\n" + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
