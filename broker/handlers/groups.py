"""Consumer groups: ConsumerGroupHeartbeat, OffsetCommit, OffsetFetch,
ListGroups, DescribeGroups and DeleteGroups.

The coordinator (broker/coordinator/) does the work; these handlers adapt
requests to it. Like produce, the synchronous part (validation, state
change, the append of a commit) runs in the connection's reader, in request
order; only the waits run in a task of their own: a commit's durability and
a heartbeat held as a long poll. A commit's first write creates the offsets
topic; that request holds later ones on its connection (barrier) so commits
keep their order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailrace.client.errors import CoordinatorNotAvailableError
from tailrace.client.protocol import (
    ConsumerGroupHeartbeatRequest,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    Request,
)

from ..server.connection import ConnectionInfo, Later

if TYPE_CHECKING:
    from ..coordinator import GroupCoordinator, HeartbeatResult
    from ..log.partition import AppendResult
    from .context import BrokerContext

__all__ = [
    "handle_consumer_group_heartbeat",
    "handle_delete_groups",
    "handle_describe_groups",
    "handle_list_groups",
    "handle_offset_commit",
    "handle_offset_fetch",
]


def _coordinator(ctx: BrokerContext) -> GroupCoordinator:
    coordinator = ctx.coordinator
    if coordinator is None:
        raise CoordinatorNotAvailableError("this broker runs no group coordinator")
    return coordinator


def handle_consumer_group_heartbeat(
    ctx: BrokerContext, info: ConnectionInfo, request: Request
) -> object:
    coordinator = _coordinator(ctx)
    body: ConsumerGroupHeartbeatRequest = request.body
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
    if coordinator.needs_log():
        return Later(_create_then_commit, ctx, coordinator, request, barrier=True)
    return _commit(ctx, coordinator, request)


async def _create_then_commit(
    ctx: BrokerContext, coordinator: GroupCoordinator, request: Request
) -> bytes:
    await coordinator.ensure_log()
    reply = _commit(ctx, coordinator, request)
    if type(reply) is Later:
        return await reply.fn(*reply.args)
    return reply


def _commit(ctx: BrokerContext, coordinator: GroupCoordinator, request: Request) -> object:
    body: OffsetCommitRequest = request.body
    response, appended = coordinator.commit(body)
    if appended is None:
        return ctx.encode(request, response)
    return Later(_commit_durable, ctx, coordinator, request, response, appended)


async def _commit_durable(
    ctx: BrokerContext,
    coordinator: GroupCoordinator,
    request: Request,
    response: OffsetCommitResponse,
    appended: AppendResult,
) -> bytes:
    await coordinator.wait_durable(appended)
    return ctx.encode(request, response)


def handle_offset_fetch(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: OffsetFetchRequest = request.body
    return ctx.encode(request, _coordinator(ctx).fetch_offsets(body))


def handle_list_groups(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: ListGroupsRequest = request.body
    groups = _coordinator(ctx).list_groups(body.states_filter)
    return ctx.encode(request, ListGroupsResponse(groups=groups))


def handle_describe_groups(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> bytes:
    body: DescribeGroupsRequest = request.body
    coordinator = _coordinator(ctx)
    groups = [coordinator.describe_group(gid) for gid in body.group_ids]
    return ctx.encode(request, DescribeGroupsResponse(groups=groups))


def handle_delete_groups(ctx: BrokerContext, info: ConnectionInfo, request: Request) -> object:
    body: DeleteGroupsRequest = request.body
    coordinator = _coordinator(ctx)
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
    appended: AppendResult,
) -> bytes:
    await coordinator.wait_durable(appended)
    return ctx.encode(request, response)
