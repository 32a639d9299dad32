"""Which events each state of a call-connect takes: the one table of legal moves.

For every state, an event is *handled* (its ``_on_<Event>`` handler runs),
*ignored* (it can arrive late and no longer matters: nothing changes, no command)
or, when the state lists it in neither, illegal: :meth:`Call.handle` raises
:class:`InvalidTransition` before anything changes. Handlers keep only what
depends on more than the state and the event's type: which leg, which channel.

An answer is told apart by leg, and from a repeat of an answer already taken
(``ANSWER_AGAIN``), which any live state ignores. A future flow (one leg, an
inbound first leg) brings its own table for its own states, built the same way
(:func:`build_table`): the live call's is :mod:`controller.core.live_table`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Literal

from controller.core.events import (
    Announcement,
    AnswerAccepted,
    AnswerDeclined,
    CommandFailed,
    DialFinished,
    EndedWhileAway,
    Event,
    HangupRequested,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    MessageFinished,
    OriginateFailed,
    RecordingStarted,
    RouteExhausted,
    SwitchLost,
    TargetsChosen,
    WhisperFinished,
)
from controller.core.legs import LegRecord
from controller.core.outcomes import Leg
from controller.core.states import CallState

EventKind = type[Event] | tuple[type[LegAnswered], Leg | Literal["again"]]

ANSWER_A: EventKind = (LegAnswered, Leg.A)
ANSWER_B: EventKind = (LegAnswered, Leg.B)
ANSWER_AGAIN: EventKind = (LegAnswered, "again")


class Verdict(Enum):
    HANDLE = "handle"
    IGNORE = "ignore"


Table = Mapping[CallState, Mapping[EventKind, Verdict]]


def kind_of(event: Event, legs: Mapping[Leg, LegRecord]) -> EventKind:
    if isinstance(event, LegAnswered):
        return ANSWER_AGAIN if legs[event.leg].answered_at is not None else (LegAnswered, event.leg)
    return type(event)


def event_name(event: Event) -> str:
    """The event as InvalidTransition names it: an answer says whose."""
    if isinstance(event, LegAnswered):
        return f"LegAnswered({event.leg})"
    return type(event).__name__


# Every live state handles these: they tell which channels are left or will
# not come (the call ends when none is), or stop the call whatever it did.
CHANNELS: tuple[EventKind, ...] = (LegCreated, OriginateFailed, LegHungUp, LegEnded, RecordingStarted,
                                   SwitchLost, EndedWhileAway)
# Never matter: an answer repeated, and the end of A's message (the dialplan
# hangs A up right after it, and LegEnded ends the call).
NEVER_MATTER: tuple[EventKind, ...] = (ANSWER_AGAIN, MessageFinished)
STOPS: tuple[EventKind, ...] = (HangupRequested, CommandFailed)

_HANDLED: dict[CallState, tuple[EventKind, ...]] = {
    CallState.NEW: (),  # only start() moves it on
    CallState.DIALING_A: (LegRinging, ANSWER_A, *STOPS),
    CallState.RINGING_A: (LegRinging, ANSWER_A, *STOPS),
    CallState.ROUTING: (LegRinging, TargetsChosen, RouteExhausted, Announcement, *STOPS),
    CallState.WHISPERING: (LegRinging, WhisperFinished, *STOPS),
    CallState.DIALING_B: (LegRinging, ANSWER_B, DialFinished, *STOPS),
    CallState.RINGING_B: (LegRinging, ANSWER_B, DialFinished, *STOPS),
    CallState.CONFIRMING: (AnswerAccepted, AnswerDeclined, DialFinished, *STOPS),
    CallState.BRIDGED: STOPS,
    CallState.ANNOUNCING: STOPS,
    CallState.ENDING: (),  # the outcome is decided: only the channels matter now
    CallState.ENDED: (),
}

# Late or duplicate, and moot in that state: the dial's end says nothing
# once bridged or cancelled, a ringing changes nothing once both legs answered.
_IGNORED: dict[CallState, tuple[EventKind, ...]] = {
    CallState.NEW: (),
    CallState.DIALING_A: (DialFinished, Announcement),
    CallState.RINGING_A: (DialFinished, Announcement),
    CallState.ROUTING: (DialFinished,),
    CallState.WHISPERING: (DialFinished, Announcement),
    CallState.DIALING_B: (Announcement,),
    CallState.RINGING_B: (Announcement,),
    CallState.CONFIRMING: (LegRinging, Announcement),
    CallState.BRIDGED: (LegRinging, DialFinished, Announcement),
    CallState.ANNOUNCING: (LegRinging, DialFinished, Announcement),
    CallState.ENDING: (LegRinging, ANSWER_A, ANSWER_B, AnswerAccepted, AnswerDeclined, WhisperFinished,
                       DialFinished, TargetsChosen, RouteExhausted, Announcement, *STOPS),
    CallState.ENDED: (),
}


def build_table(handled: Mapping[CallState, tuple[EventKind, ...]],
                ignored: Mapping[CallState, tuple[EventKind, ...]]) -> Table:
    """A flow's table from what each of its states handles and ignores; every
    state but NEW and ENDED also handles CHANNELS and ignores NEVER_MATTER."""
    live = frozenset(handled) - {CallState.NEW, CallState.ENDED}
    return {
        state: {
            **{kind: Verdict.IGNORE for kind in (ignored[state] + (NEVER_MATTER if state in live else ()))},
            **{kind: Verdict.HANDLE for kind in (handled[state] + (CHANNELS if state in live else ()))},
        }
        for state in handled
    }


TABLE: Table = build_table(_HANDLED, _IGNORED)
