"""Network faults between processes on one machine, on loopback only.

A cluster test runs every process (etcd members, brokers, clients) inside
one private network namespace, each bound to a loopback address of its own
(127.0.0.N; in a namespace every 127.0.0.0/8 address routes to ``lo`` with
no setup). Faults are nftables drop rules on the namespace's output hook,
matched by source and destination address: a "partition" between two
nodes drops their packets silently in both directions, the way a cut
cable or a dead switch port does (an established connection stops getting
replies, a new connect times out), and the heal removes the rules, after
which TCP's retransmission resumes established connections. Pauses are
SIGSTOP / SIGCONT on a process handle.

Why this shape (measured on this machine, reference/cluster-on-etcd.md 4.1):

* ``unshare -rn`` (a new user namespace mapping the caller to root, and a
  new network namespace) works unprivileged, so nothing here touches the
  machine's own network, and everything it built disappears with the last
  process inside;
* nftables works inside such a namespace, also unprivileged; ``tc`` cannot
  drop or delay here (no netem in the kernel), and ``ip rule`` blackholes
  fail fast with EINVAL rather than dropping;
* a socket that does not bind connects from 127.0.0.1, whatever address it
  dials: each node must bind its outgoing sockets to its own address (the
  broker's ``[cluster]`` bind address, etcd's client URLs), or the rules
  cannot tell the nodes apart.

Use::

    # the harness re-executes itself inside a namespace
    if not in_private_namespace():
        os.execvp("unshare", namespace_argv([sys.executable, *sys.argv]))
    bring_up_loopback()
    net = NetFaults()
    net.partition("127.0.0.2", "127.0.0.3")     # both directions
    net.isolate("127.0.0.2", ["127.0.0.3", "127.0.0.4"])
    net.heal()

``NetFaults`` refuses to run outside a private namespace: its rules would
otherwise land in the machine's own ruleset.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence

__all__ = [
    "NetFaultError",
    "NetFaults",
    "bring_up_loopback",
    "in_private_namespace",
    "namespace_argv",
    "pause",
    "resume",
]

#: the nftables table every rule of this kit lives in; the heal deletes it
TABLE = "tailrace_faults"


class NetFaultError(RuntimeError):
    """A network fault could not be set up (a tool missing, not in a
    namespace, a rule refused); the message says what to do."""


def namespace_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` run inside a new user and network namespace (``unshare -rn``).

    The program starts as root of its own user namespace, with a network of
    its own that holds only a loopback device (down until
    :func:`bring_up_loopback`). Its children inherit both.
    """
    if shutil.which("unshare") is None:
        raise NetFaultError("unshare is missing: install util-linux")
    host = f"{_HOST_NETNS}={_netns_id('self')}"
    return ["unshare", "--user", "--map-root-user", "--net", "--", "env", host, *argv]


#: set by namespace_argv to the namespace it was called from: inside a user
#: namespace, /proc/1/ns/net (and the parent's) cannot be read to compare
_HOST_NETNS = "TAILRACE_FAULTKIT_HOST_NETNS"


def _netns_id(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def in_private_namespace() -> bool:
    """True when this process runs in a network namespace other than the one
    it was launched from by :func:`namespace_argv` (or, launched otherwise,
    other than PID 1's).

    Where neither can be known, the answer is False: this kit then refuses
    to add rules, never guesses.
    """
    own = _netns_id("self")
    host = os.environ.get(_HOST_NETNS)
    if host:
        return own != host
    try:
        return own != _netns_id(1)
    except OSError:
        return False


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise NetFaultError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


def bring_up_loopback() -> None:
    """Bring ``lo`` up in this (new) namespace; 127.0.0.0/8 then routes to it."""
    if shutil.which("ip") is None:
        raise NetFaultError("ip is missing: install iproute2")
    _run(["ip", "link", "set", "lo", "up"])


def _address(value: str) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError as exc:
        raise NetFaultError(f"not an IP address: {value!r}") from exc
    if not addr.is_loopback:
        raise NetFaultError(f"{value} is not a loopback address: faults stay on loopback")
    return str(addr)


class NetFaults:
    """Drop rules between loopback addresses, in this process's namespace.

    Every rule is one direction, ``saddr -> daddr``; :meth:`partition` and
    :meth:`isolate` add both directions. :attr:`cuts` is what is in force.
    Thread-unsafe by design: one harness drives it.
    """

    def __init__(self, nft: str = "nft") -> None:
        if shutil.which(nft) is None:
            raise NetFaultError(f"{nft} is missing: install nftables (make debian-tools)")
        if not in_private_namespace():
            raise NetFaultError(
                "not in a private network namespace: run the harness under "
                "namespace_argv() (unshare -rn), or the rules would change this machine's network"
            )
        self._nft = nft
        self._table = False
        self.cuts: set[tuple[str, str]] = set()

    def _ensure_table(self) -> None:
        if self._table:
            return
        _run([self._nft, "add", "table", "inet", TABLE])
        _run(
            [
                self._nft, "add", "chain", "inet", TABLE, "out",
                "{ type filter hook output priority 0; policy accept; }",
            ]
        )  # fmt: skip
        self._table = True

    def drop(self, src: str, dst: str) -> None:
        """Drop every packet from ``src`` to ``dst`` (one direction)."""
        pair = (_address(src), _address(dst))
        if pair in self.cuts:
            return
        self._ensure_table()
        _run(
            [
                self._nft, "add", "rule", "inet", TABLE, "out",
                "ip", "saddr", pair[0], "ip", "daddr", pair[1], "drop",
            ]
        )  # fmt: skip
        self.cuts.add(pair)

    def partition(self, a: str, b: str) -> None:
        """Cut ``a`` and ``b`` apart, both directions."""
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, node: str, others: Iterable[str]) -> None:
        """Cut ``node`` from each of ``others``, both directions."""
        for other in others:
            self.partition(node, other)

    def split(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Two groups that reach their own members but not the other group's."""
        side_b = list(side_b)
        for a in side_a:
            for b in side_b:
                self.partition(a, b)

    def heal(self) -> None:
        """Remove every rule; established connections recover by retransmission."""
        if self._table:
            _run([self._nft, "delete", "table", "inet", TABLE])
            self._table = False
        self.cuts.clear()

    def __enter__(self) -> NetFaults:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.heal()


def pause(proc: subprocess.Popen) -> None:
    """Stop a child process (SIGSTOP) through its own handle: it keeps its
    sockets and leases but answers nothing, as a long GC pause or a frozen VM.
    Returns once the child is stopped (``waitpid`` with WUNTRACED; the child
    is not reaped)."""
    if proc.poll() is not None:
        raise NetFaultError(f"process {proc.pid} has exited ({proc.returncode})")
    proc.send_signal(signal.SIGSTOP)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):  # it died meanwhile, and is reaped now
        proc.returncode = os.waitstatus_to_exitcode(status)
        raise NetFaultError(f"process {proc.pid} ended ({proc.returncode}) instead of stopping")


def resume(proc: subprocess.Popen) -> None:
    """Let a paused child run again (SIGCONT)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
