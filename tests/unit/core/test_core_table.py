"""The legality table: total and consistent, and every refused pair raises."""

from __future__ import annotations

import pytest

from controller.core import events
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
from controller.core.live_table import LIVE_EVENTS, LIVE_STATES
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus, DialOutcome, Leg
from controller.core.plan import Attempt
from controller.core.states import CallState
from controller.core.table import ANSWER_A, ANSWER_AGAIN, ANSWER_B, TABLE, EventKind, Verdict
from controller.errors import InvalidTransition
from tests.unit.core.helpers import PLAN, T0

# The two-leg flow's events: the live call's own are its table's (test_core_live_table).
EVENT_TYPES = {cls for cls in vars(events).values()
               if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
               and cls not in LIVE_EVENTS}
# Every kind the table can be asked about: LegAnswered is told apart by leg and repeat.
KINDS: list[EventKind] = [*(t for t in EVENT_TYPES if t is not LegAnswered), ANSWER_A, ANSWER_B, ANSWER_AGAIN]


def event_of(kind: EventKind) -> Event:
    """One event of that kind."""
    at = T0 + 99
    examples: dict[EventKind, Event] = {
        LegCreated: LegCreated(at, Leg.A),
        LegRinging: LegRinging(at, Leg.A),
        ANSWER_A: LegAnswered(at, Leg.A),
        ANSWER_B: LegAnswered(at, Leg.B),
        ANSWER_AGAIN: LegAnswered(at, Leg.B),
        LegHungUp: LegHungUp(at, Leg.A, 16),
        LegEnded: LegEnded(at, Leg.A, 16),
        OriginateFailed: OriginateFailed(at, "x"),
        WhisperFinished: WhisperFinished(at, True),
        DialFinished: DialFinished(at, DialOutcome.NO_ANSWER),
        TargetsChosen: TargetsChosen(at, Attempt(("+27115550301",), 20)),
        RouteExhausted: RouteExhausted(at, CallStatus.BUSY, "x"),
        Announcement: Announcement(at, "/w/queue", 30),
        AnswerAccepted: AnswerAccepted(at),
        AnswerDeclined: AnswerDeclined(at, "x"),
        MessageFinished: MessageFinished(at),
        RecordingStarted: RecordingStarted(at),
        HangupRequested: HangupRequested(at),
        CommandFailed: CommandFailed(at, "x", "y"),
        SwitchLost: SwitchLost(at, "x"),
        EndedWhileAway: EndedWhileAway(at, None, False, None, None),
    }
    return examples[kind]


def test_every_state_has_a_row_and_every_kind_is_known() -> None:
    assert set(TABLE) == set(CallState) - LIVE_STATES
    for row in TABLE.values():
        assert set(row) <= set(KINDS)


def test_every_event_type_is_taken_somewhere() -> None:
    taken = {kind if isinstance(kind, type) else kind[0] for row in TABLE.values() for kind in row}
    assert taken == EVENT_TYPES


def test_new_and_ended_take_nothing() -> None:
    assert TABLE[CallState.NEW] == {}
    assert TABLE[CallState.ENDED] == {}


def test_every_handled_kind_has_a_handler() -> None:
    for row in TABLE.values():
        for kind, verdict in row.items():
            if verdict is Verdict.HANDLE:
                name = kind.__name__ if isinstance(kind, type) else kind[0].__name__
                assert callable(getattr(CallConnect, "_on_" + name, None)), name


def test_ending_refuses_nothing() -> None:
    # Anything can still arrive late once the outcome is decided.
    assert set(TABLE[CallState.ENDING]) == set(KINDS)


def test_a_repeated_answer_is_ignored_in_every_live_state() -> None:
    for state in set(TABLE) - {CallState.NEW, CallState.ENDED}:
        assert TABLE[state][ANSWER_AGAIN] is Verdict.IGNORE


def name_of(kind: EventKind) -> str:
    return kind.__name__ if isinstance(kind, type) else f"{kind[0].__name__}({kind[1]})"


def call_in(state: CallState, kind: EventKind) -> CallConnect:
    call = CallConnect(PLAN, created_at=T0)
    call.state = state
    if kind == ANSWER_AGAIN:
        call.legs[Leg.B].answered_at = T0 + 1
    return call


REFUSED = [(state, kind) for state in TABLE for kind in KINDS if kind not in TABLE[state]]
IGNORED = [(state, kind) for state in TABLE for kind, verdict in TABLE[state].items()
           if verdict is Verdict.IGNORE]


@pytest.mark.parametrize(("state", "kind"), REFUSED, ids=[f"{s}-{name_of(k)}" for s, k in REFUSED])
def test_every_refused_pair_raises(state: CallState, kind: EventKind) -> None:
    call = call_in(state, kind)
    snapshot = call.snapshot()
    with pytest.raises(InvalidTransition) as info:
        call.handle(event_of(kind))
    assert info.value.details["state"] == str(state)
    assert call.snapshot() == snapshot


@pytest.mark.parametrize(("state", "kind"), IGNORED, ids=[f"{s}-{name_of(k)}" for s, k in IGNORED])
def test_every_ignored_pair_changes_nothing(state: CallState, kind: EventKind) -> None:
    call = call_in(state, kind)
    snapshot = call.snapshot()
    assert call.handle(event_of(kind)) == []
    assert call.snapshot() == snapshot
