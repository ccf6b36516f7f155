"""Errors: the wire error-code table and the exception hierarchy built on it.

One table serves the broker and the clients. The broker raises these
exceptions inside its handlers and puts ``exc.code`` in the response; a client
that reads a non-zero code raises the class registered for it, so both ends
speak of the same failure by the same name.

Rules:

1. Every class that can cross the wire has a ``code`` (an :class:`ErrorCode`)
   and a ``retriable`` flag. A retriable error is transient: the same request
   may succeed if sent again after a back-off (a producer with idempotence on
   may resend without creating duplicates). A non-retriable error will fail
   the same way again.
2. Protocol errors split like h11's: :class:`LocalProtocolError` means *we*
   were about to break the protocol (a bug or bad arguments on this side);
   :class:`RemoteProtocolError` means *the peer* sent something that breaks
   it. The codec raises only these two.
3. Codes follow Apache Kafka's numbering where the meaning is the same, so the
   names read familiarly; codes from 1000 up are tailrace's own.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BrokerError",
    "BrokerUnavailableError",
    "BufferFullError",
    "ClientClosedError",
    "ClusterAuthorizationError",
    "ConcurrentTransactionsError",
    "CoordinatorLoadInProgressError",
    "CoordinatorNotAvailableError",
    "CorruptRecordError",
    "DuplicateSequenceError",
    "ErrorCode",
    "FencedInstanceIdError",
    "FencedLeaderEpochError",
    "FencedMemberEpochError",
    "GroupAuthorizationError",
    "GroupIdNotFoundError",
    "GroupMaxSizeReachedError",
    "GroupNotEmptyError",
    "IllegalGenerationError",
    "IllegalSaslStateError",
    "InconsistentGroupProtocolError",
    "InvalidConfigError",
    "InvalidGroupIdError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidReplicationFactorError",
    "InvalidRequestError",
    "InvalidSessionTimeoutError",
    "InvalidTimestampError",
    "InvalidTopicError",
    "LeaderNotAvailableError",
    "LocalProtocolError",
    "MemberIdRequiredError",
    "NotAssignedError",
    "NotCoordinatorError",
    "NotEnoughReplicasAfterAppendError",
    "NotEnoughReplicasError",
    "NotLeaderOrFollowerError",
    "OffsetMetadataTooLargeError",
    "OffsetNotAvailableError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "PolicyViolationError",
    "ProtocolError",
    "RebalanceInProgressError",
    "RecordTooLargeError",
    "RequestTimedOutError",
    "SaslAuthenticationError",
    "StorageError",
    "StorageFullError",
    "TailraceError",
    "TimeoutError",
    "TlsHandshakeError",
    "TopicAlreadyExistsError",
    "TopicAuthorizationError",
    "TransactionalIdAuthorizationError",
    "UnknownLeaderEpochError",
    "UnknownMemberIdError",
    "UnknownProducerIdError",
    "UnknownServerError",
    "UnknownTopicOrPartitionError",
    "UnreleasedInstanceIdError",
    "UnsupportedForMessageFormatError",
    "UnsupportedSaslMechanismError",
    "UnsupportedVersionError",
    "error_for_code",
    "raise_for_code",
]


class ErrorCode(IntEnum):
    """Error codes carried in responses. 0 is success."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    MESSAGE_TOO_LARGE = 10
    OFFSET_METADATA_TOO_LARGE = 12
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC = 17
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_CONFIG = 40
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    STORAGE_ERROR = 56
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    MEMBER_ID_REQUIRED = 79
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    OFFSET_NOT_AVAILABLE = 78
    FENCED_INSTANCE_ID = 82
    INVALID_RECORD = 87
    FENCED_MEMBER_EPOCH = 110
    UNRELEASED_INSTANCE_ID = 111
    # tailrace's own codes
    STORAGE_FULL = 1000
    NOT_ASSIGNED = 1001


class TailraceError(Exception):
    """Base class of every error tailrace raises on purpose."""

    #: Whether sending the same request again, after a back-off, may succeed.
    retriable: ClassVar[bool] = False
    #: The wire code that carries this error in a response.
    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_SERVER_ERROR


# --- protocol errors -------------------------------------------------------


