"""A local copy of every key under an etcd prefix, kept current by a watch.

:meth:`PrefixView.run` reads the prefix (one linearizable range, which gives
the revision it is current at), then applies the watch from the next
revision. A watch whose start revision was compacted away re-reads the
prefix and watches again; an unreachable etcd is retried with a back-off.
Readers look at :attr:`items` (key -> KeyValue) and :attr:`revision`, and
wait for news with :meth:`wait_beyond`.

A watch on a member that stopped (SIGSTOP, a hung process) stays open and
silent: no error arrives to resume from. So every ``check_interval`` the
view reads the prefix's keys (a linearizable range) and compares their mod
revisions with its own; when they differ at two checks in a row and the
view has not moved past the first of them, the watch is stalled: the view
reads the prefix again and watches from there on the next endpoint.

Decisions read the view, then write with compare-and-swap on the revisions
they read: a stale view makes a write fail, never succeed wrongly.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from ..logs import log_event
from .client import EtcdClient
from .codec import KeyValue
from .errors import EtcdUnavailableError, WatchCompactedError

__all__ = ["PrefixView"]

log = logging.getLogger("tailrace.etcd")


class PrefixView:
    def __init__(
        self,
        client: EtcdClient,
        prefix: bytes,
        *,
        retry_delay: float = 0.25,
        check_interval: float = 5.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.retry_delay = retry_delay
        self.check_interval = check_interval
        #: how many times a stalled watch was opened again elsewhere
        self.stalls = 0
        #: every key under the prefix, as of :attr:`revision`
        self.items: dict[bytes, KeyValue] = {}
        #: the etcd revision the copy is current at (0: not loaded yet)
        self.revision = 0
        #: how many times the prefix was read whole (1 + compactions survived)
        self.loads = 0
        self._changed = trio.Event()

    def under(self, sub: bytes) -> dict[bytes, KeyValue]:
        """The keys under ``prefix + sub``."""
        start = self.prefix + sub
        return {k: v for k, v in self.items.items() if k.startswith(start)}

    async def wait_beyond(self, revision: int) -> None:
        """Return once the view is current past ``revision``."""
        while self.revision <= revision:
            await self._changed.wait()

    def _advance(self, revision: int) -> None:
        self.revision = revision
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the view current until cancelled; started once it was read."""
        started = False
        while True:
            try:
                await self._load()
            except EtcdUnavailableError as exc:
                log_event(log, logging.WARNING, "cannot read etcd, retrying", error=str(exc))
                await trio.sleep(self.retry_delay)
                continue
            if not started:
                task_status.started()
                started = True
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._check_stalls, nursery.cancel_scope)
                    await self._follow()
            except* WatchCompactedError as group:
                exc = group.exceptions[0]
                assert isinstance(exc, WatchCompactedError)
                log_event(
                    log,
                    logging.INFO,
                    "etcd watch fell behind compaction, re-reading",
                    prefix=self.prefix.decode(errors="replace"),
                    compact_revision=exc.compact_revision,
                )

    async def _check_stalls(self, follow: trio.CancelScope) -> None:
        """Cancel ``follow`` (the watch; run() opens it again) when it stalls."""
        suspect = 0  # the revision of a read that differed from the view
        while True:
            await trio.sleep(self.check_interval)
            try:
                result = await self.client.range(self.prefix, prefix=True, keys_only=True)
            except EtcdUnavailableError:
                continue
            now = {kv.key: kv.mod_revision for kv in result.kvs}
            mine = {k: kv.mod_revision for k, kv in self.items.items()}
            if now == mine or self.revision >= result.revision:
                suspect = 0
                continue
            if not suspect or self.revision >= suspect:
                suspect = result.revision
                continue
            self.stalls += 1
            log_event(
                log,
                logging.WARNING,
                "etcd watch stalled, opening it on the next endpoint",
                endpoint=self.client.endpoint,
                view_revision=self.revision,
                etcd_revision=result.revision,
            )
            self.client.skip_endpoint(self.client.endpoint)
            follow.cancel()
            return

    async def _load(self) -> None:
        result = await self.client.range(self.prefix, prefix=True)
        self.items = {kv.key: kv for kv in result.kvs}
        self.loads += 1
        self._advance(result.revision)

    async def _follow(self) -> None:
        replies = self.client.watch(self.prefix, prefix=True, start_revision=self.revision + 1)
        async with contextlib.aclosing(replies):
            async for reply in replies:
                for event in reply.events:
                    if event.type == "DELETE":
                        self.items.pop(event.kv.key, None)
                    else:
                        self.items[event.kv.key] = event.kv
                # the header's revision may run ahead of events still to come
                # in a catching-up watch: only the events say what is applied
                self._advance(reply.events[-1].kv.mod_revision)
