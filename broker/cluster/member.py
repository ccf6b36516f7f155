"""A broker's membership in a cluster: its etcd session, its registration,
its bid for controller, and its copy of the cluster metadata.

:meth:`ClusterMember.run` runs in the broker's nursery for the broker's
whole life::

    grant a lease (TTL cluster.session_timeout_ms) and keep it alive (a task)
    read and watch every key under cluster.etcd_prefix (a PrefixView)
    register <prefix>/brokers/<node_id> under the lease, create-if-absent:
        its create revision is this broker's epoch; a key still held by an
        earlier run (its lease not yet expired) is waited out
    campaign for controller; once elected, run the controller until fenced

When the lease is lost (etcd says it is gone, or it could not be renewed
for a whole TTL) or the controller is fenced, everything of that session
stops and a new session starts: a new lease and a new, higher broker epoch
(as Kafka's broker epoch, KIP-380). On shutdown the lease is revoked, so
the registration and the controller key go at once instead of after a TTL.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from tailrace.client.errors import (
    InvalidReplicationFactorError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from ..config import BrokerConfig, split_urls
from ..etcd import (
    Compare,
    EtcdClient,
    EtcdError,
    EtcdRequestError,
    EtcdUnavailableError,
    Lease,
    LeaseExpiredError,
    Op,
    PrefixView,
)
from ..logs import log_event
from .controller import Controller, ControllerFencedError
from .state import BrokerInfo, ClusterView, Keys, TopicSpec, dump

__all__ = ["ClusterMember", "ClusterSettings"]

log = logging.getLogger("tailrace.cluster")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    node_id: int
    etcd_endpoints: tuple[str, ...]
    etcd_prefix: str = "/tailrace"
    bind_host: str = ""
    session_timeout_ms: int = 6_000
    etcd_timeout_ms: int = 2_000
    default_replication_factor: int = 3

    @classmethod
    def from_config(cls, config: BrokerConfig) -> ClusterSettings:
        get = config.values.__getitem__
        return cls(
            node_id=get("cluster.node_id"),
            etcd_endpoints=tuple(split_urls(get("cluster.etcd_endpoints"))),
            etcd_prefix=get("cluster.etcd_prefix"),
            bind_host=get("cluster.bind_host"),
            session_timeout_ms=get("cluster.session_timeout_ms"),
            etcd_timeout_ms=get("cluster.etcd_timeout_ms"),
            default_replication_factor=get("cluster.default_replication_factor"),
        )

    @property
    def lease_ttl(self) -> int:
        return max(1, math.ceil(self.session_timeout_ms / 1000))


class ClusterMember:
    def __init__(
        self,
        settings: ClusterSettings,
        *,
        address: str,
        kafka_address: str = "",
        retry_delay: float = 0.25,
    ) -> None:
        self.settings = settings
        self.keys = Keys(settings.etcd_prefix.encode())
        self.info = BrokerInfo(settings.node_id, address, kafka_address)
        self.retry_delay = retry_delay
        self.client: EtcdClient | None = None
        self.view: PrefixView | None = None
        #: this session's broker epoch (the registration's create revision), 0 before
        self.broker_epoch = 0
        #: the controller epoch while this broker is controller, else None
        self.controller_epoch: int | None = None
        #: the current session's lease (for tests and status)
        self.lease: Lease | None = None
        #: set once registered (a new Event per session)
        self.registered = trio.Event()
        self._snapshot: ClusterView | None = None
        self._snapshot_of: PrefixView | None = None

    @property
    def node_id(self) -> int:
        return self.settings.node_id

    def snapshot(self) -> ClusterView | None:
        """The cluster metadata as this broker last saw it (parsed once per
        revision: every Metadata request reads it)."""
        view = self.view
        if view is None or not view.revision:
            return None
        cached = self._snapshot
        if cached is None or cached.revision != view.revision or self._snapshot_of is not view:
            cached = ClusterView.from_items(self.keys, view.items, view.revision)
            self._snapshot, self._snapshot_of = cached, view
        return cached

    def serving_snapshot(self) -> ClusterView | None:
        """What this broker may tell clients: :meth:`snapshot` while it is
        registered, None otherwise. A broker whose session ended (cut off
        from etcd for a whole TTL) still holds its last view, in which it
        may still lead partitions that have moved: answering with it would
        keep its clients sending to it, so until it registers again it says
        it knows nothing, and clients ask another broker."""
        if not self.registered.is_set():
            return None
        return self.snapshot()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Be a member until cancelled; started at once (registration follows)."""
        s = self.settings
        async with EtcdClient(
            s.etcd_endpoints,
            timeout=s.etcd_timeout_ms / 1000,
            local_address=s.bind_host or None,
        ) as client:
            self.client = client
            task_status.started()
            while True:
                lost = await self._session(client)
                log_event(log, logging.WARNING, "cluster session ended, starting anew", reason=lost)
                self.broker_epoch = 0
                self.controller_epoch = None
                self.registered = trio.Event()
                await trio.sleep(self.retry_delay)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await call()
            except EtcdUnavailableError as exc:
                log_event(log, logging.WARNING, f"{what}: etcd unavailable", error=str(exc))
                await trio.sleep(self.retry_delay)

    async def _session(self, client: EtcdClient) -> str:
        """One lease's life; returns why it ended (lease lost, fenced)."""
        lease = await self._retrying("lease grant", lambda: client.grant(self.settings.lease_ttl))
        self.lease = lease
        reason = ""
        try:
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(client.keep_alive, lease)
                    self.view = view = PrefixView(client, self.keys.root)
                    await nursery.start(view.run)
                    await self._register(client, lease, view)
                    controller = Controller(
                        client,
                        self.keys,
                        view,
                        node_id=self.node_id,
                        broker_epoch=self.broker_epoch,
                        lease_id=lease.id,
                    )
                    epoch = await controller.campaign()
                    self.controller_epoch = epoch
                    log_event(
                        log,
                        logging.INFO,
                        "elected controller",
                        node_id=self.node_id,
                        controller_epoch=epoch,
                        broker_epoch=self.broker_epoch,
                    )
                    await controller.run()
            except* (LeaseExpiredError, ControllerFencedError) as group:
                reason = "; ".join(str(e) for e in group.exceptions)
            except* EtcdRequestError as group:
                # etcd refused something it should not have: say so loudly,
                # then start over rather than take the broker down
                reason = "; ".join(str(e) for e in group.exceptions)
                log_event(log, logging.ERROR, "etcd refused a request", error=reason)
        finally:
            self.controller_epoch = None
            with trio.CancelScope(shield=True), trio.move_on_after(self.settings.lease_ttl):
                try:
                    await client.revoke(lease.id)
                except EtcdError as exc:
                    log_event(log, logging.WARNING, "cannot revoke the lease", error=str(exc))
        return reason

    async def _register(self, client: EtcdClient, lease: Lease, view: PrefixView) -> None:
        key = self.keys.broker(self.node_id)
        while True:
            result = await self._retrying(
                "registration", lambda: client.create(key, self.info.value(), lease=lease.id)
            )
            if result.succeeded:
                self.broker_epoch = result.revision
                break
            held = result.ranges[0] if result.ranges else None
            holder = held.kvs[0] if held is not None and held.kvs else None
            if holder is None:
                continue
            if holder.lease == lease.id:  # our own create, whose answer was lost
                self.broker_epoch = holder.create_revision
                break
            log_event(
                log,
                logging.WARNING,
                "node id is registered by another session: waiting for it to expire",
                node_id=self.node_id,
                held_since_revision=holder.create_revision,
            )
            while True:
                current = view.items.get(key)
                if current is None or current.create_revision != holder.create_revision:
                    break
                await view.wait_beyond(view.revision)
        self.registered.set()
        log_event(
            log,
            logging.INFO,
            "registered in the cluster",
            node_id=self.node_id,
            broker_epoch=self.broker_epoch,
            address=self.info.address,
        )

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        """Publish a new topic for the controller to place. Raises
        TopicAlreadyExistsError when the cluster has it, and
        InvalidReplicationFactorError when fewer brokers are alive than asked
        (``replication_factor`` -1: the default, capped at the live brokers)."""
        client, view = self.client, self.view
        if client is None or view is None or not self.registered.is_set():
            raise RequestTimedOutError("this broker has not joined the cluster yet: try again")
        live = len(ClusterView.from_items(self.keys, view.items, view.revision).brokers)
        if replication_factor == -1:
            replication_factor = min(self.settings.default_replication_factor, max(live, 1))
        if not 1 <= replication_factor <= live:
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor}: {live} broker(s) are alive"
            )
        spec = TopicSpec(name, partitions, replication_factor, configs)
        try:
            result = await client.create(self.keys.topic(name), spec.value())
        except EtcdUnavailableError as exc:
            raise RequestTimedOutError(f"cannot reach etcd: {exc}") from None
        if not result.succeeded:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists in the cluster")

    async def topic_spec(self, name: str) -> tuple[TopicSpec, int] | None:
        """The topic's spec as etcd has it now, and the key's mod revision
        (None: no such topic in the cluster). Raises RequestTimedOutError
        (retriable) while etcd cannot be reached."""
        client = self.client
        if client is None or not self.registered.is_set():
            raise RequestTimedOutError("this broker has not joined the cluster yet: try again")
        try:
            kv = await client.get(self.keys.topic(name))
        except EtcdUnavailableError as exc:
            raise RequestTimedOutError(f"cannot reach etcd: {exc}") from None
        return None if kv is None else (TopicSpec.from_kv(name, kv), kv.mod_revision)

    async def grow_topic(self, spec: TopicSpec, revision: int, partitions: int) -> None:
        """Raise the topic's partition count in etcd (compare-and-swap on the
        spec read at ``revision``); the controller places the new
        partitions. Raises RequestTimedOutError (retriable) when etcd cannot
        be reached or the spec changed meanwhile."""
        assert self.client is not None
        grown = TopicSpec(spec.name, partitions, spec.replication_factor, spec.configs)
        key = self.keys.topic(spec.name)
        try:
            result = await self.client.txn(
                [Compare.mod_revision(key, revision)], [Op.put(key, grown.value())]
            )
        except EtcdUnavailableError as exc:
            raise RequestTimedOutError(f"cannot reach etcd: {exc}") from None
        if not result.succeeded:
            raise RequestTimedOutError(f"topic {spec.name!r} changed meanwhile: try again")

    async def delete_topic(self, name: str) -> None:
        """Delete a topic from the cluster: its spec and every partition
        state go in one etcd transaction; each replica's broker then deletes
        its copy when its view no longer has the topic (ReplicaManager).
        Raises UnknownTopicOrPartitionError when the cluster has no such
        topic, RequestTimedOutError (retriable) while etcd cannot be reached."""
        client = self.client
        if client is None or not self.registered.is_set():
            raise RequestTimedOutError("this broker has not joined the cluster yet: try again")
        key = self.keys.topic(name)
        states = self.keys.partitions + name.encode() + b"/"
        try:
            result = await client.txn(
                [Compare(key, "CREATE", 0, "GREATER")],  # the topic exists
                [Op.delete(key), Op.delete(states, prefix=True)],
            )
        except EtcdUnavailableError as exc:
            raise RequestTimedOutError(f"cannot reach etcd: {exc}") from None
        if not result.succeeded:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r} in the cluster")

    async def reserve_producer_ids(self, size: int, at_least: int) -> int:
        """Reserve ``size`` idempotent-producer ids for this broker alone:
        the first of them, at or above ``at_least`` (what this data
        directory ever handed out). One counter for the whole cluster in
        etcd (``<prefix>/producer-ids``, ``{"next": N}``), moved by
        compare-and-swap, so no two brokers hand out the same id (two
        producers sharing one would make the second's first batch look like
        a duplicate of the first's, acknowledged and never stored). A
        reservation whose answer was lost is wasted, never reused. Raises
        RequestTimedOutError (retriable) while etcd cannot be reached."""
        client = self.client
        if client is None:
            raise RequestTimedOutError("this broker has not joined the cluster yet: try again")
        key = self.keys.producer_ids
        try:
            while True:
                kv = await client.get(key)
                if kv is None:
                    current, guard = 0, Compare.absent(key)
                else:
                    current = int(json.loads(kv.value)["next"])
                    guard = Compare.mod_revision(key, kv.mod_revision)
                start = max(current, at_least)
                result = await client.txn([guard], [Op.put(key, dump({"next": start + size}))])
                if result.succeeded:
                    return start
        except EtcdUnavailableError as exc:
            raise RequestTimedOutError(f"cannot reach etcd for producer ids: {exc}") from None