class ProtocolError(TailraceError):
    """The bytes on a connection broke the tailrace protocol."""

    code = ErrorCode.INVALID_REQUEST


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol: a bug or bad arguments here."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol.

    ``fatal`` is True when the framing itself is broken (a lying length, an
    oversize frame, garbage): the byte stream can no longer be trusted and the
    connection must be closed. It is False when a well-framed message had a
    malformed body: the receiver answers with an error and carries on.
    """

    def __init__(self, message: str, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.fatal = fatal


# --- errors that travel in responses ------------------------------------

_REGISTRY: dict[int, type[BrokerError]] = {}


class BrokerError(TailraceError):
    """An error the broker reported for a request, or is about to report.

    ``message`` is the human explanation sent on the wire beside the code.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code.name)
        self.message = message or (self.__class__.__doc__ or self.code.name).strip()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            if cls.code in _REGISTRY:
                raise RuntimeError(f"two classes for {cls.code!r}")
            _REGISTRY[cls.code] = cls


class UnknownServerError(BrokerError):
    """The broker failed in a way it could not name (a bug: see its log)."""

    code = ErrorCode.UNKNOWN_SERVER_ERROR


class OffsetOutOfRangeError(BrokerError):
    """The requested offset is below the log start or above the log end."""

    code = ErrorCode.OFFSET_OUT_OF_RANGE


class CorruptRecordError(BrokerError):
    """A record batch failed its CRC-32C or structural checks."""

    code = ErrorCode.CORRUPT_MESSAGE
    retriable = True


class UnknownTopicOrPartitionError(BrokerError):
    """The topic or partition does not exist on this broker."""

    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    retriable = True


class RequestTimedOutError(BrokerError):
    """The request did not complete within its timeout."""

    code = ErrorCode.REQUEST_TIMED_OUT
    retriable = True


class RecordTooLargeError(BrokerError):
    """A batch or request is larger than the configured maximum."""

    code = ErrorCode.MESSAGE_TOO_LARGE


class CoordinatorLoadInProgressError(BrokerError):
    """The group coordinator is still loading its state."""

    code = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    retriable = True


class CoordinatorNotAvailableError(BrokerError):
    """The group coordinator cannot serve now (it failed to load its state,
    or the broker is shutting down); see the broker's log."""

    code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    retriable = True


class NotCoordinatorError(BrokerError):
    """This broker does not coordinate the group (cluster mode: another
    broker leads the group's partition of ``__consumer_offsets``, or the
    leadership just moved): find the coordinator again and retry."""

    code = ErrorCode.NOT_COORDINATOR
    retriable = True


class OffsetMetadataTooLargeError(BrokerError):
    """The metadata committed with an offset is longer than the broker keeps."""

    code = ErrorCode.OFFSET_METADATA_TOO_LARGE


class InvalidTopicError(BrokerError):
    """The topic name is not valid."""

    code = ErrorCode.INVALID_TOPIC


class IllegalGenerationError(BrokerError):
    """The member's generation is stale: it was fenced by a rebalance."""

    code = ErrorCode.ILLEGAL_GENERATION


class InconsistentGroupProtocolError(BrokerError):
    """The member's protocol type or protocols do not match the group's, or
    the group is managed by the other group protocol (classic vs native)."""

    code = ErrorCode.INCONSISTENT_GROUP_PROTOCOL


class InvalidGroupIdError(BrokerError):
    """The group id is not valid (it is empty)."""

    code = ErrorCode.INVALID_GROUP_ID


class UnknownMemberIdError(BrokerError):
    """The group does not know this member (it left or timed out)."""

    code = ErrorCode.UNKNOWN_MEMBER_ID


class InvalidSessionTimeoutError(BrokerError):
    """The session timeout is outside the broker's allowed range."""

    code = ErrorCode.INVALID_SESSION_TIMEOUT


class RebalanceInProgressError(BrokerError):
    """The classic group is rebalancing: the member must rejoin (JoinGroup)."""

    code = ErrorCode.REBALANCE_IN_PROGRESS


class AuthorizationError(BrokerError):
    """Base of the ACL refusals."""


class TopicAuthorizationError(AuthorizationError):
    """The principal is not allowed this operation on the topic."""

    code = ErrorCode.TOPIC_AUTHORIZATION_FAILED


class GroupAuthorizationError(AuthorizationError):
    """The principal is not allowed this operation on the group."""

    code = ErrorCode.GROUP_AUTHORIZATION_FAILED


