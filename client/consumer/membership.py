"""The member side of the group protocol: the heartbeat loop.

The broker decides the assignment (broker/coordinator/); a member only
reports what it subscribes to and what it owns, and learns what it may own.
This task runs in the consumer's nursery and keeps a session alive with
ConsumerGroupHeartbeat requests on a connection of its own (the broker holds
a heartbeat as a long poll, which would delay anything behind it).

The split of work follows Kafka's consumer: this task never takes a
partition away from the consumer itself. It records the broker's latest
answer (``target``, or ``lost`` when the broker no longer knows the member)
and tells the consumer, which applies it inside ``poll``: there, between
two polls, the user has finished with the records it was given, so revoked
partitions can be committed and dropped without losing or repeating a
record. Once applied (``applied``), the next heartbeat reports the new
``owned`` set, which acknowledges the revocation and lets the broker give
the partitions to their new owner.

Loop, per heartbeat:

* while the consumer still has to apply an answer, wait for it (at most one
  heartbeat interval, to keep the session) and send with ``max_wait_ms`` 0;
* otherwise send with ``max_wait_ms`` = the interval: the broker answers as
  soon as something changes for this member.

Errors: UNKNOWN_MEMBER_ID (session expired) and FENCED_MEMBER_EPOCH make the
member lost: the consumer drops its partitions (``on_lost``), then the loop
rejoins (with the same member id after a fence, a new one otherwise).
Retriable errors and lost connections are retried after a back-off.
Anything else (UNRELEASED_INSTANCE_ID, INVALID_SESSION_TIMEOUT, ...) is fatal:
``error`` is set and ``poll`` raises it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..errors import (
    BrokerError,
    BrokerUnavailableError,
    ErrorCode,
    TimeoutError,
    error_for_code,
)
from ..protocol import ConsumerGroupHeartbeatRequest, TopicPartitions
from ..transport.coordinator import CoordinatorClient
from ..transport.pool import BrokerClient
from .record import TopicPartition

__all__ = ["GroupMembership"]

log = logging.getLogger(__name__)


def _topic_partitions(tps: frozenset[TopicPartition]) -> list[TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(tps):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return [TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


class GroupMembership:
    """One consumer's membership in a group (see the module docstring)."""

    def __init__(
        self,
        client: BrokerClient,
        group_id: str,
        *,
        notify: Callable[[], None],
        instance_id: str | None = None,
        session_timeout_ms: int = 45_000,
        rebalance_timeout_ms: int = 300_000,
        retry_backoff: float = 0.1,
        client_id: str = "",
    ) -> None:
        #: the group's requests go to its coordinator (transport/coordinator.py)
        self.client = CoordinatorClient(client, group_id)
        self.group_id = group_id
        self.notify = notify
        self.instance_id = instance_id
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.retry_backoff = retry_backoff
        self.client_id = client_id
        self.member_id = ""
        self.epoch = 0
        #: the subscription; None until subscribe()
        self.topics: tuple[str, ...] | None = None
        #: the broker's latest assignment for this member
        self.target: frozenset[TopicPartition] | None = None
        #: what the consumer has applied (and so owns)
        self.owned: frozenset[TopicPartition] = frozenset()
        #: the broker no longer counts this member: drop everything, rejoin
        self.lost = False
        #: a fatal error for poll to raise
        self.error: BrokerError | None = None
        self.interval = 3.0
        self._send_now = trio.Event()
        self._in_flight: trio.CancelScope | None = None
        self._leaving = False
        self._stopped = trio.Event()

    # --- what the consumer calls ------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether the consumer has something to apply."""
        return (
            self.error is not None
            or self.lost
            or (self.target is not None and self.target != self.owned)
        )

    @property
    def joined(self) -> bool:
        return bool(self.member_id) and self.epoch > 0 and not self.lost

    def commit_identity(self) -> tuple[str, int]:
        """(member_id, member_epoch) for a commit sent now."""
        if self.joined:
            return self.member_id, self.epoch
        return "", -1

    def subscribe(self, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self._poke()

    def applied(self, owned: frozenset[TopicPartition]) -> None:
        """The consumer now owns exactly ``owned``; heartbeat it at once."""
        self.owned = owned
        if self.lost and not owned:
            self.lost = False
            self.target = None
        self._poke()

    def _poke(self) -> None:
        self._send_now.set()
        if self._in_flight is not None:
            self._in_flight.cancel()

    # --- the loop ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while not self._leaving and self.error is None:
                if self.topics is None or self.lost:
                    await self._send_now.wait()
                    self._send_now = trio.Event()
                    continue
                await self._heartbeat()
        finally:
            self._stopped.set()

    async def _heartbeat(self) -> None:
        max_wait = 0
        if self.target is not None and self.target != self.owned:
            # The consumer is applying the last answer: give it until the
            # session needs a heartbeat, then report whatever it owns.
            with trio.move_on_after(self.interval):
                await self._send_now.wait()
        elif self.epoch > 0:
            max_wait = int(self.interval * 1000)
        self._send_now = trio.Event()
        if self._leaving:
            return
        request = ConsumerGroupHeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=self.epoch,
            instance_id=self.instance_id,
            subscribed_topics=list(self.topics or ()),
            owned_partitions=_topic_partitions(self.owned),
            session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            max_wait_ms=max_wait,
            client_id=self.client_id,
        )
        response = None
        try:
            with trio.CancelScope() as self._in_flight:
                response = await self.client.request(
                    request, timeout=max_wait / 1000 + self.client.request_timeout
                )
        except (BrokerUnavailableError, TimeoutError) as exc:
            log.debug("group %s: heartbeat failed, retrying: %s", self.group_id, exc)
            await trio.sleep(self.retry_backoff)
            return
        finally:
            self._in_flight = None
        if response is None:
            return  # cancelled by subscribe/applied/leave: send a fresh one
        if response.error_code:
            if self._error(response.error_code, response.error_message or ""):
                await trio.sleep(self.retry_backoff)
            return
        if self.epoch == 0:
            log.info(
                "group %s: joined as %s (epoch %d)",
                self.group_id,
                response.member_id,
                response.member_epoch,
            )
        self.member_id = response.member_id
        self.epoch = response.member_epoch
        self.interval = max(response.heartbeat_interval_ms, 1) / 1000
        target = frozenset(
            TopicPartition(t.topic, p) for t in response.assignment or () for p in t.partitions
        )
        if target != self.target:
            self.target = target
            if target != self.owned:
                self.notify()

    def _error(self, code: int, message: str) -> bool:
        """Handle a heartbeat error; returns whether to back off first."""
        error = error_for_code(code, message)
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_MEMBER_EPOCH):
            log.warning("group %s: member %s lost: %s", self.group_id, self.member_id, message)
            if code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            self.epoch = 0
            self.target = None
            if self.owned:
                self.lost = True
                self.notify()
            return False
        if error.retriable:
            log.debug("group %s: heartbeat: %s; retrying", self.group_id, message)
            return True
        log.error("group %s: heartbeat refused: %s", self.group_id, message)
        self.error = error
        self.notify()
        return False

    # --- leaving ---------------------------------------------------------------

    async def leave(self) -> None:
        """Stop heartbeating and leave the group (a static member leaves
        with epoch -2: the broker keeps its assignment for the session
        timeout, so a restart within it takes the partitions back without a
        rebalance)."""
        self._leaving = True
        self._poke()
        await self._stopped.wait()
        if not self.member_id or self.epoch <= 0:
            return
        request = ConsumerGroupHeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=-2 if self.instance_id is not None else -1,
            instance_id=self.instance_id,
            session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
        )
        try:
            response = await self.client.request(request)
        except (BrokerUnavailableError, TimeoutError) as exc:
            log.warning(
                "group %s: could not leave (the session will expire): %s", self.group_id, exc
            )
            return
        if response.error_code:
            log.warning("group %s: leave refused: %s", self.group_id, response.error_message or "")
        else:
            log.info("group %s: member %s left", self.group_id, self.member_id)
        self.epoch = -1
