"""Consumer groups: FindCoordinator, ConsumerGroupHeartbeat, OffsetCommit,
OffsetFetch, ListGroups, DescribeGroups and DeleteGroups.

FindCoordinator: a single node answers that it is the coordinator (empty
host: keep this connection); a cluster broker answers with the leader of
the group's partition of ``__consumer_offsets`` and its native address
(coordinator/placement.py), or COORDINATOR_NOT_AVAILABLE; the first one
creates the topic in the cluster.

The coordinator (broker/coordinator/) does the work; these handlers adapt
requests to it. Like produce, the synchronous part (validation, state
change, the append of a commit) runs in the connection's reader, in request
order; only the waits run in a task of their own: a commit's durability and
a heartbeat held as a long poll. A commit's first write creates the offsets
topic; that request holds later ones on its connection (barrier) so commits
keep their order.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from tailrace.client.errors import (
    CoordinatorNotAvailableError,
    GroupAuthorizationError,
    InvalidGroupIdError,
    TopicAuthorizationError,
)
from tailrace.client.protocol import (
    ConsumerGroupHeartbeatRequest,
    DeletedGroup,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribedGroup,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    OffsetCommitPartitionResult,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetCommitTopic,
    OffsetCommitTopicResult,
    OffsetFetchPartitionResult,
    OffsetFetchRequest,
    OffsetFetchTopicResult,
    Request,
)

from ..coordinator.placement import OffsetsPlacement, create_then_unavailable
from ..security.authz import CLUSTER, CLUSTER_NAME, DELETE, DESCRIBE, GROUP, READ, TOPIC
from ..server.connection import ConnectionInfo, Later

if TYPE_CHECKING:
    from ..coordinator import GroupCoordinator, HeartbeatResult
    from ..coordinator.coordinator import Pending
    from .context import BrokerContext

__all__ = [
    "handle_consumer_group_heartbeat",
    "handle_delete_groups",
    "handle_describe_groups",
    "handle_find_coordinator",
    "handle_list_groups",
    "handle_offset_commit",
    "handle_offset_fetch",
]


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


def handle_find_coordinator(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: FindCoordinatorRequest = request.body
    _check_group(ctx, info, DESCRIBE, body.group_id)
    coordinator = _coordinator(ctx)
    if not body.group_id:
        raise InvalidGroupIdError("the group id must not be empty")
    placement = coordinator.placement
    if placement is None:  # a single node: this broker
        return ctx.encode(request, FindCoordinatorResponse(node_id=ctx.node_id))
    if placement.needs_topic():
        return Later(_created_then_unavailable, placement)
    node_id, host, port = placement.find(body.group_id, kafka=False)
    return ctx.encode(request, FindCoordinatorResponse(node_id=node_id, host=host, port=port))


async def _created_then_unavailable(placement: OffsetsPlacement) -> bytes:
    raise await create_then_unavailable(placement)


def handle_consumer_group_heartbeat(
    ctx: BrokerContext, info: ConnectionInfo, request: Request
) -> object:
    coordinator = _coordinator(ctx)
    body: ConsumerGroupHeartbeatRequest = request.body
    if ctx.authz is not None:
        _check_group(ctx, info, READ, body.group_id)
        for topic in body.subscribed_topics or ():
            if _topic_denied(ctx, info, DESCRIBE, topic):
                raise TopicAuthorizationError(
                    f"{info.principal} may not describe {topic!r}, a subscribed topic"
                )
    result = coordinator.heartbeat(body, info.peer)
    if coordinator.should_hold(result):
        return Later(_held_heartbeat, ctx, coordinator, request, result)
    return ctx.encode(request, coordinator.heartbeat_response(result))


async def _held_heartbeat(
    ctx: BrokerContext, coordinator: GroupCoordinator, request: Request, result: HeartbeatResult
) -> bytes:
    return ctx.encode(request, await coordinator.hold(result))


def handle_offset_commit(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    coordinator = _coordinator(ctx)
    if ctx.authz is not None:
        _check_group(ctx, info, READ, request.body.group_id)
    if coordinator.needs_log():
        return Later(_create_then_commit, ctx, info, coordinator, request, barrier=True)
    return _commit(ctx, info, coordinator, request)


async def _create_then_commit(
    ctx: BrokerContext, info: ConnectionInfo, coordinator: GroupCoordinator, request: Request
) -> bytes:
    await coordinator.ensure_log()
    reply = _commit(ctx, info, coordinator, request)
    if type(reply) is Later:
        return await reply.fn(*reply.args)
    return reply


def _commit(
    ctx: BrokerContext, info: ConnectionInfo, coordinator: GroupCoordinator, request: Request
) -> object:
    body: OffsetCommitRequest = request.body
    if ctx.authz is None:
        response, appended = coordinator.commit(body)
    else:
        # commit what the principal may read; the other topics fail alone
        denied = {t.name for t in body.topics if _topic_denied(ctx, info, READ, t.name)}
        allowed = dataclasses.replace(body, topics=[t for t in body.topics if t.name not in denied])
        response, appended = coordinator.commit(allowed)
        done = iter(response.topics)
        response.topics = [
            _denied_commit(t, info) if t.name in denied else next(done) for t in body.topics
        ]
    if appended is None:
        return ctx.encode(request, response)
    return Later(_commit_durable, ctx, coordinator, request, response, appended)


async def _commit_durable(
    ctx: BrokerContext,
    coordinator: GroupCoordinator,
    request: Request,
    response: OffsetCommitResponse,
    appended: Pending,
) -> bytes:
    await coordinator.wait_durable(appended)
    return ctx.encode(request, response)


def _denied_commit(topic: OffsetCommitTopic, info: ConnectionInfo) -> OffsetCommitTopicResult:
    error = TopicAuthorizationError(f"{info.principal} may not read {topic.name!r}")
    return OffsetCommitTopicResult(
        name=topic.name,
        partitions=[
            OffsetCommitPartitionResult(
                partition=p.partition, error_code=int(error.code), error_message=error.message
            )
            for p in topic.partitions
        ],
    )


def handle_offset_fetch(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: OffsetFetchRequest = request.body
    coordinator = _coordinator(ctx)
    if ctx.authz is None:
        return ctx.encode(request, coordinator.fetch_offsets(body))
    _check_group(ctx, info, READ, body.group_id)
    if body.topics is None:
        # every committed offset: those of topics the principal may read
        response = coordinator.fetch_offsets(body)
        response.topics = [
            t
            for t in response.topics
            if ctx.authz.allowed(info, READ, TOPIC, t.name, log_denial=False)
        ]
        return ctx.encode(request, response)
    denied = {t.name for t in body.topics if _topic_denied(ctx, info, READ, t.name)}
    allowed = dataclasses.replace(body, topics=[t for t in body.topics if t.name not in denied])
    response = coordinator.fetch_offsets(allowed)
    found = {t.name: t for t in response.topics}
    topics = []
    for t in body.topics:
        if t.name in denied:
            error = TopicAuthorizationError(f"{info.principal} may not read {t.name!r}")
            results = [
                OffsetFetchPartitionResult(
                    partition=p, error_code=int(error.code), error_message=error.message
                )
                for p in t.partitions
            ]
            topics.append(OffsetFetchTopicResult(name=t.name, partitions=results))
        elif t.name in found:
            topics.append(found.pop(t.name))
    response.topics = topics
    return ctx.encode(request, response)


def handle_list_groups(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: ListGroupsRequest = request.body
    groups = _coordinator(ctx).list_groups(body.states_filter)
    authz = ctx.authz
    if authz is not None and not authz.allowed(
        info, DESCRIBE, CLUSTER, CLUSTER_NAME, log_denial=False
    ):
        # without describe on the cluster: the groups it may describe
        groups = [
            g for g in groups if authz.allowed(info, DESCRIBE, GROUP, g.group_id, log_denial=False)
        ]
    return ctx.encode(request, ListGroupsResponse(groups=groups))


def handle_describe_groups(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: DescribeGroupsRequest = request.body
    coordinator = _coordinator(ctx)
    groups = []
    for gid in body.group_ids:
        try:
            _check_group(ctx, info, DESCRIBE, gid)
        except GroupAuthorizationError as exc:
            groups.append(
                DescribedGroup(group_id=gid, error_code=int(exc.code), error_message=exc.message)
            )
            continue
        groups.append(coordinator.describe_group(gid))
    return ctx.encode(request, DescribeGroupsResponse(groups=groups))


def handle_delete_groups(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: DeleteGroupsRequest = request.body
    coordinator = _coordinator(ctx)
    denied: dict[str, DeletedGroup] = {}
    for gid in body.group_ids:
        try:
            _check_group(ctx, info, DELETE, gid)
        except GroupAuthorizationError as exc:
            denied[gid] = DeletedGroup(
                group_id=gid, error_code=int(exc.code), error_message=exc.message
            )
    if denied:
        results, appended = coordinator.delete_groups(
            [g for g in body.group_ids if g not in denied]
        )
        done = iter(results)
        results = [denied[g] if g in denied else next(done) for g in body.group_ids]
    else:
        results, appended = coordinator.delete_groups(body.group_ids)
    response = DeleteGroupsResponse(results=results)
    if appended is None:
        return ctx.encode(request, response)
    return Later(_delete_durable, ctx, coordinator, request, response, appended)


async def _delete_durable(
    ctx: BrokerContext,
    coordinator: GroupCoordinator,
    request: Request,
    response: DeleteGroupsResponse,
    appended: Pending,
) -> bytes:
    await coordinator.wait_durable(appended)
    return ctx.encode(request, response)
