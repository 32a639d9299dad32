"""What the calls routes answer (the body of POST /v1/calls is the call
request itself: :class:`controller.calls.request.CallRequest`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from controller.store import StoredCall


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


def call_view(stored: StoredCall, timeline: list[TimelineItem] | None = None) -> Call:
    return Call(call_uuid=stored.call_id, state=stored.state, status=stored.status,
                created_at=stored.created_at, updated_at=stored.updated_at,
                request=stored.request, result=stored.result, timeline=timeline or [],
                scheduled_for=stored.snapshot.get("scheduled_for"))
