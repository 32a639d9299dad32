"""Agent groups: the config's (read only) and the API's."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Response
from fastapi.params import Depends

from controller.api.errors import ERRORS, error
from controller.api.groups.schemas import AgentView, GroupBody, GroupList, GroupView
from controller.api.interface import Operations
from controller.errors import GroupFromConfig, InvalidRequest
from controller.routing.spec import Group


def routes(ops: Operations, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(auth))

    async def group_view(group: Group) -> GroupView:
        states = await ops.agent_states(group.agents)
        since = time.time() - group.calls_period_hours * 3600
        return GroupView(**group.as_dict(), agent_states=[
            AgentView(target=s.target, on_call=s.on_call, last_ended_at=s.last_ended_at,
                      calls_in_period=s.calls_since(since)) for s in states.values()])

    @router.get("/v1/groups", response_model=GroupList, responses=ERRORS,
                summary="Agent groups, from the config and the API")
    async def list_groups() -> Any:
        groups = ops.agent_groups()
        return GroupList(groups=[await group_view(groups[name]) for name in sorted(groups)])

    @router.get("/v1/groups/{name}", response_model=GroupView, responses=ERRORS,
                summary="An agent group with its agents' state")
    async def get_group(name: str) -> Any:
        group = ops.agent_groups().get(name)
        if group is None:
            return error(404, "group-not-found", f"no agent group {name}", group=name)
        return await group_view(group)

    @router.put("/v1/groups/{name}", response_model=GroupView, responses=ERRORS,
                summary="Create or replace an agent group")
    async def put_group(name: str, body: GroupBody) -> Any:
        try:
            group = await ops.put_group(name, body.model_dump(mode="json", exclude_none=True))
        except GroupFromConfig as exc:
            return error(409, exc.error_id, exc.message, **exc.details)
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)
        return await group_view(group)

    @router.delete("/v1/groups/{name}", status_code=204, response_class=Response,
                   response_model=None, responses=ERRORS,
                   summary="Delete an agent group made over the API")
    async def delete_group(name: str) -> Any:
        try:
            deleted = await ops.delete_group(name)
        except GroupFromConfig as exc:
            return error(409, exc.error_id, exc.message, **exc.details)
        if not deleted:
            return error(404, "group-not-found", f"no agent group {name}", group=name)
        return Response(status_code=204)

    return router
