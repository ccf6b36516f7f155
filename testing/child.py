"""A broker in a ``tailrace broker`` child process: the one a test can kill.

:meth:`ProcessBroker.kill` is SIGKILL: no drain, no final flush, no clean
shutdown marker, so the next :meth:`~.base.LocalBroker.start` runs the
broker's crash recovery, as after a real crash. Records a producer had
acknowledged survive it (a killed process leaves the page cache behind).

The child is started with the interpreter running the tests
(``sys.executable -m tailrace.broker.cli broker``), its settings as
``TAILRACE_*`` variables (the user's own ``TAILRACE_*`` variables removed).
A thread drains its stderr (a full pipe would stall it), keeps the last
lines for error messages, and reads the bound addresses from its
``listening ... address=HOST:PORT`` lines (``protocol=kafka`` in the Kafka
listener's). It is stopped only through its
own Popen handle.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any

from .base import LocalBroker
from .errors import BrokerStartError, explain_text

__all__ = ["ProcessBroker"]

_LISTENING = re.compile(r"\blistening\b.*\baddress=(\S+)")
_CANNOT_START = re.compile(r"cannot start.*\berror=(.*)$|configuration error: (.*)$")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def _env_name(setting: str) -> str:
    return "TAILRACE_" + setting.replace(".", "_").upper()


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ProcessBroker(LocalBroker):
    kind = "process"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.proc: subprocess.Popen[str] | None = None
        #: the child's last stderr lines (its log), newest last
        self.log_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the broker process is not running")
        return self.proc.pid

    def command(self) -> list[str]:
        listen = self._native or f"{self.host}:0"
        kafka_listen = self._kafka or f"{self.host}:0"
        return [
            sys.executable, "-m", "tailrace.broker.cli", "broker",
            "--data-dir", str(self.data_dir), "--listen", listen,
            "--kafka-listen", kafka_listen, "--log-format", "kv",
        ]  # fmt: skip

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
        env.update({_env_name(k): _env_value(v) for k, v in self.settings.items()})
        return env

    def _start(self) -> None:
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.child_env(),
        )
        found = threading.Event()
        addresses: dict[str, str] = {}

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log_tail.append(line.rstrip("\n"))
                m = _LISTENING.search(line)
                if m:
                    protocol = "kafka" if "protocol=kafka" in line else "tailrace"
                    addresses.setdefault(protocol, m.group(1))
                    if len(addresses) == 2:
                        found.set()
            found.set()  # the child exited

        self.proc = proc
        self._pump = threading.Thread(target=pump, name="tailrace-test-broker-log", daemon=True)
        self._pump.start()
        found.wait(START_TIMEOUT_S)
        if len(addresses) < 2:
            self._kill_and_reap()
            raise self._start_error(proc.returncode)
        self._native, self._kafka = addresses["tailrace"], addresses["kafka"]

    def _start_error(self, code: int | None) -> BrokerStartError:
        reason = ""
        for line in reversed(self.log_tail):
            m = _CANNOT_START.search(line)
            if m:
                reason = (m.group(1) or m.group(2) or "").strip().strip('"')
                break
        for name in self.settings:  # the caller named settings, not variables
            reason = reason.replace(_env_name(name), repr(name))
        listen = self._native or f"{self.host}:0"
        listen += f" and {self._kafka or self.host + ':0'} (Kafka)"
        friendly = explain_text(
            None,
            reason,
            data_dir=self.data_dir,
            addresses=listen,
            config_error="configuration error" in "\n".join(self.log_tail),
        )
        if friendly is not None:
            return friendly
        return BrokerStartError(
            f"the broker process did not start (exit code {code}); its last lines:\n"
            + "\n".join(list(self.log_tail)[-20:])
        )

    def _exited(self) -> str | None:
        proc = self.proc
        if proc is None or proc.poll() is None:
            return None
        return f"its process exited with code {proc.returncode}; its last lines:\n" + "\n".join(
            list(self.log_tail)[-10:]
        )

    def _stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._kill_and_reap()
                raise RuntimeError(
                    f"the broker process did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM "
                    "and was killed"
                ) from None
        self._reap()

    def kill(self) -> None:
        """SIGKILL, as a crash: :meth:`start` then recovers the log."""
        self._close_admin()
        self._running = False
        self._kill_and_reap()

    def _kill_and_reap(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        self._reap()

    def _reap(self) -> None:
        if self._pump is not None:
            self._pump.join(STOP_TIMEOUT_S)
            self._pump = None
        if self.proc is not None:
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
