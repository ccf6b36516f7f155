"""Kafka's group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups and
DeleteGroups, as adapters over the group coordinator (broker/coordinator/).

The coordinator holds one set of groups for both protocols: classic groups
(these APIs, client-side assignment; the member metadata and assignments
are opaque bytes) and native ones (ConsumerGroupHeartbeat). Committed
offsets live in the same ``__consumer_offsets`` store whichever protocol
wrote them. DescribeGroups, ListGroups and DeleteGroups show and act on
both kinds; a native group is described with protocol type ``consumer`` and
its members' subscriptions and assignments encoded as Kafka's
ConsumerProtocol bytes, so Kafka admin tools can read them.

Authorization is the native handlers' (broker/handlers/groups.py): READ on
the group to join, sync, heartbeat, leave, commit and fetch offsets (READ
on each topic committed or fetched), DESCRIBE on the group to find its
coordinator and describe it, DELETE to delete it; ListGroups shows every
group to DESCRIBE on the cluster, otherwise the groups the principal may
describe. Refusals are GROUP_AUTHORIZATION_FAILED or, per topic,
TOPIC_AUTHORIZATION_FAILED.

Handlers follow the Kafka front-end's contract (broker/kafka/handlers.py):
``handler(ctx, info, request)`` with ``request.body`` a kio request entity;
the reply is a kio response entity of the request's API and version, or a
``Later`` whose awaited result is one. Held JoinGroup and SyncGroup answers
and the durability waits of commits and deletions are Laters; nothing
holds the connection's reader except the creation of the offsets topic by
the first commit (barrier, so pipelined commits stay in order). Every error
is answered in the API's own error fields, so these handlers raise nothing.

FindCoordinator answers, on a single node, with this broker. The address
comes from ``ctx.advertised_kafka_address(info) -> (node_id, host, port)``
when the context has it (the Kafka listener's advertised address), else
from the listener the request came in on and ``ctx.node_id``. In cluster
mode it answers with the leader of the group's partition of
``__consumer_offsets`` and its Kafka address (coordinator/placement.py),
or COORDINATOR_NOT_AVAILABLE while there is none; the first one creates the
topic in the cluster. Group requests at a broker that does not coordinate
the group answer NOT_COORDINATOR (the clients find it again).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from kio.index import load_payload_module
from kio.schema.consumer_protocol_assignment.v0.data import (
    ConsumerProtocolAssignment,
    TopicPartition,
)
from kio.schema.consumer_protocol_subscription.v0.data import ConsumerProtocolSubscription
from kio.schema.errors import ErrorCode as KafkaCode
from kio.serial import entity_writer
from kio.static.constants import EntityType

from tailrace.client.errors import (
    BrokerError,
    CoordinatorNotAvailableError,
    GroupAuthorizationError,
    InvalidRequestError,
    TopicAuthorizationError,
)

from ..coordinator.classic import JoinParams, JoinResult, SyncResult, Waiter
from ..coordinator.coordinator import CommitItem, GroupView, MemberView, Pending
from ..coordinator.placement import OffsetsPlacement, create_then_unavailable
from ..security.authz import CLUSTER, CLUSTER_NAME, DELETE, DESCRIBE, GROUP, READ, TOPIC
from ..server.connection import ConnectionInfo, Later
from .errors import kafka_error
from .versions import KafkaApi

if TYPE_CHECKING:
    from ..coordinator import GroupCoordinator
    from ..handlers.context import BrokerContext

__all__ = ["GROUP_HANDLERS", "KafkaGroupRequest"]

#: Kafka's AclOperation codes, for DescribeGroups' authorized_operations.
_ACL_OPERATION_BITS = {READ: 3, DELETE: 6, DESCRIBE: 8}
#: authorized_operations when the client did not ask for them
_OPERATIONS_NOT_REQUESTED = -(2**31)
_NO_THROTTLE = datetime.timedelta(0)


class KafkaGroupRequest(Protocol):
    """What these handlers read of the front-end's KafkaRequest."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any


# --- building responses ---------------------------------------------------------


