"""The REST API: place, watch and end calls; fetch recordings; /status and
/metrics. Every error is JSON with a stable ``error_id``, a message and details;
a validation error names the field. Refused requests are logged with the
error and the field, never with the request's token or body."""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from controller import __version__
from controller.calls.service import CallRequest
from controller.compliance.dnc import DncEntry
from controller.daemon.admission import retry_after_header
from controller.daemon.listener import DuplicateRequest
from controller.errors import (
    CallRefused,
    DncFromFile,
    GroupFromConfig,
    InvalidRequest,
    OutsideCallingHours,
    SwitchError,
)
from controller.routing.spec import Group
from controller.store import StoredCall, StoreError
from controller.tts import MAX_TEXT_CHARS

if TYPE_CHECKING:
    from controller.daemon.service import Daemon

log = structlog.get_logger(__name__)

WebhookEvent = Literal["initiated", "ringing", "answered", "bridged", "completed"]


TARGET_HELP = ("E.164 or local number, sip: URI, endpoint:NAME (a device on the switch), "
               "group:NAME (an agent group) or an http(s) dial-whom URL")
Outcome = Literal["no_answer", "busy", "failed", "all_busy"]


class TargetOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(max_length=2048, description=TARGET_HELP)
    ring_timeout: int | None = Field(None, ge=1, le=600, description="Seconds this target rings")


Target = Annotated[str, Field(max_length=2048)] | TargetOption


class QueueOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(max_length=64, description="The agent group the caller waits for")
    max_wait: int = Field(120, ge=5, le=3600, description="Seconds before giving up")
    max_size: int = Field(10, ge=1, le=1000, description="Callers already waiting that make it full")
    announce_every: int = Field(30, ge=10, le=600, description="Seconds between position news")
    message: str = Field("", max_length=MAX_TEXT_CHARS,
                         description="Said when leaving the queue unserved")


class FallbackOption(BaseModel):
    """Exactly one of dial, message, queue or hangup."""

    model_config = ConfigDict(extra="forbid")

    dial: list[Target] | None = Field(None, max_length=10, description="Ring these next")
    message: str | None = Field(None, max_length=MAX_TEXT_CHARS,
                                description="Say this to leg A, hang up")
    queue: QueueOption | None = Field(
        None, description="Hold leg A, with music and its position, until an agent is free")
    hangup: bool | None = Field(None, description="Hang up at once")


class CallCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leg_a: str = Field(description="Who is called first: E.164, local number, sip: URI or "
                       "endpoint:NAME", max_length=128, examples=["+27115550101"])
    leg_b: Target | list[Target] = Field(
        description=f"Whom to connect leg A to: one target or up to 10. A target is {TARGET_HELP}",
        examples=["011 555 0202", ["+27115550202", "sip:desk@pbx.example.com"], "group:sales"])
    strategy: Literal["simultaneous", "sequential"] = Field(
        "simultaneous", description="Ring leg B's targets at once (first answer wins) or in turn")
    max_attempts: int | None = Field(None, ge=1, le=50, description="Most rounds of ringing leg B")
    fallbacks: dict[Outcome, FallbackOption] | None = Field(
        None, description="What happens when leg B's route runs out, by how it ran out")
    dial_whom_fallback_url: str | None = Field(
        None, max_length=2048, description="Asked when a dial-whom URL fails or takes over 10 s")
    dial_whom_ask_again: bool = Field(
        True, description="Ask the dial-whom URL again after every failed attempt")
    whisper: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Spoken to the agent")
    whisper_timing: Literal["before_dial", "on_answer"] = Field(
        "before_dial", description="before_dial: leg A hears it, then B is dialed; on_answer: "
        "leg B hears it the moment it answers, before the bridge")
    confirm_key: str | None = Field(None, pattern=r"^[0-9*#]$",
                                    description="Leg B must press this key to take the call")
    confirm_timeout: int = Field(5, ge=1, le=60, description="Seconds to press the confirm key")
    while_ringing: Literal["ringback", "music"] = Field(
        "ringback", description="What leg A hears while leg B is chosen and rung")
    record: bool | None = Field(None, description="Record the call (default: the config's, on)")
    caller_id: str | None = Field(None, max_length=32)
    ring_timeout: int | None = Field(None, ge=1, le=600, description="Seconds each leg may ring")
    time_limit: int | None = Field(None, ge=1, le=86400, description="Seconds the call may last")
    webhook_url: str | None = Field(None, max_length=2048)
    webhook_events: list[WebhookEvent] = Field(
        default=["completed"], description="Status callbacks to send")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Echoed back in webhooks")
    calling_hours: str | None = Field(
        None, max_length=32, examples=["08:00-21:00"],
        description="Local hours (HH:MM-HH:MM, seconds allowed; an end before the start wraps "
        "past midnight) within which leg A and leg B's numbers may be called, in each "
        "number's own time zone (default: the config's compliance.calling_hours)")
    calling_days: list[Annotated[str, Field(max_length=16)]] | None = Field(
        None, max_length=7, examples=[["mon", "tue", "wed", "thu", "fri"]],
        description="Days the window may start on (default: the config's; empty: every day)")
    outside_calling_hours: Literal["refuse", "schedule"] = Field(
        "refuse", description="Outside the window: refuse (403 outside-calling-hours), or "
        "schedule the call for when it opens (202, state scheduled)")


class DncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500, description="Why the number may not be called")


class DncView(BaseModel):
    number: str
    reason: str
    source: Literal["file", "api"] = Field(description="file: compliance.dnc_file; api: added here")
    added_at: float | None


class DncList(BaseModel):
    entries: list[DncView]
    next_cursor: str | None


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["round-robin", "simultaneous", "sequential", "longest-idle",
                      "least-calls"] = "round-robin"
    agents: list[Annotated[str, Field(max_length=128)]] = Field(
        min_length=1, max_length=100, description="Numbers, sip: URIs or endpoint:NAMEs, "
        "in priority order")
    ring_timeout: int | None = Field(None, ge=1, le=600)
    calls_period_hours: float = Field(24.0, gt=0, le=8760,
                                      description="least-calls counts calls over this period")
    fallbacks: dict[Outcome, FallbackOption] | None = None


class AgentView(BaseModel):
    target: str
    on_call: str | None
    last_ended_at: float | None
    calls_in_period: int


class GroupView(BaseModel):
    name: str
    strategy: str
    agents: list[str]
    ring_timeout: int | None
    calls_period_hours: float
    fallbacks: dict[str, Any]
    source: Literal["config", "api"]
    agent_states: list[AgentView] = []


class GroupList(BaseModel):
    groups: list[GroupView]


class CallAccepted(BaseModel):
    success: bool
    call_uuid: str
    state: str
    leg_a_status: str
    leg_b_status: str
    recorded: bool
    scheduled_for: float | None = Field(
        None, description="When a scheduled call will be placed (unix time)")


class TimelineItem(BaseModel):
    at: float
    kind: str
    data: dict[str, Any]


class Call(BaseModel):
    call_uuid: str
    state: str
    status: str | None
    created_at: float
    updated_at: float
    request: dict[str, Any]
    result: dict[str, Any] | None
    timeline: list[TimelineItem] = []
    scheduled_for: float | None = None


class CallList(BaseModel):
    calls: list[Call]
    next_cursor: str | None


class ErrorBody(BaseModel):
    error_id: str
    message: str
    details: dict[str, Any] = {}


class ComponentStatus(BaseModel):
    status: Literal["ok", "fail"]
    reason: str | None = None


class Status(BaseModel):
    status: Literal["ok", "fail"]
    version: str
    draining: bool
    active_calls: int
    components: dict[str, ComponentStatus]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 429, 503)}


def error(http_status: int, error_id: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error_id": error_id, "message": message, "details": details},
                        status_code=http_status)


def call_view(stored: StoredCall, timeline: list[TimelineItem] | None = None) -> Call:
    return Call(call_uuid=stored.call_id, state=stored.state, status=stored.status,
                created_at=stored.created_at, updated_at=stored.updated_at,
                request=stored.request, result=stored.result, timeline=timeline or [],
                scheduled_for=stored.snapshot.get("scheduled_for"))


def refusal(exc: CallRefused) -> JSONResponse:
    """A compliance rule or limit: 403 or 429, with Retry-After when later helps."""
    response = error(exc.http_status, exc.error_id, exc.message, **exc.details)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = retry_after_header(exc.retry_after)
    return response


