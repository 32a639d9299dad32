"""A number the controller answers, and its rules, written once: the config's
``[numbers."+27115550900"]`` tables and the body of ``PUT /v1/numbers/{number}``
are the same model (:class:`NumberSettings`), which holds every bound; the
rules that need the config (the number in ``calls.default_region``, the
outbound URL policy, the actions) are :func:`parse_number`'s.

What happens to a call to it: with ``incoming_url``, the controller POSTs the
new call there (``call.incoming``) and runs the actions it answers, or
``fallback_actions`` when it fails; without, it runs ``actions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from controller.actions.spec import MAX_ACTIONS, Action, ActionList, error_path
from controller.calls.request import MAX_TARGET_CHARS, WebhookEvent, check_metadata
from controller.errors import InvalidField
from controller.numbers import normalize_number
from controller.outbound import OutboundConfig, check_url

# incoming_url's answer: (default, most) seconds.
DEFAULT_INCOMING_TIMEOUT, MAX_INCOMING_TIMEOUT = 5.0, 30.0
# Seconds a call with nothing left to do waits for actions before it is hung up.
DEFAULT_IDLE_TIMEOUT, MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT = 30, 1, 3600
MAX_NUMBER_CHARS = 32  # as given, before it is normalised
_ACTIONS: TypeAdapter[list[Action]] = TypeAdapter(ActionList)

Source = Literal["config", "api"]


class NumberSettings(BaseModel):
    """What a number does with the calls it gets. Strict: JSON's and TOML's
    own types only, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    incoming_url: str = Field(
        "", max_length=MAX_TARGET_CHARS,
        description="POSTed each new call (call.incoming, signed like every webhook); its 200 "
        "answer {\"actions\": [...]} is run, 204 or an empty answer leaves the call waiting for "
        "actions over the API, anything else runs fallback_actions")
    actions: list[dict[str, Any]] = Field(
        default_factory=list, max_length=MAX_ACTIONS,
        description="Run on every call when there is no incoming_url",
        examples=[[{"type": "connect", "to": "group:sales", "whisper": "Incoming sales call"}]])
    fallback_actions: list[dict[str, Any]] = Field(
        default_factory=list, max_length=MAX_ACTIONS,
        description="Run when incoming_url fails (an error, a bad answer, no answer in time); "
        "none: the call is hung up")
    incoming_timeout: float = Field(DEFAULT_INCOMING_TIMEOUT, gt=0, le=MAX_INCOMING_TIMEOUT,
                                    description="Seconds incoming_url has to answer")
    idle_timeout: int = Field(DEFAULT_IDLE_TIMEOUT, ge=MIN_IDLE_TIMEOUT, le=MAX_IDLE_TIMEOUT,
                              description="Seconds a call with no action left waits for more "
                              "before it is hung up")
    webhook_url: str = Field("", max_length=MAX_TARGET_CHARS,
                             description="Where the call's webhooks go (\"\": webhook.url)")
    webhook_events: list[WebhookEvent] = Field(
        default=["completed"], description="Status callbacks to send for its calls")
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="Echoed in its calls' webhooks")


@dataclass(frozen=True)
class Number:
    number: str  # E.164
    settings: NumberSettings
    source: Source = "api"  # "config" numbers cannot be changed over the API

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, **self.settings.model_dump(mode="json"),
                "source": self.source}


def number_of(text: str, region: str, field: str = "number") -> str:
    """The number ``text`` names, in E.164; InvalidNumber naming ``field`` if none."""
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidField(f"{field} has {len(text)} characters; a number has at most "
                           f"{MAX_NUMBER_CHARS}", field=field)
    return normalize_number(text.strip(), region, field)


def check_actions(actions: Sequence[Any], field: str) -> list[Action]:
    """A number's list of actions (its config's, the API's, or its
    incoming_url's answer's) as the action spec reads it; InvalidField
    naming the action's field (``fallback_actions[2].max_digits``)."""
    if not actions:
        return []
    try:
        return list(_ACTIONS.validate_python(actions))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = error_path({**first, "loc": (field, *first["loc"])})
        raise InvalidField(f"{path}: {first['msg']}", field=path) from None


def parse_number(text: str, settings: NumberSettings, region: str, outbound: OutboundConfig,
                 source: Source = "api") -> Number:
    """The number ``text`` names, with its settings checked against the
    config; InvalidRequest naming the field that breaks a rule."""
    number = number_of(text, region)
    if not settings.incoming_url and not settings.actions:
        raise InvalidField("a number needs incoming_url (to ask what to do with each call) or "
                           "actions (what to do with every call)", field="actions")
    if settings.incoming_url and settings.actions:
        raise InvalidField("set incoming_url or actions, not both: with incoming_url its answer "
                           "gives the actions, and fallback_actions run when it fails",
                           field="actions")
    if settings.fallback_actions and not settings.incoming_url:
        raise InvalidField("fallback_actions run only when incoming_url fails; without "
                           "incoming_url, put them in actions", field="fallback_actions")
    for name in ("incoming_url", "webhook_url"):
        url = getattr(settings, name)
        if url:
            check_url(url, outbound, name)
    check_actions(settings.actions, "actions")
    check_actions(settings.fallback_actions, "fallback_actions")
    check_metadata(settings.metadata)
    return Number(number, settings, source)
