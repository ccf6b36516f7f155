"""Short and long profiles of the reliability scenarios, and their results.

Every scenario is a test that runs its *short* profile inside ``make test``.
``tools/reliability.py`` runs the same tests with
``RELIABILITY_PROFILE=long`` (bigger sizes from :func:`size`) and
``RELIABILITY_RESULTS=<file>``: each scenario then appends one JSON
line of figures (runs, faults injected, records checked, lost, ...) that
the tool prints as a table and docs/reliability.md records.

``RELIABILITY_SEED`` replays one seed of the seeded scenarios (each
failure message names its seed).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

PROFILE = os.environ.get("RELIABILITY_PROFILE", "short")
if PROFILE not in ("short", "long"):
    raise RuntimeError(f"RELIABILITY_PROFILE={PROFILE!r}: use short or long")
_REPLAY = os.environ.get("RELIABILITY_SEED")


def size(short: Any, long: Any) -> Any:
    """The short or the long figure, per the profile."""
    return long if PROFILE == "long" else short


def seeds(base: int, short: int, long: int) -> list[int]:
    """The seeds a seeded scenario runs (or the one being replayed)."""
    if _REPLAY is not None:
        return [int(_REPLAY)]
    return [base + i for i in range(size(short, long))]


def record_result(scenario: str, **figures: Any) -> None:
    """Append this scenario's figures to the results file, if one is set."""
    path = os.environ.get("RELIABILITY_RESULTS")
    if not path:
        return
    row = {"scenario": scenario, "profile": PROFILE, "finished": time.time(), **figures}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
