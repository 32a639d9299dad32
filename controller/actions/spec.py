"""The action JSON, written once: one strict model per action type, the list
(at most :data:`MAX_ACTIONS`), and the field paths errors name
(``actions[2].max_digits``). The API's bodies, a number's configured actions
and a URL's ``{"actions": [...]}`` answer are all validated here.

Rules that need the config (the outbound URL policy, the media folder, the
caller-ID allow-list, agent groups) are :mod:`controller.actions.prepare`'s.
After validation an action is kept as ``model_dump(mode="json")``: every
default filled, so the core indexes its fields directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator, model_validator

from controller.calls.connect import (
    MAX_TARGET_CHARS,
    MAX_TARGETS,
    STRICT,
    TARGET_HELP,
    ConnectOptions,
    Target,
)
from controller.errors import InvalidField
from controller.tts import MAX_TEXT_CHARS, check_text, control_character

MAX_ACTIONS = 50
# Every action a call is given, from every source: its record stays with the call.
MAX_ACTIONS_PER_CALL = 500
MAX_LOOP = 10
MAX_DIGITS = 32
DIGITS_PATTERN = r"^[0-9*#]*$"
# A name inside [media] actions_dir: never a path.
MEDIA_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
MAX_MEDIA_NAME_CHARS = 128
# A TTS voice or language: the engine's own names (en, en-us, fr+f3).
VOICE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*$"
MAX_VOICE_CHARS = 32
MAX_REASON_CHARS = 200
GATHER_TIMEOUT = (5, 1, 60)  # (default, lowest, highest) seconds to the first key
INTER_DIGIT_TIMEOUT = (3, 1, 30)
MAX_RETRIES = 5
MAX_PAUSE_SECONDS = 600

ActionType = Literal["play", "gather", "connect", "hangup", "pause", "record", "redirect"]
ACTION_TYPES: tuple[str, ...] = get_args(ActionType)
# The fields whose items are actions (in a call request, a number, a URL's answer).
_ACTION_LISTS = frozenset({"actions", "fallback_actions"})


def _spoken(text: str | None, field: str) -> str | None:
    """A text for the TTS, held to the whisper's rules (no markup, no control characters)."""
    if text is None:
        return None
    try:
        check_text(text, field)
    except InvalidField as exc:
        raise ValueError(exc.message) from None
    return text


class PlayAction(BaseModel):
    """Say a text, or play a file of the operator's, ``loop`` times."""

    model_config = STRICT

    type: Literal["play"]
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Spoken by the TTS")
    file: str | None = Field(None, max_length=MAX_MEDIA_NAME_CHARS, pattern=MEDIA_NAME_PATTERN,
                             description="A file's name in the config's [media] actions_dir")
    voice: str | None = Field(None, max_length=MAX_VOICE_CHARS, pattern=VOICE_PATTERN)
    language: str | None = Field(None, max_length=MAX_VOICE_CHARS, pattern=VOICE_PATTERN)
    loop: int = Field(1, ge=1, le=MAX_LOOP)

    @field_validator("text")
    @classmethod
    def _text(cls, text: str | None) -> str | None:
        return _spoken(text, "text")

    @model_validator(mode="after")
    def _one_source(self) -> PlayAction:
        if (self.text is None) == (self.file is None):
            raise ValueError("give exactly one of text or file")
        return self


