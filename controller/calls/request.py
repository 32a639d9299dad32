"""A call request and its rules, written once: the API's body schema, what the
command line builds, what the service is given and what the store keeps.

The limits, and the options of leg B it shares with a connect action, are
:mod:`controller.calls.connect`'s (imported from here too); the actions of a
single-leg call, :mod:`controller.actions.spec`'s. Rules that need the config
(numbers in the default region, groups that exist, the outbound URL policy,
the caller-ID allow-list, how long a whisper takes to say) are the service's
checks (:mod:`controller.calls.checks`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from controller.actions.spec import ActionList, as_json, error_path
from controller.calls.connect import (
    CONFIRM_KEY_PATTERN,
    DEFAULT_CALLS_PERIOD_HOURS,
    DEFAULT_CONFIRM_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    MAX_AGENT_CHARS,
    MAX_ATTEMPTS,
    MAX_CALLER_ID_CHARS,
    MAX_CALLING_HOURS_CHARS,
    MAX_CALLS_PERIOD_HOURS,
    MAX_CONFIRM_TIMEOUT,
    MAX_CUSTOM_FIELD_CHARS,
    MAX_DAY_CHARS,
    MAX_GROUP_AGENTS,
    MAX_GROUP_NAME_CHARS,
    MAX_LEG_A_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_RING_TIMEOUT,
    MAX_TARGET_CHARS,
    MAX_TARGETS,
    MAX_TIME_LIMIT,
    MIN_CONFIRM_TIMEOUT,
    MIN_RING_TIMEOUT,
    MIN_TIME_LIMIT,
    QUEUE_ANNOUNCE_EVERY,
    QUEUE_MAX_SIZE,
    QUEUE_MAX_WAIT,
    STRICT,
    TARGET_HELP,
    ConnectOptions,
    FallbackOption,
    Fallbacks,
    LaxOutcome,
    Outcome,
    OutsideHours,
    QueueOption,
    RouteStrategy,
    Strategy,
    Target,
    TargetOption,
    WebhookEvent,
    WhileRinging,
    WhisperTiming,
)
from controller.errors import InvalidField
from controller.tts import control_character

# Names other modules import from here (the request's own module).
__all__ = [
    "CONFIRM_KEY_PATTERN", "DEFAULT_CALLS_PERIOD_HOURS", "DEFAULT_CONFIRM_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS", "MAX_AGENT_CHARS", "MAX_ATTEMPTS", "MAX_CALLER_ID_CHARS",
    "MAX_CALLING_HOURS_CHARS", "MAX_CALLS_PERIOD_HOURS", "MAX_CONFIRM_TIMEOUT",
    "MAX_CUSTOM_FIELD_CHARS", "MAX_DAY_CHARS", "MAX_GROUP_AGENTS", "MAX_GROUP_NAME_CHARS",
    "MAX_LEG_A_CHARS", "MAX_METADATA_BYTES", "MAX_METADATA_DEPTH", "MAX_METADATA_KEYS",
    "MAX_METADATA_KEY_CHARS", "MAX_RING_TIMEOUT", "MAX_TARGETS", "MAX_TARGET_CHARS",
    "MAX_TIME_LIMIT", "MIN_CONFIRM_TIMEOUT", "MIN_RING_TIMEOUT", "MIN_TIME_LIMIT",
    "QUEUE_ANNOUNCE_EVERY", "QUEUE_MAX_SIZE", "QUEUE_MAX_WAIT", "STRICT", "TARGET_HELP",
    "CallRequest", "ConnectOptions", "FallbackOption", "Fallbacks", "LaxOutcome", "Outcome",
    "OutsideHours", "QueueOption", "RouteStrategy", "Strategy", "Target", "TargetOption",
    "WebhookEvent", "WhileRinging", "WhisperTiming", "check_metadata", "make_request",
]


class CallRequest(ConnectOptions):
    """A call connect (leg_a, then leg_b), or a single-leg call (leg_a, then
    its actions once it answers)."""

    leg_a: str = Field(description="Who is called first: E.164, local number, sip: URI or "
                       "endpoint:NAME", max_length=MAX_LEG_A_CHARS, examples=["+27115550101"])
    leg_b: Target | list[Target] | None = Field(
        None, description=f"Whom to connect leg A to: one target or up to {MAX_TARGETS}. "
        f"A target is {TARGET_HELP}. Without it, give actions (a single-leg call)",
        examples=["011 555 0202", ["+27115550202", "sip:desk@pbx.example.com"], "group:sales"])
    actions: ActionList | None = Field(
        None, validate_default=True, description="A single-leg call (no leg_b): what to do "
        "once leg A answers, in order; the README's \"Actions on a live call\" describes each type")
    webhook_url: str | None = Field(None, max_length=MAX_TARGET_CHARS)
    webhook_events: list[WebhookEvent] = Field(
        default=["completed"], description="Status callbacks to send")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Echoed back in webhooks")
    calling_hours: str | None = Field(
        None, max_length=MAX_CALLING_HOURS_CHARS, examples=["08:00-21:00"],
        description="Local hours (HH:MM-HH:MM, seconds allowed; an end before the start wraps "
        "past midnight) within which leg A and leg B's numbers may be called, in each "
        "number's own time zone (default: the config's compliance.calling_hours)")
    calling_days: list[Annotated[str, Field(max_length=MAX_DAY_CHARS)]] | None = Field(
        None, max_length=7, examples=[["mon", "tue", "wed", "thu", "fri"]],
        description="Days the window may start on (default: the config's; empty: every day)")
    outside_calling_hours: OutsideHours = Field(
        "refuse", description="Outside the window: refuse (403 outside-calling-hours), or "
        "schedule the call for when it opens (202, state scheduled)")

    @field_validator("actions")
    @classmethod
    def _leg_b_or_actions(cls, actions: ActionList | None,
                          info: ValidationInfo) -> ActionList | None:
        if "leg_b" not in info.data:
            return actions  # leg_b was given and refused: its own error says why
        if (info.data["leg_b"] is None) == (actions is None):
            raise ValueError("give leg_b (a call connect) or actions (a single-leg call), "
                             "one of the two")
        return actions

    @property
    def single_leg(self) -> bool:
        return self.actions is not None

    def action_specs(self) -> list[dict[str, Any]]:
        """The actions as JSON, every default filled (as the core keeps them)."""
        return as_json(self.actions or [])

    def routing(self) -> dict[str, Any]:
        """leg_b and fallbacks as plain data, as the API received them (what
        the route spec parses and the store keeps)."""
        data = self.model_dump(mode="json", include={"leg_b", "fallbacks"}, exclude_none=True)
        return {"fallbacks": None, **data}


def make_request(**fields: Any) -> CallRequest:
    """The request, or InvalidField naming the first field that breaks a rule
    (for callers that are not the API, which answers with every error)."""
    try:
        return CallRequest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = error_path(first)
        raise InvalidField(f"{field}: {first['msg']}", field=field) from None


def check_metadata(metadata: Any) -> None:
    """InvalidField unless ``metadata`` is a JSON object the controller can
    store, echo in every webhook and send on (custom_field, to dial-whom URLs)."""
    if not isinstance(metadata, dict):
        raise InvalidField("metadata must be a JSON object", field="metadata")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidField(f"metadata has {len(metadata)} keys; the limit is {MAX_METADATA_KEYS}",
                           field="metadata")
    _check_metadata_value(metadata, "metadata", 1)
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode())
    except UnicodeEncodeError:  # a lone surrogate: no JSON body or store could carry it
        raise InvalidField("metadata must be valid Unicode text", field="metadata") from None
    except ValueError:
        raise InvalidField("metadata must hold only JSON values (not NaN or Infinity)",
                           field="metadata") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidField(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}",
                           field="metadata")
    custom = metadata.get("custom_field")
    if custom is not None and (not isinstance(custom, str) or len(custom) > MAX_CUSTOM_FIELD_CHARS
                               or control_character(custom) is not None):
        raise InvalidField(f"metadata.custom_field must be text of at most {MAX_CUSTOM_FIELD_CHARS} "
                           "characters without control characters (it is sent to dial-whom URLs)",
                           field="metadata.custom_field")


def _check_metadata_value(value: Any, path: str, depth: int) -> None:
    if not isinstance(value, dict | list):
        return
    if depth > MAX_METADATA_DEPTH:
        raise InvalidField(f"{path} nests objects and arrays deeper than {MAX_METADATA_DEPTH} levels",
                           field="metadata")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_metadata_value(item, f"{path}[{i}]", depth + 1)
        return
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > MAX_METADATA_KEY_CHARS \
                or control_character(key) is not None:
            raise InvalidField(f"{path} has a key {str(key)[:MAX_METADATA_KEY_CHARS]!r}...: keys must "
                               f"be at most {MAX_METADATA_KEY_CHARS} characters, without control "
                               "characters", field="metadata")
        _check_metadata_value(item, f"{path}.{key}", depth + 1)
