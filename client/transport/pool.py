"""The client's way to the broker: one live connection, re-made when it breaks.

Every client (producer, consumer, admin) holds a :class:`BrokerClient`. It
connects lazily, reconnects after the broker restarts (with exponential
back-off between attempts, capped), caches topic metadata, and offers
``request()`` for one-shot calls that retry transient failures until a
deadline.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from typing import Any

import trio

from ..errors import BrokerError, BrokerUnavailableError, TimeoutError, error_for_code
from ..protocol import ApiVersionsRequest, Limits, MetadataRequest, MetadataResponse
from .connection import BrokerConnection, split_address

__all__ = ["BrokerClient", "TopicInfo"]

log = logging.getLogger(__name__)

CLIENT_NAME = "tailrace-python"


class TopicInfo:
    """What the client knows of a topic: its partition count and offsets."""

    __slots__ = ("internal", "name", "partitions")

    def __init__(self, name: str, partitions: int, internal: bool = False) -> None:
        self.name = name
        self.partitions = partitions
        self.internal = internal


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
        split_address(bootstrap)  # ValueError early for a malformed address
        self._nursery = nursery
        self.bootstrap = bootstrap
        self.limits = limits or Limits(max_frame_bytes=256 * 1024 * 1024, max_body_bytes=64 << 20)
        self.request_timeout = request_timeout_ms / 1000
        self.connect_timeout = connect_timeout_ms / 1000
        self.backoff = reconnect_backoff_ms / 1000
        self.backoff_max = reconnect_backoff_max_ms / 1000
        self.ssl_context = ssl_context
        self._authenticate = authenticate
        #: lane name -> its connection (see connection())
        self._conns: dict[str, BrokerConnection] = {}
        self._connect_lock = trio.Lock()
        self._failures = 0
        self._next_attempt = 0.0
        self.topics: dict[str, TopicInfo] = {}
        self.closed = False

    async def connection(self, lane: str = "main") -> BrokerConnection:
        """A live connection for ``lane``, made (or re-made) if needed.

        Responses on a connection come in request order, so a request that
        waits (a long-polling fetch) holds up everything behind it. Work that
        must not wait behind a long poll (offset look-ups, group heartbeats)
        uses the "main" lane; the consumer's fetches use a "fetch" lane of
        their own.

        Raises BrokerUnavailableError when the attempt fails; callers that
        want to keep trying use :meth:`request` or their own loop.
        """
        conn = self._conns.get(lane)
        if conn is not None and not conn.broken:
            return conn
        async with self._connect_lock:
            conn = self._conns.get(lane)
            if conn is not None and not conn.broken:
                return conn
            if self.closed:
                raise BrokerUnavailableError(self.bootstrap, "the client is closed")
            now = trio.current_time()
            if now < self._next_attempt:
                await trio.sleep_until(self._next_attempt)
            try:
                conn = await BrokerConnection.connect(
                    self._nursery,
                    self.bootstrap,
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
            except BrokerUnavailableError:
                self._failures += 1
                delay = min(self.backoff_max, self.backoff * 2 ** min(self._failures - 1, 16))
                self._next_attempt = trio.current_time() + delay * random.uniform(0.8, 1.2)
                raise
            self._failures = 0
            self._conns[lane] = conn
            return conn

    def drop(self, lane: str, reason: str) -> None:
        """Abandon a lane's connection (its outstanding requests fail); the
        next use makes a new one. Cheaper than waiting for a long poll that
        is no longer wanted."""
        conn = self._conns.pop(lane, None)
        if conn is not None:
            conn.abort(reason)

    async def request(self, body: Any, *, timeout: float | None = None, lane: str = "main") -> Any:
        """Send ``body`` on ``lane`` and return the response, retrying
        connection failures until ``timeout`` (default: the request timeout)
        passes."""
        limit = self.request_timeout if timeout is None else timeout
        deadline = trio.current_time() + limit
        last: Exception | None = None
        while True:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                if isinstance(last, BrokerUnavailableError):
                    raise last
                raise TimeoutError(f"no response from {self.bootstrap} within {limit:g} s")
            try:
                with trio.fail_after(remaining):
                    conn = await self.connection(lane)
                    return await conn.request(body, timeout=remaining)
            except BrokerUnavailableError as exc:
                last = exc
                if self.closed:
                    raise
            except trio.TooSlowError:
                continue

    async def api_versions(self) -> Any:
        return await self.request(ApiVersionsRequest(client_name=CLIENT_NAME))

    async def refresh_metadata(
        self, topics: list[str] | None = None, *, create: bool = False
    ) -> MetadataResponse:
        """Fetch metadata for ``topics`` (all when None) and update the cache;
        ``create`` asks a broker running with auto_create_topics to create
        the missing ones (as a producer does)."""
        response = await self.request(
            MetadataRequest(topics=topics, allow_auto_topic_creation=create)
        )
        if response.error_code:
            raise error_for_code(response.error_code, response.error_message or "")
        for t in response.topics:
            if t.error_code == 0:
                self.topics[t.name] = TopicInfo(t.name, len(t.partitions), t.internal)
            else:
                self.topics.pop(t.name, None)
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


def deadline_after(seconds: float | None) -> float:
    return math.inf if seconds is None else trio.current_time() + seconds
