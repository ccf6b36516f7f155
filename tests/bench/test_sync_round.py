"""tools/sync_round.py as a user runs it: a real broker process driven by
``tailrace bench e2e`` over loopback, a tiny run. Shape and counts only:
the stage times it measures are read, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _numbers(cell: str) -> list[float]:
    return [float(part.strip().replace(",", "")) for part in cell.split("/")]


def test_each_variant_times_its_sync_rounds():
    command = [sys.executable, str(ROOT / "tools" / "sync_round.py"), "--rate", "200"]
    proc = subprocess.run(
        [*command, "--duration", "0.5", "--variants", "thread,inline"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("| variant | e2e p50 / p99 ms |")
    rows = [line.split("|")[1:-1] for line in lines[2:]]
    assert [cells[0].strip() for cells in rows] == ["thread", "inline"]
    for cells in rows:
        e2e_p50, e2e_p99 = _numbers(cells[1])
        assert 0 < e2e_p50 <= e2e_p99
        assert int(cells[3].strip().replace(",", "")) > 0  # rounds that synced
        stages = [_numbers(cell) for cell in cells[4:]]  # p50, mean of each stage
        assert len(stages) == 5  # turns, to thread, fdatasync, back, round
        assert min(min(pair) for pair in stages) >= 0
        assert stages[2][0] > 0  # each round ran a real fdatasync


def test_an_unknown_variant_is_refused():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sync_round.py"), "--variants", "thread,spin"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "unknown variant 'spin'" in proc.stderr
