"""Start-up of tailrace.testing's brokers: from the fixture's request to a
client's first successful request.

Each run is a fresh interpreter (as a pytest session is) that has already
imported ``tailrace.testing`` (pytest imports the plugin at its start-up) and
whatever the scenario says a test module would have imported at collection.
It then does what the fixture does (``with ThreadBroker() as b`` or
``ProcessBroker``) and one client request, and prints the phases in ms:

* ``imports``: what the fixture imports on first use (the broker, trio),
* ``listening``: until the broker's listeners are bound,
* ``first request``: a client created and its first request answered
  (native: ``Admin.list_topics``; Kafka: confluent-kafka ``list_topics``),
* ``total``: the fixture request to that answer;
* ``CPU``: processor time the same interval used, all threads of the test
  process (the in-process broker's included); for ``process``, the test
  process's plus the child broker's whole life (start to stop). On a busy
  machine wall times stretch while CPU times stay close to what a quiet
  one would show.

Scenarios:

* ``thread-cold``: the test modules imported no tailrace client (a suite
  that uses only a Kafka client): the fixture pays for trio and tailrace;
* ``thread``: the test modules imported ``tailrace.client`` (a suite that
  uses the native client);
* ``thread-warm``: a second broker in the same process (every import done);
* ``process``: the fresh broker, a ``tailrace broker`` child process.

Every scenario runs with ``pytest`` imported first, as in a pytest session
(trio's import pulls part of pytest in when it is importable, so leaving it
out would charge the broker for pytest's import). Before the runs the tool
compiles tailrace's modules to bytecode, as ``pip install`` does for an
installed distribution: an editable checkout under
``PYTHONDONTWRITEBYTECODE=1`` otherwise compiles every module from source at
each start (about 60 ms more here); ``--no-compile`` measures that case.

Usage::

    python tools/bench_testing.py [--runs 15] [--client native|kafka] [--no-compile]
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time

SCENARIOS = ("thread-cold", "thread", "thread-warm", "process")
PHASES = ("imports", "listening", "first request", "total", "CPU")


def first_request(bootstrap_native: str, bootstrap_kafka: str, client: str) -> None:
    if client == "kafka":
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": bootstrap_kafka}).list_topics(timeout=30)
    else:
        from tailrace.client import Admin

        with Admin(bootstrap_native) as admin:
            admin.list_topics()


def child(scenario: str, client: str) -> dict[str, float]:
    """One measurement, in this (fresh) interpreter."""
    import pytest  # noqa: F401  (the session has pytest imported)

    import tailrace.testing  # pytest imported the plugin before any test

    # what a test module imported at collection, before the fixture's request
    if scenario != "thread-cold" and client == "native":
        importlib.import_module("tailrace.client")
    if client == "kafka":
        importlib.import_module("confluent_kafka")
    if scenario == "thread-warm":
        with tailrace.testing.broker() as b:
            first_request(b.bootstrap, b._kafka, client)

    c0 = time.process_time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if scenario == "process":
        cls = tailrace.testing.ProcessBroker
        t1 = t0
    else:
        from tailrace.testing.inthread import ThreadBroker, preload

        preload()  # what ThreadBroker._start does first

        cls = ThreadBroker
        t1 = time.perf_counter()
    with cls() as b:
        t2 = time.perf_counter()
        first_request(b.bootstrap, b._kafka, client)
        t3 = time.perf_counter()
        c3 = time.process_time()
    k3 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child, reaped at the close
    child_cpu = (k3.ru_utime + k3.ru_stime) - (k0.ru_utime + k0.ru_stime)
    ms = 1000.0
    return {
        "imports": (t1 - t0) * ms,
        "listening": (t2 - t1) * ms,
        "first request": (t3 - t2) * ms,
        "total": (t3 - t0) * ms,
        "CPU": (c3 - c0 + child_cpu) * ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--client", choices=["native", "kafka"], default="native")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not compile tailrace's modules to bytecode first",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.client)))
        return 0
    if not args.no_compile:
        import tailrace.broker
        import tailrace.client
        import tailrace.testing

        for package in (tailrace.broker, tailrace.client, tailrace.testing):
            for path in package.__path__:
                compileall.compile_dir(path, quiet=1)
    scenarios = args.scenarios.split(",")
    results: dict[str, list[dict[str, float]]] = {s: [] for s in scenarios}
    for _ in range(args.runs):
        for scenario in scenarios:  # interleaved: machine noise spreads over all
            out = subprocess.run(
                [sys.executable, __file__, "--child", scenario, "--client", args.client],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            results[scenario].append(json.loads(out.stdout))
    print(f"client {args.client}, {args.runs} runs each; ms, median (min-max)")
    print(f"{'scenario':<12}" + "".join(f"{p:>20}" for p in PHASES))
    for scenario in scenarios:
        cells = []
        for phase in PHASES:
            values = [r[phase] for r in results[scenario]]
            med = statistics.median(values)
            cells.append(f"{med:8.0f} ({min(values):.0f}-{max(values):.0f})")
        print(f"{scenario:<12}" + "".join(f"{c:>20}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
