"""The do-not-call list: the file's numbers (read only) and the API's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.params import Depends

from controller.api.dnc.schemas import DncBody, DncList, DncView, dnc_view
from controller.api.errors import ERRORS, error
from controller.api.interface import Operations
from controller.errors import DncFromFile, InvalidRequest


def routes(ops: Operations, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(auth))

    @router.get("/v1/dnc", response_model=DncList, responses=ERRORS,
                summary="The do-not-call list (the file's and the API's numbers), in order")
    async def list_dnc(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       cursor: Annotated[str | None, Query(max_length=32)] = None) -> Any:
        entries, next_cursor = await ops.list_dnc(cursor, limit)
        return DncList(entries=[dnc_view(e) for e in entries], next_cursor=next_cursor)

    @router.get("/v1/dnc/{number}", response_model=DncView, responses=ERRORS,
                summary="Whether a number is on the do-not-call list")
    async def get_dnc(number: str) -> Any:
        try:
            normalised = ops.dnc_number(number)
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)
        entry = await ops.dnc_entry(normalised)
        if entry is None:
            return error(404, "dnc-not-found", f"{normalised} is not on the do-not-call list",
                         number=normalised)
        return dnc_view(entry)

    @router.put("/v1/dnc/{number}", response_model=DncView, responses=ERRORS,
                summary="Put a number on the do-not-call list")
    async def put_dnc(number: str, body: DncBody | None = None) -> Any:
        try:
            normalised = ops.dnc_number(number)
            return dnc_view(await ops.add_dnc(normalised, body.reason if body else ""))
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)

    @router.delete("/v1/dnc/{number}", status_code=204, response_class=Response,
                   response_model=None, responses=ERRORS,
                   summary="Take a number added over the API off the do-not-call list")
    async def delete_dnc(number: str) -> Any:
        try:
            normalised = ops.dnc_number(number)
            removed = await ops.remove_dnc(normalised)
        except DncFromFile as exc:
            return error(409, exc.error_id, exc.message, **exc.details)
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)
        if not removed:
            return error(404, "dnc-not-found", f"{normalised} is not on the do-not-call list",
                         number=normalised)
        return Response(status_code=204)

    return router
