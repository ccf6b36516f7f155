"""Liveness and readiness, as HTTP status and a JSON body that says why.

* live: the answer is computed by a task on the broker's trio loop, so
  getting one at all shows the loop is responsive; a loop blocked by a
  stuck call answers nothing and the probe times out. Always 200.
* ready: 200 only when the logs are loaded, the listeners accept
  connections, the group coordinator has loaded its offsets, no partition is
  offline and the broker is not shutting down; otherwise 503 with each
  reason. An offline partition (a failed fsync, or refused by recovery at
  start-up) stays offline until a restart, and so does not-ready: an
  orchestrator should alert on it rather than restart in a loop (a restart
  runs recovery, which is what brings the partition back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Broker

__all__ = ["MAX_LISTED", "liveness", "offline_partitions", "readiness"]

#: Offline partitions named in a readiness body at most (the count is exact).
MAX_LISTED = 100


def liveness() -> tuple[int, dict[str, Any]]:
    return 200, {"status": "live"}


def offline_partitions(broker: Broker) -> dict[str, str]:
    """``topic-partition`` -> why, for every offline partition (failed
    fsyncs, and partitions or topics refused when the logs were loaded)."""
    manager = broker.manager
    if manager is None:
        return {}
    out: dict[str, str] = {}
    for (topic, partition), log in manager.logs():
        if log.offline:
            out[f"{topic}-{partition}"] = log.offline_reason or "offline"
    for (topic, partition), error in list(manager.failed.items()):
        name = topic if partition < 0 else f"{topic}-{partition}"
        out[name] = error.message
    return out


def readiness(broker: Broker) -> tuple[int, dict[str, Any]]:
    reasons: list[str] = []
    manager = broker.manager
    if manager is None:
        reasons.append("logs are loading")
    if not broker.accepting:
        reasons.append(
            "listeners are shutting down" if broker.stopping else "listeners are not bound yet"
        )
    coordinator = broker.coordinator
    groups = "not started" if coordinator is None else coordinator.status
    if manager is not None and groups != "ready":
        reasons.append(f"group coordinator is {groups}")
    offline = offline_partitions(broker)
    if offline:
        reasons.append(f"{len(offline)} partition(s) offline")
    body: dict[str, Any] = {
        "status": "not ready" if reasons else "ready",
        "reasons": reasons,
        "logs_loaded": manager is not None,
        "listeners": [b.address for b in broker.listeners] if broker.accepting else [],
        "group_coordinator": groups,
        "offline_partitions": dict(list(offline.items())[:MAX_LISTED]),
        "offline_partition_count": len(offline),
    }
    return (503 if reasons else 200), body
