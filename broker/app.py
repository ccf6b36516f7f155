"""The broker process: storage, listeners, housekeeping, lifecycle.

:meth:`Broker.serve` is the whole life of a broker::

    serve /metrics and /health/* when metrics_listen is set (first, so that
        a long recovery can be watched: /health/ready says "logs are loading")
    open the data directory (recovery runs here, in a worker thread)
    bind the listeners, log one line per listener with its address
    serve connections, run the housekeeping loops (flush, retention, checkpoint)
    on shutdown(): stop accepting, stop reading requests, answer those in
    flight (up to shutdown_timeout_ms), close every log (flush, trim),
    write the clean-shutdown marker

Tests run it in their own nursery (``await nursery.start(broker.serve)``
returns the bound listeners, port 0 included); ``tailrace broker`` runs it
under a signal handler (SIGTERM/SIGINT call :meth:`shutdown`).
"""

from __future__ import annotations

import logging
import os
import resource
import uuid
from typing import TYPE_CHECKING, Any

import trio

from tailrace.client.errors import BrokerError
from tailrace.client.protocol import Limits

from .config import BrokerConfig, parse_address
from .coordinator import GroupCoordinator, GroupSettings
from .handlers import HANDLERS, BrokerContext
from .kafka.codec import KafkaServerConnection
from .kafka.handlers import error_response_body, make_dispatch
from .kafka.sasl import KafkaSaslAnswers
from .log.cleaner import CleanerSettings
from .log.cleaner_service import LogCleaner
from .log.files import atomic_write
from .log.manager import LogManager
from .log.storage_io import StorageIO
from .logs import log_event
from .metrics.collectors import broker_registry
from .metrics.endpoint import HttpEndpoint, json_route, metrics_route
from .metrics.health import liveness, readiness
from .metrics.requests import metered
from .producer_ids import ProducerIdAllocator
from .security.runtime import BrokerSecurity
from .server.connection import ConnectionHandler, ConnectionInfo
from .server.listeners import BoundListener, ConnectionCounter, open_listener, serve_listeners

if TYPE_CHECKING:
    from .cluster.liveness import PeerWatch
    from .cluster.member import ClusterMember
    from .cluster.replicas import FetcherFactory, ReplicaManager
    from .console.web import Console

__all__ = ["Broker"]

log = logging.getLogger("tailrace.broker")

CLUSTER_ID_FILE = "~cluster-id"


