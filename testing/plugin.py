"""The pytest plugin: fixtures giving a test suite a real tailrace broker.

Registered through the ``pytest11`` entry point, so installing tailrace is
all it takes. The fixtures import the broker only when a test asks for one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .base import LocalBroker
from .child import ProcessBroker
from .inthread import ThreadBroker


@pytest.fixture(scope="session")
def tailrace_broker() -> Iterator[LocalBroker]:
    """A broker for the whole session (one per pytest-xdist worker), in this
    process on a thread of its own, data in a temporary directory.

    Tests share it: give each its own topics (``tailrace_topic``, or
    ``tailrace_broker.unique_topic(...)``) and consumer groups
    (``tailrace_broker.unique_name("group")``).
    """
    with ThreadBroker() as b:
        yield b


@pytest.fixture
def tailrace_topic(tailrace_broker: LocalBroker, request: pytest.FixtureRequest) -> Iterator[str]:
    """A one-partition topic on ``tailrace_broker`` that only this test uses
    (named after the test, plus a random suffix), deleted afterwards."""
    with tailrace_broker.unique_topic(request.node.name) as name:
        yield name


@pytest.fixture
def tailrace_fresh_broker() -> Iterator[ProcessBroker]:
    """An empty broker for one test, in a process of its own: ``.restart()``
    keeps its data and addresses, ``.kill()`` crashes it (SIGKILL)."""
    with ProcessBroker() as b:
        yield b