class Unauthorized(Exception):
    pass


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def create_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(title="callconnect", version=__version__,
                  description="Self-hosted call connect: leg A, whisper, leg B, bridge, "
                              "record, report.")

    def openapi() -> dict[str, Any]:
        # Validation errors are answered 400 with an error_id, not FastAPI's 422.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for path in schema["paths"].values():
                for operation in path.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def authorized(credentials: Credentials) -> None:
        token = credentials.credentials if credentials else ""
        if not any(hmac.compare_digest(token.encode(), known.encode())
                   for known in daemon.config.api.tokens):
            raise Unauthorized

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        response = error(401, "unauthorized", "a valid bearer token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "header"))
        log.info("api.refused", path=request.url.path, error_id="invalid-field", field=field,
                 error=first["msg"])
        return error(400, "invalid-field", f"{field or 'request'}: {first['msg']}",
                     field=field, errors=[{"field": ".".join(str(p) for p in e["loc"][1:]),
                                           "message": e["msg"]} for e in problems])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # The framework's own answers (no such path or method, an unreadable
        # body) carry an error_id like every other error.
        ids = {400: "invalid-request", 404: "not-found", 405: "method-not-allowed"}
        response = error(exc.status_code, ids.get(exc.status_code, f"http-{exc.status_code}"),
                         str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        return error(503, exc.error_id, exc.message, **exc.details)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug: still a JSON error with an id, and the traceback in the log.
        log.error("api.internal_error", path=request.url.path, error=repr(exc), exc_info=exc)
        return error(500, "internal-error", "the controller failed to handle this request; "
                     "the log has the details")

    auth = [Depends(authorized)]

    @app.post("/v1/calls", status_code=202, response_model=CallAccepted, dependencies=auth,
              responses=ERRORS, summary="Place a call connect")
    async def place_call(body: CallCreate, response: Response,
                         idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
                         ) -> Any:
        if idempotency_key:
            existing = await daemon.store.get_call_by_idempotency_key(idempotency_key)
            if existing is not None:
                response.headers["Idempotency-Replayed"] = "true"
                return initial_of(existing)
        if daemon.draining:
            return error(503, "draining", "the daemon is shutting down; retry on another one")
        wait = daemon.admission.admit(len(daemon.controller.calls.calls))
        if wait is not None:
            refused = error(429, "rate-limited", "too many calls right now; retry after "
                            "Retry-After seconds", retry_after=round(wait, 3))
            refused.headers["Retry-After"] = retry_after_header(wait)
            return refused
        routing = body.model_dump(include={"leg_b", "fallbacks"}, exclude_none=True)
        request = CallRequest(
            leg_a=body.leg_a, leg_b=routing["leg_b"], whisper=body.whisper, record=body.record,
            ring_timeout=body.ring_timeout, time_limit=body.time_limit, caller_id=body.caller_id,
            webhook_url=body.webhook_url, webhook_events=tuple(body.webhook_events),
            metadata=body.metadata, idempotency_key=idempotency_key, strategy=body.strategy,
            max_attempts=body.max_attempts, fallbacks=routing.get("fallbacks"),
            dial_whom_fallback_url=body.dial_whom_fallback_url,
            dial_whom_ask_again=body.dial_whom_ask_again, whisper_timing=body.whisper_timing,
            confirm_key=body.confirm_key, confirm_timeout=body.confirm_timeout,
            while_ringing=body.while_ringing, calling_hours=body.calling_hours,
            calling_days=body.calling_days, outside_calling_hours=body.outside_calling_hours)
        try:
            call = await daemon.controller.calls.place(request)
        except DuplicateRequest as duplicate:
            response.headers["Idempotency-Replayed"] = "true"
            return initial_of(duplicate.existing)
        except InvalidRequest as exc:
            log.info("call.refused", error_id=exc.error_id, field=exc.details.get("field"),
                     error=exc.message)
            return error(400, exc.error_id, exc.message, **exc.details)
        except SwitchError as exc:
            return error(503, exc.error_id, exc.message)
        except OutsideCallingHours as exc:
            if body.outside_calling_hours == "schedule" and "next_window_at" in exc.details:
                return initial_of(await daemon.scheduler.schedule(request, exc))
            log.info("call.refused", error_id=exc.error_id, field=exc.details.get("field"))
            return refusal(exc)
        except CallRefused as exc:
            log.info("call.refused", error_id=exc.error_id, field=exc.details.get("field"),
                     rule=exc.details.get("rule"))
            return refusal(exc)
        return call.initial_response()

    @app.get("/v1/calls", response_model=CallList, dependencies=auth, responses=ERRORS,
             summary="List calls, newest first")
    async def list_calls(
            status: Annotated[Literal["active", "scheduled", "completed", "no-answer", "busy",
                                      "failed", "canceled"] | None, Query()] = None,
            created_after: Annotated[float | None, Query(description="Unix time")] = None,
            created_before: Annotated[float | None, Query(description="Unix time")] = None,
            limit: Annotated[int, Query(ge=1, le=500)] = 50,
            cursor: Annotated[str | None, Query(max_length=200)] = None) -> Any:
        try:
            page = await daemon.store.list_calls(status=status, created_after=created_after,
                                                 created_before=created_before, limit=limit,
                                                 cursor=cursor)
        except (ValueError, InvalidRequest):  # the store says InvalidField
            return error(400, "invalid-field", "cursor: not a cursor this API gave out",
                         field="cursor")
        return CallList(calls=[call_view(c) for c in page.calls], next_cursor=page.next_cursor)

    @app.get("/v1/calls/{call_id}", response_model=Call, dependencies=auth, responses=ERRORS,
             summary="A call's full state and timeline")
    async def get_call(call_id: str) -> Any:
        stored = await daemon.store.get_call(call_id)
        if stored is None:
            return error(404, "call-not-found", f"no call {call_id}", call_id=call_id)
        timeline = [TimelineItem(at=t.at, kind=t.kind, data=t.data)
                    for t in await daemon.store.timeline(call_id)]
        return call_view(stored, timeline)

    @app.post("/v1/calls/{call_id}/hangup", status_code=202, response_model=Call,
              dependencies=auth, responses=ERRORS, summary="Cancel or end a call")
    async def hangup(call_id: str) -> Any:
        stored = await daemon.store.get_call(call_id)
        if stored is None:
            return error(404, "call-not-found", f"no call {call_id}", call_id=call_id)
        if stored.state == "scheduled" and await daemon.scheduler.cancel(stored):
            return call_view(await daemon.store.get_call(call_id) or stored)
        if call_id not in daemon.controller.calls.calls:
            return error(409, "call-ended", f"call {call_id} has already ended",
                         call_id=call_id, status=stored.status)
        await daemon.controller.calls.hangup(call_id, "api")
        return call_view(stored)

    @app.get("/v1/calls/{call_id}/recording", dependencies=auth, response_class=FileResponse,
             responses={200: {"content": {"audio/wav": {}}}, **ERRORS},
             summary="The call's recording (WAV; Range requests supported)")
    async def recording(call_id: str) -> Any:
        stored = await daemon.store.get_call(call_id)
        if stored is None:
            return error(404, "call-not-found", f"no call {call_id}", call_id=call_id)
        path = ((stored.result or {}).get("recording") or {}).get("path")
        if not path or not Path(path).is_file():
            return error(404, "recording-not-found", f"call {call_id} has no recording",
                         call_id=call_id)
        return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")

    async def group_view(group: Group) -> GroupView:
        states = await daemon.store.agent_states(group.agents)
        since = time.time() - group.calls_period_hours * 3600
        return GroupView(**group.as_dict(), agent_states=[
            AgentView(target=s.target, on_call=s.on_call, last_ended_at=s.last_ended_at,
                      calls_in_period=s.calls_since(since)) for s in states.values()])

    @app.get("/v1/groups", response_model=GroupList, dependencies=auth, responses=ERRORS,
             summary="Agent groups, from the config and the API")
    async def list_groups() -> Any:
        groups = daemon.controller.calls.groups
        return GroupList(groups=[await group_view(groups[name]) for name in sorted(groups)])

    @app.get("/v1/groups/{name}", response_model=GroupView, dependencies=auth, responses=ERRORS,
             summary="An agent group with its agents' state")
    async def get_group(name: str) -> Any:
        group = daemon.controller.calls.groups.get(name)
        if group is None:
            return error(404, "group-not-found", f"no agent group {name}", group=name)
        return await group_view(group)

    @app.put("/v1/groups/{name}", response_model=GroupView, dependencies=auth, responses=ERRORS,
             summary="Create or replace an agent group")
    async def put_group(name: str, body: GroupBody) -> Any:
        try:
            group = await daemon.put_group(name, body.model_dump(exclude_none=True))
        except GroupFromConfig as exc:
            return error(409, exc.error_id, exc.message, **exc.details)
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)
        return await group_view(group)

    @app.delete("/v1/groups/{name}", status_code=204, response_class=Response,
                response_model=None, dependencies=auth, responses=ERRORS,
                summary="Delete an agent group made over the API")
    async def delete_group(name: str) -> Any:
        try:
            deleted = await daemon.delete_group(name)
        except GroupFromConfig as exc:
            return error(409, exc.error_id, exc.message, **exc.details)
        if not deleted:
            return error(404, "group-not-found", f"no agent group {name}", group=name)
        return Response(status_code=204)

    def dnc_view(entry: DncEntry) -> DncView:
        return DncView(number=entry.number, reason=entry.reason,
                       source="file" if entry.source == "file" else "api",
                       added_at=entry.added_at)

    @app.get("/v1/dnc", response_model=DncList, dependencies=auth, responses=ERRORS,
             summary="The do-not-call list (the file's and the API's numbers), in order")
    async def list_dnc(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       cursor: Annotated[str | None, Query(max_length=32)] = None) -> Any:
        entries, next_cursor = await daemon.controller.calls.compliance.list_dnc(cursor, limit)
        return DncList(entries=[dnc_view(e) for e in entries], next_cursor=next_cursor)

    @app.get("/v1/dnc/{number}", response_model=DncView, dependencies=auth, responses=ERRORS,
             summary="Whether a number is on the do-not-call list")
    async def get_dnc(number: str) -> Any:
        compliance = daemon.controller.calls.compliance
        try:
            normalised = compliance.number(number)
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)
        entry = await compliance.dnc_entry(normalised)
        if entry is None:
            return error(404, "dnc-not-found", f"{normalised} is not on the do-not-call list",
                         number=normalised)
        return dnc_view(entry)

    @app.put("/v1/dnc/{number}", response_model=DncView, dependencies=auth, responses=ERRORS,
             summary="Put a number on the do-not-call list")
    async def put_dnc(number: str, body: DncBody | None = None) -> Any:
        compliance = daemon.controller.calls.compliance
        try:
            normalised = compliance.number(number)
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)
        return dnc_view(await compliance.add_dnc(normalised, body.reason if body else ""))

    @app.delete("/v1/dnc/{number}", status_code=204, response_class=Response,
                response_model=None, dependencies=auth, responses=ERRORS,
                summary="Take a number added over the API off the do-not-call list")
    async def delete_dnc(number: str) -> Any:
        compliance = daemon.controller.calls.compliance
        try:
            normalised = compliance.number(number)
            removed = await compliance.remove_dnc(normalised)
        except DncFromFile as exc:
            return error(409, exc.error_id, exc.message, **exc.details)
        except InvalidRequest as exc:
            return error(400, exc.error_id, exc.message, **exc.details)
        if not removed:
            return error(404, "dnc-not-found", f"{normalised} is not on the do-not-call list",
                         number=normalised)
        return Response(status_code=204)

    @app.get("/status", response_model=Status, responses={503: {"model": Status}},
             summary="Health of each component (no token needed)")
    async def status() -> Any:
        report = await daemon.status()
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(daemon.metrics.render(), media_type="text/plain; version=0.0.4")

    def initial_of(stored: StoredCall) -> dict[str, Any]:
        legs = stored.snapshot.get("legs", {})
        scheduled_for = stored.snapshot.get("scheduled_for")
        return {"success": stored.status in (None, "completed"), "call_uuid": stored.call_id,
                "state": stored.state, "scheduled_for": scheduled_for,
                "leg_a_status": legs.get("a", {}).get(
                    "status", "pending" if stored.state == "scheduled" else "initiated"),
                "leg_b_status": legs.get("b", {}).get("status", "pending"),
                "recorded": bool(stored.snapshot.get("plan", {}).get("recording_file"))}

    return app