def raise_fd_limit() -> int:
    """Lift the soft open-file limit to the hard one: every partition's active
    segment and every connection holds a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            return soft
    return soft


class Broker:
    def __init__(self, config: BrokerConfig, *, io: StorageIO | None = None) -> None:
        self.config = config
        self.data_dir = os.path.abspath(config.data_dir)
        self.io = io or StorageIO()
        self._stop = trio.Event()
        self._connections: set[ConnectionHandler] = set()
        self.manager: LogManager | None = None
        self.context: BrokerContext | None = None
        self.coordinator: GroupCoordinator | None = None
        self.cleaner: LogCleaner | None = None
        self.counter = ConnectionCounter(config.get("limits", "max_connections"))
        self.listeners: list[BoundListener] = []
        #: True while the listeners accept connections (readiness)
        self.accepting = False
        #: the metrics and health endpoint, when metrics_listen is set
        self.metrics: HttpEndpoint | None = None
        self.clean_shutdown: bool | None = None
        limits = config.values
        self._limits = Limits(max_frame_bytes=limits["limits.max_frame_bytes"])
        #: TLS, authentication, ACLs (a bad certificate, users or ACL file raises here)
        self.security = BrokerSecurity(config, self._limits)
        self._max_in_flight = limits["limits.max_in_flight_requests"]
        self._idle = limits["limits.connections_max_idle_ms"] / 1000
        #: the web console, when console.listen is set
        self.console: Console | None = None
        # per-API request metrics cost a little per request: only when shown
        # (by /metrics or by the console's charts)
        shown = config.metrics_listen or config.get("console", "listen")
        self._dispatcher = metered(self._dispatch) if shown else self._dispatch
        #: the Kafka front-end's dispatcher (made once the context exists)
        self._kafka_dispatcher: Any = None
        #: this broker's membership of a cluster (cluster mode only)
        self.cluster: ClusterMember | None = None
        #: its watch of the other brokers' processes (cluster.peer_liveness)
        self.peer_watch: PeerWatch | None = None
        #: leader and follower roles of this broker's replicas (cluster mode only)
        self.replicas: ReplicaManager | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def shutdown(self) -> None:
        """Begin a graceful stop (safe to call more than once)."""
        self._stop.set()

    async def serve(
        self, *, task_status: trio.TaskStatus[list[BoundListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        raise_fd_limit()
        async with trio.open_nursery() as endpoint:
            if self.config.metrics_listen:
                await self._start_metrics(endpoint)
            await self._serve_logs(task_status)
            endpoint.cancel_scope.cancel()

    async def _start_metrics(self, nursery: trio.Nursery) -> None:
        host, port = parse_address(self.config.metrics_listen)
        self.metrics = HttpEndpoint(
            {
                "/metrics": metrics_route(broker_registry(self)),
                "/health/live": json_route(liveness),
                "/health/ready": json_route(lambda: readiness(self)),
            }
        )
        address = await nursery.start(self.metrics.serve, host, port)
        log_event(
            log,
            logging.INFO,
            "serving metrics and health checks",
            address=address,
            paths="/metrics /health/live /health/ready",
        )

    async def _start_console(self, nursery: trio.Nursery) -> None:
        """In the nursery that ends before the logs close: no page is ever
        served from a closed log."""
        # imported only when the console is on: its web stack (Starlette,
        # hypercorn) brings asyncio and ~50 ms of imports a broker without a
        # console (or a test fixture) should not pay
        from .console.server import serve_console
        from .console.web import Console

        host, port = parse_address(self.config.get("console", "listen"))
        self.console = Console(self)
        address = await nursery.start(serve_console, self.console, host, port)
        log_event(
            log,
            logging.INFO,
            "serving the console",
            address=address,
            login=self.console.login_required,
        )

    async def _start_cluster(self, nursery: trio.Nursery) -> None:
        """Join the cluster (etcd) in the background nursery: registration
        and the controller campaign go on there; the lease is revoked when
        the nursery ends, before the logs close."""
        # imported only in cluster mode: a single node never loads httpx
        from .cluster.member import ClusterMember, ClusterSettings
        from .cluster.replicas import ReplicaManager, ReplicaSettings

        assert self.context is not None
        settings = ClusterSettings.from_config(self.config)
        native = [b for b in self.listeners if not _is_kafka(b)]
        kafka = [b for b in self.listeners if _is_kafka(b)]
        address = self.config.get("cluster", "advertised_address") or (
            native[0].address if native else ""
        )
        self.cluster = ClusterMember(
            settings, address=address, kafka_address=kafka[0].address if kafka else ""
        )
        self.context.node_id = settings.node_id
        self.context.cluster = self.cluster
        # before any connection is served: ids from a cluster-wide block only
        self.context.producer_ids.reserve = self.cluster.reserve_producer_ids
        await nursery.start(self.cluster.run)
        if self.config.get("cluster", "peer_liveness"):
            from .cluster.liveness import PeerWatch

            self.peer_watch = PeerWatch(self.cluster, bind_host=settings.bind_host)
            await nursery.start(self.peer_watch.run)
        self.replicas = ReplicaManager(
            self.cluster,
            self.context.manager,
            _fetcher_factory(self.config),
            ReplicaSettings(
                replica_lag_time_max_ms=self.config.get("cluster", "replica_lag_time_max_ms")
            ),
        )
        self.context.replicas = self.replicas
        await nursery.start(self.replicas.run)
        # the group coordinator follows the leaders of __consumer_offsets
        from .coordinator.placement import OffsetsPlacement

        assert self.coordinator is not None
        placement = OffsetsPlacement(
            self.coordinator,
            self.cluster,
            self.replicas,
            partitions=self.config.get("groups", "offsets_topic_partitions"),
            replication_factor=self.config.get("groups", "offsets_topic_replication_factor"),
        )
        await nursery.start(placement.run)
        log_event(
            log,
            logging.INFO,
            "cluster mode",
            node_id=settings.node_id,
            etcd=",".join(settings.etcd_endpoints),
            advertised=address,
        )

    async def _serve_logs(self, task_status: trio.TaskStatus[list[BoundListener]]) -> None:
        config = self.config
        data_dir = self.data_dir
        self.manager = manager = await trio.to_thread.run_sync(
            lambda: LogManager.open(data_dir, config.topic_defaults, io=self.io)
        )
        try:
            cluster_id = await trio.to_thread.run_sync(_cluster_id, data_dir, self.io)
            producer_ids = ProducerIdAllocator(data_dir, self.io)
            self.listeners = [
                await open_listener(lc.name, lc.host, lc.port) for lc in config.listeners
            ]
            for bound in self.listeners:
                self.security.bind(bound)
            self.context = BrokerContext(config, manager, producer_ids, self.listeners, cluster_id)
            self.context.acl_store = self.security.acl_store
            self.context.authz = self.security.authz
            self.coordinator = GroupCoordinator(
                manager,
                _group_settings(config),
                cluster_partitions=(
                    config.get("groups", "offsets_topic_partitions") if config.clustered else None
                ),
            )
            self.context.coordinator = self.coordinator
            kafka = make_dispatch(self.context)
            self._kafka_dispatcher = metered(kafka) if config.metrics_listen else kafka
            async with trio.open_nursery() as background:
                # Loads __consumer_offsets, then expires sessions and offsets;
                # group requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS.
                await background.start(self.coordinator.run, self.context.draining)
                self.cleaner = LogCleaner(manager, _cleaner_settings(config))
                await background.start(self.cleaner.run)
                await background.start(
                    lambda task_status: manager.run_maintenance(
                        checkpoint_interval_ms=config.recovery_checkpoint_interval_ms,
                        retention_check_ms=config.retention_check_interval_ms,
                        task_status=task_status,
                    )
                )
                if config.get("console", "listen"):
                    await self._start_console(background)
                if config.clustered:
                    await self._start_cluster(background)
                await self._serve_connections(task_status)
                self.cleaner.stop()  # a cleaning gives up rather than delay the stop
                background.cancel_scope.cancel()
        finally:
            if self.cleaner is not None:
                self.cleaner.stop()
            with trio.CancelScope(shield=True):
                self.clean_shutdown = await manager.aclose()
            log_event(log, logging.INFO, "stopped", clean=self.clean_shutdown)

    async def _serve_connections(self, task_status: trio.TaskStatus[list[BoundListener]]) -> None:
        config = self.config
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                await accepting.start(
                    lambda task_status: serve_listeners(
                        self._handle,
                        self.listeners,
                        handler_nursery=connections,
                        counter=self.counter,
                        task_status=task_status,
                    )
                )
                for bound in self.listeners:
                    if _is_kafka(bound):
                        log_event(
                            log,
                            logging.INFO,
                            "listening",
                            protocol="kafka",
                            listener=bound.name,
                            address=bound.address,
                        )
                        continue
                    log_event(
                        log,
                        logging.INFO,
                        "listening",
                        listener=bound.name,
                        address=bound.address,
                        data_dir=self.data_dir,
                    )
                self.accepting = True
                task_status.started(self.listeners)
                await self._stop.wait()
                self.accepting = False
                accepting.cancel_scope.cancel()
            log_event(log, logging.INFO, "shutting down", connections=len(self._connections))
            assert self.context is not None
            self.context.draining.set()
            for _key, plog in self.context.manager.logs():
                plog.wake_hw_watchers()  # long polls answer now, not at max_wait
            for handler in list(self._connections):
                handler.stop_reading()
            connections.cancel_scope.deadline = (
                trio.current_time() + config.shutdown_timeout_ms / 1000
            )

    async def _handle(self, stream: trio.abc.Stream, listener: BoundListener) -> None:
        assert self.context is not None
        peer = _peer(stream)
        zero_copy = bool(self.config.fetch_zero_copy) and hasattr(stream, "socket")
        info = ConnectionInfo(listener.name, peer, zero_copy)
        security = self.security
        gate = None
        # TLS and authentication must finish by this deadline (lifted after)
        with trio.CancelScope(deadline=security.deadline(listener)) as deadline:
            if not await security.open(stream, listener, info):
                return
            kafka = _is_kafka(listener)
            dispatcher = self._kafka_dispatcher if kafka else self._dispatcher
            codec = KafkaServerConnection(self._limits, error_response_body) if kafka else None
            handler = ConnectionHandler(
                stream,
                info,
                dispatcher,
                limits=self._limits,
                max_in_flight=self._max_in_flight,
                idle_timeout=self._idle,
                codec=codec,
            )
            gate = security.attach(
                handler, listener, dispatcher, deadline, KafkaSaslAnswers(codec) if kafka else None
            )
            self._connections.add(handler)
            try:
                if self._stop.is_set():
                    return
                await handler.run()
            finally:
                self._connections.discard(handler)
        if deadline.cancelled_caught:
            security.timed_out(listener, info, gate)

    def _dispatch(self, info: ConnectionInfo, request: object) -> object:
        handler = HANDLERS.get(request.api_key)  # type: ignore[attr-defined]
        if handler is None:
            raise BrokerError(f"no handler for api_key {request.api_key}")  # type: ignore[attr-defined]
        ctx = self.context
        try:
            return handler(ctx, info, request)
        finally:
            # long polls this request's appends woke are answered now, before
            # its own response is queued (handlers/fetch.py, _WokenAnswer)
            ctx.run_woken_answers()


def _is_kafka(listener: BoundListener) -> bool:
    """Whether the listener speaks Kafka's wire protocol (its config is
    given by BrokerSecurity.bind)."""
    return getattr(listener.config, "protocol", "tailrace") == "kafka"


def _fetcher_factory(config: BrokerConfig) -> FetcherFactory:
    """How the replica manager starts the follower fetcher of one leader
    broker (in the manager's nursery): from ``cluster.bind_host``, with the
    ``cluster.peer_*`` credentials."""
    from .cluster.fetcher import ReplicaFetcher, peer_security

    security = peer_security(config)
    node_id = config.get("cluster", "node_id")
    bind_host = config.get("cluster", "bind_host") or None

    async def make(nursery: trio.Nursery, leader_id: int, address: str) -> ReplicaFetcher:
        fetcher = ReplicaFetcher(
            node_id, leader_id, address, security=security, local_address=bind_host
        )
        await nursery.start(fetcher.run)
        return fetcher

    return make


def _cleaner_settings(config: BrokerConfig) -> CleanerSettings:
    return CleanerSettings(
        threads=config.get("cleaner", "threads"),
        key_map_bytes=config.get("cleaner", "key_map_bytes"),
        io_max_bytes_per_s=config.get("cleaner", "io_max_bytes_per_s"),
        check_interval_ms=config.get("cleaner", "check_interval_ms"),
    )


def _group_settings(config: BrokerConfig) -> GroupSettings:
    return GroupSettings(
        **{
            key: config.get("groups", key)
            for key in (
                "session_timeout_min_ms",
                "session_timeout_max_ms",
                "heartbeat_interval_ms",
                "offsets_retention_ms",
                "offsets_retention_check_interval_ms",
                "max_group_size",
                "initial_rebalance_delay_ms",
            )
        }
    )


def _peer(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is None:
        inner = getattr(stream, "transport_stream", None)
        sock = getattr(inner, "socket", None)
    try:
        host, port = sock.getpeername()[:2]
    except (AttributeError, OSError):
        return "unknown"
    return f"{host}:{port}"


def _cluster_id(data_dir: str, io: StorageIO) -> str:
    """A stable id for the data directory, made once."""
    path = os.path.join(data_dir, CLUSTER_ID_FILE)
    try:
        with open(path) as fh:
            text = fh.read(64).strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    value = uuid.uuid4().hex
    atomic_write(io, path, (value + "\n").encode())
    return value
