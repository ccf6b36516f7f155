"""Turning a command-line time into record time (ms since the Unix epoch).

Accepted (``--from-time``, and ``--to-time`` of group offset resets):

* ISO 8601 with a zone: ``2026-11-25T10:00:00Z``, ``2026-11-25T11:00:00+01:00``,
  fractions of a second allowed (``10:00:00.250Z``);
* ISO 8601 without a zone, which means UTC (never the machine's local zone:
  the same command gives the same offsets on every host);
* a date alone: ``2026-11-25`` is midnight UTC;
* a plain integer: already milliseconds since the epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_time_ms"]


def parse_time_ms(text: str) -> int:
    """The record timestamp (ms) ``text`` names; ValueError with the accepted
    forms when it names none."""
    s = text.strip()
    if s.isdigit():
        return int(s)
    try:
        moment = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 like 2026-11-25T10:00:00Z "
            "(no zone means UTC) or milliseconds since the epoch"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = round(moment.timestamp() * 1000)
    if ms < 0:
        raise ValueError(f"{text!r} is before 1970")
    return ms
