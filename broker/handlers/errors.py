"""The native front-end's one error mapping: BrokerError -> wire fields.

The native protocol carries tailrace's own codes (Kafka's numbering plus
codes from 1000 up), so the code is the error's own; every handler fills a
result's ``error_code`` and ``error_message`` through :func:`fill`.
"""

from __future__ import annotations

from typing import Any

from tailrace.client.errors import BrokerError

__all__ = ["fill", "wire_code"]


def wire_code(exc: BrokerError) -> int:
    return int(exc.code)


def fill(result: Any, exc: BrokerError | None) -> None:
    """Put ``exc`` (None: nothing) on a result with error_code/error_message."""
    if exc is not None:
        result.error_code = wire_code(exc)
        result.error_message = exc.message
