"""What the calls routes answer (the body of POST /v1/calls is the call
request itself: :class:`controller.calls.request.CallRequest`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from controller.api.calls.result import ActionRecord, CallResult, StoredRequest
from controller.core.outcomes import CallStatus
from controller.store import StoredCall


class CallAccepted(BaseModel):
    success: bool
    call_uuid: str
    state: str = Field(description="dialing-a, or scheduled for a call waiting for its window")
    leg_a_status: str
    leg_b_status: str
    recorded: bool = Field(description="The call will be recorded")
    scheduled_for: float | None = Field(
        None, description="When a scheduled call will be placed (unix time)")


class QueuedAction(BaseModel):
    id: str = Field(description="The action's id: its record in getCall's result and in "
                    "call.action.completed carries it")
    type: str


class ActionsAccepted(BaseModel):
    call_uuid: str
    actions: list[QueuedAction] = Field(description="One per action sent, in order")


class TimelineItem(BaseModel):
    at: float
    kind: str = Field(description="transition or schedule")
    data: dict[str, Any] = Field(description="transition: from, to, reason; "
                                 "schedule: reason, scheduled_for")


class Call(BaseModel):
    call_uuid: str
    state: str
    direction: Literal["inbound", "outbound"]
    from_: str | None = Field(alias="from", description=(
        "Inbound: the caller; outbound: the number the call is placed from (its caller ID)"))
    to: str | None = Field(description="Inbound: the number dialed; outbound: leg A")
    actions: list[ActionRecord] = Field(description="A live call's actions: the queue and each "
                                        "one's outcome (empty for a call connect)")
    digits: str | None = Field(description="The last gather's keys")
    status: CallStatus | None = Field(description="Set once the call has ended")
    created_at: float
    updated_at: float
    request: StoredRequest
    result: CallResult | None = Field(description="Set once the call has ended")
    timeline: list[TimelineItem] = Field(description="Only in GET /v1/calls/{id}: empty "
                                         "elsewhere")
    scheduled_for: float | None


class CallList(BaseModel):
    calls: list[Call]
    next_cursor: str | None


def call_view(stored: StoredCall, timeline: list[TimelineItem] | None = None) -> dict[str, Any]:
    """The call as :class:`Call` documents it. Its request and result go out
    as stored: a row an older version wrote is shown, never re-shaped or
    refused by today's models (the routes answer it without FastAPI's check)."""
    snapshot, request = stored.snapshot, stored.request
    return {"call_uuid": stored.call_id, "state": stored.state,
            "direction": snapshot.get("direction", "outbound"),
            "from": snapshot.get("from", request.get("caller_id")),
            "to": snapshot.get("to", request.get("leg_a")),
            "actions": snapshot.get("actions", []), "digits": snapshot.get("digits"),
            "status": stored.status,
            "created_at": stored.created_at, "updated_at": stored.updated_at,
            "request": stored.request, "result": stored.result,
            "timeline": [item.model_dump() for item in timeline or []],
            "scheduled_for": stored.snapshot.get("scheduled_for")}
