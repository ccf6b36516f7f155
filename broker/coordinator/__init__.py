"""The group coordinator: consumer groups with broker-side assignment
(KIP-848 style) and committed offsets stored in ``__consumer_offsets``.

- assignor.py: the sticky, balanced target assignment;
- group.py: a group's members, epochs and the hand-over state machine;
- records.py: the record format of ``__consumer_offsets``;
- store.py: appending, loading and snapshotting committed offsets;
- coordinator.py: GroupCoordinator, what the request handlers call, and its
  background loops (session timeouts, offset expiry).
"""

from .coordinator import GroupCoordinator, GroupSettings, HeartbeatResult
from .store import OFFSETS_TOPIC, StoreSettings

__all__ = ["OFFSETS_TOPIC", "GroupCoordinator", "GroupSettings", "HeartbeatResult", "StoreSettings"]
