"""A broker process whose machine loses power on demand: PowerCutIO under a
real broker, for the cluster scenarios.

    python -m tailrace.broker.faultkit.powercut_broker --seed 7 \\
        --data-dir DIR --listen HOST:PORT --log-format kv

runs the ordinary broker (settings from TAILRACE_* variables and the flags,
as ``tailrace broker``; cluster mode comes from the environment) over a
:class:`~.powercut.PowerCutIO` armed on its data directory at start (what
is on disk then counts as durable). SIGTERM stops it cleanly, as
``tailrace broker``. SIGUSR1 is the power cut:

1. the model is frozen (:meth:`~.powercut.PowerCutIO.cut`): from here every
   seam call fails with EIO, so nothing the broker does afterwards reaches
   the disk model; this happens inside one trio task without a checkpoint,
   so no other task of the broker runs (answers no request) in between;
2. the data directory is rewritten as one state a machine could wake up in
   (:meth:`~.powercut.PowerCutIO.materialize` with ``--seed``: unsynced
   writes lost, torn, or written back; names per directory fsync); its
   description goes to the log (``power cut`` line);
3. the process ends at once with ``os._exit(0)``, as the machine stopped:
   no close, no lease revoked (etcd sees the session expire).

Never used by a production broker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import trio

from ..app import Broker
from ..config import load_config
from ..logs import configure_logging, log_event
from .powercut import PowerCutIO

__all__ = ["main"]

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="powercut_broker", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, required=True, help="materialize()'s seed")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--log-format", choices=["kv", "json"])
    args = p.parse_args(argv)
    flags = {"data_dir": args.data_dir, "listen": args.listen, "log_format": args.log_format}
    config = load_config(flags=flags)
    configure_logging(config.log_level, config.log_format)
    os.makedirs(config.data_dir, exist_ok=True)
    sim = PowerCutIO(config.data_dir)
    sim.arm()
    trio.run(_serve, Broker(config, io=sim), sim, args.seed)
    return 0


async def _serve(broker: Broker, sim: PowerCutIO, seed: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                async for signum in signals:
                    if signum == signal.SIGUSR1:
                        _power_cut(sim, seed)
                    broker.shutdown()

            nursery.start_soon(on_signal)
            await broker.serve()
            nursery.cancel_scope.cancel()


def _power_cut(sim: PowerCutIO, seed: int) -> None:
    """Freeze, rewrite the data directory as after a power cut, and vanish
    (synchronous: no other trio task runs in between)."""
    sim.cut()
    description = sim.materialize(seed)
    log_event(log, logging.WARNING, "power cut", image=description.replace("\n", " | "))
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
