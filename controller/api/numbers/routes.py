"""Numbers the controller answers: the config's (read only) and the API's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
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
from controller.api.interface import Operations
from controller.api.numbers.schemas import NumberList, NumberView, number_view
from controller.errors import InvalidField, InvalidNumber, InvalidRequest, NumberFromConfig
from controller.inbound.numbers import MAX_NUMBER_CHARS, NumberSettings

READ = (UNAUTHORIZED, STORE_UNAVAILABLE)
# A number in the path that is not one (in calls.default_region).
BAD_NUMBER = (InvalidNumber.error_id, InvalidField.error_id)


def routes(ops: Operations, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(auth), tags=["numbers"])

    def not_found(number: str) -> Any:
        return error(ApiErrorId.NUMBER_NOT_FOUND, f"{number} is not a number this controller "
                     "answers", number=number)

    @router.get("/v1/numbers", response_model=NumberList, operation_id="listNumbers",
                summary="The numbers inbound calls are taken on (the config's and the API's)",
                responses=answers(*READ, InvalidField.error_id))
    async def list_numbers(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                           cursor: Annotated[str | None, Query(
                               max_length=MAX_NUMBER_CHARS,
                               description="next_cursor from the previous page")] = None) -> Any:
        """Every number, in E.164 order, paged with `next_cursor`."""
        try:
            numbers, next_cursor = ops.list_numbers(cursor, limit)
        except InvalidRequest as exc:
            return failure(exc)
        return NumberList(numbers=[number_view(n) for n in numbers], next_cursor=next_cursor)

    @router.get("/v1/numbers/{number}", response_model=NumberView, operation_id="getNumber",
                summary="What a number does with the calls it gets",
                responses=answers(*READ, *BAD_NUMBER, ApiErrorId.NUMBER_NOT_FOUND))
    async def get_number(number: str) -> Any:
        """One number's settings (404 number-not-found when there are none).
        Any format calls.default_region reads; `+` is `%2B` in a path."""
        try:
            normalised = ops.inbound_number(number)
        except InvalidRequest as exc:
            return failure(exc)
        found = ops.get_number(normalised)
        return not_found(normalised) if found is None else number_view(found)

    @router.put("/v1/numbers/{number}", response_model=NumberView, operation_id="putNumber",
                summary="Take inbound calls on a number, or change what it does",
                responses=answers(*READ, *BAD_NUMBER, *BODY_ERRORS,
                                  NumberFromConfig.error_id))
    async def put_number(number: str, body: NumberSettings) -> Any:
        """Create or replace a number made over the API: incoming_url (asked
        for each call's actions, with fallback_actions when it fails) or
        actions. Calls already in progress keep what they had. A number from
        the config file cannot be changed here (409 number-from-config)."""
        try:
            normalised = ops.inbound_number(number)
            return number_view(await ops.put_number(normalised, body))
        except InvalidRequest as exc:  # NumberFromConfig too
            return failure(exc)

    @router.delete("/v1/numbers/{number}", status_code=204, response_class=Response,
                   response_model=None, operation_id="deleteNumber",
                   summary="Stop taking inbound calls on a number made over the API",
                   responses=answers(*READ, *BAD_NUMBER, ApiErrorId.NUMBER_NOT_FOUND,
                                     NumberFromConfig.error_id))
    async def delete_number(number: str) -> Any:
        """Calls in progress go on; new calls to it are refused as to any
        unknown number ([inbound]). A number from the config file cannot be
        deleted here (409 number-from-config)."""
        try:
            normalised = ops.inbound_number(number)
            deleted = await ops.delete_number(normalised)
        except InvalidRequest as exc:
            return failure(exc)
        return Response(status_code=204) if deleted else not_found(normalised)

    return router