class ClusterAuthorizationError(AuthorizationError):
    """The principal is not allowed this cluster-level operation."""

    code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED


class InvalidTimestampError(BrokerError):
    """A timestamp is out of the accepted range."""

    code = ErrorCode.INVALID_TIMESTAMP


class AuthenticationError(BrokerError):
    """Base of the authentication refusals."""


class UnsupportedSaslMechanismError(AuthenticationError):
    """The broker does not offer the requested SASL mechanism here."""

    code = ErrorCode.UNSUPPORTED_SASL_MECHANISM


class IllegalSaslStateError(AuthenticationError):
    """The request is not allowed in the connection's authentication state."""

    code = ErrorCode.ILLEGAL_SASL_STATE


class SaslAuthenticationError(AuthenticationError):
    """The credentials were refused."""

    code = ErrorCode.SASL_AUTHENTICATION_FAILED


class UnsupportedVersionError(BrokerError):
    """The API or API version is not supported."""

    code = ErrorCode.UNSUPPORTED_VERSION


class TopicAlreadyExistsError(BrokerError):
    """A topic with this name already exists."""

    code = ErrorCode.TOPIC_ALREADY_EXISTS


class InvalidPartitionsError(BrokerError):
    """The partition count is not valid."""

    code = ErrorCode.INVALID_PARTITIONS


class InvalidReplicationFactorError(BrokerError):
    """A replication factor other than 1 (or -1, the default) on this single node."""

    code = ErrorCode.INVALID_REPLICATION_FACTOR


class TransactionalIdAuthorizationError(AuthorizationError):
    """A transactional request: transactions are not supported (docs/kafka.md)."""

    code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


class InvalidConfigError(BrokerError):
    """A configuration key or value is not valid."""

    code = ErrorCode.INVALID_CONFIG


class InvalidRequestError(BrokerError):
    """The request was well framed but its body is malformed."""

    code = ErrorCode.INVALID_REQUEST


class PolicyViolationError(BrokerError):
    """The request breaks a broker policy (a limit on count or size)."""

    code = ErrorCode.POLICY_VIOLATION


class OutOfOrderSequenceError(BrokerError):
    """An idempotent producer's batch sequence left a gap."""

    code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class DuplicateSequenceError(BrokerError):
    """An idempotent producer's batch is older than the retained window."""

    code = ErrorCode.DUPLICATE_SEQUENCE_NUMBER


class InvalidProducerEpochError(BrokerError):
    """The producer's epoch is stale: a newer instance has taken over."""

    code = ErrorCode.INVALID_PRODUCER_EPOCH


class ConcurrentTransactionsError(BrokerError):
    """Another request for the same producer and partition is in progress."""

    code = ErrorCode.CONCURRENT_TRANSACTIONS
    retriable = True


class StorageError(BrokerError):
    """The partition is offline after a storage failure (a failed fsync or
    corrupt data on disk); it stays offline until the broker restarts."""

    code = ErrorCode.STORAGE_ERROR
    retriable = True


class UnknownProducerIdError(BrokerError):
    """The broker has no state for this producer id."""

    code = ErrorCode.UNKNOWN_PRODUCER_ID
    retriable = True


class GroupNotEmptyError(BrokerError):
    """The group still has active members."""

    code = ErrorCode.NON_EMPTY_GROUP


class GroupIdNotFoundError(BrokerError):
    """The group does not exist."""

    code = ErrorCode.GROUP_ID_NOT_FOUND


class GroupMaxSizeReachedError(BrokerError):
    """The group already has as many members as the broker allows."""

    code = ErrorCode.GROUP_MAX_SIZE_REACHED


class MemberIdRequiredError(BrokerError):
    """A new classic member must rejoin with the member id this response
    carries (JoinGroup v4 and later)."""

    code = ErrorCode.MEMBER_ID_REQUIRED


class FencedInstanceIdError(BrokerError):
    """Another member with the same group instance id replaced this one."""

    code = ErrorCode.FENCED_INSTANCE_ID


class InvalidRecordError(BrokerError):
    """A batch is structurally invalid (bad magic, length or record count)."""

    code = ErrorCode.INVALID_RECORD


class UnsupportedForMessageFormatError(BrokerError):
    """The batch uses a feature the log cannot store (transactional batches)."""

    code = ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


