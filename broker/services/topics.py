"""Topic lookups and administration policy, one copy for both front-ends.

Rules kept here and nowhere else:

* names starting with :data:`INTERNAL_PREFIX` belong to the broker: clients
  may read them, never create, write, alter or delete them;
* a topic is created with 1..``limits.max_partitions_per_topic`` partitions
  and, on a single node, replication factor 1 (or -1, the default)
  (``-1`` means the broker default), after the name check and, with an
  authorizer, ``create`` on the cluster or the topic; ``validate_only`` runs
  every check and writes nothing;
* auto-creation (produce, metadata) applies the same name check and
  authorization, only when ``auto_create_topics`` is on, with the broker's
  default partition count; a topic created meanwhile by someone else is fine.
  In cluster mode it publishes the topic in etcd (default replication
  factor) and the replica managers create the logs where the controller
  places the replicas.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tailrace.client.errors import (
    BrokerError,
    ClusterAuthorizationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    StorageError,
    TopicAlreadyExistsError,
    TopicAuthorizationError,
    UnknownTopicOrPartitionError,
)

from ..log.manager import validate_topic_name
from ..security.authz import ALTER, CLUSTER, DELETE, DESCRIBE, TOPIC

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..log.partition import PartitionLog
    from ..server.connection import ConnectionInfo

__all__ = [
    "INTERNAL_PREFIX",
    "NewTopic",
    "PartitionState",
    "TopicState",
    "auto_create",
    "check_allowed",
    "create_partitions",
    "create_topics",
    "delete_topics",
    "describe_topics",
    "is_internal",
    "partition_for_fetch",
    "partition_for_produce",
    "refuse_internal",
    "topics_to_auto_create",
]

#: Topic names with this prefix belong to the broker (``__consumer_offsets``).
INTERNAL_PREFIX = "__"


def is_internal(topic: str) -> bool:
    return topic.startswith(INTERNAL_PREFIX)


def refuse_internal(name: str, what: str) -> None:
    if is_internal(name):
        raise InvalidTopicError(
            f"{name!r} is the broker's own topic (names starting with {INTERNAL_PREFIX!r} are "
            f"reserved): clients cannot {what} it"
        )


def check_allowed(
    ctx: BrokerContext, info: ConnectionInfo, operation: str, kind: str, name: str
) -> None:
    """Raise the authorization error unless the principal may (no authorizer: may)."""
    if ctx.authz is not None and not ctx.authz.allowed(info, operation, kind, name):
        if kind == CLUSTER:
            raise ClusterAuthorizationError(f"{info.principal} may not {operation} the cluster")
        raise TopicAuthorizationError(f"{info.principal} may not {operation} {name!r}")


def partition_for_produce(ctx: BrokerContext, topic: str, partition: int) -> PartitionLog:
    if is_internal(topic):
        raise InvalidTopicError(f"{topic!r} is the broker's own topic: clients cannot write it")
    return ctx.manager.get(topic, partition)


def partition_for_fetch(ctx: BrokerContext, topic: str, partition: int) -> PartitionLog:
    return ctx.manager.get(topic, partition)


def _valid_name(name: str) -> bool:
    try:
        validate_topic_name(name)
    except BrokerError:
        return False
    return not is_internal(name)


def topics_to_auto_create(ctx: BrokerContext, info: ConnectionInfo, names: list[str]) -> list[str]:
    """Those of ``names`` that auto-creation would create now: missing,
    valid, not internal, and (with an authorizer) creatable by the principal;
    empty when ``auto_create_topics`` is off."""
    if not ctx.config.auto_create_topics:
        return []
    # every produce asks: those hosted here are looked up, not copied
    has_topic = ctx.manager.has_topic
    unknown = [n for n in names if not has_topic(n)]
    if not unknown:
        return []
    existing: set[str] = set()
    if ctx.cluster is not None:  # the cluster's topics, hosted here or not
        view = ctx.cluster.snapshot()
        existing = set(view.topics) if view is not None else set()
    missing = [n for n in dict.fromkeys(unknown) if n not in existing and _valid_name(n)]
    if missing and ctx.authz is not None:
        missing = [n for n in missing if ctx.authz.may_create_topic(info, n)]
    return missing


async def auto_create(ctx: BrokerContext, names: list[str]) -> None:
    """Create ``names`` (from :func:`topics_to_auto_create`) with the broker
    defaults; a topic created meanwhile by someone else is fine."""
    for name in names:
        if ctx.cluster is not None:
            # published for the controller to place; the replica managers
            # create the local logs where it put the replicas
            with contextlib.suppress(TopicAlreadyExistsError):
                await ctx.cluster.create_topic(name, ctx.config.default_partitions, -1, {})
            continue
        if name in ctx.manager.topics():
            continue
        with contextlib.suppress(TopicAlreadyExistsError):  # a racing create won
            await ctx.manager.create_topic(name, ctx.config.default_partitions)


@dataclass(slots=True)
class NewTopic:
    """One topic of a create request; ``partitions`` -1 is the broker default."""

    name: str
    partitions: int = -1
    configs: Mapping[str, str | None] | None = None
    #: replicas in cluster mode; -1: cluster.default_replication_factor
    replication_factor: int = -1
    #: filled by create_topics: the partition count used, and the outcome
    error: BrokerError | None = None


async def create_topics(
    ctx: BrokerContext, info: ConnectionInfo, topics: list[NewTopic], *, validate_only: bool
) -> list[NewTopic]:
    """Create each topic (or only check, with ``validate_only``); each
    topic's ``error`` says what went wrong, ``partitions`` what was used."""
    limit = ctx.config.get("limits", "max_partitions_per_topic")
    for t in topics:
        if t.partitions == -1:
            t.partitions = ctx.config.default_partitions
        configs = {k: v for k, v in (t.configs or {}).items() if v is not None}
        try:
            if ctx.authz is not None and not ctx.authz.may_create_topic(info, t.name):
                raise TopicAuthorizationError(
                    f"{info.principal} may not create {t.name!r} (needs create on the cluster "
                    "or on the topic)"
                )
            validate_topic_name(t.name)
            refuse_internal(t.name, "create")
            if ctx.cluster is None and t.replication_factor not in (-1, 1):
                raise InvalidReplicationFactorError(
                    f"replication factor {t.replication_factor}: this broker is a single node (1)"
                )
            if not 1 <= t.partitions <= limit:
                raise InvalidPartitionsError(
                    f"partition count {t.partitions} is outside [1, {limit}] "
                    "(max_partitions_per_topic)"
                )
            if validate_only:
                ctx.manager.defaults.with_overrides(configs)
                if t.name in ctx.manager.topics():
                    raise TopicAlreadyExistsError(f"topic {t.name!r} already exists")
                continue
            if ctx.cluster is not None:
                # published for the controller to place; refused when the
                # cluster has it or too few brokers are alive. The replica
                # managers create the local logs where it put the replicas
                # (as auto_create): creating one here too raced this
                # broker's replica manager, and the loser either answered
                # TOPIC_ALREADY_EXISTS for a topic it had just created or
                # never took up its replica
                ctx.manager.defaults.with_overrides(configs)
                await ctx.cluster.create_topic(t.name, t.partitions, t.replication_factor, configs)
                continue
            await ctx.manager.create_topic(t.name, t.partitions, configs)
        except BrokerError as exc:
            t.error = exc
    return topics


