"""Telling at once that a peer broker's process is gone.

A broker's registration lives as long as its etcd lease: a broker that dies
is noticed only when the lease expires, a whole session timeout later
(``cluster.session_timeout_ms``), and its partitions have no leader until
then. When the process itself dies (kill -9, a crash, the OOM killer) its
kernel says so at once: every TCP connection it held is closed, and a new
connection to its port is refused because nothing listens there.

So each broker keeps one idle TCP connection to every other registered
broker's advertised address (no request is sent on it). When it closes, the
broker connects again:

* refused: the process that registered is gone. Its lease is revoked, which
  deletes its registration (and the controller key, if it held it) now
  instead of after the TTL; the controller moves its leaderships as it
  would after the expiry;
* accepted: the peer is alive (it closed an idle connection, say): watch
  the new connection;
* anything else (a timeout: a paused process, a network cut): nothing is
  concluded; the lease decides, as before.

A refusal counts only after a connection to the same registration (the
same broker epoch) once succeeded, so a broker that registers before its
listener is reachable, or an address that is wrong, is never revoked: it
keeps the lease-only behaviour. A paused (SIGSTOP) or cut-off broker is
never revoked here either: its kernel still holds the port (connections
queue, or time out), so only the lease speaks for it.

This is detection only. Safety never depends on it: a revoked broker that
was in fact alive finds its lease gone, and starts a new session with a
higher broker epoch, exactly as after an expiry; every partition change is
still a compare-and-swap fenced by epochs.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..config import parse_address
from ..etcd import EtcdError
from ..logs import log_event
from .member import ClusterMember
from .state import BrokerInfo

__all__ = ["PeerWatch", "Registration"]

log = logging.getLogger("tailrace.cluster")

#: connect errors that mean "nothing listens there" (the host answered)
_REFUSED = (errno.ECONNREFUSED,)


@dataclass(frozen=True, slots=True)
class Registration:
    """One session of one peer broker, as its etcd key says."""

    node_id: int
    #: the registration's create revision (the broker epoch)
    epoch: int
    address: str
    lease: int


Connector = Callable[[str], Awaitable[trio.abc.Stream]]


class PeerWatch:
    """Watches every other registered broker's process; revokes the lease of
    one whose port refuses connections after it had accepted one."""

    def __init__(
        self,
        member: ClusterMember,
        *,
        bind_host: str = "",
        connect_timeout: float = 1.0,
        retry_delay: float = 1.0,
        connect: Connector | None = None,
    ) -> None:
        self.member = member
        self.bind_host = bind_host
        self.connect_timeout = connect_timeout
        self.retry_delay = retry_delay
        self._connect = connect or self._tcp_connect
        #: registrations whose lease this broker revoked (for tests and status)
        self.revoked: list[Registration] = []
        self._watching: dict[Registration, trio.CancelScope] = {}

    def registrations(self) -> set[Registration]:
        """Every other broker's registration in the member's current view."""
        view = self.member.view
        if view is None:
            return set()
        found = set()
        brokers = self.member.keys.brokers
        for key, kv in view.items.items():
            if not key.startswith(brokers):
                continue
            try:
                info = BrokerInfo.from_kv(kv)
            except (ValueError, KeyError, TypeError):
                continue  # not ours to judge: the view's readers report it
            if info.node_id != self.member.node_id and info.address and kv.lease:
                found.add(Registration(info.node_id, info.epoch, info.address, kv.lease))
        return found

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch peers until cancelled (a task of the broker's nursery)."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                current = self.registrations()
                for gone in set(self._watching) - current:
                    self._watching.pop(gone).cancel()
                for new in current - set(self._watching):
                    scope = trio.CancelScope()
                    self._watching[new] = scope
                    nursery.start_soon(self._watch_scoped, new, scope)
                view = self.member.view
                if view is None or not view.revision:
                    await trio.sleep(0.05)  # the first session's view is being read
                    continue
                # a new session makes a new view: look again now and then
                with trio.move_on_after(self.retry_delay):
                    await view.wait_beyond(view.revision)

    async def _watch_scoped(self, reg: Registration, scope: trio.CancelScope) -> None:
        with scope:
            await self.watch(reg)
        if self._watching.get(reg) is scope:
            del self._watching[reg]

    async def watch(self, reg: Registration) -> None:
        """Watch one registration until its process is gone (its lease is
        then revoked) or until cancelled."""
        stream = await self._first_connection(reg)
        while True:
            await _wait_closed(stream)
            try:
                with trio.fail_after(self.connect_timeout):
                    stream = await self._connect(reg.address)
            except OSError as exc:
                if exc.errno in _REFUSED:
                    await self._revoke(reg)
                    return
                stream = await self._first_connection(reg)
            except trio.TooSlowError:
                stream = await self._first_connection(reg)

    async def _first_connection(self, reg: Registration) -> trio.abc.Stream:
        """A connection to the peer; retried (never concluded from) until it works."""
        while True:
            try:
                with trio.fail_after(self.connect_timeout):
                    return await self._connect(reg.address)
            except (OSError, trio.TooSlowError):
                await trio.sleep(self.retry_delay)

    async def _revoke(self, reg: Registration) -> None:
        log_event(
            log,
            logging.WARNING,
            "peer broker's port refuses connections: its process is gone, ending its session",
            node_id=reg.node_id,
            broker_epoch=reg.epoch,
            address=reg.address,
        )
        while True:
            client = self.member.client
            if client is not None:
                try:
                    # shielded: the registration's deletion reaches the view
                    # (which cancels this watch) before etcd's answer does
                    with trio.CancelScope(shield=True):
                        await client.revoke(reg.lease)
                except EtcdError as exc:
                    log_event(log, logging.WARNING, "cannot revoke a peer's lease", error=str(exc))
                else:
                    self.revoked.append(reg)
                    return
            if reg not in self.registrations():
                return  # gone meanwhile (expired, or revoked by another broker)
            await trio.sleep(self.retry_delay / 4)

    async def _tcp_connect(self, address: str) -> trio.abc.Stream:
        host, port = parse_address(address)
        family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
        sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
        try:
            if self.bind_host:
                await sock.bind((self.bind_host, 0))
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)


async def _wait_closed(stream: trio.abc.Stream) -> None:
    """Return when the peer closes the connection (or breaks it)."""
    async with stream:
        try:
            while await stream.receive_some(4096):
                pass  # the peer never sends unasked; read and drop whatever comes
        except trio.BrokenResourceError:
            pass  # reset by the peer: closed as well
