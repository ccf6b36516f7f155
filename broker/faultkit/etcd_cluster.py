"""etcd members as child processes on loopback, for tests and tools/.

``EtcdCluster(base_dir, members=3).start()`` runs Debian's ``etcd`` (from
``make debian-tools``) with one data directory per member under
``base_dir``, client and peer ports picked free on ``host``, and returns
once every member reports healthy. Each member is stopped, killed, paused
and resumed through its own Popen handle (never by name). A missing ``etcd``
binary raises: a test that needs etcd fails, it never skips.

Stopping: SIGTERM to every member of a 3-member cluster at once makes them
try to hand leadership over for 5-7 s; etcd is crash-safe (its WAL is
fsynced), so :meth:`EtcdCluster.stop` uses SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EtcdCluster", "EtcdMember", "etcd_binary", "free_port"]


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise RuntimeError(
            "the etcd binary is missing: `make debian-tools` installs Debian's etcd-server"
        )
    return path


#: where free_port looks first: below the kernel's ephemeral range
_LOW_PORT = 20000
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the caller binds it soon after).

    Picked at random below the kernel's ephemeral range and checked by
    binding it. A port from ``bind(host, 0)`` lies inside that range,
    which every outgoing connection draws its source port from: between
    this call and the caller's bind, a connection from ``host`` may take
    it (seen once: an etcd member's peer port taken while brokers bound
    to the same loopback address connected out). Falls back to
    ``bind(host, 0)`` when the low range has no free port."""
    high = _ephemeral_low()
    for _ in range(64):
        port = random.randrange(_LOW_PORT, high) if high > _LOW_PORT else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: the flags that make the cluster, set by EtcdCluster
    initial_cluster: str = ""
    token: str = ""
    heartbeat_ms: int = 100
    election_ms: int = 1000

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def command(self) -> list[str]:
        return [
            etcd_binary(),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip

    def start(self, *, new_session: bool = False) -> None:
        """Start (or restart: the data directory's state wins over the
        initial-cluster flags). ``new_session``: detached from this
        process's terminal and signals (``make run-cluster``)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=new_session,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout: float = 0.2) -> bool:
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=timeout) as r:
                return json.loads(r.read(4096)).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def status(self, timeout: float = 0.5) -> dict:
        """``/v3/maintenance/status``: ``header.member_id`` and ``leader``."""
        request = urllib.request.Request(
            f"{self.client_url}/v3/maintenance/status", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read(65536))

    def is_leader(self) -> bool:
        try:
            status = self.status()
        except (OSError, ValueError):
            return False
        return status.get("leader") == (status.get("header") or {}).get("member_id")

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


#: how often EtcdCluster.start tries a new cluster whose port was taken
_START_ATTEMPTS = 3
#: what etcd logs when a port it was given is in use
_PORT_TAKEN = "address already in use"


class EtcdCluster:
    """``members`` etcd members on ``host``; ``endpoints`` are their client URLs."""

    def __init__(
        self,
        base_dir: Path,
        *,
        members: int = 1,
        host: str = "127.0.0.1",
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        client_ports: list[int] | None = None,
        peer_ports: list[int] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        token = f"tailrace-{uuid.uuid4().hex[:12]}"
        #: ports picked here (not given) may be picked again (see start)
        self._ports_chosen = not client_ports and not peer_ports
        self.members: list[EtcdMember] = []
        for i in range(members):
            client_port = client_ports[i] if client_ports else free_port(host)
            self.members.append(
                EtcdMember(
                    f"m{i}",
                    host,
                    client_port,
                    peer_ports[i] if peer_ports else free_port(host),
                    self.base_dir / f"m{i}" / "data",
                    token=token,
                    heartbeat_ms=heartbeat_ms,
                    election_ms=election_ms,
                )
            )
        self._link()

    def _link(self) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = initial

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 30.0, *, new_session: bool = False) -> EtcdCluster:
        """Start every member; return once each says it is healthy.

        A new cluster whose ports were picked here is started again on
        fresh ports (up to ``_START_ATTEMPTS`` times in all) when a member
        exits because one of its ports was taken meanwhile: free_port can
        only say a port is free now."""
        fresh = self._ports_chosen and not any(m.data_dir.exists() for m in self.members)
        for attempt in range(1, _START_ATTEMPTS + 1):
            for m in self.members:
                m.start(new_session=new_session)
            try:
                self.wait_healthy(timeout)
            except RuntimeError:
                self.stop()
                taken = any(_PORT_TAKEN in self.log_tail(m) for m in self.members)
                if not (fresh and taken and attempt < _START_ATTEMPTS):
                    raise
                self._repick_ports()
                continue
            except BaseException:
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")

    def _repick_ports(self) -> None:
        # a new cluster only: its members' data and logs go with the old ports
        for m in self.members:
            shutil.rmtree(m.data_dir.parent, ignore_errors=True)
            m.client_port = free_port(m.host)
            m.peer_port = free_port(m.host)
            m.proc = None
        self._link()

    def wait_healthy(self, timeout: float = 30.0, members: list[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(members or self.members)
        while waiting:
            for m in list(waiting):
                if not m.running:
                    raise RuntimeError(f"etcd member {m.name} exited:\n{self.log_tail(m)}")
                if m.healthy():
                    waiting.remove(m)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(m.name for m in waiting)
                raise RuntimeError(f"etcd member(s) {names} not healthy after {timeout:g} s")
            if waiting:
                time.sleep(0.05)

    def leader(self, timeout: float = 10.0) -> EtcdMember:
        """The member that is raft leader now (waits for one)."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.members:
                if m.running and m.is_leader():
                    return m
            if time.monotonic() > deadline:
                raise RuntimeError(f"no etcd leader after {timeout:g} s")
            time.sleep(0.05)

    def log_tail(self, member: EtcdMember, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(member.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """SIGKILL every member (crash-safe, and quick) and reap them."""
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.send_signal(signal.SIGCONT)  # a paused member dies too
                    m.proc.send_signal(signal.SIGKILL)
        for m in self.members:
            if m.proc is not None:
                m.proc.wait(30)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        return [m.pid for m in self.members if m.running]
