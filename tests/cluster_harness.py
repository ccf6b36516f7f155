"""Clusters for tests: real etcd members and real ``tailrace broker``
processes in cluster mode, each stopped through its own handle.

``BrokerCluster(tmp_path, etcd)`` (``etcd``: a started EtcdCluster, e.g.
the ``etcd``/``etcd3`` fixtures) starts brokers with :meth:`start_broker`,
kills them with :meth:`kill` (SIGKILL, by the Popen handle), and reads the
cluster as ``tailrace cluster status --json`` prints it (:meth:`status`).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import ROOT, BrokerProcess

__all__ = ["BrokerCluster", "ClusterBrokerProcess"]


class ClusterBrokerProcess(BrokerProcess):
    """A broker child in cluster mode (``--node-id``, ``--cluster-etcd``)."""

    def __init__(
        self,
        data_dir: Path,
        node_id: int,
        endpoints: list[str],
        *args: str,
        session_timeout_ms: int = 2000,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            data_dir,
            "--node-id",
            str(node_id),
            "--cluster-etcd",
            ",".join(endpoints),
            *args,
            env={"TAILRACE_CLUSTER_SESSION_TIMEOUT_MS": str(session_timeout_ms), **(env or {})},
        )
        self.node_id = node_id

    def wait_for_line(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match[str]:
        """The first log line from index ``start`` on matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines[start:]:
                m = regex.search(line)
                if m:
                    return m
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"broker {self.node_id} logged no {pattern!r}:\n" + "\n".join(self.log_lines)
                )
            time.sleep(0.05)

    def broker_epoch(self, start: int = 0) -> int:
        """The broker epoch of the first registration logged from line ``start`` on."""
        m = self.wait_for_line(r"registered in the cluster .*broker_epoch=(\d+)", start=start)
        return int(m.group(1))

    def pause(self) -> None:
        """SIGSTOP through the handle (a long GC pause, a stuck VM)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class BrokerCluster:
    def __init__(
        self,
        base: Path,
        etcd: Any,
        *,
        session_timeout_ms: int = 2000,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.etcd = etcd
        self.session_timeout_ms = session_timeout_ms
        #: extra environment of every broker (TAILRACE_<SECTION>_<KEY> settings)
        self.env = env
        self.brokers: dict[int, ClusterBrokerProcess] = {}

    def start_broker(self, node_id: int, *args: str) -> ClusterBrokerProcess:
        proc = ClusterBrokerProcess(
            self.base / f"broker{node_id}",
            node_id,
            self.etcd.endpoints,
            *args,
            session_timeout_ms=self.session_timeout_ms,
            env=self.env,
        )
        proc.start()
        self.brokers[node_id] = proc
        proc.broker_epoch()  # registered
        return proc

    def kill(self, node_id: int) -> None:
        """SIGKILL through the broker's own handle (its lease then expires)."""
        self.brokers[node_id].kill()

    def stop(self) -> None:
        for proc in self.brokers.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.resume()  # a paused broker dies too
            proc.kill()

    def status_command(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable, "-m", "tailrace.broker.cli", "cluster", "status",
                "--etcd", ",".join(self.etcd.endpoints), *extra,
            ],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        done = self.status_command("--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll ``cluster status --json`` until ``predicate`` holds (the
        bound only stops a hung test)."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.status()
            if predicate(doc):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster never reached: {what}; last status: {doc}")
            time.sleep(0.2)
