"""The client's way to the brokers: live connections, re-made when they break.

Every client (producer, consumer, admin) holds a :class:`BrokerClient`. It
connects lazily, reconnects after a broker restarts (with exponential
back-off between attempts, capped), caches topic metadata, and offers
``request()`` for one-shot calls that retry transient failures until a
deadline.

Bootstrap and routing. ``bootstrap`` names one broker or several
(``host:port,host:port``); the *bootstrap* connection of a lane goes to the
first of them that answers, the next one in the list when it breaks. That
connection carries everything not addressed to a partition's leader
(metadata, producer ids, groups, admin). Once metadata names more than one
broker (a cluster), requests for a partition go to its leader's own
connection (``connection(node=...)``, one per broker and lane, at the
address the metadata gives); :meth:`leader_for` says where, and
:meth:`invalidate` forgets a leader that answered NOT_LEADER_OR_FOLLOWER
(or died) so the next :meth:`refresh_if_stale` asks again. A single broker
(metadata naming one) keeps everything on the bootstrap connection, at the
address the user gave, as before clusters.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections.abc import Callable
from typing import Any

import trio

from ..errors import BrokerError, BrokerUnavailableError, TimeoutError, error_for_code
from ..protocol import ApiVersionsRequest, Limits, MetadataRequest, MetadataResponse
from .connection import BrokerConnection, PendingResponse, split_address

__all__ = ["BOOTSTRAP", "BrokerClient", "TopicInfo", "split_bootstrap"]

log = logging.getLogger(__name__)

CLIENT_NAME = "tailrace-python"


class TopicInfo:
    """What the client knows of a topic: its partition count and offsets."""

    __slots__ = ("internal", "name", "partitions")

    def __init__(self, name: str, partitions: int, internal: bool = False) -> None:
        self.name = name
        self.partitions = partitions
        self.internal = internal


#: connection key of the bootstrap connection (see BrokerClient.connection)
BOOTSTRAP = "bootstrap"


def split_bootstrap(bootstrap: str) -> list[str]:
    """``host:port[,host:port...]`` as a list; ValueError for a malformed or
    empty one."""
    addresses = [a.strip() for a in bootstrap.split(",") if a.strip()]
    if not addresses:
        raise ValueError(f"bad bootstrap {bootstrap!r}: expected host:port[,host:port...]")
    for a in addresses:
        split_address(a)
    return addresses


class BrokerClient:
    """Connection management shared by producer, consumer and admin."""

    def __init__(
        self,
        nursery: trio.Nursery,
        bootstrap: str,
        *,
        limits: Limits | None = None,
        request_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 10_000,
        reconnect_backoff_ms: int = 50,
        reconnect_backoff_max_ms: int = 1_000,
        ssl_context: ssl.SSLContext | None = None,
        authenticate: Any = None,
    ) -> None:
        self.bootstrap_addresses = split_bootstrap(bootstrap)  # ValueError early
        self._nursery = nursery
        self.bootstrap = bootstrap
        self.limits = limits or Limits(max_frame_bytes=256 * 1024 * 1024, max_body_bytes=64 << 20)
        self.request_timeout = request_timeout_ms / 1000
        self.connect_timeout = connect_timeout_ms / 1000
        self.backoff = reconnect_backoff_ms / 1000
        self.backoff_max = reconnect_backoff_max_ms / 1000
        self.ssl_context = ssl_context
        self._authenticate = authenticate
        #: (lane, BOOTSTRAP or a broker's address) -> its connection (see connection())
        self._conns: dict[tuple[str, str], BrokerConnection] = {}
        self._connect_locks: dict[tuple[str, str], trio.Lock] = {}
        #: per connection key: failed attempts in a row, earliest next attempt
        self._failures: dict[tuple[str, str], int] = {}
        self._next_attempt: dict[tuple[str, str], float] = {}
        #: the bootstrap address tried first (the last one that answered)
        self._bootstrap_index = 0
        self.topics: dict[str, TopicInfo] = {}
        #: from the last metadata: node id -> "host:port", and each
        #: partition's leader (-1: none right now)
        self.brokers: dict[int, str] = {}
        self.leaders: dict[tuple[str, int], int] = {}
        #: whether requests for a partition go to its leader (metadata named
        #: more than one broker)
        self.routed = False
        #: partitions whose leader must be asked for again (see invalidate)
        self._stale: set[tuple[str, int]] = set()
        self._last_refresh = -math.inf
        self.closed = False

    # --- connections --------------------------------------------------------------

    def _address_of(self, node: int | None) -> str:
        """The connection key's address part for ``node`` (None: bootstrap)."""
        if node is None or not self.routed:
            return BOOTSTRAP
        address = self.brokers.get(node)
        if address is None:
            raise BrokerUnavailableError(
                f"node {node}", "not in the cluster's metadata (not alive, or not known yet)"
            )
        return address

    async def connection(
        self,
        lane: str = "main",
        *,
        node: int | None = None,
        wait: bool = True,
        address: str | None = None,
    ) -> BrokerConnection:
        """A live connection for ``lane`` to broker ``node`` (None: the
        bootstrap connection), made (or re-made) if needed.

        Responses on a connection come in request order, so a request that
        waits (a long-polling fetch) holds up everything behind it. Work that
        must not wait behind a long poll (offset look-ups, group heartbeats)
        uses the "main" lane; the consumer's fetches use a "fetch" lane of
        their own.

        Raises BrokerUnavailableError when the attempt fails; callers that
        want to keep trying use :meth:`request` or their own loop. While
        the back-off after a failed attempt runs, ``wait`` False raises at
        once instead of sleeping it out: a producer whose leader died asks
        for metadata meanwhile and must be free to go to the new leader the
        moment it is named, not up to a second later.

        ``address`` ("host:port") connects to that broker instead of a node
        of the metadata (a group's coordinator, named by FindCoordinator).
        """
        key = (lane, address if address is not None else self._address_of(node))
        conn = self._conns.get(key)
        if conn is not None and not conn.broken:
            return conn
        lock = self._connect_locks.setdefault(key, trio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is not None and not conn.broken:
                return conn
            if self.closed:
                raise BrokerUnavailableError(self.bootstrap, "the client is closed")
            next_attempt = self._next_attempt.get(key, 0.0)
            if trio.current_time() < next_attempt:
                if not wait:
                    raise BrokerUnavailableError(key[1], "in back-off after a failed attempt")
                await trio.sleep_until(next_attempt)
            try:
                if key[1] == BOOTSTRAP:
                    conn = await self._connect_bootstrap()
                else:
                    conn = await self._connect(key[1])
            except BrokerUnavailableError:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(self.backoff_max, self.backoff * 2 ** min(failures - 1, 16))
                self._next_attempt[key] = trio.current_time() + delay * random.uniform(0.8, 1.2)
                raise
            self._failures.pop(key, None)
            self._conns[key] = conn
            return conn

    def ready_connection(self, lane: str = "main") -> BrokerConnection | None:
        """The bootstrap connection of ``lane`` if it is up and requests are
        not routed to leaders, else None; never connects, never waits (any
        thread: one dict look-up)."""
        if self.routed or self.closed:
            return None
        conn = self._conns.get((lane, BOOTSTRAP))
        if conn is None or conn.broken:
            return None
        return conn

    async def _connect_bootstrap(self) -> BrokerConnection:
        """The first bootstrap address that answers, from the last good one on."""
        addresses = self.bootstrap_addresses
        last: BrokerUnavailableError | None = None
        for i in range(len(addresses)):
            index = (self._bootstrap_index + i) % len(addresses)
            try:
                conn = await self._connect(addresses[index])
            except BrokerUnavailableError as exc:
                last = exc
                continue
            self._bootstrap_index = index
            return conn
        assert last is not None
        if len(addresses) > 1:
            raise BrokerUnavailableError(self.bootstrap, f"no bootstrap broker answers ({last})")
        raise last

    async def _connect(self, address: str) -> BrokerConnection:
        conn = await BrokerConnection.connect(
            self._nursery,
            address,
            limits=self.limits,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            ssl_context=self.ssl_context,
        )
        if self._authenticate is not None:
            try:
                await self._authenticate(conn)
            except BaseException:
                conn.abort("authentication did not succeed")
                raise
        return conn

    def drop(self, lane: str, reason: str, *, node: int | None = None) -> None:
        """Abandon a lane's connections (to ``node`` only, when given; their
        outstanding requests fail); the next use makes new ones. Cheaper than
        waiting for a long poll that is no longer wanted."""
        address = None if node is None else self._address_of(node)
        for key in [k for k in self._conns if k[0] == lane and address in (None, k[1])]:
            self._conns.pop(key).abort(reason)

    async def request(
        self,
        body: Any,
        *,
        timeout: float | None = None,
        lane: str = "main",
        node: int | None = None,
        address: str | None = None,
        on_response: Callable[[PendingResponse], None] | None = None,
    ) -> Any:
        """Send ``body`` on ``lane`` to ``node`` (None: the bootstrap
        connection; ``address``: that broker, see :meth:`connection`) and
        return the response, retrying connection failures until ``timeout``
        (default: the request timeout) passes. ``on_response``: see
        :meth:`BrokerConnection.request` (called for every attempt)."""
        limit = self.request_timeout if timeout is None else timeout
        deadline = trio.current_time() + limit
        last: Exception | None = None
        while True:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                if isinstance(last, BrokerUnavailableError):
                    raise last
                raise TimeoutError(f"no response from {self.bootstrap} within {limit:g} s")
            conn: BrokerConnection | None = None
            try:
                with trio.fail_after(remaining):
                    conn = await self.connection(lane, node=node, address=address)
                    return await conn.request(body, timeout=remaining, on_response=on_response)
            except BrokerUnavailableError as exc:
                last = exc
                if address is not None:
                    raise  # the caller finds that broker again
                self._bootstrap_failed(node, conn)
                if self.closed:
                    raise
            except TimeoutError:
                if address is None:
                    self._bootstrap_failed(node, conn)
                raise
            except trio.TooSlowError:
                if address is None:
                    self._bootstrap_failed(node, conn)
                continue

    def _bootstrap_failed(self, node: int | None, conn: BrokerConnection | None) -> None:
        """A request on the bootstrap connection got no answer (or the
        connection broke): the next one starts from the next bootstrap
        address. A broker that is paused (or cut off) still accepts
        connections in its kernel's backlog, so reconnecting to the one that
        answered last would find it again, and metadata would stay out of
        reach for as long as it does not answer."""
        if self._address_of(node) != BOOTSTRAP or len(self.bootstrap_addresses) < 2:
            return
        if conn is not None:
            conn.abort("no answer: trying the next bootstrap address")
        self._bootstrap_index = (self._bootstrap_index + 1) % len(self.bootstrap_addresses)

    def bootstrap_unanswered(self, conn: BrokerConnection | None) -> bool:
        """A request sent on the bootstrap connection ``conn`` while requests
        are not routed to leaders (the last metadata named one broker) got
        no answer, or ``conn`` broke. With several bootstrap addresses the
        next connection starts from the next one, and True tells the caller
        to ask for metadata there: the broker that was the only one named
        may be paused or cut off while the others lead its partitions now,
        and without a new answer the client would go back to it for as long
        as the fault lasts. Once per connection (its other requests fail with
        it); False when routed, with one bootstrap address, or when ``conn``
        is no longer the bootstrap connection (replaced already)."""
        if self.routed or conn is None or len(self.bootstrap_addresses) < 2:
            return False
        for key, current in self._conns.items():
            if current is conn and key[1] == BOOTSTRAP:
                break
        else:
            return False
        del self._conns[key]
        conn.abort("no answer: trying the next bootstrap address")
        self._bootstrap_index = (self._bootstrap_index + 1) % len(self.bootstrap_addresses)
        return True

    # --- leaders --------------------------------------------------------------------

    def leader_for(self, topic: str, partition: int) -> int | None:
        """Where a request for the partition goes: None for the bootstrap
        connection (a single broker), else the leader's node id, -1 when the
        leader is not known (refresh metadata and wait)."""
        if not self.routed:
            return None
        if (topic, partition) in self._stale:
            return -1
        leader = self.leaders.get((topic, partition), -1)
        return leader if leader in self.brokers else -1

    def invalidate(self, topic: str, partition: int) -> None:
        """Forget the partition's leader (it answered NOT_LEADER_OR_FOLLOWER,
        LEADER_NOT_AVAILABLE, or could not be reached): the next
        :meth:`refresh_if_stale` asks for it."""
        self._stale.add((topic, partition))

    def invalidate_node(self, node: int) -> None:
        """Forget every leader on ``node`` (its connection broke)."""
        for tp, leader in self.leaders.items():
            if leader == node:
                self._stale.add(tp)

    @property
    def stale(self) -> bool:
        return bool(self._stale)

    async def refresh_if_stale(self, topics: list[str] | None = None) -> bool:
        """Refresh metadata when a leader was invalidated (or ``topics`` has a
        partition without a known leader), at most once per reconnect
        back-off; True when it asked. Failures are logged, not raised: the
        caller retries its work after its own back-off."""
        wanted = set(topics or ())
        wanted.update(t for t, _p in self._stale)
        if self.routed:
            known = self.brokers
            wanted.update(t for (t, _p), leader in self.leaders.items() if leader not in known)
        if not wanted and not self._stale:
            return False
        if trio.current_time() - self._last_refresh < self.backoff:
            return False
        try:
            await self.refresh_metadata(sorted(wanted) if wanted else None)
        except (BrokerError, BrokerUnavailableError, TimeoutError) as exc:
            log.debug("metadata refresh failed, will retry: %s", exc)
        return True

    async def api_versions(self) -> Any:
        return await self.request(ApiVersionsRequest(client_name=CLIENT_NAME))

    async def refresh_metadata(
        self, topics: list[str] | None = None, *, create: bool = False
    ) -> MetadataResponse:
        """Fetch metadata for ``topics`` (all when None) and update the cache;
        ``create`` asks a broker running with auto_create_topics to create
        the missing ones (as a producer does)."""
        self._last_refresh = trio.current_time()
        response = await self.request(
            MetadataRequest(topics=topics, allow_auto_topic_creation=create)
        )
        if response.error_code:
            raise error_for_code(response.error_code, response.error_message or "")
        if response.brokers:
            self.brokers = {b.node_id: _address(b.host, b.port) for b in response.brokers}
            self.routed = len(self.brokers) > 1
        else:
            # a cluster broker that is not registered (just started, or its
            # session ended: cut off from etcd) names none: keep what is
            # known rather than forget every leader, and ask the next
            # bootstrap broker next time, since this one may stay out of the
            # cluster for as long as its fault lasts
            self._bootstrap_failed(None, self._conns.get(("main", BOOTSTRAP)))
        for t in response.topics:
            if t.error_code == 0:
                self.topics[t.name] = TopicInfo(t.name, len(t.partitions), t.internal)
                for p in t.partitions:
                    self.leaders[(t.name, p.partition)] = p.leader_id
                    if p.leader_id in self.brokers:
                        self._stale.discard((t.name, p.partition))
            else:
                self.topics.pop(t.name, None)
                for tp in [tp for tp in self.leaders if tp[0] == t.name]:
                    del self.leaders[tp]
                    self._stale.discard(tp)
        return response

    async def topic(self, name: str, *, create: bool = False) -> TopicInfo:
        """The topic's info, from the cache or the broker (which creates it
        when ``create`` and it runs with auto_create_topics).

        Raises the broker's error (UnknownTopicOrPartitionError) when the
        topic does not exist.
        """
        info = self.topics.get(name)
        if info is not None:
            return info
        response = await self.refresh_metadata([name], create=create)
        for _ in range(len(self.bootstrap_addresses) - 1):
            if response.brokers:
                break
            # a broker out of its cluster knows no topic: ask the next one
            response = await self.refresh_metadata([name], create=create)
        for t in response.topics:
            if t.name == name and t.error_code:
                raise error_for_code(t.error_code, t.error_message or "")
        info = self.topics.get(name)
        if info is None:
            raise BrokerError(f"metadata for {name!r} missing from the response")
        return info

    def abort(self, reason: str) -> None:
        """Close at once: the connections break, outstanding requests fail
        with BrokerUnavailableError and no new connection is made."""
        self.closed = True
        for conn in self._conns.values():
            conn.abort(reason)

    async def aclose(self) -> None:
        self.closed = True
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.aclose()


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def deadline_after(seconds: float | None) -> float:
    return math.inf if seconds is None else trio.current_time() + seconds