@functools.cache
def _response_module(api_key: int, version: int) -> Any:
    return load_payload_module(api_key, version, EntityType.response)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _entity(cls: type, /, **values: Any) -> Any:
    """``cls(**values)`` keeping only the fields this version has."""
    names = _field_names(cls)
    return cls(**{k: v for k, v in values.items() if k in names})


def _response(request: KafkaGroupRequest, name: str, /, **values: Any) -> Any:
    module = _response_module(request.api_key, request.api_version)
    return _entity(getattr(module, name), throttle_time=_NO_THROTTLE, **values)


def _nested(request: KafkaGroupRequest, name: str, /, **values: Any) -> Any:
    return _entity(getattr(_response_module(request.api_key, request.api_version), name), **values)


# --- shared checks -----------------------------------------------------------------


def _coordinator(ctx: BrokerContext) -> GroupCoordinator:
    coordinator = ctx.coordinator
    if coordinator is None:
        raise CoordinatorNotAvailableError("this broker runs no group coordinator")
    return coordinator


def _check_group(ctx: BrokerContext, info: ConnectionInfo, operation: str, group_id: str) -> None:
    authz = ctx.authz
    if authz is not None and not authz.allowed(info, operation, GROUP, group_id):
        raise GroupAuthorizationError(f"{info.principal} may not {operation} group {group_id!r}")


def _topic_denied(ctx: BrokerContext, info: ConnectionInfo, operation: str, topic: str) -> bool:
    authz = ctx.authz
    return authz is not None and not authz.allowed(info, operation, TOPIC, topic)


def _str(value: str | None) -> str:
    return value if value is not None else ""


# --- FindCoordinator ----------------------------------------------------------------


def _advertised(ctx: BrokerContext, info: ConnectionInfo) -> tuple[int, str, int]:
    hook: Callable[[ConnectionInfo], tuple[int, str, int]] | None = getattr(
        ctx, "advertised_kafka_address", None
    )
    if hook is not None:
        return hook(info)
    # as Metadata does (admin.py): the listener the request came in on
    listener = next((b for b in ctx.listeners if b.name == info.listener), ctx.listeners[0])
    return ctx.node_id, listener.host, listener.port


def handle_find_coordinator(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest
) -> Any:
    """v0-3: one group (``key``); v4 (KIP-699): a batch (``coordinator_keys``),
    each answered on its own."""
    body = request.body
    batched = request.api_version >= 4
    keys = list(body.coordinator_keys) if batched else [body.key]
    try:
        key_type = getattr(body, "key_type", 0)
        if key_type == 1:
            raise InvalidRequestError("transactions are not supported: no transaction coordinator")
        if key_type != 0:
            raise InvalidRequestError(f"unknown coordinator key type {key_type}")
        coordinator = _coordinator(ctx)
        if coordinator.status != "ready":
            raise CoordinatorNotAvailableError("the group coordinator is loading its offsets")
    except BrokerError as exc:
        return _coordinators(request, [(k, exc) for k in keys])
    placement = coordinator.placement
    if placement is not None and placement.needs_topic():
        return Later(_created_then_unavailable, request, keys, placement)
    found: list[tuple[str, tuple[int, str, int] | BrokerError]] = []
    for key in keys:
        try:
            _check_group(ctx, info, DESCRIBE, key)
            if placement is None:
                found.append((key, _advertised(ctx, info)))
            else:
                found.append((key, placement.find(key, kafka=True)))
        except BrokerError as exc:
            found.append((key, exc))
    return _coordinators(request, found)


def _coordinators(
    request: KafkaGroupRequest, found: list[tuple[str, tuple[int, str, int] | BrokerError]]
) -> Any:
    """The response: per key the coordinator (node id, host, port) or the error."""
    entries = []
    for key, outcome in found:
        if isinstance(outcome, BrokerError):
            entries.append(
                {
                    "key": key,
                    "error_code": kafka_error(outcome),
                    "error_message": outcome.message,
                    "node_id": -1,
                    "host": "",
                    "port": -1,
                }
            )
        else:
            node_id, host, port = outcome
            entries.append(
                {
                    "key": key,
                    "error_code": KafkaCode.none,
                    "error_message": None,
                    "node_id": node_id,
                    "host": host,
                    "port": port,
                }
            )
    if request.api_version >= 4:
        return _response(
            request,
            "FindCoordinatorResponse",
            coordinators=tuple(_nested(request, "Coordinator", **e) for e in entries),
        )
    (entry,) = entries
    del entry["key"]
    return _response(request, "FindCoordinatorResponse", **entry)


