"""``tailrace broker [--config FILE] [--data-dir DIR] [--listen HOST:PORT]
[--kafka-listen HOST:PORT] [--metrics HOST:PORT] [--console HOST:PORT] [--log-level L]
[--log-format kv|json] [--node-id N --cluster-etcd URL[,URL...]] [--check-config]``.

Exit codes: 0 after a stop by signal (or a good ``--check-config``), 1 when
the broker cannot start (the data directory is locked by another broker, an
address is in use, the directory is unusable), 2 for a configuration error.
Each failure is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
from typing import Any

import trio

from tailrace.client.errors import StorageError

from ..app import Broker
from ..config import BrokerConfig, ConfigError, load_config
from ..logs import configure_logging, log_event

log = logging.getLogger("tailrace.broker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "broker",
        help="run the broker",
        description=(
            "Run the broker in the foreground until SIGTERM or SIGINT. Settings come from "
            "flags, then TAILRACE_* environment variables, then --config, then defaults "
            "(config/broker.toml documents every key)."
        ),
    )
    p.add_argument("--config", metavar="FILE", help="a TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help="where the logs live (default ./data)")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="listen here instead of the configured listeners (default 127.0.0.1:7420)",
    )
    p.add_argument(
        "--kafka-listen",
        metavar="HOST:PORT",
        help="also serve Kafka's wire protocol here, for unmodified Kafka clients "
        "(TAILRACE_KAFKA_LISTEN; default off; docs/kafka.md)",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus) and /health/live, /health/ready over HTTP here "
        "(metrics_listen; default off)",
    )
    p.add_argument(
        "--console",
        metavar="HOST:PORT",
        help="serve the web console over HTTP here, e.g. 127.0.0.1:7480 "
        "(console.listen; default off)",
    )
    p.add_argument(
        "--node-id",
        metavar="N",
        type=int,
        help="run in cluster mode as broker N (cluster.node_id; needs --cluster-etcd)",
    )
    p.add_argument(
        "--cluster-etcd",
        metavar="URL[,URL...]",
        help="etcd client URLs of the cluster, e.g. http://127.0.0.1:2379 "
        "(cluster.etcd_endpoints; needs --node-id; docs/operations.md, Running a cluster)",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["kv", "json"])
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration (file, environment, flags), print what differs "
        "from the defaults and exit: 0 when valid, 2 otherwise; the data directory is not "
        "touched",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    flags = {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "kafka_listen": args.kafka_listen,
        "metrics_listen": args.metrics,
        "console.listen": args.console,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "cluster.node_id": args.node_id,
        "cluster.etcd_endpoints": args.cluster_etcd,
    }
    try:
        config = load_config(args.config, flags=flags)
    except ConfigError as exc:
        sys.stderr.write(f"tailrace broker: configuration error: {exc}\n")
        return 2
    if args.check_config:
        sys.stdout.write(_describe_differences(config, listen_flag=args.listen is not None))
        return 0
    configure_logging(config.log_level, config.log_format)
    differences = config.differences()
    log_event(
        log,
        logging.INFO,
        "starting",
        **(differences or {"config": "defaults"}),
    )
    broker = Broker(config)
    # Everything imported and built so far lives as long as the process:
    # move it out of the cyclic collector's reach, so a full collection
    # scans what the broker allocates while serving and not the ~100
    # modules and their objects under it (each such pass stalled the event
    # loop for 10-20 ms: the p99.9 of `tailrace bench e2e`, docs/benchmarks.md).
    gc.freeze()
    try:
        trio.run(_main, broker)
    except BaseException as exc:
        # trio's nurseries wrap errors in exception groups: show the one cause
        cause = _only_cause(exc)
        if isinstance(cause, StorageError):
            log_event(log, logging.ERROR, "cannot start", error=cause.message)
            return 1
        if isinstance(cause, OSError):
            log_event(log, logging.ERROR, "cannot start", error=str(cause))
            return 1
        raise
    return 0


def _only_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe_differences(config: BrokerConfig, *, listen_flag: bool) -> str:
    """``--check-config``: one line per setting that is not at its default,
    TOML-style, with where the value came from."""
    differences = config.differences()
    if not differences:
        return "configuration is valid; every setting is at its default\n"
    lines = [f"configuration is valid; {len(differences)} setting(s) differ from the defaults:"]
    for name, value in differences.items():
        source = config.sources.get(name) or _listeners_source(listen_flag)
        lines.append(f"{name} = {_toml_value(value)}  # {source}")
    return "\n".join(lines) + "\n"


def _listeners_source(listen_flag: bool) -> str:
    if listen_flag:
        return "flag"
    return "env" if "TAILRACE_LISTEN" in os.environ else "file"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


async def _main(broker: Broker) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, broker, nursery.cancel_scope)
            await broker.serve()
            nursery.cancel_scope.cancel()


async def _watch_signals(signals, broker: Broker, scope: trio.CancelScope) -> None:
    async for signum in signals:
        if not broker._stop.is_set():
            log_event(
                log, logging.INFO, "signal received, stopping", signal=signal.Signals(signum).name
            )
            broker.shutdown()
        else:
            log_event(log, logging.WARNING, "second signal: stopping without waiting")
            scope.cancel()
