"""Agent groups: the config's (read only) and the API's."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Response
from fastapi.params import Depends

from controller.api.errors import (
    BODY_ERRORS,
    STORE_UNAVAILABLE,
    UNAUTHORIZED,
    ApiErrorId,
    answers,
    error,
    failure,
)
from controller.api.groups.schemas import AgentView, GroupBody, GroupList, GroupView
from controller.api.interface import Operations
from controller.errors import GroupFromConfig, InvalidNumber, InvalidRequest
from controller.routing.spec import Group

READ = (UNAUTHORIZED, STORE_UNAVAILABLE)


def routes(ops: Operations, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(auth), tags=["groups"])

    async def group_view(group: Group) -> GroupView:
        states = await ops.agent_states(group.agents)
        since = time.time() - group.calls_period_hours * 3600
        return GroupView(**group.as_dict(), agent_states=[
            AgentView(target=s.target, on_call=s.on_call, last_ended_at=s.last_ended_at,
                      calls_in_period=s.calls_since(since)) for s in states.values()])

    @router.get("/v1/groups", response_model=GroupList, operation_id="listGroups",
                summary="Agent groups, from the config and the API", responses=answers(*READ))
    async def list_groups() -> Any:
        """Every group by name, with each agent's state: on a call (which),
        when its last call ended, and its calls in the group's period."""
        groups = ops.agent_groups()
        return GroupList(groups=[await group_view(groups[name]) for name in sorted(groups)])

    @router.get("/v1/groups/{name}", response_model=GroupView, operation_id="getGroup",
                summary="An agent group with its agents' state",
                responses=answers(*READ, ApiErrorId.GROUP_NOT_FOUND))
    async def get_group(name: str) -> Any:
        """One group, from the config or the API, with each agent's state."""
        group = ops.agent_groups().get(name)
        if group is None:
            return error(ApiErrorId.GROUP_NOT_FOUND, f"no agent group {name}", group=name)
        return await group_view(group)

    @router.put("/v1/groups/{name}", response_model=GroupView, operation_id="putGroup",
                summary="Create or replace an agent group",
                responses=answers(*READ, *BODY_ERRORS, InvalidNumber.error_id,
                                  GroupFromConfig.error_id))
    async def put_group(name: str, body: GroupBody) -> Any:
        """A group made over the API, kept in the store. Its name is 1-64 of
        a-z, 0-9, _ and -; a group from the config file cannot be changed
        here (409 group-from-config)."""
        try:
            group = await ops.put_group(name, body.model_dump(mode="json", exclude_none=True))
        except InvalidRequest as exc:  # GroupFromConfig too
            return failure(exc)
        return await group_view(group)

    @router.delete("/v1/groups/{name}", status_code=204, response_class=Response,
                   response_model=None, operation_id="deleteGroup",
                   summary="Delete an agent group made over the API",
                   responses=answers(*READ, ApiErrorId.GROUP_NOT_FOUND, GroupFromConfig.error_id))
    async def delete_group(name: str) -> Any:
        """Calls already ringing its agents go on; a group from the config
        file cannot be deleted here (409 group-from-config)."""
        try:
            deleted = await ops.delete_group(name)
        except GroupFromConfig as exc:
            return failure(exc)
        if not deleted:
            return error(ApiErrorId.GROUP_NOT_FOUND, f"no agent group {name}", group=name)
        return Response(status_code=204)

    return router