async def _created_then_unavailable(
    request: KafkaGroupRequest, keys: list[str], placement: OffsetsPlacement
) -> Any:
    error = await create_then_unavailable(placement)
    return _coordinators(request, [(k, error) for k in keys])


# --- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ---------------------------------------


def _ms(value: datetime.timedelta) -> int:
    return round(value.total_seconds() * 1000)


def handle_join_group(ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest) -> Any:
    body = request.body
    session_ms = _ms(body.session_timeout)
    rebalance = getattr(body, "rebalance_timeout", None)
    params = JoinParams(
        member_id=body.member_id,
        instance_id=getattr(body, "group_instance_id", None),
        protocol_type=body.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in body.protocols),
        session_timeout_ms=session_ms,
        # v0 has no rebalance timeout: Kafka uses the session timeout
        rebalance_timeout_ms=_ms(rebalance) if rebalance is not None else session_ms,
        client_id=_str(request.client_id),
        client_host=info.peer,
        require_known_member_id=request.api_version >= 4,
    )
    try:
        _check_group(ctx, info, READ, body.group_id)
        waiter = _coordinator(ctx).join_group(body.group_id, params)
    except BrokerError as exc:
        return _join_response(request, JoinResult(exc, member_id=body.member_id))
    if waiter.done:
        return _join_response(request, _join_result(waiter))
    return Later(_held_join, request, waiter)


async def _held_join(request: KafkaGroupRequest, waiter: Waiter) -> Any:
    await waiter.wait()
    return _join_response(request, _join_result(waiter))


def _join_result(waiter: Waiter) -> JoinResult:
    result = waiter.result
    assert isinstance(result, JoinResult)
    return result


def _join_response(request: KafkaGroupRequest, r: JoinResult) -> Any:
    members = tuple(
        _nested(request, "JoinGroupResponseMember", member_id=m, group_instance_id=i, metadata=md)
        for m, i, md in r.members
    )
    return _response(
        request,
        "JoinGroupResponse",
        error_code=kafka_error(r.error),
        generation_id=r.generation,
        protocol_name=_str(r.protocol_name),
        leader=r.leader_id,
        member_id=r.member_id,
        members=members,
    )


def handle_sync_group(ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest) -> Any:
    body = request.body
    assignments = {a.member_id: bytes(a.assignment) for a in body.assignments}
    try:
        _check_group(ctx, info, READ, body.group_id)
        waiter = _coordinator(ctx).sync_group(
            body.group_id,
            body.member_id,
            getattr(body, "group_instance_id", None),
            body.generation_id,
            assignments,
        )
    except BrokerError as exc:
        return _sync_response(request, SyncResult(exc))
    if waiter.done:
        return _sync_response(request, _sync_result(waiter))
    return Later(_held_sync, request, waiter)


async def _held_sync(request: KafkaGroupRequest, waiter: Waiter) -> Any:
    await waiter.wait()
    return _sync_response(request, _sync_result(waiter))


def _sync_result(waiter: Waiter) -> SyncResult:
    result = waiter.result
    assert isinstance(result, SyncResult)
    return result


def _sync_response(request: KafkaGroupRequest, r: SyncResult) -> Any:
    return _response(
        request, "SyncGroupResponse", error_code=kafka_error(r.error), assignment=r.assignment
    )


def handle_heartbeat(ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest) -> Any:
    body = request.body
    error: BrokerError | None = None
    try:
        _check_group(ctx, info, READ, body.group_id)
        _coordinator(ctx).classic_heartbeat(
            body.group_id,
            body.member_id,
            getattr(body, "group_instance_id", None),
            body.generation_id,
        )
    except BrokerError as exc:
        error = exc
    return _response(request, "HeartbeatResponse", error_code=kafka_error(error))


