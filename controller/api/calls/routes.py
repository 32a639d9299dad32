"""Place, list, watch and end calls; fetch recordings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Header, Query, Response
from fastapi.params import Depends
from fastapi.responses import FileResponse, JSONResponse

from controller.api.calls.schemas import Call as CallView
from controller.api.calls.schemas import CallAccepted, CallList, TimelineItem, call_view
from controller.api.errors import ERRORS, error, refusal
from controller.api.interface import Operations
from controller.api.recordings.routes import recording_file
from controller.calls.decision import Refused, Replayed
from controller.calls.request import CallRequest
from controller.errors import CallRefused, InvalidRequest

log = structlog.get_logger(__name__)

CallStatusFilter = Literal["active", "scheduled", "completed", "no-answer", "busy", "failed",
                           "canceled"]


def routes(ops: Operations, auth: Sequence[Depends], caller: Any) -> APIRouter:
    """``caller``: the dependency (a ``Depends``) that authorizes a request and
    gives its bearer token; typed Any so it can be a str parameter's default."""
    router = APIRouter(dependencies=list(auth))

    @router.post("/v1/calls", status_code=202, response_model=CallAccepted,
                 responses={**ERRORS, 422: ERRORS[400]}, summary="Place a call connect")
    async def place_call(body: CallRequest, response: Response,
                         idempotency_key: Annotated[str | None, Header(
                             max_length=255, description=(
                                 "Retrying with the same key, token and body returns the first "
                                 "call (Idempotency-Replayed: true); the same key with another "
                                 "body is refused (422 idempotency-key-reused)."))] = None,
                         token: str = caller) -> Any:
        decision = await ops.place_call(body, idempotency_key, token)
        if isinstance(decision, Refused):
            return refused(decision)
        if isinstance(decision, Replayed):
            response.headers["Idempotency-Replayed"] = "true"
        return decision.initial_response()

    @router.get("/v1/calls", response_model=CallList, responses=ERRORS,
                summary="List calls, newest first")
    async def list_calls(
            status: Annotated[CallStatusFilter | None, Query()] = None,
            created_after: Annotated[float | None, Query(description="Unix time")] = None,
            created_before: Annotated[float | None, Query(description="Unix time")] = None,
            limit: Annotated[int, Query(ge=1, le=500)] = 50,
            cursor: Annotated[str | None, Query(max_length=200)] = None) -> Any:
        try:
            page = await ops.list_calls(status=status, created_after=created_after,
                                        created_before=created_before, limit=limit, cursor=cursor)
        except (ValueError, InvalidRequest):  # the store says InvalidField
            return error(400, "invalid-field", "cursor: not a cursor this API gave out",
                         field="cursor")
        return CallList(calls=[call_view(c) for c in page.calls], next_cursor=page.next_cursor)

    @router.get("/v1/calls/{call_id}", response_model=CallView, responses=ERRORS,
                summary="A call's full state and timeline")
    async def get_call(call_id: str) -> Any:
        stored = await ops.get_call(call_id)
        if stored is None:
            return not_found(call_id)
        timeline = [TimelineItem(at=t.at, kind=t.kind, data=t.data)
                    for t in await ops.timeline(call_id)]
        return call_view(stored, timeline)

    @router.post("/v1/calls/{call_id}/hangup", status_code=202, response_model=CallView,
                 responses=ERRORS, summary="Cancel or end a call")
    async def hangup(call_id: str) -> Any:
        done = await ops.hang_up(call_id)
        if done is None:
            return not_found(call_id)
        if done.already_ended:
            return error(409, "call-ended", f"call {call_id} has already ended",
                         call_id=call_id, status=done.call.status)
        return call_view(done.call)

    @router.get("/v1/calls/{call_id}/recording", response_class=FileResponse,
                responses={200: {"content": {"audio/wav": {}}}, **ERRORS},
                summary="The call's recording (WAV; Range requests supported)")
    async def recording(call_id: str) -> Any:
        return await recording_file(ops, call_id)

    return router


def refused(decision: Refused) -> JSONResponse:
    reason = decision.reason
    log.info("call.refused", error_id=reason.error_id, field=reason.details.get("field"),
             rule=reason.details.get("rule"), error=reason.message)
    if isinstance(reason, InvalidRequest):
        return error(400, reason.error_id, reason.message, **reason.details)
    if isinstance(reason, CallRefused):
        return refusal(reason)
    # The switch failed us, or the whisper could not be rendered: nothing was
    # dialed, and a retry may succeed.
    return error(503, reason.error_id, reason.message, **reason.details)


def not_found(call_id: str) -> JSONResponse:
    return error(404, "call-not-found", f"no call {call_id}", call_id=call_id)

