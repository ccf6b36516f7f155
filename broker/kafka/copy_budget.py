"""The bound on down-converted fetch data held in memory, per broker.

A Kafka fetch of native (magic 1) batches is converted to Kafka's format in
memory (Kafka-format batches go out by sendfile and cost nothing here).
Until the response is written, those bytes stay allocated, and a client
that pipelines fetches and never reads the responses could make the broker
hold many of them (the reliability scenario 8b measured 240 MiB from ten
such connections before this bound). So the converted bytes of responses
not yet written count against one budget per broker
(:data:`DOWN_CONVERSION_BUDGET`): a fetch made while the budget is spent is
read with a byte limit of what is left (at least its first batch, so every
consumer still makes progress), and the bytes are given back when the
response is written or dropped.
"""

from __future__ import annotations

__all__ = ["DOWN_CONVERSION_BUDGET", "CopyBudget"]

#: converted fetch bytes not yet written, across all Kafka connections
DOWN_CONVERSION_BUDGET = 16 * 1024 * 1024


class CopyBudget:
    """A byte counter (trio-thread only: no locking)."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int = DOWN_CONVERSION_BUDGET) -> None:
        self.limit = limit
        self.held = 0

    @property
    def available(self) -> int:
        return max(self.limit - self.held, 0)

    def take(self, n: int) -> None:
        """Count ``n`` bytes (may go past the limit by one fetch's first batch)."""
        self.held += n

    def give(self, n: int) -> None:
        self.held -= n
