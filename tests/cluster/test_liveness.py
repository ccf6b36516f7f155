"""PeerWatch against a real etcd and real loopback sockets: a peer whose
port refuses connections after it accepted one loses its session at once;
a peer that only closes its idle connection, or was never reachable, keeps
it (its lease decides, as before). ClusterMember objects run in one trio
run; each "peer process" is a real listening socket the test closes.

The kill -9 of a real broker process is in test_cluster_processes.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from tailrace.broker.cluster.liveness import PeerWatch, Registration
from tailrace.broker.cluster.member import ClusterMember, ClusterSettings


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for ``predicate``; the bound only stops a hung test."""
    with trio.fail_after(60):
        while not predicate():  # noqa: ASYNC110 - the state belongs to other tasks
            await trio.sleep(0.02)


class PeerPort:
    """A listening socket standing for a peer broker's process: it accepts
    and holds connections until told to close them, or to close everything
    (the process died: the port then refuses)."""

    def __init__(self) -> None:
        self.listener: trio.SocketListener | None = None
        self.accepted: list[trio.SocketStream] = []
        self.address = ""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        (self.listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        host, port = self.listener.socket.getsockname()[:2]
        self.address = f"{host}:{port}"
        task_status.started()
        while True:
            try:
                stream = await self.listener.accept()
            except (trio.ClosedResourceError, OSError):
                return
            self.accepted.append(stream)

    async def drop_connections(self) -> None:
        for stream in self.accepted:
            await stream.aclose()

    async def die(self) -> None:
        assert self.listener is not None
        await self.listener.aclose()
        await self.drop_connections()


def member(etcd: Any, node_id: int, address: str) -> ClusterMember:
    # the lease outlives the test: only a revocation ends a session here
    settings = ClusterSettings(node_id, tuple(etcd.endpoints), session_timeout_ms=120_000)
    return ClusterMember(settings, address=address)


async def watched_peer(
    nursery: trio.Nursery, etcd: Any, watcher_id: int, peer_id: int
) -> tuple[PeerPort, ClusterMember, ClusterMember, PeerWatch]:
    """A registered peer at a real listening port, and another member's
    PeerWatch connected to it."""
    port = PeerPort()
    await nursery.start(port.run)
    watcher = member(etcd, watcher_id, "127.0.0.1:1")
    peer = member(etcd, peer_id, port.address)
    for m in (watcher, peer):
        await nursery.start(m.run)
        await m.registered.wait()
    watch = PeerWatch(watcher, retry_delay=0.2)
    await nursery.start(watch.run)
    await until(lambda: len(port.accepted) == 1, "the watch to connect to the peer")
    return port, watcher, peer, watch


async def test_a_peer_whose_port_refuses_after_it_accepted_loses_its_session_at_once(
    etcd: Any,
) -> None:
    async with trio.open_nursery() as nursery:
        port, watcher, peer, watch = await watched_peer(nursery, etcd, 1, 2)
        old_epoch = peer.broker_epoch
        assert peer.lease is not None
        old_lease = peer.lease.id

        await port.die()

        await until(lambda: bool(watch.revoked), "the peer's lease revoked")
        assert watch.revoked == [Registration(2, old_epoch, port.address, old_lease)]
        # the registration is gone from etcd now, two minutes before the
        # lease would have expired (the peer, alive in this test, registers
        # again once its next keepalive finds the lease gone)
        assert watcher.client is not None
        kv = await watcher.client.get(watcher.keys.broker(2))
        assert kv is None or kv.create_revision > old_epoch
        nursery.cancel_scope.cancel()


async def test_a_peer_that_closes_an_idle_connection_is_watched_again_not_revoked(
    etcd: Any,
) -> None:
    async with trio.open_nursery() as nursery:
        port, _watcher, peer, watch = await watched_peer(nursery, etcd, 3, 4)
        epoch = peer.broker_epoch

        await port.drop_connections()  # as its idle timeout would: still listening

        await until(lambda: len(port.accepted) == 2, "the watch to connect again")
        assert watch.revoked == [], watch.revoked
        assert peer.broker_epoch == epoch
        # and the new connection is watched: the process's death is seen
        await port.die()
        await until(lambda: bool(watch.revoked), "the peer's lease revoked")
        assert watch.revoked[0].epoch == epoch
        nursery.cancel_scope.cancel()


async def test_a_peer_never_reached_is_left_to_its_lease(etcd: Any) -> None:
    async with trio.open_nursery() as nursery:
        port = PeerPort()
        await nursery.start(port.run)
        await port.die()  # a port nothing listens on: every connect is refused
        watcher, peer = member(etcd, 5, "127.0.0.1:1"), member(etcd, 6, port.address)
        for m in (watcher, peer):
            await nursery.start(m.run)
            await m.registered.wait()
        attempts: list[str] = []
        refused: list[OSError] = []

        async def counting(address: str) -> trio.abc.Stream:
            attempts.append(address)
            try:
                return await watch._tcp_connect(address)
            except OSError as exc:
                refused.append(exc)
                raise

        watch = PeerWatch(watcher, retry_delay=0.05, connect=counting)
        await nursery.start(watch.run)
        await until(lambda: len(refused) >= 5, "several refused connection attempts")
        assert set(attempts) == {port.address}
        assert watch.revoked == []
        assert peer.lease is not None
        assert peer.registered.is_set()
        nursery.cancel_scope.cancel()
