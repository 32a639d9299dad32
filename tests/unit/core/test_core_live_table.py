"""The live call's legality table: every state listed, every event known, and
every refused pair raises before anything changes."""

from __future__ import annotations

import pytest

from controller.core import events
from controller.core.events import (
    ActionsFetchFailed,
    ActionsQueued,
    DigitPressed,
    DigitsGathered,
    Event,
    FoundBetweenSteps,
    IdleTimedOut,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
)
from controller.core.live import LiveCall
from controller.core.live_table import LIVE_EVENTS, LIVE_STATES, LIVE_TABLE, STEP_ENDS
from controller.core.outcomes import Leg
from controller.core.states import CallState
from controller.core.table import ANSWER_A, ANSWER_AGAIN, ANSWER_B, TABLE, EventKind, Verdict
from controller.errors import InvalidTransition
from tests.unit.core.helpers import T0
from tests.unit.core.live_helpers import CALLER, INBOUND_PLAN, NUMBER
from tests.unit.core.test_core_table import event_of as two_leg_event_of
from tests.unit.core.test_core_table import name_of

EVENT_TYPES = {cls for cls in vars(events).values()
               if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event}
KINDS: list[EventKind] = [*(t for t in EVENT_TYPES if t is not events.LegAnswered),
                          ANSWER_A, ANSWER_B, ANSWER_AGAIN]
# A live call's connect whispers to the agent on answer, and goes on when nobody is reached.
NOT_LIVE = {CallState.WHISPERING, CallState.ANNOUNCING}


def event_of(kind: EventKind) -> Event:
    at = T0 + 99
    live: dict[EventKind, Event] = {
        ActionsQueued: ActionsQueued(at, ()),
        ActionsFetchFailed: ActionsFetchFailed(at, "x1", "answered 500"),
        PlayFinished: PlayFinished(at, "x1", True),
        DigitPressed: DigitPressed(at, "x1", "1"),
        DigitsGathered: DigitsGathered(at, "x1", "1", "max-digits"),
        PauseFinished: PauseFinished(at, "x1"),
        RecordingChanged: RecordingChanged(at, "x1", True),
        IdleTimedOut: IdleTimedOut(at),
        FoundBetweenSteps: FoundBetweenSteps(at, None),
    }
    return live[kind] if kind in live else two_leg_event_of(kind)


def test_every_state_is_listed() -> None:
    assert set(LIVE_TABLE) == set(CallState) - NOT_LIVE
    assert set(LIVE_TABLE) >= LIVE_STATES
    for row in LIVE_TABLE.values():
        assert set(row) <= set(KINDS)


def test_the_live_events_are_the_live_tables_alone() -> None:
    taken = {kind if isinstance(kind, type) else kind[0] for row in LIVE_TABLE.values() for kind in row}
    assert taken == EVENT_TYPES
    assert set(LIVE_EVENTS) <= EVENT_TYPES
    for row in TABLE.values():
        assert not set(row) & set(LIVE_EVENTS)


def test_every_handled_kind_has_a_handler() -> None:
    for row in LIVE_TABLE.values():
        for kind, verdict in row.items():
            if verdict is Verdict.HANDLE:
                name = kind.__name__ if isinstance(kind, type) else kind[0].__name__
                assert callable(getattr(LiveCall, "_on_" + name, None)), name


def test_ending_refuses_nothing_and_new_and_ended_take_nothing() -> None:
    assert set(LIVE_TABLE[CallState.ENDING]) == set(KINDS)
    assert LIVE_TABLE[CallState.NEW] == {}
    assert LIVE_TABLE[CallState.ENDED] == {}


def test_actions_can_be_queued_until_the_end() -> None:
    for state in set(LIVE_TABLE) - {CallState.NEW, CallState.ENDING, CallState.ENDED}:
        assert LIVE_TABLE[state][ActionsQueued] is Verdict.HANDLE, state
        assert LIVE_TABLE[state][ANSWER_AGAIN] is Verdict.IGNORE, state


def test_each_step_ends_only_in_its_own_state() -> None:
    own = {PlayFinished: CallState.PLAYING, DigitPressed: CallState.GATHERING,
           DigitsGathered: CallState.GATHERING, PauseFinished: CallState.PAUSING,
           RecordingChanged: CallState.RECORDING_STEP, IdleTimedOut: CallState.IDLE}
    assert set(own) == set(STEP_ENDS)
    for kind, state in own.items():
        assert [s for s, row in LIVE_TABLE.items() if row.get(kind) is Verdict.HANDLE] == [state]


def test_leg_a_found_between_steps_matters_only_while_a_step_runs() -> None:
    steps = {CallState.PLAYING, CallState.GATHERING, CallState.PAUSING, CallState.RECORDING_STEP}
    assert {s for s, row in LIVE_TABLE.items()
            if row.get(FoundBetweenSteps) is Verdict.HANDLE} == steps


def call_in(state: CallState, kind: EventKind) -> LiveCall:
    call = LiveCall.inbound(INBOUND_PLAN, CALLER, NUMBER, 30, created_at=T0)
    call.state = state
    if kind == ANSWER_AGAIN:
        call.legs[Leg.B].answered_at = T0 + 1
    return call


# A state the table has no row for (never reached by a live call) refuses everything.
REFUSED = [(state, kind) for state in CallState for kind in KINDS
           if kind not in LIVE_TABLE.get(state, {})]
IGNORED = [(state, kind) for state in LIVE_TABLE for kind, verdict in LIVE_TABLE[state].items()
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
