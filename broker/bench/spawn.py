"""A ``tailrace broker`` child process for one benchmark run.

The bench starts the broker itself (``--spawn-broker``) so that one command
measures everything, including what the broker cost: the child's PID is
known, so its CPU seconds and peak RSS are read from /proc, not guessed.

The broker listens on 127.0.0.1 port 0; its port is read from the
``listening ... address=HOST:PORT`` log line on stderr. With ``kafka=True``
it also serves a Kafka listener on another port 0, read from the
``listening protocol=kafka ... address=HOST:PORT`` line (``kafka_address``).
A thread keeps draining stderr for the whole run (a full pipe would stall
the broker) and keeps the last lines for the error message if it dies. It is stopped
through its own Popen handle: SIGTERM, wait, SIGKILL only if it hangs.

The child inherits ``TAILRACE_*`` settings from the environment except the
ones the bench sets itself (data dir, listeners, the client bootstrap), so
``TAILRACE_FETCH_ZERO_COPY=false tailrace bench consume --spawn-broker``
measures the copying fetch path.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .procstats import ProcSample, sample

__all__ = ["BrokerStartError", "SpawnedBroker"]

_LISTENING = re.compile(r"listening .*address=(\S+)")
_KAFKA = re.compile(r"\bprotocol=kafka\b")
_OWN_SETTINGS = ("TAILRACE_BOOTSTRAP", "TAILRACE_LISTEN", "TAILRACE_DATA_DIR")


class BrokerStartError(RuntimeError):
    """The broker exited or stayed silent instead of listening."""


class SpawnedBroker:
    """A broker subprocess in a temporary data directory (removed by ``close``).

    ``start()`` may be called again after ``stop()`` to restart it on the
    same data (the bench measures start-up time that way).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        log_level: str = "INFO",
        launcher: Sequence[str] = ("-m", "tailrace.broker.cli"),
        kafka: bool = False,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tailrace-bench-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = data_dir
        self.log_level = log_level
        #: what follows the interpreter on the command line, before "broker"
        #: (tools/trace_hops.py starts the broker through a wrapper)
        self.launcher = list(launcher)
        #: also serve a Kafka listener (``--kafka-listen 127.0.0.1:0``)
        self.kafka = kafka
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        #: the Kafka listener's HOST:PORT when ``kafka`` (else "")
        self.kafka_address = ""
        #: seconds from Popen to the "listening" log line, for the last start
        self.startup_s: float | None = None
        self.log_tail: collections.deque[str] = collections.deque(maxlen=50)
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> SpawnedBroker:
        cmd = [
            sys.executable,
            *self.launcher,
            "broker",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            self.log_level,
            "--log-format",  # the address is read from a key=value line
            "kv",
        ]
        if self.kafka:
            cmd += ["--kafka-listen", "127.0.0.1:0"]
        env = {k: v for k, v in os.environ.items() if k not in _OWN_SETTINGS}
        self.address = ""
        self.kafka_address = ""
        found = threading.Event()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip

        def pump(proc: subprocess.Popen[str]) -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log_tail.append(line.rstrip("\n"))
                if self.address and (self.kafka_address or not self.kafka):
                    continue
                m = _LISTENING.search(line)
                if m is None:
                    continue
                if _KAFKA.search(line):
                    self.kafka_address = m.group(1)
                else:
                    self.address = m.group(1)
                if self.address and (self.kafka_address or not self.kafka):
                    self.startup_s = time.monotonic() - t0
                    found.set()
            found.set()

        self._pump = threading.Thread(target=pump, args=(self.proc,), daemon=True)
        self._pump.start()
        found.wait(timeout)
        if not self.address or (self.kafka and not self.kafka_address):
            self.stop()
            raise BrokerStartError(
                "the broker did not start listening:\n" + "\n".join(self.log_tail)
            )
        return self

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        if self._pump is not None:
            self._pump.join(30)
        if proc.stderr is not None:
            proc.stderr.close()
        return proc.returncode

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SpawnedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
