"""What a connect takes, written once: the limits of every call request and
the options that say whom leg B is and how it is rung, shared by POST
/v1/calls (:class:`controller.calls.request.CallRequest`) and the connect
action of a live call (:mod:`controller.actions.spec`).

Every limit is here, as a named constant or a Literal; the routing spec and
the agent groups use the same ones. Rules that need the config are the
service's checks (:mod:`controller.calls.checks`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from controller.tts import MAX_TEXT_CHARS

# ------------------------------------------------------------------ limits

MIN_RING_TIMEOUT, MAX_RING_TIMEOUT = 1, 600
MIN_TIME_LIMIT, MAX_TIME_LIMIT = 1, 86400
DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS = 10, 50
# Targets rung at once (or in turn): leg B, a fallback's dial, a simultaneous group.
MAX_TARGETS = 10
MAX_TARGET_CHARS = 2048  # a dial-whom URL is a target
MAX_LEG_A_CHARS = 128
MAX_CALLER_ID_CHARS = 32
CONFIRM_KEY_PATTERN = r"^[0-9*#]$"
DEFAULT_CONFIRM_TIMEOUT, MIN_CONFIRM_TIMEOUT, MAX_CONFIRM_TIMEOUT = 5, 1, 60
MAX_CALLING_HOURS_CHARS = 32
MAX_DAY_CHARS = 16

# A queue fallback: (default, lowest, highest).
QUEUE_MAX_WAIT = (120, 5, 3600)
QUEUE_MAX_SIZE = (10, 1, 1000)
QUEUE_ANNOUNCE_EVERY = (30, 10, 600)
MAX_GROUP_NAME_CHARS = 64

# Agent groups.
MAX_GROUP_AGENTS = 100
MAX_AGENT_CHARS = 128
DEFAULT_CALLS_PERIOD_HOURS, MAX_CALLS_PERIOD_HOURS = 24.0, 8760.0

# Metadata is stored with the call and echoed in every webhook: kept small.
MAX_METADATA_BYTES = 16 * 1024  # as compact JSON
MAX_METADATA_KEYS = 50  # at the top level
MAX_METADATA_DEPTH = 5  # objects and arrays, the metadata object itself included
MAX_METADATA_KEY_CHARS = 64
MAX_CUSTOM_FIELD_CHARS = 256


class Strategy(StrEnum):
    SIMULTANEOUS = "simultaneous"
    SEQUENTIAL = "sequential"
    ROUND_ROBIN = "round-robin"
    LONGEST_IDLE = "longest-idle"
    LEAST_CALLS = "least-calls"

    def __repr__(self) -> str:
        # pydantic names the allowed values of a Literal by their repr.
        return repr(self.value)


# A call's own targets are rung at once or in turn; the others are a group's.
RouteStrategy = Literal[Strategy.SIMULTANEOUS, Strategy.SEQUENTIAL]


class Outcome(StrEnum):
    """Why a route ran out: the keys of its fallbacks."""

    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    ALL_BUSY = "all_busy"


WebhookEvent = Literal["initiated", "ringing", "answered", "bridged", "completed", "incoming",
                       "gathered", "action.completed"]
WhisperTiming = Literal["before_dial", "on_answer"]
WhileRinging = Literal["ringback", "music"]
OutsideHours = Literal["refuse", "schedule"]

TARGET_HELP = ("E.164 or local number, sip: URI, endpoint:NAME (a device on the switch), "
               "group:NAME (an agent group) or an http(s) dial-whom URL")


# ------------------------------------------------------------------ the model

# Strict: JSON's own types only (an int for an int, a float or an int for a
# float, a string for a string); no true for 1, "yes" for true or "30" for 30.
STRICT = ConfigDict(extra="forbid", strict=True)

class TargetOption(BaseModel):
    model_config = STRICT

    to: str = Field(max_length=MAX_TARGET_CHARS, description=TARGET_HELP)
    ring_timeout: int | None = Field(None, ge=MIN_RING_TIMEOUT, le=MAX_RING_TIMEOUT,
                                     description="Seconds this target rings")


Target = Annotated[str, Field(max_length=MAX_TARGET_CHARS)] | TargetOption


class QueueOption(BaseModel):
    model_config = STRICT

    group: str = Field(max_length=MAX_GROUP_NAME_CHARS,
                       description="The agent group the caller waits for")
    max_wait: int = Field(QUEUE_MAX_WAIT[0], ge=QUEUE_MAX_WAIT[1], le=QUEUE_MAX_WAIT[2],
                          description="Seconds before giving up")
    max_size: int = Field(QUEUE_MAX_SIZE[0], ge=QUEUE_MAX_SIZE[1], le=QUEUE_MAX_SIZE[2],
                          description="Callers already waiting that make it full")
    announce_every: int = Field(QUEUE_ANNOUNCE_EVERY[0], ge=QUEUE_ANNOUNCE_EVERY[1],
                                le=QUEUE_ANNOUNCE_EVERY[2],
                                description="Seconds between position news")
    message: str = Field("", max_length=MAX_TEXT_CHARS,
                         description="Said when leaving the queue unserved")


class FallbackOption(BaseModel):
    """Exactly one of dial, message, queue or hangup."""

    model_config = STRICT

    dial: list[Target] | None = Field(None, max_length=MAX_TARGETS, description="Ring these next")
    message: str | None = Field(None, max_length=MAX_TEXT_CHARS,
                                description="Say this to leg A, hang up")
    queue: QueueOption | None = Field(
        None, description="Hold leg A, with music and its position, until an agent is free")
    hangup: bool | None = Field(None, description="Hang up at once")


# An enum's value given as its JSON string (strict mode wants the enum itself).
LaxOutcome = Annotated[Outcome, Strict(False)]
Fallbacks = dict[LaxOutcome, FallbackOption]


class ConnectOptions(BaseModel):
    """How leg B is chosen and rung, whispered to, confirmed, recorded and
    timed: the options of POST /v1/calls besides leg B itself, and of a
    connect action besides its ``to``."""

    model_config = STRICT

    strategy: RouteStrategy = Field(
        Strategy.SIMULTANEOUS,
        description="Ring leg B's targets at once (first answer wins) or in turn")
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS,
                                     description="Most rounds of ringing leg B")
    fallbacks: Fallbacks | None = Field(
        None, description="What happens when leg B's route runs out, by how it ran out")
    dial_whom_fallback_url: str | None = Field(
        None, max_length=MAX_TARGET_CHARS,
        description="Asked when a dial-whom URL fails or takes over 10 s")
    dial_whom_ask_again: bool = Field(
        True, description="Ask the dial-whom URL again after every failed attempt")
    whisper: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Spoken to the agent")
    whisper_timing: WhisperTiming = Field(
        "before_dial", description="before_dial: leg A hears it, then B is dialed; on_answer: "
        "leg B hears it the moment it answers, before the bridge")
    confirm_key: str | None = Field(None, pattern=CONFIRM_KEY_PATTERN,
                                    description="Leg B must press this key to take the call")
    confirm_timeout: int = Field(DEFAULT_CONFIRM_TIMEOUT, ge=MIN_CONFIRM_TIMEOUT,
                                 le=MAX_CONFIRM_TIMEOUT,
                                 description="Seconds to press the confirm key")
    while_ringing: WhileRinging = Field(
        "ringback", description="What leg A hears while leg B is chosen and rung")
    record: bool | None = Field(None, description="Record the call (default: the config's, on)")
    caller_id: str | None = Field(None, max_length=MAX_CALLER_ID_CHARS)
    ring_timeout: int | None = Field(None, ge=MIN_RING_TIMEOUT, le=MAX_RING_TIMEOUT,
                                     description="Seconds each leg may ring")
    time_limit: int | None = Field(None, ge=MIN_TIME_LIMIT, le=MAX_TIME_LIMIT,
                                   description="Seconds the call may last")
