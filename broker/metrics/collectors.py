"""Metrics read from the broker's state when Prometheus scrapes.

Per-partition and per-group numbers change with every record; counting them
as they change would cost the produce path. They are read here instead, at
scrape time, on the broker's trio thread (the state is not thread-safe, and
the endpoint serves from that thread): a few attribute reads per partition.

:func:`broker_registry` builds what ``/metrics`` exposes for one broker:
the process-wide instruments (definitions.REGISTRY), this broker's scrape
time collector, and prometheus_client's process collector.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tailrace.client.errors import BrokerError

from .definitions import REGISTRY, spec
from .health import offline_partitions, readiness

if TYPE_CHECKING:
    from ..app import Broker

__all__ = ["BrokerCollector", "broker_registry"]


def _gauge(name: str) -> GaugeMetricFamily:
    s = spec(name)
    return GaugeMetricFamily(s.name, s.help, labels=s.labels or None)


def _counter(name: str) -> CounterMetricFamily:
    s = spec(name)
    return CounterMetricFamily(s.name, s.help, labels=s.labels or None)


class BrokerCollector:
    """Connections, readiness, partitions and groups of one broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        status, _ = readiness(broker)
        ready = _gauge("tailrace_broker_ready")
        ready.add_metric([], 1 if status == 200 else 0)
        yield ready

        counter = broker.counter
        open_ = _gauge("tailrace_connections_open")
        open_.add_metric([], counter.open)
        accepted = _counter("tailrace_connections_accepted_total")
        accepted.add_metric([], counter.accepted)
        refused = _counter("tailrace_connections_refused_total")
        refused.add_metric([], counter.refused)
        yield from (open_, accepted, refused)

        yield from self._partitions()
        yield from self._replicas()
        yield from self._groups()

    def _partitions(self) -> Iterator[Metric]:
        start = _gauge("tailrace_partition_log_start_offset")
        hw = _gauge("tailrace_partition_high_watermark")
        leo = _gauge("tailrace_partition_log_end_offset")
        size = _gauge("tailrace_partition_size_bytes")
        segments = _gauge("tailrace_partition_segments")
        offline = _gauge("tailrace_partition_offline")
        dirty = _gauge("tailrace_partition_dirty_ratio")
        manager = self.broker.manager
        if manager is not None:
            for (topic, partition), log in manager.logs():
                labels = [topic, str(partition)]
                start.add_metric(labels, log.log_start_offset)
                hw.add_metric(labels, log.high_watermark)
                leo.add_metric(labels, log.log_end_offset)
                size.add_metric(labels, log.size_bytes)
                segments.add_metric(labels, len(log.segments))
                offline.add_metric(labels, 1 if log.offline else 0)
                if log.config.compact:
                    dirty.add_metric(labels, log.dirty_ratio)
            for topic, partition in list(manager.failed):
                if partition >= 0:
                    offline.add_metric([topic, str(partition)], 1)
        total = _gauge("tailrace_partitions_offline")
        total.add_metric([], len(offline_partitions(self.broker)))
        yield from (start, hw, leo, size, segments, offline, dirty, total)

    def _replicas(self) -> Iterator[Metric]:
        leading = _gauge("tailrace_partition_leader")
        isr = _gauge("tailrace_partition_in_sync_replicas")
        assigned = _gauge("tailrace_partition_assigned_replicas")
        lag = _gauge("tailrace_partition_follower_lag_records")
        under = _gauge("tailrace_partitions_under_replicated")
        changes = _counter("tailrace_isr_changes_total")
        manager = self.broker.replicas
        if manager is not None:
            count = 0
            for (topic, partition), r in list(manager.replicas.items()):
                labels = [topic, str(partition)]
                leader = r.leader if r.role == "leader" else None
                leading.add_metric(labels, 1 if leader is not None else 0)
                if leader is None:
                    continue
                replicas = r.state.replicas if r.state is not None else ()
                isr.add_metric(labels, len(leader.isr))
                assigned.add_metric(labels, len(replicas))
                if len(leader.isr) < len(replicas):
                    count += 1
                end = r.log.log_end_offset
                for replica_id, progress in leader.followers.items():
                    if progress.log_end_offset >= 0:
                        lag.add_metric(
                            [*labels, str(replica_id)], max(end - progress.log_end_offset, 0)
                        )
            under.add_metric([], count)
            for kind, n in sorted(manager.isr_changes.items()):
                changes.add_metric([kind], n)
        yield from (leading, isr, assigned, lag, under, changes)

    def _groups(self) -> Iterator[Metric]:
        members = _gauge("tailrace_group_members")
        committed = _gauge("tailrace_group_committed_offset")
        lag = _gauge("tailrace_group_lag")
        coordinator = self.broker.coordinator
        manager = self.broker.manager
        if coordinator is not None and manager is not None:
            for group_id, group in list(coordinator.groups.items()):
                members.add_metric([group_id], len(group.members))
                for (topic, partition), entry in list(group.offsets.items()):
                    labels = [group_id, topic, str(partition)]
                    committed.add_metric(labels, entry.offset)
                    try:
                        log = manager.get(topic, partition)
                    except BrokerError:
                        continue  # deleted, or refused at start-up: no lag to tell
                    if not log.offline:
                        lag.add_metric(labels, max(log.high_watermark - entry.offset, 0))
        yield from (members, committed, lag)


class _Instruments:
    """Forwards the process-wide instruments into a broker's registry."""

    def collect(self) -> Iterator[Metric]:
        return iter(REGISTRY.collect())


def broker_registry(broker: Broker) -> CollectorRegistry:
    """Everything ``/metrics`` shows for ``broker``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Instruments())
    registry.register(BrokerCollector(broker))
    ProcessCollector(namespace="tailrace", registry=registry)
    return registry
