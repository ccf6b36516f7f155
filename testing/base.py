"""What every test broker offers, however it runs: addresses, topics, names.

:class:`LocalBroker` owns the data directory (a temporary one unless the
caller passes ``data_dir``; removed by :meth:`~LocalBroker.close` only when it
made it), an admin client for topic helpers, and the start/stop life cycle.
Its two subclasses run the broker itself: :class:`~.inthread.ThreadBroker`
on a trio loop of its own thread in this process, and
:class:`~.child.ProcessBroker` as a ``tailrace broker`` child process (the one
that can be killed).

Nothing here imports the broker or trio at module level: the pytest plugin
imports this package in every pytest run of every project where tailrace is
installed, and a suite that never asks for a broker must not pay for one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BrokerStartError

if TYPE_CHECKING:
    from tailrace.client import Admin

__all__ = ["DEFAULT_SETTINGS", "LocalBroker"]

#: Settings a test broker starts with unless the caller overrides them.
#: ``flush = none`` is Kafka's own default (it leaves syncing to the page
#: cache); a test never loses data to it, because a killed process leaves
#: its page cache behind: only a machine crash would. A Kafka consumer
#: group's first rebalance does not wait for more members (the broker's
#: default waits 3 s, as Kafka's ``group.initial.rebalance.delay.ms``; test
#: setups of Kafka set it to 0 for the same reason).
DEFAULT_SETTINGS: Mapping[str, Any] = {
    "topic_defaults.flush": "none",
    "groups.initial_rebalance_delay_ms": 0,
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def unique_name(prefix: str = "tailrace") -> str:
    """``prefix`` made safe as a topic or group name, with a random suffix."""
    base = _UNSAFE.sub("-", prefix).strip("-.")[:200] or "tailrace"
    return f"{base}-{uuid.uuid4().hex[:10]}"


class LocalBroker:
    """A broker for tests on loopback; use it as a context manager::

    with ThreadBroker() as b:
        b.create_topic("orders", partitions=3)
        producer = Producer(b.bootstrap)
    """

    #: "thread" or "process"
    kind = ""

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._temp_dir: str | None = None
        self.settings: dict[str, Any] = {**DEFAULT_SETTINGS, **(settings or {})}
        self.host = host
        #: the native and Kafka listeners, "HOST:PORT"; kept across restarts
        self._native = ""
        self._kafka = ""
        self._running = False
        self._admin: Admin | None = None

    # --- addresses ------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """The native listener, for ``tailrace.client`` (``Producer(b.bootstrap)``)."""
        self._check_running("bootstrap")
        return self._native

    @property
    def kafka_bootstrap(self) -> str:
        """The Kafka listener, for Kafka clients (``bootstrap.servers``)."""
        self._check_running("kafka_bootstrap")
        return self._kafka

    @property
    def data_dir(self) -> Path:
        if self._given_dir is not None:
            return self._given_dir
        if self._temp_dir is None:
            raise RuntimeError("the broker has no data directory before start()")
        return Path(self._temp_dir) / "data"

    @property
    def running(self) -> bool:
        return self._running and self._exited() is None

    def _check_running(self, what: str) -> None:
        if not self._running:
            raise RuntimeError(
                f"{what}: the broker is not running (start it, or use it inside its with block)"
            )
        why = self._exited()
        if why is not None:
            raise RuntimeError(f"{what}: the broker is no longer running: {why}")

    def _exited(self) -> str | None:
        """Why the broker stopped by itself (None while it runs)."""
        raise NotImplementedError

    # --- life cycle -----------------------------------------------------------

    def start(self) -> LocalBroker:
        """Start on free loopback ports (on the same ports again after a stop)."""
        if self.running:
            raise RuntimeError("the broker is already running")
        if self._running:  # it died by itself: collect what is left of it first
            self.stop()
        if self._given_dir is None and self._temp_dir is None:
            self._temp_dir = _make_temp_dir()
        else:
            _check_data_dir(self.data_dir)
        try:
            self._start()
        except BaseException:
            if not self._native:  # the first start failed: leave nothing behind
                self._remove_temp_dir()
            raise
        self._running = True
        return self

    def stop(self) -> None:
        """A graceful stop (what SIGTERM does); :meth:`start` may follow."""
        self._close_admin()
        if self._running:
            self._running = False
            self._stop()

    def restart(self) -> None:
        """Stop gracefully and start again on the same data and addresses:
        clients given :attr:`bootstrap` reconnect by themselves."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """Stop abruptly, as a crash would (only a broker process can)."""
        raise NotImplementedError(
            "kill() needs a broker in a process of its own: use the tailrace_fresh_broker "
            "fixture, or tailrace.testing.broker(process=True)"
        )

    def close(self) -> None:
        """Stop and remove the temporary data directory (if this made it)."""
        try:
            self.stop()
        finally:
            self._remove_temp_dir()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir)
            self._temp_dir = None

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    # --- topics and names -----------------------------------------------------

    def admin(self) -> Admin:
        """A blocking admin client on :attr:`bootstrap`, shared by the helpers
        below and closed with the broker (or at a restart or kill)."""
        self._check_running("admin")
        if self._admin is None:
            from tailrace.client import Admin

            self._admin = Admin(self._native, request_timeout_ms=15_000)
        return self._admin

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()

    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> str:
        """Create ``name``; ``config`` are topic settings (``flush="sync"``,
        ``**{"retention.ms": 1000}``). Returns the name."""
        self.admin().create_topic(name, partitions, config)
        return name

    def delete_topic(self, name: str) -> None:
        self.admin().delete_topic(name)

    @contextmanager
    def unique_topic(
        self, prefix: str = "topic", partitions: int = 1, **config: Any
    ) -> Iterator[str]:
        """A topic no other test uses (``prefix`` plus a random suffix),
        created on entry and deleted on exit::

            with tailrace_broker.unique_topic("orders") as topic: ...
        """
        with self.unique_topics(prefix, partitions=partitions, **config) as (name,):
            yield name

    @contextmanager
    def unique_topics(
        self, *prefixes: str, partitions: int = 1, **config: Any
    ) -> Iterator[tuple[str, ...]]:
        """Several unique topics at once::

        with b.unique_topics("orders", "payments") as (orders, payments): ...
        """
        names = tuple(unique_name(p) for p in prefixes)
        created: list[str] = []
        try:
            for name in names:
                created.append(self.create_topic(name, partitions, **config))
            yield names
        finally:
            # a test that stopped or killed the broker leaves nothing to delete
            # here: its topics go with the data directory
            if self._running:
                for name in created:
                    self.delete_topic(name)

    def unique_name(self, prefix: str = "tailrace") -> str:
        """A name no other test uses, for a consumer group or a client id."""
        return unique_name(prefix)


def _make_temp_dir() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    prefix = f"tailrace-{worker}-" if worker else "tailrace-"
    try:
        return tempfile.mkdtemp(prefix=prefix)
    except OSError as exc:
        raise BrokerStartError(
            f"cannot create a temporary data directory in {tempfile.gettempdir()}: "
            f"{exc.strerror}; set TMPDIR to a writable directory with free space, "
            "or pass data_dir"
        ) from exc


def _check_data_dir(path: Path) -> None:
    """The data directory a caller gave: usable, or an error saying what to do."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BrokerStartError(
            f"data_dir {path} exists and is not a directory: pass a directory, or leave "
            "data_dir unset to use a temporary one"
        ) from None
    except OSError as exc:
        raise BrokerStartError(
            f"cannot create data_dir {path}: {exc.strerror}; pass a directory you can write "
            "to, or leave data_dir unset to use a temporary one"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise BrokerStartError(
            f"data_dir {path} is not writable by this user: pass a directory you can write "
            "to, or leave data_dir unset to use a temporary one"
        )
