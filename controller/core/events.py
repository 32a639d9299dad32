"""Events: what happened, told to the core by the backends, the router and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.core.outcomes import CallStatus, DialOutcome, Leg
from controller.core.plan import Attempt, PreparedAction


@dataclass(frozen=True)
class Event:
    at: float  # seconds since the epoch, when it happened on the switch


@dataclass(frozen=True)
class LegCreated(Event):
    leg: Leg
    channel: str = ""  # the switch's id of the channel: leg B may have several


@dataclass(frozen=True)
class LegRinging(Event):
    leg: Leg


@dataclass(frozen=True)
class LegAnswered(Event):
    leg: Leg
    channel: str = ""
    target: str = ""  # for leg B: which of the attempt's targets answered


@dataclass(frozen=True)
class LegHungUp(Event):
    """The party on this leg hung up or refused (not the switch hanging it up).

    Its cause is the party's own (busy, rejected): the channel's final hangup
    cause can be less telling, e.g. 0 after the switch cancels a ringing leg.
    """

    leg: Leg
    cause: int
    channel: str = ""


@dataclass(frozen=True)
class LegEnded(Event):
    leg: Leg
    cause: int
    cause_text: str = ""
    channel: str = ""


@dataclass(frozen=True)
class OriginateFailed(Event):
    """The switch could not place Leg A at all (no channel was created)."""

    reason: str


@dataclass(frozen=True)
class WhisperFinished(Event):
    played: bool


@dataclass(frozen=True)
class DialFinished(Event):
    """The dial of Leg B ended without a bridge (no answer, busy, ...)."""

    outcome: DialOutcome


@dataclass(frozen=True)
class TargetsChosen(Event):
    """The answer to ChooseTargets: ring these next. ``route_state`` is the
    router's own memory, kept with the call so it survives a restart."""

    attempt: Attempt
    route_state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteExhausted(Event):
    """The answer to ChooseTargets: nobody (more) to ring. The call ends with
    ``status``; leg A hears ``message_audio`` first if there is one."""

    status: CallStatus
    reason: str
    message_audio: str | None = None


@dataclass(frozen=True)
class Announcement(Event):
    """While leg B is chosen (a queue): tell leg A this, then let it hold,
    with music, for up to ``hold_for`` seconds more."""

    audio: str
    hold_for: int


@dataclass(frozen=True)
class AnswerAccepted(Event):
    """Leg B heard the whisper (and pressed the confirm key): bridge."""


@dataclass(frozen=True)
class AnswerDeclined(Event):
    """Leg B answered but pressed no key, or a wrong one, in time."""

    reason: str


@dataclass(frozen=True)
class MessageFinished(Event):
    pass


@dataclass(frozen=True)
class RecordingStarted(Event):
    pass


@dataclass(frozen=True)
class HangupRequested(Event):
    """Somebody asked us to end the call (API, CLI, shutdown)."""

    reason: str = "requested"


@dataclass(frozen=True)
class CommandFailed(Event):
    """The backend could not carry out a command; the call cannot go on."""

    command: str
    reason: str


@dataclass(frozen=True)
class SwitchLost(Event):
    """The switch can no longer tell us about this call (connection lost, or
    the call outlived its longest possible length): end it with what we know."""

    reason: str


@dataclass(frozen=True)
class EndedWhileAway(Event):
    """The call ended while the controller was not following it (a restart).

    Carries what the switch kept of the outcome: ``None`` where it kept
    nothing. ``at`` is when it ended, as the switch recorded it.
    """

    a_cause: int | None
    a_answered: bool
    b_outcome: DialOutcome | None  # how the dial of leg B ended, if it did
    talk_seconds: float | None




# ------------------------------------------------------------ live calls


@dataclass(frozen=True)
class ActionsQueued(Event):
    """Actions to run on a live call, in order, already checked and prepared
    (:class:`controller.core.plan.PreparedAction`). ``replace``: drop what is
    still queued first (the running action, if any, finishes). ``source``:
    api, number, incoming_url, action_url, redirect, fallback."""

    actions: tuple[PreparedAction, ...]
    replace: bool = False
    source: str = "api"


@dataclass(frozen=True)
class ActionsFetchFailed(Event):
    """The URL asked with FetchActions answered badly or not in time."""

    action_id: str
    reason: str


@dataclass(frozen=True)
class PlayFinished(Event):
    action_id: str
    played: bool


@dataclass(frozen=True)
class DigitPressed(Event):
    action_id: str
    digit: str


@dataclass(frozen=True)
class DigitsGathered(Event):
    """The gather ended: ``ended_by`` is finish-key, max-digits or timeout.
    ``digits`` are every key pressed (the finish key left out)."""

    action_id: str
    digits: str
    ended_by: str


@dataclass(frozen=True)
class PauseFinished(Event):
    action_id: str


@dataclass(frozen=True)
class RecordingChanged(Event):
    action_id: str
    recording: bool
    error: str | None = None


StepEnd = PlayFinished | DigitsGathered | PauseFinished | RecordingChanged


@dataclass(frozen=True)
class FoundBetweenSteps(Event):
    """A controller picking the call up again found leg A waiting between
    steps, with ``last_end`` the end of the last step the switch ran on it
    (None: none ran), and ``end_try`` the try of its action that step was
    (a gather's ``GatherDigits.try_number``; 1 for every other step). If
    that is not the end of the running action's current try, the try's step
    never started: the controller stopped after it chose the step (or stored
    a gather's next try) and before the switch took it up, and the step is
    sent again."""

    last_end: StepEnd | None
    end_try: int = 1


@dataclass(frozen=True)
class IdleTimedOut(Event):
    """The leg waited WaitForActions' seconds with nothing to run; the switch
    hangs it up."""
