"""``tailrace bench``: the workloads, the latency histogram and the process plumbing.

* histogram.py: log-bucketed latency histogram with bounded relative error.
* worker.py: one producer process (``--producers K`` starts K of them).
* workloads.py: produce, consume, e2e and idle, and what each one times.
* spawn.py: a broker subprocess for ``--spawn-broker``.
* procstats.py: CPU seconds and RSS of a process, from /proc.
"""
