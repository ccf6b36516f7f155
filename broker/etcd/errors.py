"""What can go wrong talking to etcd, each with a ``retriable`` flag.

These never cross tailrace's wire (they stay inside the broker and the
``tailrace cluster`` command), so they are :class:`TailraceError` s, not
registered :class:`BrokerError` s; their ``code`` is the wire code a handler
would answer with if one ever reached a response.

* :class:`EtcdUnavailableError` (retriable): no endpoint answered in time,
  or each answered "no leader" / "timed out". ``ambiguous`` is True when a
  write was sent and its outcome is unknown (it may have been applied): the
  caller re-reads before deciding again, never assumes either way.
* :class:`LeaseExpiredError` (not retriable for that lease): etcd no longer
  knows the lease; everything attached to it is gone. Grant a new one. A
  put or txn that attaches a key to such a lease raises it too.
* :class:`WatchCompactedError` (retriable after a re-read): the revision a
  watch asked to start from was compacted away; read the current state and
  watch again from its revision.
* :class:`EtcdRequestError` (not retriable): etcd refused the request
  itself (bad request, key too large, a future revision...).
"""

from __future__ import annotations

from tailrace.client.errors import ErrorCode, TailraceError

__all__ = [
    "EtcdError",
    "EtcdRequestError",
    "EtcdUnavailableError",
    "LeaseExpiredError",
    "WatchCompactedError",
]


class EtcdError(TailraceError):
    """Base class of the etcd adapter's errors."""

    code = ErrorCode.UNKNOWN_SERVER_ERROR


class EtcdUnavailableError(EtcdError):
    """No etcd endpoint could serve the request now (timeout, connection
    refused, no leader). Retriable; ``ambiguous`` writes may have applied."""

    retriable = True
    code = ErrorCode.REQUEST_TIMED_OUT

    def __init__(self, message: str, *, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class EtcdRequestError(EtcdError):
    """etcd refused the request (HTTP 4xx with a gRPC code)."""

    code = ErrorCode.INVALID_REQUEST

    def __init__(self, message: str, *, grpc_code: int = -1, status: int = 0) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.status = status


class LeaseExpiredError(EtcdError):
    """The lease is gone (expired or revoked); its keys are deleted."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"etcd lease {lease_id:x} expired or was revoked")
        self.lease_id = lease_id


class WatchCompactedError(EtcdError):
    """A watch's start revision was compacted; re-read, then watch again."""

    retriable = True

    def __init__(self, compact_revision: int) -> None:
        super().__init__(
            f"watch start revision is below the compacted revision {compact_revision}: re-read"
        )
        self.compact_revision = compact_revision
