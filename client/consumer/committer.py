"""Committing and reading a group's offsets, in order.

Commits go out one at a time, in the order they were made, on a connection
of their own (the fetch connection always has a long-polling fetch in
flight, and responses come back in request order: a commit behind it would
wait for it). One at a time means a later commit can never overtake an
earlier one, not even across a reconnect, so what the broker ends up with is
always the newest commit. Each commit carries the member's id and epoch
*at the time it is sent* (a rebalance may have moved the epoch since it was
queued); a consumer outside group management (``assign()``) sends member
epoch -1.

Commits and offset fetches go to the group's coordinator (transport/coordinator.py:
found with FindCoordinator, found again when it moves). A commit is
answered once the broker made it durable (in a cluster: once the in-sync
replicas of the offsets partition hold it). Retriable failures (no
connection, the coordinator still loading or moved) are retried until
``request_timeout_ms``; anything else fails the commit's handle with the
broker's error.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import trio

from ..errors import (
    BrokerUnavailableError,
    ClientClosedError,
    TailraceError,
    TimeoutError,
    error_for_code,
)
from ..protocol import (
    OffsetCommitPartition,
    OffsetCommitRequest,
    OffsetCommitTopic,
    OffsetFetchRequest,
    OffsetFetchTopic,
)
from ..transport.coordinator import CoordinatorClient
from ..transport.pool import BrokerClient
from .record import TopicPartition

__all__ = ["CommitHandle", "OffsetAndMetadata", "OffsetCommitter"]

log = logging.getLogger(__name__)


class OffsetAndMetadata(NamedTuple):
    """A committed offset: the next offset to consume, its metadata string
    and the broker time of the commit (ms)."""

    offset: int
    metadata: str | None = None
    commit_timestamp: int = -1


class CommitHandle:
    """The outcome of one commit, awaitable from trio (``await handle.wait()``)
    and from other threads (``handle.result(timeout)``)."""

    __slots__ = ("_callbacks", "_done", "_error", "_event", "offsets")

    def __init__(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.offsets = offsets
        self._event = trio.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[CommitHandle], Any]] = []

    def _finish(self, error: BaseException | None) -> None:
        if self._done.is_set():
            return
        self._error = error
        self._done.set()
        self._event.set()
        for fn in self._callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("commit callback failed")

    def done(self) -> bool:
        return self._done.is_set()

    def exception(self) -> BaseException | None:
        return self._error

    def add_done_callback(self, fn: Callable[[CommitHandle], Any]) -> None:
        """Call ``fn(handle)`` once done (on the consumer's trio thread)."""
        if self._done.is_set():
            fn(self)
        else:
            self._callbacks.append(fn)

    async def wait(self) -> None:
        """Wait (in trio) for the commit; raise its error."""
        await self._event.wait()
        if self._error is not None:
            raise self._error

    def result(self, timeout: float | None = None) -> None:
        """Wait (from a thread other than the consumer's) and raise its error."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"commit not done within {timeout} s")
        if self._error is not None:
            raise self._error


class OffsetCommitter:
    """Sends a group's commits in order and reads its committed offsets."""

    def __init__(
        self,
        client: BrokerClient,
        group_id: str,
        *,
        member: Callable[[], tuple[str, int]],
        retry_backoff: float,
    ) -> None:
        #: the group's requests go to its coordinator (transport/coordinator.py)
        self.client = CoordinatorClient(client, group_id)
        self.group_id = group_id
        #: () -> (member_id, member_epoch) to send with a commit now
        self.member = member
        self.retry_backoff = retry_backoff
        self._queue: deque[CommitHandle] = deque()
        self._wake = trio.Event()
        self._closed = False
        #: the last offset committed per partition (by this consumer)
        self.last_committed: dict[TopicPartition, int] = {}

    def submit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> CommitHandle:
        """Queue a commit; returns at once."""
        handle = CommitHandle(dict(offsets))
        if self._closed:
            handle._finish(ClientClosedError("the consumer is closed"))
            return handle
        if not offsets:
            handle._finish(None)
            return handle
        self._queue.append(handle)
        self._wake.set()
        return handle

    async def drain(self) -> None:
        """Wait until every commit queued so far is done (whatever its outcome)."""
        if self._queue:
            await self._queue[-1]._event.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                while not self._queue:
                    await self._wake.wait()
                    self._wake = trio.Event()
                handle = self._queue[0]
                try:
                    await self._send(handle)
                except TailraceError as exc:
                    handle._finish(exc)
                else:
                    handle._finish(None)
                self._queue.popleft()
        finally:
            self._closed = True
            for handle in self._queue:
                handle._finish(ClientClosedError("the consumer closed before the commit was sent"))
            self._queue.clear()

    async def _send(self, handle: CommitHandle) -> None:
        by_topic: dict[str, list[OffsetCommitPartition]] = {}
        for tp, om in handle.offsets.items():
            by_topic.setdefault(tp.topic, []).append(
                OffsetCommitPartition(
                    partition=tp.partition, offset=om.offset, metadata=om.metadata
                )
            )
        topics = [OffsetCommitTopic(name=t, partitions=ps) for t, ps in by_topic.items()]
        deadline = trio.current_time() + self.client.request_timeout
        while True:
            member_id, epoch = self.member()
            request = OffsetCommitRequest(
                group_id=self.group_id, member_id=member_id, member_epoch=epoch, topics=topics
            )
            try:
                response = await self.client.request(
                    request, timeout=max(deadline - trio.current_time(), 0.001)
                )
            except (BrokerUnavailableError, TimeoutError):
                if trio.current_time() >= deadline:
                    raise
                await trio.sleep(self.retry_backoff)
                continue
            if response.error_code:
                error = error_for_code(response.error_code, response.error_message or "")
                if error.retriable and trio.current_time() < deadline:
                    await trio.sleep(self.retry_backoff)
                    continue
                raise error
            first: TailraceError | None = None
            for t in response.topics:
                for p in t.partitions:
                    tp = TopicPartition(t.name, p.partition)
                    if p.error_code:
                        if first is None:
                            first = error_for_code(p.error_code, p.error_message or "")
                    elif tp in handle.offsets:
                        self.last_committed[tp] = handle.offsets[tp].offset
            if first is not None:
                raise first
            return

    async def fetch(
        self, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Committed offsets of ``partitions`` (every committed one when
        None); partitions without a committed offset are left out."""
        topics = None
        if partitions is not None:
            by_topic: dict[str, list[int]] = {}
            for tp in partitions:
                by_topic.setdefault(tp.topic, []).append(tp.partition)
            topics = [OffsetFetchTopic(name=t, partitions=ps) for t, ps in by_topic.items()]
        deadline = trio.current_time() + self.client.request_timeout
        while True:
            try:
                response = await self.client.request(
                    OffsetFetchRequest(group_id=self.group_id, topics=topics),
                    timeout=max(deadline - trio.current_time(), 0.001),
                )
            except BrokerUnavailableError:  # no coordinator now: find it again
                if trio.current_time() >= deadline:
                    raise
                await trio.sleep(self.retry_backoff)
                continue
            if response.error_code:
                error = error_for_code(response.error_code, response.error_message or "")
                if error.retriable and trio.current_time() < deadline:
                    await trio.sleep(self.retry_backoff)
                    continue
                raise error
            break
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for t in response.topics:
            for p in t.partitions:
                if p.error_code:
                    raise error_for_code(p.error_code, p.error_message or "")
                if p.offset >= 0:
                    out[TopicPartition(t.name, p.partition)] = OffsetAndMetadata(
                        p.offset, p.metadata, p.commit_timestamp_ms
                    )
        return out
