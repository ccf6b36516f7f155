"""tailrace.testing: a real broker (tailrace and Kafka clients) for your own tests.

With tailrace installed, pytest finds the fixtures by itself (the ``pytest11``
entry point loads :mod:`tailrace.testing.plugin`):

* ``tailrace_broker``: one broker for the test session (for each
  pytest-xdist worker), in-process on a thread of its own, data in a
  temporary directory; :attr:`~LocalBroker.bootstrap` for tailrace clients,
  :attr:`~LocalBroker.kafka_bootstrap` for Kafka clients;
  :meth:`~LocalBroker.unique_topic` gives a test topics no other test sees.
* ``tailrace_topic``: a unique topic on the session broker for one test.
* ``tailrace_fresh_broker``: an empty broker for one test, in a process of
  its own, that can be restarted (:meth:`~LocalBroker.restart`) and
  crashed (:meth:`~ProcessBroker.kill`).

Without pytest (unittest, scripts)::

    import tailrace.testing

    with tailrace.testing.broker() as b:
        b.create_topic("orders", partitions=3)
        ...  # Producer(b.bootstrap), or bootstrap.servers=b.kafka_bootstrap

docs/testing.md has the complete guide. Importing this package imports
neither trio nor the broker; starting a broker does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .base import LocalBroker, unique_name
from .child import ProcessBroker
from .errors import BrokerStartError
from .inthread import ThreadBroker

__all__ = [
    "BrokerStartError",
    "LocalBroker",
    "ProcessBroker",
    "ThreadBroker",
    "broker",
    "unique_name",
]


def broker(
    *,
    process: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> LocalBroker:
    """A broker to start with ``with`` (or :meth:`~LocalBroker.start` and
    :meth:`~LocalBroker.close`).

    ``process=False``: in this process, on a thread of its own (fast);
    ``process=True``: a child process, which :meth:`~ProcessBroker.kill`
    can crash. ``data_dir`` None: a temporary directory, removed at the
    close. ``settings``: broker settings by their config/broker.toml names,
    e.g. ``{"auto_create_topics": True, "topic_defaults.partitions": 3}``.
    """
    cls = ProcessBroker if process else ThreadBroker
    return cls(data_dir=data_dir, settings=settings)
