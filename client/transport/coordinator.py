"""Where a consumer group's requests go: its coordinator.

In a cluster the coordinator of a group is the leader of the group's
partition of ``__consumer_offsets``, so it is found, not assumed:
FindCoordinator (sent to the bootstrap brokers) names it, and every group
request (heartbeats, commits, offset fetches) goes to that broker. A
single node answers that it is the coordinator itself (an empty host): the
requests stay on the bootstrap connection, as before clusters.

The coordinator is found again when:

* a response carries NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE (the
  leadership moved, or the broker is shutting down); the response is
  returned as it is, so the caller's retry (after its back-off) goes to the
  new coordinator;
* the coordinator's connection fails or it does not answer in time
  (BrokerUnavailableError, TimeoutError: re-raised for the caller to retry).

While FindCoordinator itself answers an error (no leader yet, the leader
still loading, the group not authorized), :meth:`CoordinatorClient.request`
returns that response: every group response has ``error_code`` and
``error_message``, and every caller already retries the retriable ones after
its back-off and reports the others.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import BrokerUnavailableError, ErrorCode, TimeoutError
from ..protocol import FindCoordinatorRequest
from .pool import BrokerClient

__all__ = ["CoordinatorClient"]

log = logging.getLogger(__name__)

#: response codes after which the coordinator is found again
_MOVED = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE})

#: the coordinator is the broker the bootstrap connection reaches
_BOOTSTRAP = ""


class CoordinatorClient:
    """A BrokerClient's requests for one group, sent to its coordinator."""

    def __init__(self, client: BrokerClient, group_id: str) -> None:
        self.client = client
        self.group_id = group_id
        #: "host:port" of the coordinator, _BOOTSTRAP (a single node), or
        #: None while not known
        self.address: str | None = None

    @property
    def request_timeout(self) -> float:
        return self.client.request_timeout

    async def find(self, *, timeout: float | None = None) -> Any:
        """Ask the bootstrap brokers for the coordinator and remember it.
        Returns the FindCoordinator response; when it carries an error
        (COORDINATOR_NOT_AVAILABLE while there is none, a refusal) nothing
        is remembered."""
        response = await self.client.request(
            FindCoordinatorRequest(group_id=self.group_id), timeout=timeout
        )
        if response.error_code:
            return response
        if not response.host:
            address = _BOOTSTRAP
        else:
            host = response.host
            address = f"[{host}]:{response.port}" if ":" in host else f"{host}:{response.port}"
        if address != self.address:
            log.info(
                "group %s: coordinator is broker %d%s",
                self.group_id,
                response.node_id,
                f" at {address}" if address else " (this broker)",
            )
        self.address = address
        return response

    async def request(self, body: Any, *, timeout: float | None = None) -> Any:
        """Send ``body`` to the coordinator (found first if not known).
        When it cannot be found, the FindCoordinator response with its
        error is returned instead (``error_code`` and ``error_message``, as
        every group response has): callers treat it as the answer, retrying
        the retriable ones (COORDINATOR_NOT_AVAILABLE) after their back-off
        and raising the others (GROUP_AUTHORIZATION_FAILED)."""
        if self.address is None:
            found = await self.find(timeout=timeout)
            if found.error_code:
                return found
        address = self.address
        try:
            response = await self.client.request(body, timeout=timeout, address=address or None)
        except (BrokerUnavailableError, TimeoutError):
            # gone or not answering (paused, cut off): ask again next time
            self.address = None
            raise
        if getattr(response, "error_code", 0) in _MOVED:
            self.address = None
        return response