class UnreleasedInstanceIdError(BrokerError):
    """A static member's instance id is held by another live member."""

    code = ErrorCode.UNRELEASED_INSTANCE_ID


class FencedMemberEpochError(BrokerError):
    """The member epoch is stale: the member must rejoin."""

    code = ErrorCode.FENCED_MEMBER_EPOCH


class StorageFullError(BrokerError):
    """The broker's disk is full; the write was not made. Retriable: writes
    resume once space is freed."""

    code = ErrorCode.STORAGE_FULL
    retriable = True


class NotAssignedError(BrokerError):
    """The partition is not assigned to this group member."""

    code = ErrorCode.NOT_ASSIGNED


# --- replication (docs/replication.md) ---------------------------------------


class LeaderNotAvailableError(BrokerError):
    """The partition has no leader right now (none of its in-sync replicas is
    alive, or the controller has not placed it yet): refresh metadata and
    retry after a back-off."""

    code = ErrorCode.LEADER_NOT_AVAILABLE
    retriable = True


class NotLeaderOrFollowerError(BrokerError):
    """This broker does not host the partition as leader (for a produce or a
    consumer fetch) or as a replica (for a follower's request): refresh
    metadata and send the request to the partition's leader."""

    code = ErrorCode.NOT_LEADER_OR_FOLLOWER
    retriable = True


class NotEnoughReplicasError(BrokerError):
    """An acks=all write was refused before it was appended: the partition
    has fewer in-sync replicas than the topic's min_insync_replicas. Nothing
    was written; retry after a back-off."""

    code = ErrorCode.NOT_ENOUGH_REPLICAS
    retriable = True


class NotEnoughReplicasAfterAppendError(BrokerError):
    """An acks=all write was appended and reached the high watermark, but the
    in-sync replicas fell below min_insync_replicas meanwhile. The outcome is
    ambiguous for the client (the record is stored); an idempotent producer
    retries without duplicating it."""

    code = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    retriable = True


class FencedLeaderEpochError(BrokerError):
    """The request carried a leader epoch older than the partition's current
    one: the sender's metadata is stale (a zombie leader or follower);
    refresh metadata and retry."""

    code = ErrorCode.FENCED_LEADER_EPOCH
    retriable = True


class UnknownLeaderEpochError(BrokerError):
    """The request carried a leader epoch newer than this broker knows: this
    broker has not yet learned of the leader change; retry after a back-off."""

    code = ErrorCode.UNKNOWN_LEADER_EPOCH
    retriable = True


class OffsetNotAvailableError(BrokerError):
    """A new leader has not yet established its high watermark (it is below
    the start offset of the leader's epoch), so the log end it could report
    might be lower than one already served; retry after a back-off."""

    code = ErrorCode.OFFSET_NOT_AVAILABLE
    retriable = True


# --- errors raised only on the client side --------------------------------


class BrokerUnavailableError(TailraceError):
    """No connection to the broker could be made or kept."""

    retriable = True

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot reach broker at {address}: {reason}")
        self.address = address
        self.reason = reason


class TimeoutError(TailraceError):
    """An operation did not complete within the time the caller allowed."""

    retriable = True


class BufferFullError(TailraceError):
    """The producer's buffer stayed full for longer than ``max_block_ms``."""

    retriable = True


class ClientClosedError(TailraceError):
    """The client was closed before the operation completed."""


class TlsHandshakeError(TailraceError):
    """The TLS handshake with the broker failed: its certificate is not
    trusted or does not name the host, it refused ours, or it does not speak
    TLS there. Not retriable: the same settings fail the same way."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"TLS handshake with {address} failed: {reason}")
        self.address = address
        self.reason = reason


def error_for_code(code: int, message: str = "") -> BrokerError:
    """Return the exception instance for a wire error code.

    Unknown codes (from a newer broker) become :class:`UnknownServerError`
    with the number in the message, never a crash.
    """
    cls = _REGISTRY.get(code)
    if cls is None:
        return UnknownServerError(
            f"error code {code}: {message}" if message else f"error code {code}"
        )
    return cls(message)


def raise_for_code(code: int, message: str = "") -> None:
    """Raise the exception for ``code`` unless it is ``ErrorCode.NONE``."""
    if code:
        raise error_for_code(code, message)
