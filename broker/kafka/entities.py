"""Build kio response entities from plain values, for any version.

Kafka's messages gain and lose fields between versions; kio has a class per
(API, version). :func:`make` takes the values a handler knows and keeps
those the class has, turning lists of dicts into the version's nested
classes, so one handler body serves every version it advertises.
:func:`error_body` is a whole response carrying only a top-level error.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
from functools import cache
from typing import Any

from kio.schema.errors import ErrorCode as KafkaErrorCode

__all__ = ["ZERO", "empty_body", "error_body", "has_field", "make"]

ZERO = datetime.timedelta(0)


def _nested(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):
        found = _nested(arg)
        if found is not None:
            return found
    return None


@cache
def _spec(cls: type) -> dict[str, tuple[type | None, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (_nested(hints[f.name]), hints[f.name]) for f in dataclasses.fields(cls)}


def has_field(cls: type, name: str) -> bool:
    return name in _spec(cls)


def make(cls: type, values: dict[str, Any]) -> Any:
    """``cls(**values)`` keeping only ``cls``'s fields; lists of dicts become
    tuples of the field's nested class."""
    spec = _spec(cls)
    kwargs = {}
    for name, (nested, _hint) in spec.items():
        if name not in values:
            continue
        value = values[name]
        if nested is not None and value is not None:
            value = tuple(make(nested, v) if isinstance(v, dict) else v for v in value)
        elif type(value) is list:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _empty(name: str, hint: Any) -> Any:
    args = typing.get_args(hint)
    if type(None) in args:
        return None
    origin = typing.get_origin(hint)
    if origin is tuple:
        return ()
    text = getattr(hint, "__name__", str(hint))
    if "Timedelta" in text:
        return ZERO
    if hint is bool:
        return False
    if isinstance(hint, type) and issubclass(hint, bytes):
        return b""
    if hint is str or text in ("str", "TopicName", "GroupId"):
        return ""
    return -1 if name.endswith(("_id", "epoch")) else 0


def empty_body(cls: type) -> Any:
    """An entity of ``cls`` with every field empty (0, -1 for ids and
    epochs, empty arrays, null where nullable)."""
    values = {name: _empty(name, hint) for name, (_n, hint) in _spec(cls).items()}
    if "error_code" in values:
        values["error_code"] = KafkaErrorCode.none
    return cls(**values)


def error_body(cls: type, code: int) -> Any:
    """A response of ``cls`` whose top-level ``error_code`` is ``code`` and
    every other field empty; None when the response has no top-level error."""
    if "error_code" not in _spec(cls):
        return None
    return dataclasses.replace(empty_body(cls), error_code=KafkaErrorCode(code))
