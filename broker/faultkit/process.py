"""A ``tailrace broker`` child process on a fixed address, for tools/.

The tests' harness (tests/harness.py) has its own; tools cannot import
tests. This one keeps its address across restarts (``listen`` given once
the first start picked a port), dies by SIGKILL on demand, and reads its
RSS and descriptor count from /proc. Stopped only through its own Popen
handle.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["BrokerChild", "proc_status"]

_LISTENING = re.compile(r"listening .*address=(\S+)")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB) and the number of open descriptors of ``pid``."""
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


class BrokerChild:
    def __init__(
        self, data_dir: Path, *, env: dict[str, str] | None = None, wrap: list[str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        #: a command prefix (e.g. ``unshare`` to give the broker a small
        #: filesystem of its own); it must exec the command it is given
        self.wrap = wrap or []
        #: what runs after ``python``: the broker's CLI, or a faultkit
        #: stand-in taking the same flags (powercut_broker.py)
        self.program: list[str] = ["-m", "tailrace.broker.cli", "broker"]
        self.listen = "127.0.0.1:0"
        self.address = ""
        self.proc: subprocess.Popen[str] | None = None
        self.log_tail: collections.deque[str] = collections.deque(maxlen=100)
        #: called with (pid, line) for every log line, in the reading thread
        self.line_hooks: list[Callable[[int, str], None]] = []
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> BrokerChild:
        """Start (again, on the same address after the first time)."""
        cmd = [
            *self.wrap, sys.executable, *self.program,
            "--data-dir", str(self.data_dir), "--listen", self.listen, "--log-format", "kv",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
        env.update(self.env)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        found = threading.Event()
        address: list[str] = []

        def pump(proc: subprocess.Popen[str]) -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log_tail.append(line.rstrip("\n"))
                for hook in self.line_hooks:
                    hook(proc.pid, line)
                m = _LISTENING.search(line)
                if m and not address:
                    address.append(m.group(1))
                    found.set()
            found.set()

        self._pump = threading.Thread(target=pump, args=(self.proc,), daemon=True)
        self._pump.start()
        found.wait(timeout)
        if not address:
            self.kill()
            raise RuntimeError("the broker did not start:\n" + "\n".join(self.log_tail))
        self.address = self.listen = address[0]
        return self

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        self._reap()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def stop_by(self, signum: int, timeout: float = 60.0) -> int:
        """Send ``signum`` (a stand-in's own stop, e.g. SIGUSR1 for
        powercut_broker's power cut), wait for the exit; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def _reap(self) -> None:
        if self._pump is not None:
            self._pump.join(30)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