async def create_partitions(
    ctx: BrokerContext,
    info: ConnectionInfo,
    wanted: list[tuple[str, int]],
    *,
    validate_only: bool,
) -> list[tuple[str, BrokerError | None]]:
    """Grow each topic to its new partition count (``alter`` on the topic,
    not internal, above the current count, at most
    ``limits.max_partitions_per_topic``); ``(name, error or None)`` each."""
    limit = ctx.config.get("limits", "max_partitions_per_topic")
    out: list[tuple[str, BrokerError | None]] = []
    for name, count in wanted:
        try:
            check_allowed(ctx, info, ALTER, TOPIC, name)
            refuse_internal(name, "alter")
            found = None if ctx.cluster is None else await ctx.cluster.topic_spec(name)
            # a cluster's topic grows in etcd (the controller places the new
            # partitions, each replica's broker grows its copy); a local one here
            current = ctx.manager.topic(name).partitions if found is None else found[0].partitions
            if not current < count <= limit:
                raise InvalidPartitionsError(
                    f"topic {name!r} has {current} partition(s): the new count {count} must be "
                    f"above that and at most {limit} (max_partitions_per_topic)"
                )
            if validate_only:
                pass
            elif found is None:
                await ctx.manager.grow_topic(name, count)
            else:
                assert ctx.cluster is not None
                await ctx.cluster.grow_topic(found[0], found[1], count)
        except BrokerError as exc:
            out.append((name, exc))
            continue
        out.append((name, None))
    return out


