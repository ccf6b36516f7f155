"""The network side of the broker: listeners, connections, zero-copy writes."""
