"""Prometheus metrics, health checks and their HTTP endpoint.

Three kinds of metric, by where the number comes from:

* counted on the request path and in storage (:mod:`.definitions`): module
  level prometheus_client counters and histograms in one process-wide
  registry, with the label children bound once at import, so a hook is a
  plain ``.inc()`` or ``.observe()`` (a few hundred nanoseconds) and never
  a ``.labels()`` look-up; nothing is counted per record;
* read at scrape time (:mod:`.collectors`): per-partition offsets and sizes,
  per-group committed offsets and lag, open connections, readiness, read
  from the broker's own state when Prometheus asks, so they cost nothing
  between scrapes and are never stale;
* the process (RSS, open fds, CPU), by prometheus_client's process collector.

:mod:`.endpoint` serves ``/metrics``, ``/health/live`` and ``/health/ready``
over HTTP/1.1 (h11) on the broker's trio loop; :mod:`.health` decides
readiness. ``docs/operations.md`` ("Monitoring") lists every metric; a test
checks that list against :data:`.definitions.SPECS` and a live scrape.
"""
