"""Admin: topics, configuration, offsets and consumer groups, async and blocking.

Every method raises the exception the broker's error code maps to
(TopicAlreadyExistsError, UnknownTopicOrPartitionError, InvalidConfigError,
...), with the broker's message: the CLI shows those same messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import trio

from .background import BackgroundTrio
from .errors import (
    BrokerUnavailableError,
    ClientClosedError,
    ErrorCode,
    GroupNotEmptyError,
    TimeoutError,
    error_for_code,
)
from .protocol import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    AclEntry,
    AclFilterEntry,
    AlterConfigResource,
    AlterConfigsRequest,
    ConfigResource,
    CreatableTopic,
    CreateAclsRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteAclsRequest,
    DeleteGroupsRequest,
    DeleteTopicsRequest,
    DescribeAclsRequest,
    DescribeConfigsRequest,
    DescribeGroupsRequest,
    ListGroupsRequest,
    ListOffsetsPartition,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsTopic,
    MetadataRequest,
    OffsetCommitPartition,
    OffsetCommitRequest,
    OffsetCommitTopic,
    OffsetFetchRequest,
    PartitionsTopic,
    TopicPartitions,
)
from .security import SecurityConfig
from .transport.auth import connection_options
from .transport.coordinator import CoordinatorClient
from .transport.pool import BrokerClient

__all__ = [
    "Acl",
    "Admin",
    "AsyncAdmin",
    "ConfigValue",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "GroupPartitionOffset",
    "PartitionDescription",
    "TopicDescription",
]


@dataclass(frozen=True, slots=True)
class PartitionDescription:
    partition: int
    log_start_offset: int
    high_watermark: int
    log_end_offset: int
    size_bytes: int
    segment_count: int
    #: None, or why the partition is unavailable (e.g. offline after a failed fsync)
    error: str | None = None
    #: compacted topics: sealed bytes not cleaned yet, all sealed bytes, and
    #: when the cleaner last rewrote the partition (ms, -1 never)
    dirty_bytes: int = 0
    cleanable_bytes: int = 0
    last_clean_ms: int = -1
    #: the partition's leader (-1: none, the partition is offline), its
    #: epoch (-1 on a single node), replicas, in-sync replicas, and the
    #: replicas that are not alive
    leader: int = 0
    leader_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    offline_replicas: tuple[int, ...] = ()

    @property
    def dirty_ratio(self) -> float:
        """What the cleaner compares with min_cleanable_dirty_ratio."""
        return self.dirty_bytes / self.cleanable_bytes if self.cleanable_bytes else 0.0


@dataclass(frozen=True, slots=True)
class ConfigValue:
    name: str
    value: str | None
    source: str
    read_only: bool = False
    doc: str = ""


@dataclass(frozen=True, slots=True)
class TopicDescription:
    name: str
    internal: bool
    partitions: list[PartitionDescription]
    configs: dict[str, ConfigValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: str
    #: "Empty", "Reconciling" or "Stable"
    state: str
    member_count: int
    group_epoch: int


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    member_epoch: int
    subscribed_topics: list[str]
    #: partitions it owns now, as (topic, partition)
    assignment: list[tuple[str, int]]
    #: partitions it was asked to give up and still owns
    pending_revocation: list[tuple[str, int]]
    #: partitions it will own once the rebalance completes
    target_assignment: list[tuple[str, int]]
    session_timeout_ms: int
    rebalance_timeout_ms: int


@dataclass(frozen=True, slots=True)
class GroupPartitionOffset:
    """One partition of a group: committed offset, log end and lag."""

    topic: str
    partition: int
    #: None when the group committed nothing for it
    committed_offset: int | None
    #: the high watermark: the offset the next readable record will get
    log_end_offset: int | None
    #: log_end_offset - committed_offset (None without a commit or a log end)
    lag: int | None
    #: the member consuming it now, if any
    member_id: str | None
    metadata: str | None = None
    commit_timestamp_ms: int = -1
    #: why the log end is unknown (e.g. the topic was deleted)
    error: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """One ACL binding: ``principal`` (``User:<name>`` or ``*``) may do
    ``operation`` (read, write, create, delete, alter, describe, cluster_action) on the
    resources of ``resource_type`` (topic, group, cluster) named
    ``resource_name`` exactly (``pattern_type`` "literal"; ``*`` is every
    one) or starting with it ("prefixed")."""

    principal: str
    operation: str
    resource_type: str
    resource_name: str
    pattern_type: str = "literal"


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    members: list[GroupMember]
    offsets: list[GroupPartitionOffset]


def _pairs(items: list[TopicPartitions]) -> list[tuple[str, int]]:
    return sorted((t.topic, p) for t in items for p in t.partitions)


#: ListOffsets answers meaning the partition's leader moved or is not there
#: yet, and how often (with what first back-off) the admin asks again
_LEADER_ERRORS = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.FENCED_LEADER_EPOCH,
    }
)
_LEADER_ATTEMPTS = 4
#: a group request's answers after which its coordinator is found again
_COORDINATOR_ERRORS = frozenset(
    {
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    }
)
_LEADER_BACKOFF = 0.1


def _no_leader(topic: str, partition: int) -> Any:
    return ListOffsetsPartitionResult(
        partition=partition,
        error_code=int(ErrorCode.LEADER_NOT_AVAILABLE),
        error_message=f"{topic}/{partition} has no leader right now",
    )


def _check(code: int, message: str | None) -> None:
    if code:
        raise error_for_code(code, message or "")


def _offset_spec(spec: Any) -> int:
    if spec == "earliest":
        return EARLIEST_TIMESTAMP
    if spec == "latest":
        return LATEST_TIMESTAMP
    if isinstance(spec, int) and not isinstance(spec, bool) and spec >= 0:
        return spec
    raise ValueError("an offset spec is 'earliest', 'latest' or a timestamp in ms")


class AsyncAdmin:
    """Topic administration from trio code::

    async with AsyncAdmin("127.0.0.1:7420") as admin:
        await admin.create_topic("events", partitions=3, config={"flush": "none"})
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        request_timeout_ms: int = 30_000,
        security: SecurityConfig | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.request_timeout_ms = request_timeout_ms
        self._connection_options = connection_options(security)
        self._client: BrokerClient | None = None
        self._stack: AsyncExitStack | None = None
        #: group id -> where its requests go (FindCoordinator)
        self._coordinators: dict[str, CoordinatorClient] = {}

    async def __aenter__(self) -> AsyncAdmin:
        stack = AsyncExitStack()
        await stack.__aenter__()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._client = BrokerClient(
            nursery,
            self.bootstrap,
            request_timeout_ms=self.request_timeout_ms,
            **self._connection_options,
        )
        stack.push_async_callback(self._client.aclose)
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def _request(self, body: Any) -> Any:
        if self._client is None or self._stack is None:
            raise ClientClosedError("the admin client is not open")
        response = await self._client.request(body)
        _check(response.error_code, response.error_message)
        return response

    async def _group_request(self, group_id: str, body: Any) -> Any:
        """``body`` at the group's coordinator (FindCoordinator first; found
        again while it moves or loads, until the request timeout)."""
        client = self._client
        if client is None or self._stack is None:
            raise ClientClosedError("the admin client is not open")
        coordinator = self._coordinators.get(group_id)
        if coordinator is None:
            coordinator = self._coordinators[group_id] = CoordinatorClient(client, group_id)
        deadline = trio.current_time() + client.request_timeout
        attempt = 0
        while True:
            remaining = max(deadline - trio.current_time(), 0.001)
            try:
                response = await coordinator.request(body, timeout=remaining)
            except BrokerUnavailableError:
                if trio.current_time() >= deadline:
                    raise
            else:
                if response.error_code not in _COORDINATOR_ERRORS or (
                    trio.current_time() >= deadline
                ):
                    _check(response.error_code, response.error_message)
                    return response
            await trio.sleep(min(_LEADER_BACKOFF * 2**attempt, 1.0))
            attempt += 1

    # --- topics --------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        validate_only: bool = False,
        replication_factor: int | None = None,
    ) -> int:
        """Create a topic; returns its partition count. ``partitions`` None
        takes the broker's default; ``config`` overrides topic settings;
        ``replication_factor`` None takes the cluster's default (a single
        node accepts only 1)."""
        response = await self._request(
            CreateTopicsRequest(
                topics=[
                    CreatableTopic(
                        name=name,
                        partitions=-1 if partitions is None else partitions,
                        configs={k: str(v) for k, v in (config or {}).items()},
                        replication_factor=(
                            -1 if replication_factor is None else replication_factor
                        ),
                    )
                ],
                validate_only=validate_only,
            )
        )
        (result,) = response.topics
        _check(result.error_code, result.error_message)
        return result.partitions

    async def create_partitions(
        self, name: str, count: int, *, validate_only: bool = False
    ) -> None:
        """Grow a topic to ``count`` partitions (above its current count;
        records keep their partitions, keys may map to new ones)."""
        response = await self._request(
            CreatePartitionsRequest(
                topics=[PartitionsTopic(name=name, count=count)], validate_only=validate_only
            )
        )
        (result,) = response.topics
        _check(result.error_code, result.error_message)

    async def delete_topic(self, name: str) -> None:
        response = await self._request(DeleteTopicsRequest(topics=[name]))
        (result,) = response.topics
        _check(result.error_code, result.error_message)

    async def list_topics(self, *, internal: bool = False) -> list[TopicDescription]:
        """Every topic (the broker's internal ones too when ``internal``)."""
        response = await self._request(MetadataRequest(topics=None))
        return sorted(
            (_topic(t) for t in response.topics if internal or not t.internal),
            key=lambda t: t.name,
        )

    async def describe_topic(self, name: str) -> TopicDescription:
        """Partitions (offsets, size, segments) and configuration of a topic."""
        t = await self._topic_metadata(name)
        configs = await self.describe_configs(name)
        desc = _topic(t)
        return TopicDescription(desc.name, desc.internal, desc.partitions, configs)

    async def describe_configs(self, topic: str | None = None) -> dict[str, ConfigValue]:
        """A topic's effective configuration, or the broker's when None."""
        resource = ConfigResource(
            resource_type="broker" if topic is None else "topic", name=topic or ""
        )
        response = await self._request(DescribeConfigsRequest(resources=[resource]))
        (result,) = response.resources
        _check(result.error_code, result.error_message)
        return {
            c.name: ConfigValue(c.name, c.value, c.source, c.read_only, c.doc)
            for c in result.configs
        }

    async def alter_configs(
        self, topic: str, changes: Mapping[str, Any], *, validate_only: bool = False
    ) -> None:
        """Set topic configuration keys; a value of None reverts the key to the
        broker default. Takes effect without a restart."""
        response = await self._request(
            AlterConfigsRequest(
                resources=[
                    AlterConfigResource(
                        resource_type="topic",
                        name=topic,
                        configs={k: None if v is None else str(v) for k, v in changes.items()},
                    )
                ],
                validate_only=validate_only,
            )
        )
        (result,) = response.resources
        _check(result.error_code, result.error_message)

    async def list_offsets(
        self, query: Mapping[tuple[str, int], Any]
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """``{(topic, partition): 'earliest' | 'latest' | timestamp_ms}`` ->
        ``{(topic, partition): (offset, timestamp)}``; offset -1 when no
        record has a timestamp at or after the one asked. Each partition is
        asked of its leader."""
        answers = await self._list_offsets_routed(
            {tp: _offset_spec(spec) for tp, spec in query.items()}
        )
        out = {}
        for tp, p in answers.items():
            _check(p.error_code, p.error_message)
            out[tp] = (p.offset, p.timestamp)
        return out

    async def _list_offsets_routed(self, query: Mapping[tuple[str, int], int]) -> dict[Any, Any]:
        """ListOffsets for ``{(topic, partition): timestamp}``, one request
        per leader; a partition whose leader moved (or is not known) is asked
        again after a metadata refresh, a few times with a growing back-off.
        Returns each partition's answer (error codes left to the caller)."""
        client = self._client
        if client is None or self._stack is None:
            raise ClientClosedError("the admin client is not open")
        answers: dict[tuple[str, int], Any] = {}
        todo = dict(query)
        for attempt in range(_LEADER_ATTEMPTS):
            topics = sorted({t for t, _p in todo})
            if attempt or any(t not in client.topics for t in topics) or client.stale:
                await client.refresh_metadata(topics)
            by_node: dict[int | None, dict[str, list[ListOffsetsPartition]]] = {}
            for (topic, partition), ts in todo.items():
                node = client.leader_for(topic, partition)
                if node == -1:
                    answers[(topic, partition)] = _no_leader(topic, partition)
                    continue
                by_node.setdefault(node, {}).setdefault(topic, []).append(
                    ListOffsetsPartition(partition=partition, timestamp=ts)
                )
            for node, by_topic in by_node.items():
                response = await client.request(
                    ListOffsetsRequest(
                        topics=[
                            ListOffsetsTopic(name=t, partitions=ps) for t, ps in by_topic.items()
                        ]
                    ),
                    node=node,
                )
                _check(response.error_code, response.error_message)
                for t in response.topics:
                    for p in t.partitions:
                        answers[(t.name, p.partition)] = p
            todo = {
                tp: ts
                for tp, ts in todo.items()
                if getattr(answers.get(tp), "error_code", 0) in _LEADER_ERRORS
            }
            if not todo:
                break
            for tp in todo:
                client.invalidate(*tp)
            await trio.sleep(_LEADER_BACKOFF * 2**attempt)
        return answers

    async def topic_offsets(self, topic: str) -> dict[int, tuple[int, int]]:
        """{partition: (earliest, latest)} for every partition of ``topic``."""
        desc = await self.describe_topic_partitions(topic)
        query: dict[tuple[str, int], Any] = {}
        for p in desc:
            query[(topic, p.partition)] = "earliest"
        earliest = await self.list_offsets(query)
        latest = await self.list_offsets({k: "latest" for k in query})
        return {p: (earliest[(topic, p)][0], latest[(topic, p)][0]) for _, p in query}

    async def describe_topic_partitions(self, topic: str) -> list[PartitionDescription]:
        return _topic(await self._topic_metadata(topic)).partitions

    async def _topic_metadata(self, name: str) -> Any:
        """The topic's Metadata entry; in a cluster each partition's offsets
        and sizes are its leader's (the broker answering first may hold
        only a follower's copy, or none)."""
        client = self._client
        if client is None or self._stack is None:
            raise ClientClosedError("the admin client is not open")
        response = await client.refresh_metadata([name])
        (t,) = response.topics
        _check(t.error_code, t.error_message)
        if not client.routed:
            return t
        leaders = {p.leader_id for p in t.partitions if p.leader_id in client.brokers}
        for node in sorted(leaders):
            try:
                answer = await client.request(MetadataRequest(topics=[name]), node=node)
            except (BrokerUnavailableError, TimeoutError):
                continue  # keep the first broker's figures for these
            theirs = {p.partition: p for a in answer.topics if a.name == name for p in a.partitions}
            for i, p in enumerate(t.partitions):
                own = theirs.get(p.partition)
                if p.leader_id == node and own is not None and own.leader_id == node:
                    t.partitions[i] = own
        return t

    # --- consumer groups ---------------------------------------------------------

    async def list_groups(self, states: list[str] | None = None) -> list[GroupListing]:
        """Every group (with members or committed offsets), optionally only
        those in ``states`` ("Empty", "Reconciling", "Stable"). In a cluster
        each broker lists the groups it coordinates: every live broker is asked."""
        client = self._client
        if client is None or self._stack is None:
            raise ClientClosedError("the admin client is not open")
        await client.refresh_metadata([])
        nodes: list[int | None] = list(client.brokers) if client.routed else [None]
        found: dict[str, GroupListing] = {}
        for node in nodes:
            response = await client.request(ListGroupsRequest(states_filter=states), node=node)
            _check(response.error_code, response.error_message)
            for g in response.groups:
                found[g.group_id] = GroupListing(g.group_id, g.state, g.member_count, g.group_epoch)
        return [found[g] for g in sorted(found)]

    async def describe_group(self, group_id: str) -> GroupDescription:
        """State, members and their assignments, and per partition the
        committed offset, the log end and the lag. GroupIdNotFoundError for
        an unknown group."""
        response = await self._group_request(group_id, DescribeGroupsRequest(group_ids=[group_id]))
        (g,) = response.groups
        _check(g.error_code, g.error_message)
        members = [
            GroupMember(
                member_id=m.member_id,
                instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_epoch=m.member_epoch,
                subscribed_topics=list(m.subscribed_topics),
                assignment=_pairs(m.assignment),
                pending_revocation=_pairs(m.pending_revocation),
                target_assignment=_pairs(m.target_assignment),
                session_timeout_ms=m.session_timeout_ms,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
            )
            for m in g.members
        ]
        owner = {tp: m.member_id for m in members for tp in m.assignment + m.pending_revocation}
        fetched = await self._group_request(group_id, OffsetFetchRequest(group_id=group_id))
        committed = {}
        for t in fetched.topics:
            for p in t.partitions:
                _check(p.error_code, p.error_message)
                committed[(t.name, p.partition)] = p
        partitions = sorted(set(committed) | set(owner))
        ends: dict[tuple[str, int], int] = {}
        errors: dict[tuple[str, int], str] = {}
        if partitions:
            listed = await self._list_offsets_routed(dict.fromkeys(partitions, LATEST_TIMESTAMP))
            for tp, p in listed.items():
                if p.error_code:
                    errors[tp] = p.error_message or "unavailable"
                else:
                    ends[tp] = p.offset
        rows = []
        for tp in partitions:
            c = committed.get(tp)
            offset = c.offset if c is not None else None
            end = ends.get(tp)
            rows.append(
                GroupPartitionOffset(
                    topic=tp[0],
                    partition=tp[1],
                    committed_offset=offset,
                    log_end_offset=end,
                    lag=None if offset is None or end is None else max(end - offset, 0),
                    member_id=owner.get(tp),
                    metadata=c.metadata if c is not None else None,
                    commit_timestamp_ms=c.commit_timestamp_ms if c is not None else -1,
                    error=errors.get(tp),
                )
            )
        return GroupDescription(
            group_id=g.group_id,
            state=g.state,
            group_epoch=g.group_epoch,
            assignment_epoch=g.assignment_epoch,
            members=members,
            offsets=rows,
        )

    async def delete_group(self, group_id: str) -> None:
        """Delete a group without members and its committed offsets
        (GroupNotEmptyError, GroupIdNotFoundError)."""
        response = await self._group_request(group_id, DeleteGroupsRequest(group_ids=[group_id]))
        (result,) = response.results
        _check(result.error_code, result.error_message)

    async def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: Any,
        partitions: list[int] | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[int, int]:
        """Set a group's committed offsets for ``topic`` (every partition, or
        ``partitions``) to ``to``: "earliest", "latest", ``("offset", n)`` or
        ``("time", ms)`` (the first record at or after that time; the log end
        when there is none). Only for a group without members
        (GroupNotEmptyError); an offset past the log end is refused
        (OffsetOutOfRangeError) and nothing changes. Returns
        ``{partition: new offset}``; ``dry_run`` computes without committing.
        A group that does not exist yet is created with these offsets."""
        listing = {g.group_id: g for g in await self.list_groups()}
        current = listing.get(group_id)
        if current is not None and current.member_count:
            raise GroupNotEmptyError(
                f"group {group_id!r} has {current.member_count} active member(s); "
                "stop them before resetting its offsets"
            )
        if partitions is None:
            partitions = [p.partition for p in await self.describe_topic_partitions(topic)]
        if to in ("earliest", "latest"):
            found = await self.list_offsets({(topic, p): to for p in partitions})
            targets = {p: found[(topic, p)][0] for p in partitions}
        elif isinstance(to, tuple) and len(to) == 2 and to[0] == "offset":
            targets = {p: int(to[1]) for p in partitions}
        elif isinstance(to, tuple) and len(to) == 2 and to[0] == "time":
            found = await self.list_offsets({(topic, p): int(to[1]) for p in partitions})
            missing = [p for p in partitions if found[(topic, p)][0] < 0]
            latest = await self.list_offsets({(topic, p): "latest" for p in missing})
            targets = {
                p: (latest[(topic, p)] if p in missing else found[(topic, p)])[0]
                for p in partitions
            }
        else:
            raise ValueError(
                "reset to 'earliest', 'latest', ('offset', n) or ('time', milliseconds)"
            )
        if dry_run:
            return targets
        response = await self._group_request(
            group_id,
            OffsetCommitRequest(
                group_id=group_id,
                topics=[
                    OffsetCommitTopic(
                        name=topic,
                        partitions=[
                            OffsetCommitPartition(partition=p, offset=o)
                            for p, o in sorted(targets.items())
                        ],
                    )
                ],
            ),
        )
        for t in response.topics:
            for p in t.partitions:
                _check(p.error_code, p.error_message)
        return targets

    # --- ACLs -------------------------------------------------------------------

    async def describe_acls(
        self,
        *,
        principal: str | None = None,
        operation: str | None = None,
        resource_type: str | None = None,
        resource_name: str | None = None,
        pattern_type: str | None = None,
    ) -> list[Acl]:
        """The broker's ACL bindings matching every field given (all when
        none is); needs describe on the cluster."""
        response = await self._request(
            DescribeAclsRequest(
                filter=AclFilterEntry(
                    principal=principal,
                    operation=operation,
                    resource_type=resource_type,
                    resource_name=resource_name,
                    pattern_type=pattern_type,
                )
            )
        )
        return [_acl(e) for e in response.bindings]

    async def create_acls(self, acls: list[Acl]) -> None:
        """Grant ``acls`` (durable and in force once this returns); the first
        refused one raises (InvalidRequestError...); needs alter on the cluster."""
        response = await self._request(
            CreateAclsRequest(creations=[AclEntry(**dataclasses.asdict(a)) for a in acls])
        )
        for result in response.results:
            _check(result.error_code, result.error_message)

    async def delete_acls(
        self,
        *,
        principal: str | None = None,
        operation: str | None = None,
        resource_type: str | None = None,
        resource_name: str | None = None,
        pattern_type: str | None = None,
    ) -> list[Acl]:
        """Revoke every binding matching the fields given (every binding when
        none is); returns them. Needs alter on the cluster."""
        response = await self._request(
            DeleteAclsRequest(
                filters=[
                    AclFilterEntry(
                        principal=principal,
                        operation=operation,
                        resource_type=resource_type,
                        resource_name=resource_name,
                        pattern_type=pattern_type,
                    )
                ]
            )
        )
        (result,) = response.results
        _check(result.error_code, result.error_message)
        return [_acl(e) for e in result.deleted]


def _acl(e: AclEntry) -> Acl:
    return Acl(e.principal, e.operation, e.resource_type, e.resource_name, e.pattern_type)


def _topic(t: Any) -> TopicDescription:
    return TopicDescription(
        name=t.name,
        internal=t.internal,
        partitions=[
            PartitionDescription(
                partition=p.partition,
                log_start_offset=p.log_start_offset,
                high_watermark=p.high_watermark,
                log_end_offset=p.log_end_offset,
                size_bytes=p.size_bytes,
                segment_count=p.segment_count,
                error=p.error_message if p.error_code else None,
                dirty_bytes=p.dirty_bytes,
                cleanable_bytes=p.cleanable_bytes,
                last_clean_ms=p.last_clean_ms,
                leader=p.leader_id,
                leader_epoch=p.leader_epoch,
                replicas=tuple(p.replicas),
                isr=tuple(p.isr),
                offline_replicas=tuple(p.offline_replicas),
            )
            for p in sorted(t.partitions, key=lambda p: p.partition)
        ],
    )


class Admin:
    """The blocking admin client; the same methods as :class:`AsyncAdmin`::

    with Admin("127.0.0.1:7420") as admin:
        admin.create_topic("events", partitions=3)
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._admin = AsyncAdmin(bootstrap, **config)
        self._closed = False
        self._loop = BackgroundTrio.hosting("tailrace-admin", self._admin)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.stop()

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        validate_only: bool = False,
        replication_factor: int | None = None,
    ) -> int:
        return self._loop.run(
            lambda: self._admin.create_topic(
                name,
                partitions,
                config,
                validate_only=validate_only,
                replication_factor=replication_factor,
            )
        )

    def create_partitions(self, name: str, count: int, *, validate_only: bool = False) -> None:
        self._loop.run(
            lambda: self._admin.create_partitions(name, count, validate_only=validate_only)
        )

    def delete_topic(self, name: str) -> None:
        self._loop.run(self._admin.delete_topic, name)

    def list_topics(self, *, internal: bool = False) -> list[TopicDescription]:
        return self._loop.run(lambda: self._admin.list_topics(internal=internal))

    def describe_topic(self, name: str) -> TopicDescription:
        return self._loop.run(self._admin.describe_topic, name)

    def describe_configs(self, topic: str | None = None) -> dict[str, ConfigValue]:
        return self._loop.run(self._admin.describe_configs, topic)

    def alter_configs(
        self, topic: str, changes: Mapping[str, Any], *, validate_only: bool = False
    ) -> None:
        self._loop.run(
            lambda: self._admin.alter_configs(topic, changes, validate_only=validate_only)
        )

    def list_offsets(
        self, query: Mapping[tuple[str, int], Any]
    ) -> dict[tuple[str, int], tuple[int, int]]:
        return self._loop.run(self._admin.list_offsets, dict(query))

    def topic_offsets(self, topic: str) -> dict[int, tuple[int, int]]:
        return self._loop.run(self._admin.topic_offsets, topic)

    def list_groups(self, states: list[str] | None = None) -> list[GroupListing]:
        return self._loop.run(self._admin.list_groups, states)

    def describe_group(self, group_id: str) -> GroupDescription:
        return self._loop.run(self._admin.describe_group, group_id)

    def delete_group(self, group_id: str) -> None:
        self._loop.run(self._admin.delete_group, group_id)

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: Any,
        partitions: list[int] | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[int, int]:
        return self._loop.run(
            lambda: self._admin.reset_offsets(group_id, topic, to, partitions, dry_run=dry_run)
        )

    def describe_acls(self, **filter: str | None) -> list[Acl]:
        return self._loop.run(lambda: self._admin.describe_acls(**filter))

    def create_acls(self, acls: list[Acl]) -> None:
        self._loop.run(self._admin.create_acls, list(acls))

    def delete_acls(self, **filter: str | None) -> list[Acl]:
        return self._loop.run(lambda: self._admin.delete_acls(**filter))