async def delete_topics(
    ctx: BrokerContext, info: ConnectionInfo, names: list[str]
) -> list[tuple[str, BrokerError | None]]:
    """Delete each topic; ``(name, error or None)`` per name, in order."""
    out: list[tuple[str, BrokerError | None]] = []
    for name in names:
        try:
            check_allowed(ctx, info, DELETE, TOPIC, name)
            refuse_internal(name, "delete")
            if ctx.cluster is None:
                await ctx.manager.delete_topic(name)
            else:
                await _delete_in_cluster(ctx, name)
        except BrokerError as exc:
            out.append((name, exc))
            continue
        out.append((name, None))
    return out


async def _delete_in_cluster(ctx: BrokerContext, name: str) -> None:
    """Delete the topic from etcd; every replica's broker (this one
    included) deletes its copy once its view no longer has the topic. A
    topic only this broker holds (created here before it joined a cluster)
    is deleted here."""
    assert ctx.cluster is not None
    try:
        await ctx.cluster.delete_topic(name)
    except UnknownTopicOrPartitionError:
        if name not in ctx.manager.topics():
            raise
        await ctx.manager.delete_topic(name)


@dataclass(slots=True)
class PartitionState:
    partition: int
    error: BrokerError | None = None
    #: placement (services/metadata.py fills it from the cluster in cluster mode)
    leader: int = -1
    leader_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    offline_replicas: tuple[int, ...] = ()
    #: False when this broker holds no log of the partition (cluster mode:
    #: not a replica here, or not created here yet): no offsets
    local: bool = True
    log_start_offset: int = -1
    high_watermark: int = -1
    log_end_offset: int = -1
    size_bytes: int = 0
    segment_count: int = 0
    dirty_bytes: int = 0
    cleanable_bytes: int = 0
    last_clean_ms: int = -1


@dataclass(slots=True)
class TopicState:
    name: str
    error: BrokerError | None = None
    internal: bool = False
    partitions: list[PartitionState] | None = None


def describe_topics(
    ctx: BrokerContext,
    names: list[str] | None,
    info: ConnectionInfo | None = None,
    *,
    cluster_topics: Mapping[str, int] | None = None,
) -> list[TopicState]:
    """The state of ``names`` (every topic when None). With an authorizer,
    every topic is listed only to a principal that may describe it; a topic
    asked for by name that it may not describe is answered with
    TOPIC_AUTHORIZATION_FAILED whether it exists or not (no existence leak).

    ``cluster_topics`` (cluster mode: name -> partition count in etcd) adds
    the cluster's topics this broker holds no log of: their partitions are
    described with ``local`` False and no offsets."""
    manager = ctx.manager
    local_topics = manager.topics()
    topics: dict[str, int] = {n: t.partitions for n, t in local_topics.items()}
    for n, count in (cluster_topics or {}).items():
        topics[n] = max(count, topics.get(n, 0))
    authz = ctx.authz if info is not None else None
    if names is None:
        wanted = sorted(topics)
        if authz is not None:
            wanted = [
                n for n in wanted if authz.allowed(info, DESCRIBE, TOPIC, n, log_denial=False)
            ]
    else:
        wanted = list(dict.fromkeys(names))
    out = []
    for name in wanted:
        if (
            names is not None
            and authz is not None
            and not authz.allowed(info, DESCRIBE, TOPIC, name)
        ):
            out.append(
                TopicState(
                    name, TopicAuthorizationError(f"{info.principal} may not describe {name!r}")
                )
            )
            continue
        count = topics.get(name)
        if count is None:
            error: BrokerError
            try:
                validate_topic_name(name)
                error = UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            except InvalidTopicError as exc:
                error = exc
            out.append(TopicState(name, error))
            continue
        partitions = []
        local = local_topics.get(name)
        for p in range(count):
            state = PartitionState(p)
            partitions.append(state)
            if local is None or p >= local.partitions:
                state.local = False
                continue
            try:
                plog = manager.get(name, p)
            except BrokerError as exc:
                state.error = exc
                continue
            state.log_start_offset = plog.log_start_offset
            state.high_watermark = plog.high_watermark
            state.log_end_offset = plog.log_end_offset
            state.size_bytes = plog.size_bytes
            state.segment_count = len(plog.segments)
            state.dirty_bytes, state.cleanable_bytes = plog.dirty_bytes
            if plog.last_clean is not None:
                state.last_clean_ms = plog.last_clean[0]
            if plog.offline:
                state.error = StorageError("partition offline after a storage failure")
        out.append(TopicState(name, internal=is_internal(name), partitions=partitions))
    return out
