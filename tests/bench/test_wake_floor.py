"""tools/wake_floor.py as a user runs it: real processes on loopback, a tiny
run. Shape and counts only: the floor it measures is read, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_chain_delivers_every_message():
    command = [sys.executable, str(ROOT / "tools" / "wake_floor.py"), "--rates", "1000"]
    proc = subprocess.run(
        [*command, "--seconds", "0.2"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines()[2:]]
    chains = [cells[0].strip() for cells in rows]
    assert chains == ["2 wakes", "3 wakes", "2 wakes, trio relay", "3 wakes, trio"]
    for cells in rows:
        assert cells[1].strip() == "1,000"
        assert cells[-1].strip() == "200"  # every message arrived, once
        p50, p90, p99 = (int(c.strip().replace(",", "")) for c in cells[2:5])
        assert 0 < p50 <= p90 <= p99
