"""Moving protocol bytes over trio: connections to the broker."""

from .connection import BrokerConnection, PendingResponse, split_address

__all__ = ["BrokerConnection", "PendingResponse", "split_address"]
