"""A broker process that dies at a crash point: the BROKER_FAULT of the tests.

    python -m tailrace.broker.faultkit.faulty_broker --crash-point segment.roll \\
        --crash-after 30 --data-dir DIR --listen 127.0.0.1:0

runs the ordinary broker (settings from TAILRACE_* variables and the flags,
as ``tailrace broker``) over a :class:`~.faults.CrashPointIO` that calls
``os._exit(86)`` at the named crash point's hit number ``crash-after`` + 1:
the process vanishes mid-operation exactly as a kill -9 at that instant
would leave it (open files, maps and page cache as they are). SIGTERM stops
it cleanly, like ``tailrace broker``. Never used by a production broker.
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from ..app import Broker
from ..config import load_config
from ..log.storage_io import CRASH_POINTS
from ..logs import configure_logging
from .faults import CrashPointIO

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="faulty_broker", description=__doc__.split("\n")[0])
    p.add_argument("--crash-point", required=True, choices=CRASH_POINTS)
    p.add_argument("--crash-after", type=int, default=0, metavar="N")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--listen", default="127.0.0.1:0")
    args = p.parse_args(argv)
    config = load_config(flags={"data_dir": args.data_dir, "listen": args.listen})
    configure_logging(config.log_level, config.log_format)
    io = CrashPointIO(args.crash_point, after=args.crash_after, action="exit")
    trio.run(_serve, Broker(config, io=io))
    return 0


async def _serve(broker: Broker) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    broker.shutdown()

            nursery.start_soon(stop_on_signal)
            await broker.serve()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
