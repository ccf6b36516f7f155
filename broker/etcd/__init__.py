"""etcd, for cluster mode only: a thin v3 client over the HTTP/JSON gateway
(client.py), its sans-I/O request and reply mapping (codec.py), typed errors
(errors.py) and a watched local copy of a key prefix (view.py).

Nothing outside cluster mode imports this package: a single-node broker
never loads httpx.
"""

from .client import EtcdClient, Lease
from .codec import Compare, Event, KeyValue, Op, RangeResult, TxnResult, WatchReply
from .errors import (
    EtcdError,
    EtcdRequestError,
    EtcdUnavailableError,
    LeaseExpiredError,
    WatchCompactedError,
)
from .view import PrefixView

__all__ = [
    "Compare",
    "EtcdClient",
    "EtcdError",
    "EtcdRequestError",
    "EtcdUnavailableError",
    "Event",
    "KeyValue",
    "Lease",
    "LeaseExpiredError",
    "Op",
    "PrefixView",
    "RangeResult",
    "TxnResult",
    "WatchCompactedError",
    "WatchReply",
]
