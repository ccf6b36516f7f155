"""Every metric the broker exposes: the table, and the instruments counted in
the request path and in storage.

:data:`SPECS` is the single list of metric families (name as exposed, type,
labels, help). The instruments below are made from it; the scrape-time
collectors (collectors.py) take their help text from it; docs/operations.md
lists it ("Monitoring") and tests/ops/test_metrics_docs.py checks both the
docs and a live scrape against it.

Instruments are module level, in :data:`REGISTRY` (one per process, not
prometheus_client's global default registry): storage code deep below the
broker counts fsyncs without a reference being threaded down to it. A
process runs one broker in production; tests that run several in one
process compare differences, never absolute values.

Cost rules (the produce path must stay fast): hooks call ``.inc()`` or
``.observe()`` on a child bound here once, never ``.labels()`` per call; a
request is counted once, never once per record; per-partition and
per-group numbers are read at scrape time, never updated here.
"""

from __future__ import annotations

from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram

from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import ApiKey

__all__ = [
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "FETCH_ANSWERED_IN_PLACE",
    "FETCH_BYTES",
    "FETCH_LONG_POLLS",
    "FSYNC_FAILURES",
    "FSYNC_SECONDS",
    "PRODUCED_BYTES",
    "PRODUCED_RECORDS",
    "REGISTRY",
    "RETENTION_DELETED_BYTES",
    "RETENTION_DELETED_SEGMENTS",
    "SPECS",
    "ApiMetrics",
    "MetricSpec",
    "api_metrics",
    "api_name",
    "count_partition_error",
]

