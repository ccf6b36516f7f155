"""The network-fault kit for cluster scenarios (broker/faultkit/netns.py),
with the real parts: unshare's namespaces, nftables, loopback sockets.
Needs Debian's nftables (make debian-tools); fails, never skips, without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tailrace.broker.faultkit.netns import (
    NetFaultError,
    NetFaults,
    in_private_namespace,
    namespace_argv,
    pause,
    resume,
)

PROBE = Path(__file__).with_name("netns_probe.py")
NODES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
ALL = {(a, b) for a in NODES for b in NODES if a != b}


def pairs(rows: list[list[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in rows}


def test_partitions_drop_exactly_the_cut_pairs_and_heal() -> None:
    proc = subprocess.run(
        namespace_argv([sys.executable, str(PROBE), "7000"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["pid_netns"] != os.readlink("/proc/self/ns/net")
    a, b, c, d = NODES
    assert pairs(out["open"]) == ALL
    assert pairs(out["partition"]) == ALL - {(a, b), (b, a)}
    assert out["held_during"] == "timeout"  # an established connection goes silent
    assert pairs(out["split"]) == {(a, b), (b, a), (c, d), (d, c)}
    assert pairs(out["isolate"]) == {(x, y) for x in NODES[:3] for y in NODES[:3] if x != y}
    assert len(out["cuts"]) == 6
    assert pairs(out["healed"]) == ALL
    assert out["held_after"] == "held"  # and recovers after the heal


def test_refuses_to_touch_the_machines_own_network() -> None:
    assert not in_private_namespace()
    with pytest.raises(NetFaultError, match="private network namespace"):
        NetFaults()


def test_refuses_addresses_off_loopback() -> None:
    code = (
        "from tailrace.broker.faultkit.netns import *\n"
        "net = NetFaults()\n"
        "for bad in ('10.0.0.1', 'example.org'):\n"
        "    try:\n"
        "        net.drop('127.0.0.2', bad)\n"
        "    except NetFaultError as exc:\n"
        "        print(exc)\n"
        "assert not net.cuts\n"
    )
    proc = subprocess.run(
        namespace_argv([sys.executable, "-c", code]), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "10.0.0.1 is not a loopback address: faults stay on loopback",
        "not an IP address: 'example.org'",
    ]


def test_pause_and_resume_through_the_handle() -> None:
    echo = "import sys\nfor line in sys.stdin: print(line, end='', flush=True)"
    proc = subprocess.Popen(
        [sys.executable, "-c", echo],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pause(proc)
        with open(f"/proc/{proc.pid}/stat") as f:
            assert f.read().split(") ")[1][0] == "T"  # stopped
        resume(proc)
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write("alive\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "alive\n"
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    with pytest.raises(NetFaultError, match="has exited"):
        pause(proc)
