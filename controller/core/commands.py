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




# ------------------------------------------------------------ live calls
# Steps on the one leg of a live call (an inbound call, or a single-leg call
# once answered). Each names the action it carries out, and the switch reports
# its end with the matching event (PlayFinished, DigitsGathered, ...). A step
# answers an inbound call that is not answered yet (audio needs an answered
# channel); a connect does not: the caller is answered at the bridge.


@dataclass(frozen=True)
class PlayToLegA(Command):
    """Play these files in turn, ``loop`` times; answered with PlayFinished."""

    action_id: str
    audio: tuple[str, ...]
    loop: int = 1


@dataclass(frozen=True)
class GatherDigits(Command):
    """Collect up to ``max_digits`` keys (a key pressed during the prompt stops
    it and counts); each key is reported with DigitPressed, the end with
    DigitsGathered. ``finish_on_key`` "" means none; ``timeout`` is seconds to
    the first key, ``inter_digit_timeout`` seconds between keys.
    ``try_number`` counts the action's tries from 1: the backend keeps it on
    the channel with the step, so that a restarted controller knows which
    try an end it finds belongs to (FoundBetweenSteps)."""

    action_id: str
    prompt_audio: str | None
    max_digits: int
    finish_on_key: str
    timeout: int
    inter_digit_timeout: int
    try_number: int = 1


@dataclass(frozen=True)
class PauseLegA(Command):
    """Silence for ``seconds``; answered with PauseFinished."""

    action_id: str
    seconds: int


@dataclass(frozen=True)
class RecordLegA(Command):
    """Start recording the call into ``file``, or stop (``file`` None);
    answered with RecordingChanged."""

    action_id: str
    file: str | None


@dataclass(frozen=True)
class WaitForActions(Command):
    """Nothing left to run: hold the leg (ringback while an inbound call is
    not answered, else silence) for ``seconds``, then the switch reports
    IdleTimedOut and hangs it up, even if the controller is gone."""

    seconds: int
    ringback: bool


@dataclass(frozen=True)
class FetchActions(Command):
    """For the service, not the switch: POST the call's state to ``url`` (a
    gather's action_url, a redirect, a number's incoming_url) and answer with
    ActionsQueued (replace=True) or ActionsFetchFailed. ``action_id`` is the
    action that asked ("" for the incoming_url)."""

    action_id: str
    url: str
    kind: str  # "gather", "redirect" or "incoming"
    payload: dict[str, Any]


@dataclass(frozen=True)
class Report(Command):
    """For the service: send this status callback (call.gathered,
    call.action.completed, call.answered, ...) with this data."""

    event: str
    data: dict[str, Any]
