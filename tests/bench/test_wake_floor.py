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
    assert chains == [
        "2 wakes",
        "3 wakes",
        "2 wakes, trio relay",
        "3 wakes, trio",
        "2 wakes, trio relay, with the work",
        "3 wakes, trio, with the work",
    ]
    for cells in rows:
        assert cells[1].strip() == "1,000"
        # every message arrived, once (the work chains' consumer also checks
        # each batch's CRC and that offsets follow on: decode_batches)
        assert cells[-1].strip() == "200"
        p50, p90, p99 = (int(c.strip().replace(",", "")) for c in cells[2:5])
        assert 0 < p50 <= p90 <= p99


def test_pieces_times_each_piece_of_the_work_chains():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "wake_floor.py"), "--pieces"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines()[2:]]
    assert [cells[0].strip().split(":")[0] for cells in rows] == [
        "sender",
        "relay",
        "relay",
        "relay",
        "consumer",
        "consumer",
        "consumer",
    ]
    assert all(float(cells[1]) > 0 for cells in rows)