def handle_leave_group(ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest) -> Any:
    body = request.body
    batch = request.api_version >= 3
    if batch:
        leaving = [(m.member_id, m.group_instance_id) for m in body.members]
    else:
        leaving = [(body.member_id, None)]
    try:
        _check_group(ctx, info, READ, body.group_id)
        outcomes = _coordinator(ctx).leave_group(body.group_id, leaving)
    except BrokerError as exc:
        return _response(request, "LeaveGroupResponse", error_code=kafka_error(exc), members=())
    if not batch:
        return _response(request, "LeaveGroupResponse", error_code=kafka_error(outcomes[0]))
    members = tuple(
        _nested(
            request,
            "MemberResponse",
            member_id=member_id,
            group_instance_id=instance_id,
            error_code=kafka_error(error),
        )
        for (member_id, instance_id), error in zip(leaving, outcomes, strict=True)
    )
    return _response(request, "LeaveGroupResponse", error_code=KafkaCode.none, members=members)


# --- OffsetCommit, OffsetFetch -----------------------------------------------------------


def handle_offset_commit(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest
) -> Any:
    try:
        _check_group(ctx, info, READ, request.body.group_id)
        coordinator = _coordinator(ctx)
    except BrokerError as exc:
        return _commit_failed(request, exc)
    if coordinator.needs_log():
        return Later(_create_then_commit, ctx, info, coordinator, request, barrier=True)
    return _commit(ctx, info, coordinator, request)


async def _create_then_commit(
    ctx: BrokerContext,
    info: ConnectionInfo,
    coordinator: GroupCoordinator,
    request: KafkaGroupRequest,
) -> Any:
    try:
        await coordinator.ensure_log()
    except BrokerError as exc:
        return _commit_failed(request, exc)
    reply = _commit(ctx, info, coordinator, request)
    if type(reply) is Later:
        return await reply.fn(*reply.args)
    return reply


def _commit(
    ctx: BrokerContext,
    info: ConnectionInfo,
    coordinator: GroupCoordinator,
    request: KafkaGroupRequest,
) -> Any:
    body = request.body
    denied = {t.name for t in body.topics if _topic_denied(ctx, info, READ, t.name)}
    items = [
        CommitItem(t.name, p.partition_index, p.committed_offset, p.committed_metadata)
        for t in body.topics
        if t.name not in denied
        for p in t.partitions
    ]
    try:
        errors, appended = coordinator.commit_offsets(
            body.group_id,
            items,
            generation=body.generation_id_or_member_epoch,
            member_id=body.member_id,
            instance_id=getattr(body, "group_instance_id", None),
        )
    except BrokerError as exc:
        return _commit_failed(request, exc)
    outcomes = iter(errors)
    refused = TopicAuthorizationError(f"{info.principal} may not read this topic")
    response = _commit_response(
        request, lambda topic: refused if topic in denied else next(outcomes)
    )
    if appended is None:
        return response
    return Later(_commit_durable, coordinator, response, appended, request)


def _commit_response(
    request: KafkaGroupRequest, outcome: Callable[[str], BrokerError | None]
) -> Any:
    """One result per partition asked, in request order; ``outcome(topic)``
    gives the next partition's error."""
    topics = tuple(
        _nested(
            request,
            "OffsetCommitResponseTopic",
            name=t.name,
            partitions=tuple(
                _nested(
                    request,
                    "OffsetCommitResponsePartition",
                    partition_index=p.partition_index,
                    error_code=kafka_error(outcome(t.name)),
                )
                for p in t.partitions
            ),
        )
        for t in request.body.topics
    )
    return _response(request, "OffsetCommitResponse", topics=topics)


def _commit_failed(request: KafkaGroupRequest, error: BrokerError) -> Any:
    """Every partition asked carries the group-level ``error`` (OffsetCommit
    has no top-level error code)."""
    return _commit_response(request, lambda _topic: error)


async def _commit_durable(
    coordinator: GroupCoordinator, response: Any, appended: Pending, request: KafkaGroupRequest
) -> Any:
    try:
        await coordinator.wait_durable(appended)
    except BrokerError as exc:  # cluster mode: the coordinator moved first
        return _commit_failed(request, exc)
    return response


