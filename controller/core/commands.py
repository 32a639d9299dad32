"""Commands: what the core asks the backends and the router to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.core.outcomes import Leg


@dataclass(frozen=True)
class Command:
    pass


@dataclass(frozen=True)
class OriginateLegA(Command):
    target: str
    ring_timeout: int
    caller_id: str | None
    hold_music: bool = False  # leg A hears music while leg B is chosen


@dataclass(frozen=True)
class ChooseTargets(Command):
    """Whom to ring next for leg B: answered with TargetsChosen or
    RouteExhausted. ``previous`` is how the last attempt ended, if any."""

    previous: str | None
    route_state: dict[str, Any]


@dataclass(frozen=True)
class DialLegB(Command):
    targets: tuple[str, ...]
    ring_timeout: int
    time_limit: int
    caller_id: str | None
    # On answer: play this to leg B, then wait for confirm_key (if any).
    answer_audio: str | None = None
    confirm_key: str | None = None
    confirm_timeout: int = 5
    hold_music: bool = False
    # Where the call is recorded once B accepts (the plan's, the same for every
    # attempt): a backend may arm the switch with it now, or wait for StartRecording.
    record_file: str | None = None


@dataclass(frozen=True)
class PlayWhisper(Command):
    """Play the whisper to leg A, then dial leg B (``then_dial``) with no
    round trip through the controller: B is dialed only once the whisper has
    finished, and even if the controller is gone by then."""

    audio: str
    then_dial: DialLegB


@dataclass(frozen=True)
class AnnounceToLegA(Command):
    audio: str
    hold_for: int


@dataclass(frozen=True)
class StartRecording(Command):
    file: str


@dataclass(frozen=True)
class PlayMessageThenHangup(Command):
    audio: str


@dataclass(frozen=True)
class HangupLegs(Command):
    legs: tuple[Leg, ...]


@dataclass(frozen=True)
class CallEnded(Command):
    result: dict[str, Any]


