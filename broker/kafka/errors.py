"""The Kafka front-end's errors: the wire-code mapping and the codec's own errors.

* :func:`kafka_code` maps a BrokerError to the code a Kafka client reads:
  the identity for Kafka's own codes (tailrace numbers its errors as Kafka
  does where the meaning is the same), and the nearest Kafka code for
  tailrace's own codes (from 1000 up). tests/kafka checks that every code in
  the registry maps to a code Kafka defines.
* :class:`KafkaLocalProtocolError` / :class:`KafkaRemoteProtocolError`: the
  only errors the codec raises, split like h11's (we were about to break
  the protocol / the peer broke it).
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode as KafkaErrorCode

from tailrace.client.errors import (
    BrokerError,
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "KafkaLocalProtocolError",
    "KafkaRemoteProtocolError",
    "kafka_code",
    "kafka_error",
]

#: tailrace-only codes -> the nearest Kafka code
_NEAREST: dict[int, int] = {
    # a full disk: Kafka reports KafkaStorageException for log directory failures
    ErrorCode.STORAGE_FULL: int(KafkaErrorCode.kafka_storage_error),
    # a native-group member without an assignment: no Kafka equivalent; the
    # member should rejoin
    ErrorCode.NOT_ASSIGNED: int(KafkaErrorCode.rebalance_in_progress),
}


def kafka_code(exc: BrokerError) -> int:
    code = int(exc.code)
    return _NEAREST.get(code, code)


def kafka_error(exc: BrokerError | None) -> KafkaErrorCode:
    """The kio ErrorCode member for ``exc`` (none for None)."""
    if exc is None:
        return KafkaErrorCode.none
    return KafkaErrorCode(kafka_code(exc))


class KafkaLocalProtocolError(LocalProtocolError):
    """We were about to send bytes that break Kafka's protocol (a bug here)."""


class KafkaRemoteProtocolError(RemoteProtocolError):
    """The peer sent bytes that break Kafka's protocol; the connection closes."""
