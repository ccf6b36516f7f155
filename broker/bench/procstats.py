"""What a process on this machine has cost: CPU seconds and memory, from /proc.

Linux only, no psutil: ``/proc/PID/stat`` fields 14 and 15 (utime, stime,
in clock ticks) and ``/proc/PID/status`` lines ``VmRSS`` and ``VmHWM`` (the
resident set now, and its peak over the process's life, in kB).

``listener_pid`` finds the process listening on a loopback TCP port through
``/proc/net/tcp{,6}`` (the socket's inode) and ``/proc/*/fd`` (who holds
it): a lookup, not a guess. It answers None when the answer is not certain
(not loopback, not visible, more than one holder).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "ProcSample",
    "cpu_times",
    "listener_pid",
    "machine_idle",
    "sample",
    "wait_for_idle",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
_TCP_LISTEN = "0A"


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float  # user + system CPU seconds so far
    rss_kib: int  # resident now
    hwm_kib: int  # peak resident (VmHWM)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # the command name (field 2) is in parentheses and may hold spaces
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat
    return (utime + stime) / CLK_TCK


def memory_kib(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` in KiB."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def sample(pid: int) -> ProcSample:
    """CPU and memory of ``pid`` now (raises OSError when it is gone)."""
    rss, hwm = memory_kib(pid)
    return ProcSample(cpu_seconds(pid), rss, hwm)


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs since boot, from the first line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])  # guest time is already in user


def machine_idle(window_s: float = 2.0) -> float:
    """Percent of all CPUs' time spent idle over the next ``window_s`` seconds."""
    idle0, total0 = cpu_times()
    time.sleep(window_s)
    idle1, total1 = cpu_times()
    return 100.0 * (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(percent: float, timeout_s: float, window_s: float = 2.0) -> float:
    """Wait until the machine is at least ``percent`` idle over a window (or
    ``timeout_s`` passed); returns the last idle percentage measured.

    Why: on a shared machine another developer's test suite can halve a
    figure; starting runs in quiet moments makes figures comparable."""
    deadline = time.monotonic() + timeout_s
    while True:
        idle = machine_idle(window_s)
        if idle >= percent or time.monotonic() >= deadline:
            return idle


def _socket_inodes(port: int) -> set[str]:
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != _TCP_LISTEN:
                continue
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(parts[9])
    return inodes


def listener_pid(host: str, port: int) -> int | None:
    """The PID listening on ``host:port`` when ``host`` is this machine's
    loopback and exactly one visible process holds that socket; else None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    if not infos or not all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos):
        return None
    inodes = _socket_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    if os.readlink(fd.path) in wanted:
                        found.add(int(entry.name))
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return found.pop() if len(found) == 1 else None
