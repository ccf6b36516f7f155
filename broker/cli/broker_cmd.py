"""``tailrace broker [--config FILE] [--data-dir DIR] [--listen HOST:PORT]``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from tailrace.client.errors import StorageError

from ..app import Broker
from ..config import ConfigError, load_config
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
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["kv", "json"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    flags = {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "log_level": args.log_level,
        "log_format": args.log_format,
    }
    try:
        config = load_config(args.config, flags=flags)
    except ConfigError as exc:
        sys.stderr.write(f"tailrace broker: configuration error: {exc}\n")
        return 2
    configure_logging(config.log_level, config.log_format)
    differences = config.differences()
    log_event(
        log,
        logging.INFO,
        "starting",
        **(differences or {"config": "defaults"}),
    )
    broker = Broker(config)
    try:
        trio.run(_main, broker)
    except StorageError as exc:
        log_event(log, logging.ERROR, "cannot start", error=exc.message)
        return 1
    except OSError as exc:
        log_event(log, logging.ERROR, "cannot start", error=str(exc))
        return 1
    return 0


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
