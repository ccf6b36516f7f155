"""The controller: elected through etcd, it places new topics' replicas and
elects partition leaders, writing each partition state by compare-and-swap.

Election: create-if-absent of ``<prefix>/controller`` under the broker's
lease. The key's create revision is the controller epoch; it grows with
every new controller, since etcd revisions only grow. Every write the
controller makes is a txn that compares the controller key's create
revision with its own epoch *and* the partition key's mod revision with the
one its decision was based on. A controller that was paused past its lease
and replaced wakes up with writes that fail: it is fenced by the epoch
comparison, not by any timing (:class:`ControllerFencedError`).
"""

from __future__ import annotations

import logging

import trio

from tailrace.client.errors import ErrorCode

from ..etcd import Compare, EtcdClient, EtcdError, EtcdUnavailableError, Op, PrefixView
from ..logs import log_event
from . import decisions
from .decisions import Change, plan
from .state import ClusterView, ControllerInfo, Keys

__all__ = ["Controller", "ControllerFencedError"]

log = logging.getLogger("tailrace.cluster")


class ControllerFencedError(EtcdError):
    """A controller write was refused because another broker is controller
    now (the controller key's create revision is no longer this epoch)."""

    code = ErrorCode.UNKNOWN_SERVER_ERROR

    def __init__(self, epoch: int, holder: int | None) -> None:
        now = f"controller epoch is now {holder}" if holder else "no controller now"
        super().__init__(f"controller epoch {epoch} was fenced ({now})")
        self.epoch = epoch
        self.holder = holder


class Controller:
    """One broker's bid for, and term as, controller."""

    def __init__(
        self,
        client: EtcdClient,
        keys: Keys,
        view: PrefixView,
        *,
        node_id: int,
        broker_epoch: int,
        lease_id: int,
        retry_delay: float = 0.25,
    ) -> None:
        self.client = client
        self.keys = keys
        self.view = view
        self.node_id = node_id
        self.broker_epoch = broker_epoch
        self.lease_id = lease_id
        self.retry_delay = retry_delay
        #: the controller epoch once elected
        self.epoch: int | None = None

    async def campaign(self) -> int:
        """Wait until this broker is controller; the controller epoch."""
        value = ControllerInfo(self.node_id, self.broker_epoch).value()
        key = self.keys.controller
        while True:
            try:
                result = await self.client.create(key, value, lease=self.lease_id)
            except EtcdUnavailableError as exc:
                log_event(log, logging.WARNING, "controller campaign: etcd", error=str(exc))
                await trio.sleep(self.retry_delay)
                continue
            if result.succeeded:
                self.epoch = result.revision
                return self.epoch
            held = result.ranges[0] if result.ranges else None
            holder = held.kvs[0] if held is not None and held.kvs else None
            if holder is None:
                continue  # gone between the compare and the read: try again
            if holder.lease == self.lease_id:
                # our own earlier create, whose answer was lost
                self.epoch = holder.create_revision
                return self.epoch
            await self._wait_until_gone(key, holder.create_revision)

    async def _wait_until_gone(self, key: bytes, create_revision: int) -> None:
        while True:
            current = self.view.items.get(key)
            if current is None or current.create_revision != create_revision:
                return
            await self.view.wait_beyond(self.view.revision)

    async def write(self, change: Change) -> bool:
        """Write one partition state by CAS; False when the partition changed
        since the decision (decide again from a newer view). Raises
        :class:`ControllerFencedError` when this broker is no longer controller."""
        assert self.epoch is not None
        key = self.keys.partition(change.topic, change.partition)
        result = await self.client.txn(
            [
                Compare.create_revision(self.keys.controller, self.epoch),
                Compare.mod_revision(key, change.expected_revision),
            ],
            [Op.put(key, change.new.value())],
            [Op.get(self.keys.controller)],
        )
        if result.succeeded:
            return True
        held = result.ranges[0] if result.ranges else None
        holder = held.kvs[0] if held is not None and held.kvs else None
        if holder is None or holder.create_revision != self.epoch:
            raise ControllerFencedError(self.epoch, holder.create_revision if holder else None)
        return False

    async def run(self) -> None:
        """Keep the cluster's partition states in line with the rules until
        fenced (raises) or cancelled."""
        assert self.epoch is not None
        if decisions.UNSAFE_UNCLEAN_ELECTION:
            log_event(
                log, logging.WARNING,
                "TAILRACE_FAULT_UNCLEAN_ELECTION is set: out-of-sync replicas may lead and "
                "acknowledged records may be lost (a test-only fault seam)",
            )  # fmt: skip
        while True:
            seen = self.view.revision
            view = ClusterView.from_items(self.keys, self.view.items, seen)
            changes, waiting = plan(view, self.epoch)
            for name in waiting:
                log_event(log, logging.WARNING, "topic waits for enough live brokers", topic=name)
            unsure = False
            for change in changes:
                try:
                    written = await self.write(change)
                except EtcdUnavailableError as exc:
                    # maybe applied: decide again from the view, which will say
                    log_event(log, logging.WARNING, "controller write: etcd", error=str(exc))
                    unsure = True
                    break
                if not written:
                    break  # raced by another writer: decide again from a newer view
                new = change.new
                log_event(
                    log,
                    logging.INFO,
                    "partition state",
                    topic=change.topic,
                    partition=change.partition,
                    leader=new.leader,
                    leader_epoch=new.leader_epoch,
                    replicas=",".join(map(str, new.replicas)),
                    isr=",".join(map(str, new.isr)),
                    controller_epoch=self.epoch,
                )
            if unsure:
                await trio.sleep(self.retry_delay)
            else:
                await self.view.wait_beyond(seen)
