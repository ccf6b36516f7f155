"""What every request handler (both front-ends) and the services reach
through: the broker's shared state. The native encoding helpers at the end
are the native front-end's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from tailrace.client.protocol import Request, encode_response

from ..config import BrokerConfig
from ..kafka.copy_budget import CopyBudget
from ..log.manager import LogManager
from ..producer_ids import ProducerIdAllocator
from ..server.listeners import BoundListener

if TYPE_CHECKING:
    from ..cluster.member import ClusterMember
    from ..cluster.replicas import ReplicaManager
    from ..coordinator import GroupCoordinator
    from ..security.acl import AclStore
    from ..security.authz import Authorization

__all__ = ["BrokerContext"]


log = logging.getLogger(__name__)


class BrokerContext:
    """Shared by every handler on every connection (trio thread only)."""

    def __init__(
        self,
        config: BrokerConfig,
        manager: LogManager,
        producer_ids: ProducerIdAllocator,
        listeners: list[BoundListener],
        cluster_id: str,
    ) -> None:
        self.config = config
        self.manager = manager
        self.producer_ids = producer_ids
        self.listeners = listeners
        self.cluster_id = cluster_id
        #: set when the broker starts shutting down: long polls answer at once
        self.draining = trio.Event()
        self.node_id = 0
        #: the consumer-group coordinator (set by the broker once it exists)
        self.coordinator: GroupCoordinator | None = None
        #: the broker's durable ACLs (managed through CreateAcls/DeleteAcls)
        self.acl_store: AclStore | None = None
        #: ACL enforcement, or None when security.authorizer is off: every
        #: handler checks ``ctx.authz is not None`` and does nothing more then
        self.authz: Authorization | None = None
        #: this broker's cluster membership, or None on a single node
        self.cluster: ClusterMember | None = None
        #: the replica manager (cluster mode only): produce, reads and the
        #: replication requests ask it who leads and wait on it for acks=all
        self.replicas: ReplicaManager | None = None
        #: Kafka fetches: down-converted bytes not yet written (kafka/copy_budget.py)
        self.kafka_copy_budget = CopyBudget()
        #: long polls an append woke in the current step, to be answered
        #: right after the request that woke them (run_woken_answers)
        self._woken_answers: list[Callable[[], object]] = []

    # --- long polls answered in the waking step -----------------------------------

    def answer_soon(self, answer: Callable[[], object]) -> None:
        """Queue ``answer()`` (a woken long poll's attempt to answer at once)
        for :meth:`run_woken_answers`. Called from a high-watermark watcher,
        in the middle of an append, where writing to a socket is not safe."""
        self._woken_answers.append(answer)

    def run_woken_answers(self) -> None:
        """Run the queued answers, once the request that woke them is done
        with the log (after each dispatch and after a durable wait). An
        answer that fails is logged; its long poll's own task, which the
        same wake-up also scheduled, then answers as it always does."""
        while self._woken_answers:
            todo, self._woken_answers = self._woken_answers, []
            for answer in todo:
                try:
                    answer()
                except Exception:
                    log.exception("answering a woken long poll in place failed")

    # --- addresses -------------------------------------------------------------

    def advertised_kafka_address(self, info: Any) -> tuple[int, str, int]:
        """(node_id, host, port) Kafka clients should use: the Kafka listener
        the connection came in on (Metadata, FindCoordinator)."""
        listener = next((b for b in self.listeners if b.name == info.listener), None)
        if listener is None:
            listener = self.listeners[0]
        return self.node_id, listener.host, listener.port

    # --- encoding --------------------------------------------------------------

    def encode(self, request: Request, response: Any) -> bytes:
        prefix, parts = encode_response(
            request.api_key, request.api_version, request.correlation_id, response
        )
        return b"".join([prefix, *parts]) if parts else prefix

    def encode_parts(self, request: Request, response: Any) -> tuple[bytes, list]:
        return encode_response(
            request.api_key, request.api_version, request.correlation_id, response
        )
