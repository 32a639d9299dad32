"""Which events each state of a live call takes: the live flow's table of legal moves.

Read it like :mod:`controller.core.table` (the two-leg flow's): per state, an
event is handled, ignored (late: nothing changes) or, listed in neither,
illegal. A live call (:class:`controller.core.live.LiveCall`) runs actions on
its one leg, A, and a ``connect`` action reuses the two-leg states of leg B
(ROUTING to BRIDGED). WHISPERING and ANNOUNCING are not part of it: the whisper
of a connect goes to the agent on answer, never to the caller on leg A, and a
connect that reaches nobody lets the queue go on instead of hanging A up.

Leg A answers by itself on an inbound call (the switch answers it for the first
step that needs audio, or at the bridge), so every state before the end takes
A's first answer. Actions can be queued in every state before the end; the
end of a step is taken only in its own state, and ignored in the others (a
late one, from a step already given up).
"""

from __future__ import annotations

from controller.core.events import (
    ActionsFetchFailed,
    ActionsQueued,
    Announcement,
    AnswerAccepted,
    AnswerDeclined,
    DialFinished,
    DigitPressed,
    DigitsGathered,
    FoundBetweenSteps,
    IdleTimedOut,
    LegRinging,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
    RouteExhausted,
    TargetsChosen,
    WhisperFinished,
)
from controller.core.states import CallState
from controller.core.table import ANSWER_A, ANSWER_B, STOPS, EventKind, Table, build_table

# The events only a live call takes (the two-leg table refuses them).
LIVE_EVENTS: tuple[EventKind, ...] = (ActionsQueued, ActionsFetchFailed, PlayFinished, DigitPressed,
                                      DigitsGathered, PauseFinished, RecordingChanged, IdleTimedOut,
                                      FoundBetweenSteps)
# The states only a live call goes through.
LIVE_STATES = frozenset({CallState.PLAYING, CallState.GATHERING, CallState.PAUSING,
                         CallState.RECORDING_STEP, CallState.FETCHING, CallState.IDLE})

# The ends of the steps the switch runs on leg A.
STEP_ENDS: tuple[EventKind, ...] = (PlayFinished, DigitPressed, DigitsGathered, PauseFinished,
                                    RecordingChanged, IdleTimedOut)
# Leg A found between steps after a restart: the step states take it (their
# step may never have started), the others have no step on the switch.
_FOUND = (FoundBetweenSteps,)
# Every state before the end takes actions, answers from a URL, and stops.
_ALWAYS = (ActionsQueued, ActionsFetchFailed, *STOPS)
# What a connect leaves behind once the queue has gone on.
_CONNECT_LATE = (DialFinished, Announcement)


def _steps_but(*own: EventKind) -> tuple[EventKind, ...]:
    """The ends of the other steps: late in a state whose own step is ``own``."""
    return tuple(kind for kind in STEP_ENDS if kind not in own)


_HANDLED: dict[CallState, tuple[EventKind, ...]] = {
    CallState.NEW: (),  # only start() moves it on
    # Outbound: the single leg is being placed; queued actions wait for its answer.
    CallState.DIALING_A: (LegRinging, ANSWER_A, *_ALWAYS),
    # Outbound: A rings. Inbound: the caller waits for the first actions.
    CallState.RINGING_A: (LegRinging, ANSWER_A, *_ALWAYS),
    # A connect: the two-leg flow's states for leg B.
    CallState.ROUTING: (LegRinging, ANSWER_A, TargetsChosen, RouteExhausted, Announcement, *_ALWAYS),
    CallState.DIALING_B: (LegRinging, ANSWER_A, ANSWER_B, DialFinished, *_ALWAYS),
    CallState.RINGING_B: (LegRinging, ANSWER_A, ANSWER_B, DialFinished, *_ALWAYS),
    CallState.CONFIRMING: (ANSWER_A, AnswerAccepted, AnswerDeclined, DialFinished, *_ALWAYS),
    CallState.BRIDGED: (ANSWER_A, *_ALWAYS),
    # One step on leg A each.
    CallState.PLAYING: (LegRinging, ANSWER_A, PlayFinished, *_FOUND, *_ALWAYS),
    CallState.GATHERING: (LegRinging, ANSWER_A, DigitPressed, DigitsGathered, *_FOUND, *_ALWAYS),
    CallState.PAUSING: (LegRinging, ANSWER_A, PauseFinished, *_FOUND, *_ALWAYS),
    CallState.RECORDING_STEP: (LegRinging, ANSWER_A, RecordingChanged, *_FOUND, *_ALWAYS),
    CallState.FETCHING: (LegRinging, ANSWER_A, *_ALWAYS),
    CallState.IDLE: (LegRinging, ANSWER_A, IdleTimedOut, *_ALWAYS),
    CallState.ENDING: (),  # the outcome is decided: only the channels matter now
    CallState.ENDED: (),
}

_IGNORED: dict[CallState, tuple[EventKind, ...]] = {
    CallState.NEW: (),
    CallState.DIALING_A: (*_CONNECT_LATE, *_FOUND),
    CallState.RINGING_A: (*_CONNECT_LATE, *_FOUND),
    CallState.ROUTING: (DialFinished, *STEP_ENDS, *_FOUND),
    CallState.DIALING_B: (Announcement, *STEP_ENDS, *_FOUND),
    CallState.RINGING_B: (Announcement, *STEP_ENDS, *_FOUND),
    CallState.CONFIRMING: (LegRinging, Announcement, *STEP_ENDS, *_FOUND),
    CallState.BRIDGED: (LegRinging, *_CONNECT_LATE, *STEP_ENDS, *_FOUND),
    CallState.PLAYING: (*_CONNECT_LATE, *_steps_but(PlayFinished)),
    CallState.GATHERING: (*_CONNECT_LATE, *_steps_but(DigitPressed, DigitsGathered)),
    CallState.PAUSING: (*_CONNECT_LATE, *_steps_but(PauseFinished)),
    CallState.RECORDING_STEP: (*_CONNECT_LATE, *_steps_but(RecordingChanged)),
    CallState.FETCHING: (*_CONNECT_LATE, *STEP_ENDS, *_FOUND),
    CallState.IDLE: (*_CONNECT_LATE, *_steps_but(IdleTimedOut), *_FOUND),
    CallState.ENDING: (LegRinging, ANSWER_A, ANSWER_B, AnswerAccepted, AnswerDeclined, WhisperFinished,
                       DialFinished, TargetsChosen, RouteExhausted, Announcement, *STOPS, *LIVE_EVENTS),
    CallState.ENDED: (),
}

LIVE_TABLE: Table = build_table(_HANDLED, _IGNORED)