class GatherAction(BaseModel):
    """Collect keys, with an optional prompt that stops at the first key."""

    model_config = STRICT

    type: Literal["gather"]
    prompt: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Spoken by the TTS")
    max_digits: int = Field(1, ge=1, le=MAX_DIGITS)
    finish_on_key: str = Field("#", pattern=r"^[0-9*#]?$",
                               description="Ends the input (not counted); \"\" for none")
    timeout: int = Field(GATHER_TIMEOUT[0], ge=GATHER_TIMEOUT[1], le=GATHER_TIMEOUT[2],
                         description="Seconds to the first key")
    inter_digit_timeout: int = Field(INTER_DIGIT_TIMEOUT[0], ge=INTER_DIGIT_TIMEOUT[1],
                                     le=INTER_DIGIT_TIMEOUT[2],
                                     description="Seconds between keys")
    retries: int = Field(0, ge=0, le=MAX_RETRIES,
                         description="Asked again this often when nothing valid was pressed")
    valid_digits: str = Field("", max_length=12, pattern=DIGITS_PATTERN,
                              description="The keys that count (\"\": any)")
    action_url: str | None = Field(None, max_length=MAX_TARGET_CHARS, description=(
        "The result is POSTed here; an {\"actions\": [...]} answer replaces what is left"))

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, prompt: str | None) -> str | None:
        return _spoken(prompt, "prompt")


class ConnectAction(ConnectOptions):
    """Connect the call's leg to whom ``to`` names, as POST /v1/calls connects
    leg A to leg B. ``caller_id: "caller"`` shows the inbound caller's number."""

    type: Literal["connect"]
    to: Target | list[Target] = Field(
        description=f"One target or up to {MAX_TARGETS}. A target is {TARGET_HELP}")


class HangupAction(BaseModel):
    model_config = STRICT

    type: Literal["hangup"]
    reason: str | None = Field(None, max_length=MAX_REASON_CHARS,
                               description="Kept as the call's end reason")

    @field_validator("reason")
    @classmethod
    def _reason(cls, reason: str | None) -> str | None:
        if reason is not None and control_character(reason) is not None:
            raise ValueError("reason must be text without control characters")
        return reason


class PauseAction(BaseModel):
    model_config = STRICT

    type: Literal["pause"]
    seconds: int = Field(ge=1, le=MAX_PAUSE_SECONDS)


class RecordAction(BaseModel):
    model_config = STRICT

    type: Literal["record"]
    command: Literal["start", "stop"]


class RedirectAction(BaseModel):
    """POST the call's state and last digits to ``url``; its
    ``{"actions": [...]}`` answer replaces what is left."""

    model_config = STRICT

    type: Literal["redirect"]
    url: str = Field(max_length=MAX_TARGET_CHARS)


Action = Annotated[PlayAction | GatherAction | ConnectAction | HangupAction | PauseAction
                   | RecordAction | RedirectAction, Field(discriminator="type")]
ActionList = Annotated[list[Action], Field(max_length=MAX_ACTIONS)]


class ActionsAnswer(BaseModel):
    """What a URL answers (a gather's action_url, a redirect, a number's
    incoming_url): the actions that replace the remaining ones."""

    model_config = STRICT

    actions: ActionList


_ANSWER = TypeAdapter(ActionsAnswer)


def field_path(loc: Sequence[str | int]) -> str:
    """A field as errors name it: ``actions[2].max_digits``, ``leg_b[0]``.
    An action's type tag, which pydantic puts in the path, is left out."""
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (i >= 2 and isinstance(loc[i - 1], int) and loc[i - 2] in _ACTION_LISTS
                  and part in ACTION_TYPES):
            path += f".{part}" if path else str(part)
    return path


def error_path(error: Any) -> str:
    """The field one pydantic error names; an unknown or missing action type names ``type``."""
    path = field_path(error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path += ".type"
    return path


def parse_answer(data: Any) -> list[Action]:
    """A URL's ``{"actions": [...]}`` answer; InvalidField naming the first
    field that breaks a rule."""
    try:
        answer = _ANSWER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = error_path(first)
        raise InvalidField(f"{path}: {first['msg']}", field=path) from None
    return list(answer.actions)


def as_json(actions: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """Validated actions as the core and the store keep them."""
    return [action.model_dump(mode="json") for action in actions]



class ActionsRequest(BaseModel):
    """POST /v1/calls/{id}/actions: actions for a live call."""

    model_config = STRICT

    actions: ActionList = Field(min_length=1)
    replace: bool = Field(False, description="Drop the actions still queued first (the one "
                          "running finishes)")
