"""A broker on a trio loop of its own thread, inside the test process.

The fast way to get a broker: no interpreter to start and, once a test
module has imported ``tailrace.client``, little left to import (the figures
are in docs/testing.md). The broker is the same :class:`~tailrace.broker.app.Broker`
the ``tailrace broker`` command runs; its thread blocks SIGINT and SIGTERM
so that Ctrl-C still reaches pytest. It shares the process with the tests:
what a test does to the process (``os._exit``, a signal) happens to the
broker too, and :meth:`kill` is not offered: a thread cannot crash alone.
Use :class:`~.child.ProcessBroker` for that.

Settings are the broker's own names (``auto_create_topics``,
``topic_defaults.flush``); ``TAILRACE_*`` variables of the environment are
ignored, so a developer's shell does not change the tests.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .base import LocalBroker
from .errors import BrokerStartError, explain

if TYPE_CHECKING:
    from tailrace.broker.app import Broker
    from tailrace.client.background import BackgroundTrio

__all__ = ["ThreadBroker"]

#: how long a graceful stop may take before the thread is reported stuck
STOP_TIMEOUT_S = 60.0


class ThreadBroker(LocalBroker):
    kind = "thread"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._broker: Broker | None = None
        self._loop: BackgroundTrio | None = None

    def _start(self) -> None:
        preload()
        from tailrace.broker.app import Broker
        from tailrace.broker.config import SETTINGS, load_config
        from tailrace.client.background import BackgroundTrio

        known = {s.name for s in SETTINGS}
        unknown = sorted(set(self.settings) - known)
        if unknown:
            raise BrokerStartError(
                f"unknown broker setting(s) {', '.join(unknown)}: settings have the names of "
                "config/broker.toml, a section's keys after a dot (topic_defaults.flush)"
            )
        listen = self._native or f"{self.host}:0"
        kafka_listen = self._kafka or f"{self.host}:0"
        flags = {
            **self.settings,
            "data_dir": str(self.data_dir),
            "listen": listen,
            "kafka_listen": kafka_listen,
        }
        try:
            broker = Broker(load_config(env={}, flags=flags))
            loop = BackgroundTrio("tailrace-test-broker", broker.serve)
        except Exception as exc:
            friendly = explain(
                exc, data_dir=self.data_dir, addresses=f"{listen} and {kafka_listen} (Kafka)"
            )
            if friendly is not None:
                raise friendly from exc
            raise
        self._broker, self._loop = broker, loop
        by_protocol = {getattr(b.config, "protocol", ""): b.address for b in broker.listeners}
        self._native, self._kafka = by_protocol["tailrace"], by_protocol["kafka"]

    def _exited(self) -> str | None:
        loop = self._loop
        if loop is None or loop.alive:
            return None
        return f"its thread ended with {loop.error!r}"

    def _stop(self) -> None:
        broker, loop = self._broker, self._loop
        self._broker = self._loop = None
        if broker is None or loop is None:
            return
        loop.run_sync_soon(broker.shutdown)
        if not loop.join(STOP_TIMEOUT_S):
            raise RuntimeError(f"the broker thread did not stop within {STOP_TIMEOUT_S:.0f} s")
        if loop.error is not None:
            # the broker failed while the tests ran: that is the tests' news
            raise loop.error


def preload() -> None:
    """Import the broker, as the first in-process broker of a process does.

    About a hundred modules; the cyclic garbage collector is off meanwhile:
    it would run several full passes over the test process's heap for
    nothing (module objects are not garbage), 40-100 ms of the session
    broker's start (docs/testing.md). Later calls cost nothing."""
    with _no_collection():
        import tailrace.broker.app
        import tailrace.client.background  # noqa: F401


@contextmanager
def _no_collection() -> Iterator[None]:
    """The cyclic garbage collector off for the block (as it was after)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