def handle_offset_fetch(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest
) -> Any:
    body = request.body
    asked = None if body.topics is None else [(t.name, t.partition_indexes) for t in body.topics]
    try:
        _check_group(ctx, info, READ, body.group_id)
        coordinator = _coordinator(ctx)
        if asked is None:
            found = coordinator.committed(body.group_id, None)
            by_topic: dict[str, list[tuple[int, Any]]] = {}
            authz = ctx.authz
            for (topic, p), entry in found:
                if authz is None or authz.allowed(info, READ, TOPIC, topic, log_denial=False):
                    by_topic.setdefault(topic, []).append((p, entry))
            results = [(topic, parts, None) for topic, parts in by_topic.items()]
        else:
            results = []
            for topic, partitions in asked:
                if _topic_denied(ctx, info, READ, topic):
                    denied = TopicAuthorizationError(f"{info.principal} may not read {topic!r}")
                    results.append((topic, [(p, None) for p in partitions], denied))
                    continue
                entries = coordinator.committed(body.group_id, [(topic, p) for p in partitions])
                results.append((topic, [(tp[1], e) for tp, e in entries], None))
    except BrokerError as exc:
        if request.api_version >= 2:
            return _fetch_response(request, [], kafka_error(exc))
        # v1 has no top-level error: every partition asked carries it
        return _fetch_response(
            request, [(t, [(p, None) for p in ps], exc) for t, ps in asked or ()], KafkaCode.none
        )
    return _fetch_response(request, results, KafkaCode.none)


def _fetch_response(
    request: KafkaGroupRequest,
    results: Iterable[tuple[str, list[tuple[int, Any]], BrokerError | None]],
    error: KafkaCode,
) -> Any:
    topics = tuple(
        _nested(
            request,
            "OffsetFetchResponseTopic",
            name=topic,
            partitions=tuple(
                _nested(
                    request,
                    "OffsetFetchResponsePartition",
                    partition_index=p,
                    committed_offset=entry.offset if entry is not None else -1,
                    committed_leader_epoch=-1,
                    metadata=_str(entry.metadata) if entry is not None else "",
                    error_code=kafka_error(topic_error),
                )
                for p, entry in partitions
            ),
        )
        for topic, partitions, topic_error in results
    )
    return _response(request, "OffsetFetchResponse", topics=topics, error_code=error)


# --- DescribeGroups, ListGroups, DeleteGroups -----------------------------------------------


