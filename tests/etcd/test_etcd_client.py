"""The etcd adapter against real etcd processes (one member, and three)."""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
from typing import Any

import pytest
import trio

from tailrace.broker.etcd import (
    Compare,
    EtcdClient,
    EtcdRequestError,
    EtcdUnavailableError,
    LeaseExpiredError,
    Op,
    PrefixView,
    WatchCompactedError,
)
from tailrace.broker.faultkit.etcd_cluster import free_port


async def test_put_get_range_and_delete(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        first = await client.put(b"/t/a", b"1")
        await client.put(b"/t/b", b"2")
        await client.put(b"/u", b"other")
        kv = await client.get(b"/t/a")
        assert kv is not None
        assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (
            b"1",
            first,
            first,
            1,
        )
        rng = await client.range(b"/t/", prefix=True)
        assert [(k.key, k.value) for k in rng.kvs] == [(b"/t/a", b"1"), (b"/t/b", b"2")]
        assert rng.count == 2
        assert await client.get(b"/missing") is None
        old = await client.range(b"/t/a", revision=first)  # history until compaction
        assert old.kvs[0].value == b"1"
        assert await client.delete(b"/t/", prefix=True) == 2
        assert (await client.range(b"/t/", prefix=True)).kvs == ()
        with pytest.raises(EtcdRequestError) as info:
            await client.range(b"/t/a", revision=10_000)  # a future revision
        assert not info.value.retriable


async def test_txn_compare_and_swap_on_mod_revision(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        rev = await client.put(b"/state", b"v1")
        won = await client.txn([Compare.mod_revision(b"/state", rev)], [Op.put(b"/state", b"v2")])
        assert won.succeeded
        stale = await client.txn(
            [Compare.mod_revision(b"/state", rev)], [Op.put(b"/state", b"v3")], [Op.get(b"/state")]
        )
        assert not stale.succeeded
        (current,) = stale.ranges
        assert current is not None
        assert current.kvs[0].value == b"v2"
        assert current.kvs[0].mod_revision == won.revision


async def test_create_if_absent_succeeds_once(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        first = await client.create(b"/controller", b"node-1")
        assert first.succeeded
        second = await client.create(b"/controller", b"node-2")
        assert not second.succeeded
        (held,) = second.ranges
        assert held is not None
        assert held.kvs[0].value == b"node-1"
        assert held.kvs[0].create_revision == first.revision


async def test_a_kept_lease_outlives_its_ttl_and_an_abandoned_one_expires(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        lease = await client.grant(1)
        await client.put(b"/brokers/1", b"up", lease=lease.id)
        start = await client.put(b"/marker", b"")
        async with trio.open_nursery() as nursery:
            await nursery.start(client.keep_alive, lease)
            await trio.sleep(lease.ttl * 2.5)  # lets several keepalives run: not a timing assertion
            assert await client.get(b"/brokers/1") is not None
            nursery.cancel_scope.cancel()
        # no more keepalives: etcd deletes the key, and a watch sees it go
        replies = client.watch(b"/brokers/", prefix=True, start_revision=start + 1)
        async with contextlib.aclosing(replies):
            async for reply in replies:
                if any(e.type == "DELETE" for e in reply.events):
                    break
        assert await client.get(b"/brokers/1") is None
        with pytest.raises(LeaseExpiredError):
            await client.keepalive_once(lease.id)


async def test_revoke_deletes_the_keys_and_keep_alive_then_raises(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        lease = await client.grant(5)
        await client.put(b"/k", b"v", lease=lease.id)
        await client.revoke(lease.id)
        await client.revoke(lease.id)  # twice is fine
        assert await client.get(b"/k") is None
        with pytest.raises(LeaseExpiredError):
            await client.keep_alive(lease)


async def test_watch_replays_from_a_revision_and_raises_when_compacted(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        r1 = await client.put(b"/w/a", b"1")
        await client.put(b"/w/b", b"2")
        r3 = await client.delete(b"/w/a")
        assert r3 == 1
        seen = []
        replies = client.watch(b"/w/", prefix=True, start_revision=r1, prev_kv=True)
        async with contextlib.aclosing(replies):
            async for reply in replies:
                seen.extend(
                    (e.type, e.kv.key, e.prev_kv.value if e.prev_kv else None) for e in reply.events
                )
                if len(seen) == 3:
                    break
        assert seen == [("PUT", b"/w/a", None), ("PUT", b"/w/b", None), ("DELETE", b"/w/a", b"1")]
        now = await client.put(b"/w/c", b"3")
        await client.compact(now)
        with pytest.raises(WatchCompactedError) as info:
            await _drain(client.watch(b"/w/", prefix=True, start_revision=r1))
        assert info.value.compact_revision == now
        assert info.value.retriable


async def _drain(replies: Any) -> None:
    async with contextlib.aclosing(replies):
        async for _reply in replies:
            pass


async def test_a_prefix_view_follows_changes_and_rereads_after_compaction(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client, trio.open_nursery() as nursery:
        await client.put(b"/v/a", b"1")
        view = PrefixView(client, b"/v/")
        await nursery.start(view.run)
        assert {k: kv.value for k, kv in view.items.items()} == {b"/v/a": b"1"}
        rev = await client.put(b"/v/b", b"2")
        await view.wait_beyond(rev - 1)
        assert set(view.items) == {b"/v/a", b"/v/b"}
        # a watch that falls behind compaction re-reads: cut the view's watch
        # off by compacting past where it would resume
        assert view.loads == 1
        nursery.cancel_scope.cancel()
    async with EtcdClient(etcd.endpoints) as client, trio.open_nursery() as nursery:
        stale = PrefixView(client, b"/v/")
        stale.revision = 1  # as if it had read long ago
        for i in range(3):
            last = await client.put(b"/v/c", str(i).encode())
        await client.compact(last)
        await client.delete(b"/v/a")

        async def follow_from_stale() -> None:
            with contextlib.suppress(WatchCompactedError):
                await stale._follow()

        await follow_from_stale()
        view = PrefixView(client, b"/v/")
        await nursery.start(view.run)
        assert set(view.items) == {b"/v/b", b"/v/c"}
        nursery.cancel_scope.cancel()


async def test_no_endpoint_answering_is_a_retriable_error() -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    async with EtcdClient(dead, timeout=0.5) as client:
        with pytest.raises(EtcdUnavailableError) as info:
            await client.get(b"/x")
        assert info.value.retriable
        assert not info.value.ambiguous
        with pytest.raises(EtcdUnavailableError) as info:
            await client.put(b"/x", b"1")  # refused connections: never sent
        assert not info.value.ambiguous


async def test_a_dead_first_endpoint_fails_over(etcd: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with EtcdClient([dead, *etcd.endpoints]) as client:
        await client.put(b"/f", b"1")  # refused on the first: safe to send to the next
        assert client.endpoint == etcd.endpoints[0]
        kv = await client.get(b"/f")
        assert kv is not None


async def test_replies_are_read_within_a_size_bound(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints, max_reply_bytes=1024) as client:
        await client.put(b"/big", b"x" * 2000)
        with pytest.raises(EtcdRequestError, match="max_reply_bytes"):
            await client.get(b"/big")


async def test_three_members_a_killed_member_fails_over_and_the_watch_resumes(etcd3: Any) -> None:
    # the client starts on a follower: killing it refuses connections there,
    # so writes move on safely (a killed raft leader would leave the next
    # member electing, and a write there ambiguous: the test below)
    leader = etcd3.leader()
    followers = [m.client_url for m in etcd3.members if m is not leader]
    endpoints = [*followers, leader.client_url]
    async with EtcdClient(endpoints, timeout=2.0) as client, trio.open_nursery() as nursery:
        start = await client.put(b"/m/0", b"0")
        seen: list[bytes] = []
        done = trio.Event()

        async def watcher() -> None:
            replies = client.watch(b"/m/", prefix=True, start_revision=start)
            async with contextlib.aclosing(replies):
                async for reply in replies:
                    seen.extend(e.kv.value for e in reply.events)
                    if len(seen) >= 4:
                        done.set()
                        return

        nursery.start_soon(watcher)
        await client.put(b"/m/1", b"1")
        first = client.endpoint
        member = next(m for m in etcd3.members if m.client_url == first)
        member.kill()  # the member both the requests and the watch use
        await client.put(b"/m/2", b"2")  # refused there: sent to the next member
        assert client.endpoint != first
        await client.put(b"/m/3", b"3")
        await done.wait()
        assert seen == [b"0", b"1", b"2", b"3"]  # nothing missed, nothing repeated


async def test_a_paused_member_times_out_and_a_write_there_is_ambiguous(etcd3: Any) -> None:
    async with EtcdClient(etcd3.endpoints, timeout=1.0) as client:
        await client.put(b"/p", b"0")
        paused = etcd3.members[0]
        paused.pause()
        try:
            with pytest.raises(EtcdUnavailableError) as info:
                await client.put(b"/p", b"1")  # sent, never answered: may have applied
            assert info.value.ambiguous
            assert client.endpoint != paused.client_url  # the next request goes elsewhere
            kv = await client.get(b"/p")  # reads fail over
            assert kv is not None
            assert kv.value in (b"0", b"1")
        finally:
            paused.resume()


async def test_a_view_watching_a_paused_member_moves_to_another(etcd3: Any) -> None:
    # a SIGSTOPped member keeps the watch's connection open and silent: only
    # the view's periodic comparison can tell
    leader = etcd3.leader()
    paused = next(m for m in etcd3.members if m is not leader)
    others = [m.client_url for m in etcd3.members if m is not paused]
    async with (
        EtcdClient([paused.client_url, *others], timeout=1.0) as watching,
        EtcdClient(others) as writer,
        trio.open_nursery() as nursery,
    ):
        view = PrefixView(watching, b"/s/", check_interval=0.3)
        await nursery.start(view.run)
        # the watch is up on the first member: a change arrives through it
        rev = await writer.put(b"/s/k", b"before")
        await view.wait_beyond(rev - 1)
        assert watching.endpoint == paused.client_url
        paused.pause()
        try:
            rev = await writer.put(b"/s/k", b"after the pause")
            with trio.fail_after(60):  # stops a hung test only
                await view.wait_beyond(rev - 1)
        finally:
            paused.resume()
        assert view.items[b"/s/k"].value == b"after the pause"
        assert view.stalls >= 1
        nursery.cancel_scope.cancel()


async def test_a_watch_whose_connection_is_reset_resumes_on_the_next_member(etcd: Any) -> None:
    """A member killed while data sat unread in its socket resets the
    connection (RST, not FIN); trio reports that as BrokenResourceError. The
    watch must resume on the next endpoint like after any other break (it
    once escaped and ended the watcher: seen in the three-member test on a
    busy machine)."""

    async def reset(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)  # the watch request
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await trio.sleep(0.05)  # the client is reading the body now
        # SO_LINGER 0: close() sends RST
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            functools.partial(trio.serve_tcp, reset, 0, host="127.0.0.1")
        )
        url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}"
        async with EtcdClient(etcd.endpoints) as writer:
            first = await writer.put(b"/r/0", b"0")
        # the watch starts at the member that resets
        async with EtcdClient([url, *etcd.endpoints], timeout=2.0) as client:
            replies = client.watch(b"/r/", prefix=True, start_revision=first, retry_delay=0.05)
            async with contextlib.aclosing(replies):
                with trio.fail_after(30):  # the bound only stops a hung test
                    reply = await replies.__anext__()
            assert [e.kv.value for e in reply.events] == [b"0"]
        nursery.cancel_scope.cancel()


async def test_requests_and_watches_leave_from_the_bound_address() -> None:
    # a listener that records where connections come from (etcd cannot say)
    peers: list[str] = []

    async def record(stream: trio.SocketStream) -> None:
        peers.append(stream.socket.getpeername()[0])
        await stream.receive_some(65536)  # the request, then no answer
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            functools.partial(trio.serve_tcp, record, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with EtcdClient([url], timeout=1.0, local_address="127.0.0.2") as client:
            with pytest.raises(EtcdUnavailableError):
                await client.get(b"/x")
            replies = client.watch(b"/x", start_revision=1, retry_delay=0.05)
            async with contextlib.aclosing(replies):
                with trio.move_on_after(0.5):
                    async for _reply in replies:
                        pass
        nursery.cancel_scope.cancel()
    assert len(peers) >= 2
    assert set(peers) == {"127.0.0.2"}


async def test_writing_under_a_gone_lease_is_lease_expired(etcd: Any) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        lease = await client.grant(5)
        await client.revoke(lease.id)
        with pytest.raises(LeaseExpiredError) as info:
            await client.put(b"/k", b"v", lease=lease.id)
        assert info.value.lease_id == lease.id
        with pytest.raises(LeaseExpiredError):
            await client.create(b"/k", b"v", lease=lease.id)


async def test_keep_alive_gives_up_after_a_ttl_without_renewal(etcd: Any) -> None:
    # etcd stops answering (a paused member): after one TTL without a renewal
    # the holder must act as if the lease were gone, whatever etcd decides
    async with EtcdClient(etcd.endpoints, timeout=0.5) as client:
        lease = await client.grant(1)
        try:
            with pytest.RaisesGroup(LeaseExpiredError):
                async with trio.open_nursery() as nursery:
                    await nursery.start(client.keep_alive, lease)
                    etcd.members[0].pause()
        finally:
            etcd.members[0].resume()


async def test_keep_alive_moves_past_a_hung_member_within_the_ttl(etcd3: Any) -> None:
    # a member that hangs (paused) while the others keep their quorum: the
    # renewal must reach the next endpoint before the TTL runs out, though
    # one request may wait etcd_timeout (2 s, the TTL here) for an answer
    follower = next(m for m in etcd3.members if not m.is_leader())
    endpoints = [follower.client_url] + [m.client_url for m in etcd3.members if m is not follower]
    async with EtcdClient(endpoints, timeout=2.0) as client, EtcdClient(endpoints[1:]) as other:
        lease = await client.grant(2)
        assert lease.ttl == 2
        async with trio.open_nursery() as nursery:
            await nursery.start(client.keep_alive, lease)
            follower.pause()
            try:
                # three TTLs: without a renewal elsewhere the task would have
                # raised LeaseExpiredError and failed this nursery by now
                await trio.sleep(3 * lease.ttl)
                assert client.endpoint != follower.client_url
                assert await other.keepalive_once(lease.id) > 0  # alive in etcd too
            finally:
                follower.resume()
            nursery.cancel_scope.cancel()
