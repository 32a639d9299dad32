"""The shape of a call's request as stored and of its result, for the OpenAPI
document: ``GET /v1/calls/{id}`` shows both, and the completion webhook
carries the result. The result itself is built by the core
(:meth:`controller.core.record.ConnectRecord.result`) and the call runner;
tests check real results against these models.

Result models allow fields they do not name, so a field added to the result
is never dropped on its way out; the document says so too."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.calls.request import CallRequest
from controller.core.outcomes import CallStatus, DialOutcome, HangupBy, LegStatus
from controller.core.states import CallState

OPEN = ConfigDict(extra="allow")


class StoredRequest(CallRequest):
    """The request as it was accepted (leg_b and fallbacks as sent), with its
    Idempotency-Key."""

    idempotency_key: str | None = Field(None, description="The Idempotency-Key it came with")


class LegResult(BaseModel):
    model_config = OPEN

    target: str = Field(description="Whom the leg rang (leg B: its targets, comma-separated)")
    status: LegStatus
    dialed: bool = Field(description="A channel was created for the leg")
    hangup_cause: int | None = Field(description="Q.850 cause the switch gave")
    hangup_cause_text: str | None
    sip_code: int | None = Field(description="The cause mapped to a SIP response (RFC 3398)")
    answered_at: float | None = Field(description="Unix time, from the switch's event")
    ended_at: float | None


class SkippedTarget(BaseModel):
    model_config = OPEN

    target: str
    rule: str = Field(description="Why it was not rung: do-not-call, a destination rule, a cap")


class AttemptResult(BaseModel):
    """One round of ringing leg B."""

    model_config = OPEN

    targets: list[str]
    ring_timeout: int | None
    source: str = Field(description="request, group:NAME, dial-whom or fallback:OUTCOME")
    started_at: float
    ended_at: float | None
    outcome: str | None = Field(description="How the attempt ended: answered, or leg B's status")
    dial_outcome: DialOutcome | None = Field(description="How the switch said the dial ended")
    answered_by: str | None
    declined: str | None = Field(None, description="Why, if the confirm key was not pressed")
    skipped: list[SkippedTarget] = Field([], description="Targets left out, and why")


class TimelineStep(BaseModel):
    model_config = OPEN

    at: float
    from_state: str = Field(alias="from")
    to: str
    reason: str


class WhisperResult(BaseModel):
    model_config = OPEN

    text: str
    seconds: float | None = Field(description="How long it is, spoken")
    played: bool | None = Field(description="Leg A heard it to the end")
    ready_at: float | None = None


class RecordingResult(BaseModel):
    model_config = OPEN

    path: str = Field(description="The WAV file on the controller's host")
    url: str | None = Field(description="Where to fetch it (GET /v1/calls/{id}/recording), "
                            "when api.public_url is set")


class ActionRecord(BaseModel):
    """One action of a live call: what it was, and what came of it."""

    model_config = OPEN

    id: str
    type: str
    spec: dict[str, Any] = Field(description="The action as it was accepted, defaults filled")
    status: Literal["queued", "running", "completed", "failed", "dropped", "canceled"]
    outcome: str | None = Field(description="played, gathered, no-input, invalid, bridged, "
                                "hung-up, redirected, a connect's status ...")
    reason: str | None = Field(description="Why it failed, was dropped or canceled")
    queued_at: float
    started_at: float | None
    ended_at: float | None
    source: str = Field(description="Where it came from: request, api, number, incoming_url, "
                        "action_url, redirect, fallback")
    digits: str | None = Field(None, description="A gather's keys")
    attempts: list[AttemptResult] | None = Field(None, description="A connect's attempts")


class CallResult(BaseModel):
    """How a call ended: what GET /v1/calls/{id} shows once it has, and the
    completion webhook's data."""

    model_config = OPEN

    call_uuid: str
    status: CallStatus
    reason: str = Field(description="Why, in words")
    success: bool = Field(description="status is completed")
    state: CallState
    leg_a: LegResult
    leg_b: LegResult
    leg_a_status: LegStatus
    leg_b_status: LegStatus
    hangup_by: HangupBy | None
    whisper_played: bool | None
    created_at: float
    leg_a_answered_at: float | None
    leg_b_answered_at: float | None
    ended_at: float | None
    talk_seconds: float = Field(description="From leg B's answer to the end of the bridge")
    recorded: bool
    recording_error: str | None
    answered_by: str | None = Field(description="Which of leg B's targets answered")
    attempts: list[AttemptResult]
    timeline: list[TimelineStep] = Field(description="Every state transition")
    whisper: WhisperResult | None
    recording: RecordingResult | None
    metadata: dict[str, Any] = Field(description="Echoed from the request")
    scheduled_for: float | None = Field(
        None, description="A scheduled call closed before it was placed: when it was due")
    direction: Literal["inbound", "outbound"] = Field(
        "outbound", description="inbound: it arrived at the switch; outbound: placed by the API")
    from_: str | None = Field(None, alias="from", description=(
        "Inbound: the caller; outbound: the number the call is placed from (its caller ID)"))
    to: str | None = Field(None, description="Inbound: the number dialed; outbound: leg A")
    actions: list[ActionRecord] = Field([], description="A live call's actions, in order")
    digits: str | None = Field(None, description="The last gather's keys")
