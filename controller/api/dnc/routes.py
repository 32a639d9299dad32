"""The do-not-call list: the file's numbers (read only) and the API's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.params import Depends

from controller.api.dnc.schemas import DncBody, DncList, DncView, dnc_view
from controller.api.errors import (
    BODY_ERRORS,
    STORE_UNAVAILABLE,
    UNAUTHORIZED,
    ApiErrorId,
    answers,
    error,
    failure,
)
from controller.api.interface import Operations
from controller.errors import DncFromFile, InvalidField, InvalidNumber, InvalidRequest

READ = (UNAUTHORIZED, STORE_UNAVAILABLE)
# A number in the path that is not one (in calls.default_region).
BAD_NUMBER = (InvalidNumber.error_id, InvalidField.error_id)


def routes(ops: Operations, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(auth), tags=["dnc"])

    @router.get("/v1/dnc", response_model=DncList, operation_id="listDnc",
                summary="The do-not-call list (the file's and the API's numbers), in order",
                responses=answers(*READ, InvalidField.error_id))
    async def list_dnc(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       cursor: Annotated[str | None, Query(max_length=32, description=(
                           "next_cursor from the previous page"))] = None) -> Any:
        """Every number on the list, in E.164 order, paged with `next_cursor`."""
        entries, next_cursor = await ops.list_dnc(cursor, limit)
        return DncList(entries=[dnc_view(e) for e in entries], next_cursor=next_cursor)

    @router.get("/v1/dnc/{number}", response_model=DncView, operation_id="getDnc",
                summary="Whether a number is on the do-not-call list",
                responses=answers(*READ, *BAD_NUMBER, ApiErrorId.DNC_NOT_FOUND))
    async def get_dnc(number: str) -> Any:
        """The number's entry (404 dnc-not-found when it is not on the list).
        Any format calls.default_region reads; `+` is `%2B` in a path."""
        try:
            normalised = ops.dnc_number(number)
        except InvalidRequest as exc:
            return failure(exc)
        entry = await ops.dnc_entry(normalised)
        if entry is None:
            return error(ApiErrorId.DNC_NOT_FOUND, f"{normalised} is not on the do-not-call list",
                         number=normalised)
        return dnc_view(entry)

    @router.put("/v1/dnc/{number}", response_model=DncView, operation_id="putDnc",
                summary="Put a number on the do-not-call list",
                responses=answers(*READ, *BAD_NUMBER, *BODY_ERRORS))
    async def put_dnc(number: str, body: DncBody | None = None) -> Any:
        """Calls to it are refused from now on (403 do-not-call); the body is
        optional. A number the file has keeps the file's entry."""
        try:
            normalised = ops.dnc_number(number)
            return dnc_view(await ops.add_dnc(normalised, body.reason if body else ""))
        except InvalidRequest as exc:
            return failure(exc)

    @router.delete("/v1/dnc/{number}", status_code=204, response_class=Response,
                   response_model=None, operation_id="deleteDnc",
                   summary="Take a number added over the API off the do-not-call list",
                   responses=answers(*READ, *BAD_NUMBER, ApiErrorId.DNC_NOT_FOUND,
                                     DncFromFile.error_id))
    async def delete_dnc(number: str) -> Any:
        """A number from compliance.dnc_file cannot be taken off here (409
        dnc-from-file): edit the file."""
        try:
            normalised = ops.dnc_number(number)
            removed = await ops.remove_dnc(normalised)
        except InvalidRequest as exc:  # DncFromFile too
            return failure(exc)
        if not removed:
            return error(ApiErrorId.DNC_NOT_FOUND, f"{normalised} is not on the do-not-call list",
                         number=normalised)
        return Response(status_code=204)

    return router
