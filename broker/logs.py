"""Structured logging: one line per event, key=value fields or JSON.

Code logs through the stdlib with :func:`log_event` (or ``extra={"fields":
{...}}``); the formatter chosen at start-up (``--log-format kv|json``)
renders the fields. Nothing here prints.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "KeyValueFormatter", "configure_logging", "log_event"]


def log_event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields}, stacklevel=2)


def _kv_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """``2026-11-25T17:00:00.123Z INFO tailrace.broker listening address=127.0.0.1:7420``"""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp = f"{ts}.{int(record.msecs):03d}Z"
        parts = [stamp, record.levelname, record.name, record.getMessage()]
        fields = getattr(record, "fields", None)
        if fields:
            parts.extend(f"{k}={_kv_value(v)}" for k, v in fields.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            for k, v in fields.items():
                obj.setdefault(k, v)
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def configure_logging(level: str = "INFO", fmt: str = "kv", stream: Any = None) -> None:
    """Install one handler on the root logger (the broker's start-up does this)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx (the etcd adapter's transport, cluster mode) logs every request at
    # INFO: a line per lease keepalive. The adapter logs what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
