"""AsyncConsumer: read partitions from any offset, or as a member of a
consumer group, inside trio.

Group mode (``group_id`` set): ``subscribe(topics)`` joins the group; the
broker assigns partitions (see membership.py for how a rebalance reaches
the consumer and why it is applied inside ``poll``). Positions start at the
group's committed offsets, else at ``auto_offset_reset``. Offsets are
committed automatically every ``auto_commit_interval_ms`` (at the start of a
poll, so only records the application has finished with are committed),
before partitions are revoked and on close; or by hand with ``commit()``
(waits until durable) and ``commit_async()``. With ``assign()`` instead of
``subscribe()`` the consumer is outside group management but still commits
to and starts from the group's offsets (Kafka's behaviour).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import ClientClosedError, TailraceError
from ..protocol import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, Limits
from ..security import SecurityConfig
from ..transport.auth import connection_options
from ..transport.pool import BrokerClient
from .committer import CommitHandle, OffsetAndMetadata, OffsetCommitter
from .fetcher import Fetcher
from .membership import GroupMembership
from .record import Record, RecordList, TopicPartition

__all__ = ["AsyncConsumer", "ConsumerConfig", "RebalanceCallback"]

log = logging.getLogger(__name__)

#: on_assigned / on_revoked / on_lost: called with the set of partitions;
#: may be a plain function or a coroutine function.
RebalanceCallback = Callable[[set[TopicPartition]], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Consumer settings (names follow Kafka's where one exists).

    * ``auto_offset_reset``: where a partition without a position starts,
      and where one whose offset left the log goes: "earliest", "latest", or
      "none" (raise OffsetOutOfRangeError).
    * ``fetch_min_bytes`` / ``fetch_max_wait_ms``: the long-poll: the broker
      answers once this many bytes are ready or this much time passed.
    * ``fetch_max_bytes`` / ``max_partition_fetch_bytes``: soft limits per
      fetch and per partition (a bigger first batch still comes).
    * ``max_buffer_bytes``: fetched-but-unconsumed bytes kept at most.
    * ``max_poll_records``: records one poll returns at most.
    * ``group_id``: the consumer group (needed by subscribe and commit).
    * ``group_instance_id``: static membership: a restart within the
      session timeout takes the same partitions back without a rebalance.
    * ``enable_auto_commit`` / ``auto_commit_interval_ms``: commit the
      positions of consumed records periodically, before a revocation and on
      close (Kafka's defaults: on, every 5 s).
    * ``session_timeout_ms``: the broker removes the member after this long
      without a heartbeat (within the broker's groups.session_timeout bounds).
    * ``rebalance_timeout_ms``: the broker removes the member when it keeps
      a revoked partition this long (poll must be called to give it up).
    * ``security``: TLS and SASL settings (:class:`SecurityConfig`); None
      for a plaintext listener without authentication.
    """

    auto_offset_reset: str = "latest"
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    fetch_max_bytes: int = 50 * 1024 * 1024
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    max_buffer_bytes: int = 64 * 1024 * 1024
    max_poll_records: int = 10_000
    request_timeout_ms: int = 30_000
    connect_timeout_ms: int = 10_000
    retry_backoff_ms: int = 100
    group_id: str | None = None
    group_instance_id: str | None = None
    enable_auto_commit: bool = True
    auto_commit_interval_ms: int = 5_000
    session_timeout_ms: int = 45_000
    rebalance_timeout_ms: int = 300_000
    client_id: str = "tailrace-python"
    security: SecurityConfig | None = None

    def __post_init__(self) -> None:
        if self.security is not None and not isinstance(self.security, SecurityConfig):
            raise TypeError("security must be a tailrace.client.security.SecurityConfig")
        if self.auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError("auto_offset_reset must be 'earliest', 'latest' or 'none'")
        for name in (
            "fetch_max_bytes",
            "max_partition_fetch_bytes",
            "max_buffer_bytes",
            "max_poll_records",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.group_id is not None and (not isinstance(self.group_id, str) or not self.group_id):
            raise ValueError("group_id must be a non-empty string")
        if self.group_instance_id is not None and self.group_id is None:
            raise ValueError("group_instance_id needs a group_id")
        for name in ("auto_commit_interval_ms", "session_timeout_ms", "rebalance_timeout_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def _tp(item: Any) -> TopicPartition:
    topic, partition = item
    if not isinstance(topic, str) or not isinstance(partition, int):
        raise TypeError("partitions are (topic: str, partition: int) pairs")
    return TopicPartition(topic, partition)


class AsyncConsumer:
    """Reads records from assigned partitions, trio-native::

        async with AsyncConsumer("127.0.0.1:7420", auto_offset_reset="earliest") as c:
            c.assign([("events", 0)])
            async for record in c:
                ...

    or as a member of a consumer group (the broker assigns the partitions)::

        async with AsyncConsumer("127.0.0.1:7420", group_id="billing") as c:
            c.subscribe(["events"], on_revoked=..., on_assigned=...)
            async for record in c:
                ...

    The next fetch is in flight while records are being used; every batch's
    CRC-32C is checked before a record of it is returned. After a broker
    restart the consumer reconnects and resumes at its position.
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self.bootstrap = bootstrap
        self.config = ConsumerConfig(**config)
        self._stack: AsyncExitStack | None = None
        self._client: BrokerClient | None = None
        self._fetcher: Fetcher | None = None
        self._closed = False
        self._committer: OffsetCommitter | None = None
        self._membership: GroupMembership | None = None
        self._subscribed = False
        self._assigned_by_user = False
        self._on_assigned: RebalanceCallback | None = None
        self._on_revoked: RebalanceCallback | None = None
        self._on_lost: RebalanceCallback | None = None
        #: something for poll to do first (a rebalance, an auto commit)
        self._attention = False
        self._auto_commit_due = False

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.config
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._client = BrokerClient(
                nursery,
                self.bootstrap,
                limits=Limits(
                    max_frame_bytes=cfg.fetch_max_bytes + (16 << 20), max_body_bytes=16 << 20
                ),
                request_timeout_ms=cfg.request_timeout_ms,
                connect_timeout_ms=cfg.connect_timeout_ms,
                **connection_options(cfg.security),
            )
            self._fetcher = Fetcher(
                self._client,
                auto_offset_reset=cfg.auto_offset_reset,
                fetch_min_bytes=cfg.fetch_min_bytes,
                fetch_max_wait_ms=cfg.fetch_max_wait_ms,
                fetch_max_bytes=cfg.fetch_max_bytes,
                max_partition_fetch_bytes=cfg.max_partition_fetch_bytes,
                max_buffer_bytes=cfg.max_buffer_bytes,
                retry_backoff=cfg.retry_backoff_ms / 1000,
            )
            await nursery.start(self._fetcher.run)
            if cfg.group_id is not None:
                await self._start_group(nursery, cfg.group_id)
            stack.callback(nursery.cancel_scope.cancel)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def _start_group(self, nursery: trio.Nursery, group_id: str) -> None:
        cfg = self.config

        def client() -> BrokerClient:
            return BrokerClient(
                nursery,
                self.bootstrap,
                request_timeout_ms=cfg.request_timeout_ms,
                connect_timeout_ms=cfg.connect_timeout_ms,
                **connection_options(cfg.security),
            )

        self._membership = GroupMembership(
            client(),
            group_id,
            notify=self._notify,
            instance_id=cfg.group_instance_id,
            session_timeout_ms=cfg.session_timeout_ms,
            rebalance_timeout_ms=cfg.rebalance_timeout_ms,
            retry_backoff=cfg.retry_backoff_ms / 1000,
            client_id=cfg.client_id,
        )
        self._committer = OffsetCommitter(
            client(),
            group_id,
            member=self._membership.commit_identity,
            retry_backoff=cfg.retry_backoff_ms / 1000,
        )
        assert self._fetcher is not None
        self._fetcher.committed_lookup = self._committed_positions
        await nursery.start(self._committer.run)
        await nursery.start(self._membership.run)
        if cfg.enable_auto_commit:
            nursery.start_soon(self._auto_commit_timer)

    @property
    def _f(self) -> Fetcher:
        if self._fetcher is None or self._closed:
            raise ClientClosedError("the consumer is not running")
        return self._fetcher

    # --- assignment and positions ----------------------------------------------

    def assign(self, partitions: Iterable[Any]) -> None:
        """Read exactly these (topic, partition) pairs (replacing any before),
        outside group management."""
        if self._subscribed:
            raise ValueError("this consumer subscribed to topics: assign() cannot be mixed in")
        self._assigned_by_user = True
        self._f.assign([_tp(p) for p in partitions])

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        on_assigned: RebalanceCallback | None = None,
        on_revoked: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        """Join the group (``group_id``) reading ``topics``; the broker
        assigns the partitions. Topics created later are picked up.

        ``on_revoked(partitions)`` runs inside ``poll`` before partitions are
        taken away (after the auto commit, if on), so the application may
        commit; ``on_assigned(partitions)`` after new ones are added (it may
        seek); ``on_lost(partitions)`` (default: ``on_revoked``) when the
        broker dropped the member (session timeout, fenced): committing is
        no longer possible then. Calling subscribe again changes the topics.
        """
        self._f  # noqa: B018 - ClientClosedError when not running
        if self._membership is None:
            raise ValueError("subscribe() needs a group_id")
        if self._assigned_by_user:
            raise ValueError("this consumer uses assign(): subscribe() cannot be mixed in")
        names = tuple(sorted(set(topics)))
        if not names or not all(isinstance(t, str) and t for t in names):
            raise ValueError("subscribe to one or more topic names")
        self._subscribed = True
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_lost = on_lost
        self._membership.subscribe(names)

    def subscription(self) -> set[str]:
        m = self._membership
        return set(m.topics or ()) if m is not None else set()

    @property
    def member_id(self) -> str:
        """The member id the broker gave (empty until joined)."""
        return self._membership.member_id if self._membership is not None else ""

    @property
    def member_epoch(self) -> int:
        return self._membership.epoch if self._membership is not None else -1

    def assignment(self) -> set[TopicPartition]:
        return set(self._f.partitions)

    def seek(self, partition: Any, offset: int) -> None:
        """The next record returned for ``partition`` has ``offset``."""
        self._f.seek(_tp(partition), offset)

    async def seek_to_beginning(self, partitions: Iterable[Any] | None = None) -> None:
        await self._seek_to(partitions, EARLIEST_TIMESTAMP)

    async def seek_to_end(self, partitions: Iterable[Any] | None = None) -> None:
        await self._seek_to(partitions, LATEST_TIMESTAMP)

    async def _seek_to(self, partitions: Iterable[Any] | None, which: int) -> None:
        f = self._f
        tps = list(f.partitions) if partitions is None else [_tp(p) for p in partitions]
        offsets = await f.list_offsets({tp: which for tp in tps})
        for tp, (offset, _ts) in offsets.items():
            f.seek(tp, offset)

    async def offsets_for_times(
        self, timestamps: dict[Any, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        """For each partition, the (offset, timestamp) of the first record at
        or after the timestamp (ms), or None when there is none."""
        query = {_tp(k): v for k, v in timestamps.items()}
        for tp, ts in query.items():
            if ts < 0:
                raise ValueError(f"timestamp for {tp.topic}/{tp.partition} must not be negative")
        found = await self._f.list_offsets(query)
        return {tp: (None if found[tp][0] < 0 else found[tp]) for tp in query}

    async def seek_to_time(self, timestamps: dict[Any, int]) -> None:
        """Seek each partition to its first record at or after the timestamp
        (to the end when there is none)."""
        found = await self.offsets_for_times(timestamps)
        missing = [tp for tp, v in found.items() if v is None]
        for tp, v in found.items():
            if v is not None:
                self._f.seek(tp, v[0])
        if missing:
            await self.seek_to_end(missing)

    async def position(self, partition: Any) -> int:
        """The offset of the next record ``poll`` will return for ``partition``."""
        tp = _tp(partition)
        state = self._f.partitions.get(tp)
        if state is None:
            raise ValueError(f"{tp.topic}/{tp.partition} is not assigned")
        if state.position is None:
            await self._f.resolve_positions()
        assert state.position is not None
        return state.position

    def highwater(self, partition: Any) -> int:
        """The partition's high watermark from the last fetch (-1 if none yet)."""
        state = self._f.partitions.get(_tp(partition))
        return -1 if state is None else state.high_watermark

    # --- reading -------------------------------------------------------------------

    async def poll(self, timeout_ms: float = 1000, max_records: int | None = None) -> RecordList:
        """Records from the assigned partitions, waiting up to ``timeout_ms``
        for the first; empty when none came in time. The result is a
        read-only sequence of :class:`Record` (see RecordList)."""
        f = self._f
        if self._attention:
            await self._attend()
        limit = self.config.max_poll_records if max_records is None else max_records
        await f.resolve_positions()
        records = f.take(limit)
        if records:
            return records
        with trio.move_on_after(max(timeout_ms, 0) / 1000):
            while True:
                await f.wait_for_data()
                if self._attention:
                    await self._attend()
                await f.resolve_positions()
                records = f.take(limit)
                if records:
                    return records
                await trio.lowlevel.checkpoint()
        return RecordList()

    def __aiter__(self) -> AsyncIterator[Record]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Record]:
        while True:
            for record in await self.poll(timeout_ms=1000):
                yield record

    # --- groups: rebalances ---------------------------------------------------------

    def _notify(self) -> None:
        """The membership has news: poll applies it (waking a waiting poll)."""
        self._attention = True
        if self._fetcher is not None:
            self._fetcher.interrupt()

    async def _attend(self) -> None:
        self._attention = False
        m = self._membership
        if m is not None and m.pending:
            if m.error is not None:
                self._attention = True  # every poll raises it
                raise m.error
            # Applying must not stop half-way (a poll timing out here would
            # leave revoked partitions neither fetched nor acknowledged).
            with trio.CancelScope(shield=True):
                await self._apply_assignment(m)
        if self._auto_commit_due:
            self._auto_commit_due = False
            self._auto_commit()

    async def _apply_assignment(self, m: GroupMembership) -> None:
        f = self._f
        failure: BaseException | None = None
        if m.lost:
            lost = set(m.owned)
            f.remove(lost)
            m.applied(frozenset())
            log.warning("group %s: lost partitions %s", m.group_id, _names(lost))
            await self._call(self._on_lost or self._on_revoked, lost)
            return
        target = m.target
        assert target is not None
        owned = m.owned
        revoked = set(owned - target)
        added = set(target - owned)
        if revoked:
            if self.config.enable_auto_commit:
                try:
                    await self._commit_positions(revoked).wait()
                except TailraceError as exc:
                    log.warning("group %s: commit before revocation failed: %s", m.group_id, exc)
            try:
                await self._call(self._on_revoked, revoked)
            except Exception as exc:
                failure = exc
            f.remove(revoked)
        if added:
            f.add(added)
        m.applied(target)
        log.info(
            "group %s: epoch %d: revoked %s, assigned %s",
            m.group_id,
            m.epoch,
            _names(revoked) or "nothing",
            _names(added) or "nothing",
        )
        if added:
            try:
                await self._call(self._on_assigned, added)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    async def _call(self, callback: RebalanceCallback | None, partitions: set) -> None:
        if callback is None or not partitions:
            return
        result = callback(set(partitions))
        if inspect.isawaitable(result):
            await result

    # --- groups: committed offsets --------------------------------------------------

    def _group(self) -> OffsetCommitter:
        self._f  # noqa: B018 - ClientClosedError when not running
        if self._committer is None:
            raise ValueError("committing needs a group_id")
        return self._committer

    async def _committed_positions(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        found = await self._group().fetch(tps)
        return {tp: om.offset for tp, om in found.items()}

    def _commit_positions(self, tps: Iterable[TopicPartition]) -> CommitHandle:
        positions = self._f.positions()
        return self._group().submit(
            {tp: OffsetAndMetadata(positions[tp]) for tp in tps if tp in positions}
        )

    async def _auto_commit_timer(self) -> None:
        interval = self.config.auto_commit_interval_ms / 1000
        while True:
            await trio.sleep(interval)
            self._auto_commit_due = True
            self._attention = True

    def _auto_commit(self) -> None:
        committer = self._group()
        last = committer.last_committed
        changed = {
            tp: OffsetAndMetadata(pos)
            for tp, pos in self._f.positions().items()
            if last.get(tp) != pos
        }
        if changed:
            handle = committer.submit(changed)
            handle.add_done_callback(_log_auto_commit_failure)

    def commit_async(self, offsets: Mapping[Any, Any] | None = None) -> CommitHandle:
        """Commit ``offsets`` ({(topic, partition): offset, or (offset,
        metadata)}), by default the position of every assigned partition;
        returns a handle at once (``await handle.wait()``). Commits reach
        the broker in the order they were made."""
        committer = self._group()
        if offsets is None:
            wanted = {tp: OffsetAndMetadata(pos) for tp, pos in self._f.positions().items()}
        else:
            wanted = {_tp(k): _offset_and_metadata(v) for k, v in offsets.items()}
        return committer.submit(wanted)

    async def commit(self, offsets: Mapping[Any, Any] | None = None) -> None:
        """Like commit_async, and wait until the broker made it durable.
        Raises the broker's error (NotAssignedError, FencedMemberEpochError,
        OffsetOutOfRangeError, ...)."""
        await self.commit_async(offsets).wait()

    async def committed(self, partition: Any) -> OffsetAndMetadata | None:
        """The group's committed offset for ``partition`` (None if none)."""
        tp = _tp(partition)
        return (await self._group().fetch([tp])).get(tp)

    # --- closing ------------------------------------------------------------------

    async def close(self) -> None:
        """Commit (with auto commit on), revoke (on_revoked) and leave the
        group, so the partitions move at once; then close the connections."""
        if self._closed:
            return
        try:
            if self._committer is not None and self._fetcher is not None:
                with trio.move_on_after(self.config.request_timeout_ms / 1000):
                    await self._leave_group()
        finally:
            self._closed = True
            try:
                if self._client is not None:
                    await self._client.aclose()
            finally:
                # Always, even when cancelled: the stack holds our nursery.
                if self._stack is not None:
                    await self._stack.aclose()

    async def _leave_group(self) -> None:
        m = self._membership
        committer = self._committer
        assert m is not None
        assert committer is not None
        owned = set(self._f.partitions)
        if self.config.enable_auto_commit and owned and not (m.lost or m.error):
            try:
                await self._commit_positions(owned).wait()
            except TailraceError as exc:
                log.warning("group %s: commit on close failed: %s", m.group_id, exc)
        await committer.drain()
        if self._subscribed and owned:
            try:
                if m.lost:
                    await self._call(self._on_lost or self._on_revoked, owned)
                else:
                    await self._call(self._on_revoked, owned)
            except Exception:
                log.exception("group %s: on_revoked failed while closing", m.group_id)
            self._f.remove(owned)
            m.owned = frozenset()
        await m.leave()


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{t}/{p}" for t, p in sorted(tps))


def _offset_and_metadata(value: Any) -> OffsetAndMetadata:
    if isinstance(value, OffsetAndMetadata):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return OffsetAndMetadata(value)
    if isinstance(value, tuple) and len(value) == 2:
        offset, metadata = value
        if isinstance(offset, int) and (metadata is None or isinstance(metadata, str)):
            return OffsetAndMetadata(offset, metadata)
    raise TypeError("an offset to commit is an int or an (offset, metadata) pair")


def _log_auto_commit_failure(handle: CommitHandle) -> None:
    error = handle.exception()
    if error is not None:
        log.warning("auto commit failed: %s", error)
