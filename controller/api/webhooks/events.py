"""The webhooks the daemon sends, for the OpenAPI document's ``webhooks``
section: one per event a request may ask for (``webhook_events``), each
with its body and the Standard Webhooks headers. These routes are never
served; they describe requests the daemon makes (:mod:`controller.webhooks`
builds them, :mod:`controller.daemon.listener` decides when)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from controller.api.calls.result import OPEN, ActionRecord, CallResult
from controller.core.outcomes import Leg
from controller.core.states import CallState


class WebhookHeaders(BaseModel):
    webhook_id: str = Field(description="The event's id (evt_…): the same on every retry and "
                            "redelivery, so a receiver drops repeats by it")
    webhook_timestamp: str = Field(description="Unix seconds when this attempt was signed")
    webhook_signature: str | None = Field(None, description=(
        "v1,BASE64: HMAC-SHA256 over id.timestamp.body with webhook.signing_secret (Standard "
        "Webhooks); absent only when the daemon sends unsigned (webhook.unsigned)"))


class StatusData(BaseModel):
    model_config = OPEN

    call_uuid: str
    leg: Leg = Field(description="The leg the event is about")
    state: CallState = Field(description="The call's state after the step")
    at: float = Field(description="Unix time of the step, from the switch's event")
    metadata: dict[str, Any] = Field(description="Echoed from the request")


class StatusEvent(BaseModel):
    timestamp: float = Field(description="Unix time the event was made")
    data: StatusData


class CallInitiated(StatusEvent):
    type: Literal["call.initiated"]


class CallRinging(StatusEvent):
    type: Literal["call.ringing"]


class CallAnswered(StatusEvent):
    type: Literal["call.answered"]


class CallBridged(StatusEvent):
    type: Literal["call.bridged"]


class CallCompleted(BaseModel):
    type: Literal["call.completed"]
    timestamp: float = Field(description="Unix time the event was made")
    data: CallResult


class IncomingData(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    call_uuid: str = Field(description="The new call's id: send it actions with "
                           "POST /v1/calls/{id}/actions")
    from_: str = Field(alias="from", description="The caller: an E.164 number when the switch "
                       "gave one, else the caller's SIP URI or what the switch gave, as given")
    to: str = Field(description="The number dialed, in E.164")
    direction: Literal["inbound"]
    at: float = Field(description="Unix time the call arrived on the switch")
    metadata: dict[str, Any] = Field(description="The number's metadata")


class CallIncoming(BaseModel):
    type: Literal["call.incoming"]
    timestamp: float = Field(description="Unix time the event was made")
    data: IncomingData


class IncomingAnswer(BaseModel):
    actions: list[dict[str, Any]] = Field(
        description="The actions to run on the call, in order, as POST /v1/calls/{id}/actions "
        "takes them", examples=[[{"type": "connect", "to": "group:sales",
                                  "whisper": "Incoming sales call"}]])


class GatheredData(BaseModel):
    model_config = OPEN

    call_uuid: str
    action_id: str = Field(description="The gather's id")
    digits: str = Field(description="The keys pressed (the finish key left out)")
    ended_by: str = Field(description="finish-key, max-digits or timeout")
    valid: bool = Field(description="Something was pressed, and only valid_digits")
    tries: int
    direction: Literal["inbound", "outbound"]
    from_: str = Field(alias="from")
    to: str
    state: CallState
    metadata: dict[str, Any] = Field(description="Echoed from the request or the number")


class CallGathered(BaseModel):
    type: Literal["call.gathered"]
    timestamp: float = Field(description="Unix time the event was made")
    data: GatheredData


class ActionCompletedData(ActionRecord):
    call_uuid: str
    metadata: dict[str, Any] = Field(description="Echoed from the request or the number")


class CallActionCompleted(BaseModel):
    type: Literal["call.action.completed"]
    timestamp: float = Field(description="Unix time the event was made")
    data: ActionCompletedData


Headers = Annotated[WebhookHeaders, Header()]

# How the daemon takes the receiver's answer.
RECEIVER_ANSWERS: dict[int | str, dict[str, Any]] = {
    "2XX": {"description": "Delivered: it is not sent again"},
    408: {"description": "Retried with backoff, as 429 and 5xx are"},
    410: {"description": "Gone: the URL is disabled, and nothing more is sent to it until it is "
                         "re-enabled (enableWebhookUrl)"},
    429: {"description": "Retried after Retry-After, if given, else with backoff"},
    "5XX": {"description": "Retried after Retry-After, if given, else with backoff, for "
                           "webhook.max_age_hours"},
    "default": {"description": "Any other answer is final: the delivery fails"},
}
# How the daemon takes incoming_url's answer to call.incoming.
INCOMING_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The actions to run (at most 50, each checked as the API checks them); "
                         "an empty body is taken as 204",
          "content": {"application/json": {"schema": IncomingAnswer.model_json_schema()}}},
    204: {"description": "Nothing yet: the caller hears ringing while the call waits for "
                         "actions over the API, up to the number's idle_timeout"},
    "default": {"description": "Any other answer, a body that is not {\"actions\": [...]} or "
                               "holds a bad action, over 64 KiB, or no answer within the "
                               "number's incoming_timeout: the number's fallback_actions run, "
                               "and the call's result says why. Never retried"},
}
SENT = ("Sent when the request's webhook_events names it (status callbacks), to its webhook_url "
        "or else webhook.url; retried until a 2xx, see the answers below.")


def webhooks() -> APIRouter:
    """The webhook operations, for ``FastAPI(webhooks=...)``; their functions
    are never called."""
    router = APIRouter(tags=["webhook events"], responses=RECEIVER_ANSWERS)

    @router.post("call.initiated", operation_id="callInitiated", summary="Leg A is being called",
                 description="Leg A's originate was sent (state dialing-a). " + SENT)
    def initiated(body: CallInitiated, headers: Headers) -> None: ...

    @router.post("call.ringing", operation_id="callRinging", summary="A leg is ringing",
                 description="Leg A (ringing-a) or leg B (ringing-b) rings. " + SENT)
    def ringing(body: CallRinging, headers: Headers) -> None: ...

    @router.post("call.answered", operation_id="callAnswered", summary="A leg answered",
                 description="Leg A answered, or leg B answered (before its on-answer whisper "
                 "and confirm key, if any). For a single-leg call (leg_a and actions) this is "
                 "the notify URL's event: its call_uuid is the id to send actions to. " + SENT)
    def answered(body: CallAnswered, headers: Headers) -> None: ...

    @router.post("call.bridged", operation_id="callBridged", summary="The legs are connected",
                 description="Leg B accepted and the two legs are bridged. " + SENT)
    def bridged(body: CallBridged, headers: Headers) -> None: ...

    @router.post("call.gathered", operation_id="callGathered", summary="A gather ended",
                 description="A live call's gather action ended: the keys pressed and how it "
                 "ended (webhook_events: gathered). With its action_url, the same data is also "
                 "POSTed there, signed the same way, and its {\"actions\": [...]} answer "
                 "replaces what is left. " + SENT)
    def gathered(body: CallGathered, headers: Headers) -> None: ...

    @router.post("call.action.completed", operation_id="callActionCompleted",
                 summary="An action of a live call ended",
                 description="One action ended, whatever its outcome (completed, failed, "
                 "dropped, canceled), with its record as getCall shows it (webhook_events: "
                 "action.completed). " + SENT)
    def action_completed(body: CallActionCompleted, headers: Headers) -> None: ...

    @router.post("call.completed", operation_id="callCompleted", summary="The call has ended",
                 description="Exactly one per call, whatever its end, with the whole result (as "
                 "getCall shows it). Sent by default (webhook_events defaults to completed), to "
                 "the request's webhook_url or else webhook.url; retried until a 2xx, see the "
                 "answers below. The command line sends the same body.")
    def completed(body: CallCompleted, headers: Headers) -> None: ...

    @router.post("call.incoming", operation_id="callIncoming", summary="A call arrived",
                 responses=INCOMING_ANSWERS,
                 description="A call arrived at a number with an incoming_url, and is POSTed "
                 "there once, signed like every webhook, as soon as it is taken (the caller "
                 "hears ringing meanwhile). The answer says what to do with the call.")
    def incoming(body: CallIncoming, headers: Headers) -> None: ...

    return router
