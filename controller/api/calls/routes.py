"""Place, list, watch and end calls; fetch recordings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Header, Query, Response
from fastapi.params import Depends
from fastapi.responses import FileResponse, JSONResponse

from controller.actions.spec import ActionsRequest
from controller.api.calls.schemas import (
    ActionsAccepted,
    CallAccepted,
    CallList,
    TimelineItem,
    call_view,
)
from controller.api.calls.schemas import Call as CallView
from controller.api.errors import (
    BODY_ERRORS,
    STORE_UNAVAILABLE,
    UNAUTHORIZED,
    ApiErrorId,
    OrjsonResponse,
    answers,
    error,
    failure,
    ids_of,
)
from controller.api.interface import Operations
from controller.api.recordings.routes import recording_file
from controller.calls.decision import Refused, Replayed
from controller.calls.request import CallRequest
from controller.errors import (
    AgentLimit,
    AttemptCapReached,
    DestinationRefused,
    DoNotCall,
    Draining,
    IdempotencyKeyReused,
    InvalidField,
    InvalidNumber,
    InvalidRequest,
    NotALiveCall,
    OutsideCallingHours,
    RateLimited,
    SameLegs,
    SwitchActionFailed,
    SwitchUnavailable,
    TooManyActions,
    TrunkLimit,
    WhisperBusy,
    WhisperError,
)

log = structlog.get_logger(__name__)

CallStatusFilter = Literal["active", "scheduled", "completed", "no-answer", "busy", "failed",
                           "canceled"]
# What placing a call can answer besides 202: every refusal happens before
# anything is dialed.
PLACE_ERRORS = (UNAUTHORIZED, *BODY_ERRORS, STORE_UNAVAILABLE, *ids_of((
    InvalidNumber, SameLegs, DoNotCall, DestinationRefused, OutsideCallingHours,
    IdempotencyKeyReused, AttemptCapReached, TrunkLimit, AgentLimit, RateLimited,
    SwitchUnavailable, SwitchActionFailed, WhisperError, WhisperBusy, Draining)))
REPLAYED = {"Idempotency-Replayed": {
    "description": "true when this answers a retry with the same Idempotency-Key, token and "
                   "body: the call is the first request's, and nothing was dialed again",
    "schema": {"type": "string", "enum": ["true"]}}}
ON_A_CALL = (UNAUTHORIZED, STORE_UNAVAILABLE, ApiErrorId.CALL_NOT_FOUND)
# What queueing actions can answer besides 202 and ON_A_CALL.
ACTION_ERRORS = (*BODY_ERRORS, ApiErrorId.CALL_ENDED, *ids_of((
    InvalidNumber, NotALiveCall, TooManyActions, WhisperError, WhisperBusy)))


def routes(ops: Operations, auth: Sequence[Depends], caller: Any) -> APIRouter:
    """``caller``: the dependency (a ``Depends``) that authorizes a request and
    gives its bearer token; typed Any so it can be a str parameter's default."""
    router = APIRouter(dependencies=list(auth), tags=["calls"])

    @router.post("/v1/calls", status_code=202, response_model=CallAccepted,
                 operation_id="placeCall", summary="Place a call connect",
                 responses={202: {"headers": REPLAYED}, **answers(*PLACE_ERRORS)})
    async def place_call(body: CallRequest, response: Response,
                         idempotency_key: Annotated[str | None, Header(
                             max_length=255, description=(
                                 "Retrying with the same key, token and body returns the first "
                                 "call (Idempotency-Replayed: true); the same key with another "
                                 "body is refused (422 idempotency-key-reused)."))] = None,
                         token: str = caller) -> Any:
        """Check the request, then call leg A; the answer comes at once, and
        the call goes on in the daemon (watch it with getCall, or by webhook).
        Every refusal dials nothing. Outside its calling window a call is
        refused (403) or, with `outside_calling_hours: schedule`, kept and
        placed when the window opens (202, `state: scheduled`)."""
        decision = await ops.place_call(body, idempotency_key, token)
        if isinstance(decision, Refused):
            reason = decision.reason
            log.info("call.refused", error_id=reason.error_id, field=reason.details.get("field"),
                     rule=reason.details.get("rule"), error=reason.message)
            return failure(reason)
        if isinstance(decision, Replayed):
            response.headers["Idempotency-Replayed"] = "true"
        return decision.initial_response()

    @router.get("/v1/calls", response_model=CallList, operation_id="listCalls",
                summary="List calls, newest first",
                responses=answers(UNAUTHORIZED, InvalidField.error_id, STORE_UNAVAILABLE))
    async def list_calls(
            status: Annotated[CallStatusFilter | None, Query(description=(
                "active: calls running; scheduled: calls waiting for their window; "
                "else a final status"))] = None,
            created_after: Annotated[float | None, Query(description="Unix time")] = None,
            created_before: Annotated[float | None, Query(description="Unix time")] = None,
            limit: Annotated[int, Query(ge=1, le=500)] = 50,
            cursor: Annotated[str | None, Query(max_length=200, description=(
                "next_cursor from the previous page"))] = None) -> Any:
        """Calls with their request and, once ended, their result; without
        their timeline (getCall has it). Paged with `next_cursor`."""
        try:
            page = await ops.list_calls(status=status, created_after=created_after,
                                        created_before=created_before, limit=limit, cursor=cursor)
        except (ValueError, InvalidRequest):  # the store says InvalidField
            return error(InvalidField.error_id, "cursor: not a cursor this API gave out",
                         field="cursor")
        # orjson: a page of 50 calls is about 160 KB of JSON, which the
        # standard library took 1.5 ms to write.
        return OrjsonResponse({"calls": [call_view(c) for c in page.calls],
                               "next_cursor": page.next_cursor})

    @router.get("/v1/calls/{call_id}", response_model=CallView, operation_id="getCall",
                summary="A call's full state and timeline", responses=answers(*ON_A_CALL))
    async def get_call(call_id: str) -> Any:
        """The call's state, its request, its result once it has ended, and
        every step of its timeline."""
        stored = await ops.get_call(call_id)
        if stored is None:
            return not_found(call_id)
        timeline = [TimelineItem(at=t.at, kind=t.kind, data=t.data)
                    for t in await ops.timeline(call_id)]
        return OrjsonResponse(call_view(stored, timeline))

    @router.post("/v1/calls/{call_id}/hangup", status_code=202, response_model=CallView,
                 operation_id="hangUpCall", summary="Cancel or end a call",
                 responses=answers(*ON_A_CALL, ApiErrorId.CALL_ENDED))
    async def hangup(call_id: str) -> Any:
        """Cancel a call before the bridge (a scheduled one too), or end a
        live one; its end comes as usual, with the completion webhook
        (`hangup_by: api`). A call that has already ended gets 409."""
        done = await ops.hang_up(call_id)
        if done is None:
            return not_found(call_id)
        if done.already_ended:
            return error(ApiErrorId.CALL_ENDED, f"call {call_id} has already ended",
                         call_id=call_id, status=done.call.status)
        return OrjsonResponse(call_view(done.call), status_code=202)

    @router.post("/v1/calls/{call_id}/actions", status_code=202, response_model=ActionsAccepted,
                 operation_id="queueActions", summary="Run actions on a live call",
                 responses=answers(*ON_A_CALL, *ACTION_ERRORS))
    async def queue_actions(call_id: str, body: ActionsRequest) -> Any:
        """Check every action, then queue them on the call, to run in order
        after those already queued (`replace: true` drops those first; the
        one running finishes). Each gets an id; getCall shows its outcome, and
        `call.action.completed` reports it. An action that breaks a rule
        gets 400 naming its field (`actions[2].max_digits`), and nothing is
        queued; a call that has ended gets 409."""
        try:
            queued = await ops.queue_actions(call_id, body)
        except (InvalidRequest, WhisperError, WhisperBusy) as exc:
            log.info("actions.refused", call_id=call_id, error_id=exc.error_id,
                     field=exc.details.get("field"), error=exc.message)
            return failure(exc)
        if queued is None:
            return not_found(call_id)
        if queued.ended:
            return error(ApiErrorId.CALL_ENDED, f"call {call_id} has ended: it takes no actions",
                         call_id=call_id, status=queued.status)
        return JSONResponse({"call_uuid": call_id, "actions": [
            {"id": action_id, "type": kind} for action_id, kind in queued.action_ids]},
            status_code=202)

    @router.get("/v1/calls/{call_id}/recording", response_class=FileResponse,
                operation_id="getCallRecording",
                summary="The call's recording (WAV; Range requests supported)",
                responses={200: {"content": {"audio/wav": {}}, "description": "The whole file"},
                           206: {"content": {"audio/wav": {}},
                                 "description": "The part a Range header asked for"},
                           400: {"content": {"text/plain": {}},
                                 "description": "A malformed Range header"},
                           416: {"content": {"text/plain": {}},
                                 "description": "The Range is outside the file"},
                           **answers(*ON_A_CALL, ApiErrorId.RECORDING_NOT_FOUND)},
                openapi_extra={"parameters": [{
                    "name": "Range", "in": "header", "required": False,
                    "description": "bytes=START-END, to fetch part of the file",
                    "schema": {"type": "string", "pattern": r"^bytes=\d*-\d*(, *\d*-\d*)*$"}}]})
    async def recording(call_id: str) -> Any:
        """The WAV file (8 kHz mono) once the call has ended with one."""
        return await recording_file(ops, call_id)

    return router


def not_found(call_id: str) -> JSONResponse:
    return error(ApiErrorId.CALL_NOT_FOUND, f"no call {call_id}", call_id=call_id)