# A ``<name>_created`` series per counter doubles the output and means
# nothing to a dashboard.
prometheus_client.disable_created_metrics()


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family as exposed (counters with their ``_total``)."""

    name: str
    kind: str  # counter, gauge or histogram
    labels: tuple[str, ...]
    help: str
    #: where the number comes from: request, storage, scrape or process
    source: str


_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_FSYNC_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

SPECS: tuple[MetricSpec, ...] = (
    # --- request path --------------------------------------------------------
    MetricSpec(
        "tailrace_requests_total",
        "counter",
        ("api",),
        "Requests received, per API (counted when the request is dispatched).",
        "request",
    ),
    MetricSpec(
        "tailrace_request_errors_total",
        "counter",
        ("api",),
        "Requests answered with a request-level error, or that closed the connection "
        "(a failed acks=0 produce); errors of single partitions are in "
        "tailrace_partition_errors_total.",
        "request",
    ),
    MetricSpec(
        "tailrace_request_duration_seconds",
        "histogram",
        ("api",),
        "Time from a request's dispatch until its response is ready to write, per API; "
        "includes waiting for fsync (produce, flush=sync) and long polls (fetch, "
        "heartbeats).",
        "request",
    ),
    MetricSpec(
        "tailrace_received_bytes_total",
        "counter",
        (),
        "Bytes read from client connections.",
        "request",
    ),
    MetricSpec(
        "tailrace_sent_bytes_total",
        "counter",
        (),
        "Bytes written to client connections (sendfile included).",
        "request",
    ),
    MetricSpec(
        "tailrace_produced_records_total",
        "counter",
        (),
        "Records appended by produce requests (idempotent duplicates not counted).",
        "request",
    ),
    MetricSpec(
        "tailrace_produced_bytes_total",
        "counter",
        (),
        "Record-batch bytes appended by produce requests (idempotent duplicates not counted).",
        "request",
    ),
    MetricSpec(
        "tailrace_fetch_bytes_total",
        "counter",
        ("path",),
        "Record bytes sent in fetch responses, by path: sendfile (zero-copy) or copy "
        "(read into user space; fetch_zero_copy = false, a wrapped stream, or a response "
        "under 16 KiB, written in one call with its header).",
        "request",
    ),
    MetricSpec(
        "tailrace_fetch_long_polls_total",
        "counter",
        (),
        "Fetches that waited for data (fewer than min_bytes were available).",
        "request",
    ),
    MetricSpec(
        "tailrace_fetch_long_polls_answered_in_place_total",
        "counter",
        (),
        "Long polls whose whole response was written from the step of the request "
        "whose append woke them, before that request's own response (no task switch).",
        "request",
    ),
    MetricSpec(
        "tailrace_partition_errors_total",
        "counter",
        ("api", "error"),
        "Partitions answered with an error in produce and fetch responses, by error code name.",
        "request",
    ),
    # --- storage ---------------------------------------------------------------
    MetricSpec(
        "tailrace_fsync_duration_seconds",
        "histogram",
        (),
        "Duration of one partition sync round (fdatasync of the active segment, fsync of "
        "newly sealed segments and the directory), as an acknowledgement waits for it.",
        "storage",
    ),
    MetricSpec(
        "tailrace_fsync_failures_total",
        "counter",
        (),
        "Sync rounds that failed; each takes its partition offline until restart.",
        "storage",
    ),
    MetricSpec(
        "tailrace_retention_deleted_segments_total",
        "counter",
        (),
        "Segments deleted by retention (time or size).",
        "storage",
    ),
    MetricSpec(
        "tailrace_retention_deleted_bytes_total",
        "counter",
        (),
        "Log bytes deleted by retention.",
        "storage",
    ),
    MetricSpec(
        "tailrace_cleaner_runs_total",
        "counter",
        (),
        "Cleanings of compacted partitions that rewrote segments.",
        "storage",
    ),
    MetricSpec(
        "tailrace_cleaner_read_bytes_total",
        "counter",
        (),
        "Log bytes the cleaner read (key map and rewrite).",
        "storage",
    ),
    MetricSpec(
        "tailrace_cleaner_written_bytes_total",
        "counter",
        (),
        "Log bytes the cleaner wrote (the cleaned segments).",
        "storage",
    ),
    MetricSpec(
        "tailrace_cleaner_seconds_total",
        "counter",
        (),
        "Wall time spent in cleanings (worker threads).",
        "storage",
    ),
    MetricSpec(
        "tailrace_cleaner_failures_total",
        "counter",
        (),
        "Cleanings that failed with an I/O error.",
        "storage",
    ),
    # --- read at scrape time ------------------------------------------------------
    MetricSpec(
        "tailrace_broker_ready",
        "gauge",
        (),
        "1 when /health/ready answers 200 (logs loaded, listeners accepting, no partition "
        "offline), else 0.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_connections_open",
        "gauge",
        (),
        "Client connections open now.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_connections_accepted_total",
        "counter",
        (),
        "Client connections accepted.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_connections_refused_total",
        "counter",
        (),
        "Client connections closed at accept because limits.max_connections were open.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_log_start_offset",
        "gauge",
        ("topic", "partition"),
        "First offset still kept (retention moves it up).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_high_watermark",
        "gauge",
        ("topic", "partition"),
        "Offset below which records are durable per the flush mode and readable.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_log_end_offset",
        "gauge",
        ("topic", "partition"),
        "Next offset to be assigned (above the high watermark while an fsync is pending).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_size_bytes",
        "gauge",
        ("topic", "partition"),
        "Bytes of log data in the partition's segments.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_segments",
        "gauge",
        ("topic", "partition"),
        "Segments of the partition.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_offline",
        "gauge",
        ("topic", "partition"),
        "1 when the partition is offline (a failed fsync, or refused at start-up), else 0.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_dirty_ratio",
        "gauge",
        ("topic", "partition"),
        "Compacted partitions: share of the sealed segments' bytes not cleaned yet "
        "(the cleaner runs at the topic's min_cleanable_dirty_ratio).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partitions_offline",
        "gauge",
        (),
        "Partitions offline now (failed fsync, or refused by recovery at start-up).",
        "scrape",
    ),
    # --- cluster mode: this broker's replicas ------------------------------
    MetricSpec(
        "tailrace_partition_leader",
        "gauge",
        ("topic", "partition"),
        "Cluster mode: 1 while this broker leads the partition, 0 while it follows "
        "or holds a replica it neither leads nor follows.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_in_sync_replicas",
        "gauge",
        ("topic", "partition"),
        "Cluster mode, partitions this broker leads: replicas in the ISR (leader included).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_assigned_replicas",
        "gauge",
        ("topic", "partition"),
        "Cluster mode, partitions this broker leads: replicas assigned (the replication factor).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partition_follower_lag_records",
        "gauge",
        ("topic", "partition", "replica"),
        "Cluster mode, partitions this broker leads: its log end minus each follower's "
        "last fetch position (absent until the follower fetched in this leader epoch).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_partitions_under_replicated",
        "gauge",
        (),
        "Cluster mode: partitions this broker leads whose ISR is smaller than their "
        "replica set (Kafka's UnderReplicatedPartitions).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_isr_changes_total",
        "counter",
        ("kind",),
        "Cluster mode: ISR changes this broker wrote to etcd as a leader, by kind "
        "(shrink, expand).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_group_members",
        "gauge",
        ("group",),
        "Members of a consumer group.",
        "scrape",
    ),
    MetricSpec(
        "tailrace_group_committed_offset",
        "gauge",
        ("group", "topic", "partition"),
        "A consumer group's committed offset (durable).",
        "scrape",
    ),
    MetricSpec(
        "tailrace_group_lag",
        "gauge",
        ("group", "topic", "partition"),
        "High watermark minus the committed offset (0 when the committed offset is at or "
        "past it); absent while the partition is offline or missing.",
        "scrape",
    ),
    # --- the process (prometheus_client's process collector) -------------------
    MetricSpec(
        "tailrace_process_resident_memory_bytes",
        "gauge",
        (),
        "Resident memory size in bytes.",
        "process",
    ),
    MetricSpec(
        "tailrace_process_virtual_memory_bytes",
        "gauge",
        (),
        "Virtual memory size in bytes.",
        "process",
    ),
    MetricSpec(
        "tailrace_process_open_fds",
        "gauge",
        (),
        "Number of open file descriptors.",
        "process",
    ),
    MetricSpec(
        "tailrace_process_max_fds",
        "gauge",
        (),
        "Maximum number of open file descriptors.",
        "process",
    ),
    MetricSpec(
        "tailrace_process_cpu_seconds_total",
        "counter",
        (),
        "Total user and system CPU time spent in seconds.",
        "process",
    ),
    MetricSpec(
        "tailrace_process_start_time_seconds",
        "gauge",
        (),
        "Start time of the process since unix epoch in seconds.",
        "process",
    ),
)

_BY_NAME = {s.name: s for s in SPECS}

#: Instruments counted in the request path and storage live here.
REGISTRY = CollectorRegistry(auto_describe=True)


def spec(name: str) -> MetricSpec:
    return _BY_NAME[name]


def _counter(name: str) -> Counter:
    s = _BY_NAME[name]
    assert s.kind == "counter", name
    assert s.source in ("request", "storage"), name
    return Counter(s.name, s.help, s.labels, registry=REGISTRY)


def _histogram(name: str, buckets: tuple[float, ...]) -> Histogram:
    s = _BY_NAME[name]
    assert s.kind == "histogram", name
    return Histogram(s.name, s.help, s.labels, registry=REGISTRY, buckets=buckets)


_REQUESTS = _counter("tailrace_requests_total")
_REQUEST_ERRORS = _counter("tailrace_request_errors_total")
_REQUEST_SECONDS = _histogram("tailrace_request_duration_seconds", _LATENCY_BUCKETS)
BYTES_RECEIVED = _counter("tailrace_received_bytes_total")
BYTES_SENT = _counter("tailrace_sent_bytes_total")
PRODUCED_RECORDS = _counter("tailrace_produced_records_total")
PRODUCED_BYTES = _counter("tailrace_produced_bytes_total")
_FETCH_BYTES = _counter("tailrace_fetch_bytes_total")
#: fetch record bytes by path, children bound once
FETCH_BYTES = {"sendfile": _FETCH_BYTES.labels("sendfile"), "copy": _FETCH_BYTES.labels("copy")}
FETCH_LONG_POLLS = _counter("tailrace_fetch_long_polls_total")
FETCH_ANSWERED_IN_PLACE = _counter("tailrace_fetch_long_polls_answered_in_place_total")
_PARTITION_ERRORS = _counter("tailrace_partition_errors_total")
FSYNC_SECONDS = _histogram("tailrace_fsync_duration_seconds", _FSYNC_BUCKETS)
FSYNC_FAILURES = _counter("tailrace_fsync_failures_total")
RETENTION_DELETED_SEGMENTS = _counter("tailrace_retention_deleted_segments_total")
RETENTION_DELETED_BYTES = _counter("tailrace_retention_deleted_bytes_total")
CLEANER_RUNS = _counter("tailrace_cleaner_runs_total")
CLEANER_READ_BYTES = _counter("tailrace_cleaner_read_bytes_total")
CLEANER_WRITTEN_BYTES = _counter("tailrace_cleaner_written_bytes_total")
CLEANER_SECONDS = _counter("tailrace_cleaner_seconds_total")
CLEANER_FAILURES = _counter("tailrace_cleaner_failures_total")


def api_name(api_key: int) -> str:
    """The ``api`` label of an API key: ``produce``, ``list_offsets``, ..."""
    try:
        return ApiKey(api_key).name.lower()
    except ValueError:
        return "unknown"


class ApiMetrics:
    """The three children of one API, bound once."""

    __slots__ = ("errors", "requests", "seconds")

    def __init__(self, api: str) -> None:
        self.requests = _REQUESTS.labels(api)
        self.errors = _REQUEST_ERRORS.labels(api)
        self.seconds = _REQUEST_SECONDS.labels(api)


_API: dict[int, ApiMetrics] = {int(k): ApiMetrics(api_name(k)) for k in ApiKey}


def api_metrics(api_key: int) -> ApiMetrics:
    """The bound children of ``api_key``. Every known API's exist from import,
    so each appears in the scrape with zeros before its first request; any
    other key shares ``api="unknown"`` (the label set stays bounded)."""
    m = _API.get(api_key)
    if m is None:
        m = _API.get(-1)
        if m is None:
            m = _API[-1] = ApiMetrics("unknown")
    return m


_ERRORS: dict[tuple[str, int], Counter] = {}


def count_partition_error(api: str, code: int) -> None:
    """One partition of a produce or fetch response carried error ``code``
    (the error path only: the child is cached after its first use)."""
    child = _ERRORS.get((api, code))
    if child is None:
        try:
            name = ErrorCode(code).name.lower()
        except ValueError:
            code, name = -2, "unknown"  # one child for every unlisted code
        child = _ERRORS.get((api, code))
        if child is None:
            child = _ERRORS[(api, code)] = _PARTITION_ERRORS.labels(api, name)
    child.inc()
