"""The one helper message modules use to document a field."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

_MISSING: Any = dataclasses.MISSING


def f(doc: str, default: Any = _MISSING, *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field carrying its documentation (rendered in docs/protocol.md)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})