def _write(entity: Any) -> bytes:
    buf = io.BytesIO()
    buf.write(struct.pack(">h", 0))  # ConsumerProtocol version 0
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def _by_topic(tps: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for topic, p in sorted(tps):
        out.setdefault(topic, []).append(p)
    return out


def _native_member_bytes(m: MemberView) -> tuple[bytes, bytes]:
    """A native member's subscription and assignment as Kafka's
    ConsumerProtocol v0 bytes (what a classic consumer group member sends)."""
    subscription = ConsumerProtocolSubscription(topics=tuple(m.subscribed), user_data=None)
    assignment = ConsumerProtocolAssignment(
        assigned_partitions=tuple(
            TopicPartition(topic=t, partitions=tuple(ps))
            for t, ps in _by_topic(m.assigned | m.revoking).items()
        ),
        user_data=None,
    )
    return _write(subscription), _write(assignment)


def _authorized_operations(ctx: BrokerContext, info: ConnectionInfo, group_id: str) -> int:
    bits = 0
    for operation, bit in _ACL_OPERATION_BITS.items():
        if ctx.authz is None or ctx.authz.allowed(
            info, operation, GROUP, group_id, log_denial=False
        ):
            bits |= 1 << bit
    return bits


def handle_describe_groups(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest
) -> Any:
    body = request.body
    wants_ops = getattr(body, "include_authorized_operations", False)
    groups = []
    for gid in body.groups:
        try:
            _check_group(ctx, info, DESCRIBE, gid)
            view = _coordinator(ctx).group_view(gid)
        except BrokerError as exc:
            groups.append(_described(request, gid, kafka_error(exc), "", None))
            continue
        ops = _authorized_operations(ctx, info, gid) if wants_ops else _OPERATIONS_NOT_REQUESTED
        groups.append(_described(request, gid, KafkaCode.none, view, ops))
    return _response(request, "DescribeGroupsResponse", groups=tuple(groups))


def _described(
    request: KafkaGroupRequest,
    group_id: str,
    error: KafkaCode,
    view: GroupView | str | None,
    operations: int | None,
) -> Any:
    ops = operations if operations is not None else _OPERATIONS_NOT_REQUESTED
    if not isinstance(view, GroupView):
        # Kafka answers an unknown group with state Dead and no error
        state = "Dead" if error == KafkaCode.none else ""
        return _nested(
            request,
            "DescribedGroup",
            error_code=error,
            group_id=group_id,
            group_state=state,
            protocol_type="",
            protocol_data="",
            members=(),
            authorized_operations=ops,
        )
    members = []
    for m in view.members:
        if view.kind == "consumer":
            metadata, assignment = _native_member_bytes(m)
        else:
            metadata, assignment = m.metadata, m.assignment
        members.append(
            _nested(
                request,
                "DescribedGroupMember",
                member_id=m.member_id,
                group_instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=metadata,
                member_assignment=assignment,
            )
        )
    return _nested(
        request,
        "DescribedGroup",
        error_code=error,
        group_id=group_id,
        group_state=view.state,
        protocol_type=view.protocol_type,
        protocol_data=view.protocol,
        members=tuple(members),
        authorized_operations=ops,
    )


def handle_list_groups(ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest) -> Any:
    try:
        views = _coordinator(ctx).group_views()
    except BrokerError as exc:
        return _response(request, "ListGroupsResponse", error_code=kafka_error(exc), groups=())
    authz = ctx.authz
    if authz is not None and not authz.allowed(
        info, DESCRIBE, CLUSTER, CLUSTER_NAME, log_denial=False
    ):
        # without describe on the cluster: the groups it may describe
        views = [
            v for v in views if authz.allowed(info, DESCRIBE, GROUP, v.group_id, log_denial=False)
        ]
    groups = tuple(
        _nested(request, "ListedGroup", group_id=v.group_id, protocol_type=v.protocol_type)
        for v in views
    )
    return _response(request, "ListGroupsResponse", error_code=KafkaCode.none, groups=groups)


def handle_delete_groups(
    ctx: BrokerContext, info: ConnectionInfo, request: KafkaGroupRequest
) -> Any:
    names = list(request.body.groups_names)
    outcomes: dict[int, BrokerError | None] = {}
    allowed: list[int] = []
    for i, gid in enumerate(names):
        try:
            _check_group(ctx, info, DELETE, gid)
            allowed.append(i)
        except BrokerError as exc:
            outcomes[i] = exc
    appended = None
    if allowed:
        try:
            errors, appended = _coordinator(ctx).delete([names[i] for i in allowed])
        except BrokerError as exc:
            errors = [exc] * len(allowed)
        outcomes.update(zip(allowed, errors, strict=True))
    results = tuple(
        _nested(request, "DeletableGroupResult", group_id=gid, error_code=kafka_error(outcomes[i]))
        for i, gid in enumerate(names)
    )
    response = _response(request, "DeleteGroupsResponse", results=results)
    if appended is None:
        return response
    return Later(_delete_durable, _coordinator(ctx), response, appended)


async def _delete_durable(coordinator: GroupCoordinator, response: Any, appended: Pending) -> Any:
    await coordinator.wait_durable(appended)
    return response


GROUP_HANDLERS: dict[int, Callable[[BrokerContext, ConnectionInfo, Any], Any]] = {
    KafkaApi.OFFSET_COMMIT: handle_offset_commit,
    KafkaApi.OFFSET_FETCH: handle_offset_fetch,
    KafkaApi.FIND_COORDINATOR: handle_find_coordinator,
    KafkaApi.JOIN_GROUP: handle_join_group,
    KafkaApi.HEARTBEAT: handle_heartbeat,
    KafkaApi.LEAVE_GROUP: handle_leave_group,
    KafkaApi.SYNC_GROUP: handle_sync_group,
    KafkaApi.DESCRIBE_GROUPS: handle_describe_groups,
    KafkaApi.LIST_GROUPS: handle_list_groups,
    KafkaApi.DELETE_GROUPS: handle_delete_groups,
}
