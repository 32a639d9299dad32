"""Cancels, command failures, the ending, invalid and late events."""

from __future__ import annotations

import pytest

from controller.core.commands import (
    CallEnded,
    ChooseTargets,
    HangupLegs,
)
from controller.core.events import (
    AnswerAccepted,
    AnswerDeclined,
    CommandFailed,
    DialFinished,
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
    TargetsChosen,
    WhisperFinished,
)
from controller.core.outcomes import CallStatus, DialOutcome, Leg, LegStatus
from controller.core.plan import Attempt
from controller.core.states import CallState
from controller.errors import InvalidTransition
from tests.unit.core.helpers import (
    A_ANSWERED,
    A_RINGING,
    B_ANSWERED,
    B_RINGING,
    T0,
    bridged,
    dialing_b,
    not_reached,
    ringing_a,
    ringing_b,
    started,
    whispering,
)

# ---------------------------------------------------------------- API cancel


def test_hangup_requested_while_a_rings() -> None:
    run = ringing_a()
    assert run.send(HangupRequested(at=T0 + 2, reason="api")) == [HangupLegs((Leg.A,))]
    assert run.state() is CallState.ENDING
    assert run.call.legs[Leg.A].status is LegStatus.CANCELED
    commands = run.send(LegEnded(at=T0 + 2.1, leg=Leg.A, cause=0))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "api"
    assert result["leg_a_status"] == "canceled"
    assert result["leg_b_status"] == "not-dialed"
    assert "api" in result["reason"]


def test_hangup_requested_during_whisper() -> None:
    run = whispering()
    assert run.send(HangupRequested(at=T0 + 6)) == [HangupLegs((Leg.A,))]
    run.send(LegEnded(at=T0 + 6.1, leg=Leg.A, cause=16))
    result = run.result()
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "api"
    assert result["leg_a_status"] == "completed"
    assert result["leg_b_status"] == "not-dialed"


def test_hangup_requested_while_b_rings() -> None:
    run = ringing_b()
    assert run.send(HangupRequested(at=T0 + 10)) == [HangupLegs((Leg.A, Leg.B))]
    assert run.call.legs[Leg.B].status is LegStatus.CANCELED
    run.send(LegEnded(at=T0 + 10.1, leg=Leg.B, cause=0), LegEnded(at=T0 + 10.2, leg=Leg.A, cause=16))
    result = run.result()
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "api"
    assert result["leg_b_status"] == "canceled"


def test_hangup_requested_while_bridged() -> None:
    run = bridged()
    assert run.send(HangupRequested(at=T0 + 20)) == [HangupLegs((Leg.A, Leg.B))]
    assert run.state() is CallState.ENDING
    run.send(LegEnded(at=T0 + 20.1, leg=Leg.A, cause=16))
    assert run.ended() == []
    run.send(LegEnded(at=T0 + 20.2, leg=Leg.B, cause=16))
    result = run.result()
    assert result["status"] == "completed"
    assert result["hangup_by"] == "api"
    assert result["leg_a_status"] == "completed"
    assert result["leg_b_status"] == "completed"


def test_hangup_requested_twice_is_harmless() -> None:
    run = ringing_a()
    run.send(HangupRequested(at=T0 + 2))
    assert run.send(HangupRequested(at=T0 + 2.5)) == []
    assert run.state() is CallState.ENDING


def test_hangup_requested_before_leg_a_exists_hangs_up_leg_a() -> None:
    run = started()
    commands = run.send(HangupRequested(at=T0 + 0.05))
    assert commands[0] == HangupLegs((Leg.A,))
    assert run.call.status is not None and str(run.call.status) == "canceled"


def test_leg_a_created_after_an_early_cancel_is_hung_up() -> None:
    run = started()
    run.send(HangupRequested(at=T0 + 0.05))
    assert run.send(LegCreated(at=T0 + 0.1, leg=Leg.A)) == [HangupLegs((Leg.A,))]
    run.send(LegEnded(at=T0 + 0.2, leg=Leg.A, cause=0))
    result = run.result()
    assert result["status"] == "canceled"
    assert result["leg_a_status"] == "canceled"


# ---------------------------------------------------------------- command failures


def test_command_failed_during_whisper_hangs_up_a() -> None:
    run = whispering()
    assert run.send(CommandFailed(at=T0 + 5.5, command="PlayWhisper", reason="no such file")) == [
        HangupLegs((Leg.A,))
    ]
    assert run.state() is CallState.ENDING
    run.send(LegEnded(at=T0 + 5.6, leg=Leg.A, cause=16))
    result = run.result()
    assert result["status"] == "failed"
    assert result["hangup_by"] == "switch"
    assert result["leg_b_status"] == "not-dialed"
    assert "PlayWhisper failed: no such file" in result["reason"]


def test_command_failed_while_b_rings_hangs_up_both() -> None:
    run = ringing_b()
    assert run.send(CommandFailed(at=T0 + 9, command="x", reason="y")) == [HangupLegs((Leg.A, Leg.B))]
    run.send(LegEnded(at=T0 + 9.1, leg=Leg.A, cause=16), LegEnded(at=T0 + 9.2, leg=Leg.B, cause=0))
    assert run.result()["status"] == "failed"


def test_recording_that_fails_to_start_keeps_the_conversation() -> None:
    run = bridged()
    assert run.send(CommandFailed(at=T0 + 13, command="StartRecording", reason="disk")) == []
    assert run.state() is CallState.BRIDGED
    run.send(LegHungUp(at=T0 + 20, leg=Leg.B, cause=16), LegEnded(at=T0 + 20, leg=Leg.B, cause=16),
             LegEnded(at=T0 + 20.1, leg=Leg.A, cause=16))
    result = run.result()
    assert result["status"] == "completed"
    assert result["recording_error"] == "disk"


def test_other_command_failed_while_bridged_fails_the_call() -> None:
    run = bridged()
    assert run.send(CommandFailed(at=T0 + 13, command="HangupLegs", reason="x")) == [
        HangupLegs((Leg.A, Leg.B))
    ]
    run.send(LegEnded(at=T0 + 13.1, leg=Leg.A, cause=16), LegEnded(at=T0 + 13.1, leg=Leg.B, cause=16))
    assert run.result()["status"] == "failed"


def test_command_failed_with_no_channel_ends_at_once() -> None:
    run = started()
    commands = run.send(CommandFailed(at=T0 + 0.2, command="OriginateLegA", reason="timeout"))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "failed"
    assert result["leg_b_status"] == "not-dialed"


def test_command_failed_with_no_channel_closes_leg_a() -> None:
    run = started()
    run.send(CommandFailed(at=T0 + 0.2, command="OriginateLegA", reason="timeout"))
    assert run.result()["leg_a_status"] == "failed"


def test_command_failed_while_ending_is_ignored() -> None:
    run = ringing_a()
    run.send(HangupRequested(at=T0 + 2))
    assert run.send(CommandFailed(at=T0 + 2.1, command="Hangup", reason="gone")) == []
    assert run.call.status is not None and str(run.call.status) == "canceled"


# ---------------------------------------------------------------- ending


def test_leg_created_while_ending_is_hung_up() -> None:
    # The API cancel races the dial of B: B's channel shows up afterwards.
    run = dialing_b()
    assert run.send(HangupRequested(at=T0 + 8.05)) == [HangupLegs((Leg.A,))]
    assert run.state() is CallState.ENDING
    assert run.send(LegCreated(at=T0 + 8.1, leg=Leg.B)) == [HangupLegs((Leg.B,))]
    run.send(LegEnded(at=T0 + 8.2, leg=Leg.A, cause=16))
    assert run.ended() == []
    run.send(LegEnded(at=T0 + 8.3, leg=Leg.B, cause=0))
    result = run.result()
    assert result["status"] == "canceled"
    assert result["leg_b_status"] == "canceled"


@pytest.mark.parametrize(
    "late_event",
    [
        LegAnswered(at=T0 + 2.1, leg=Leg.A),
        LegRinging(at=T0 + 2.1, leg=Leg.A),
        WhisperFinished(at=T0 + 2.1, played=True),
        OriginateFailed(at=T0 + 2.1, reason="late"),
        HangupRequested(at=T0 + 2.1),
        # The router's answer, or B's confirmation, after the call was cancelled.
        TargetsChosen(at=T0 + 2.1, attempt=Attempt(("+27115550301",), 20)),
        RouteExhausted(at=T0 + 2.1, status=CallStatus.BUSY, reason="late", message_audio="/w/x"),
        AnswerAccepted(at=T0 + 2.1),
        AnswerDeclined(at=T0 + 2.1, reason="late"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_late_events_while_ending_change_nothing(late_event: Event) -> None:
    run = ringing_a()
    run.send(HangupRequested(at=T0 + 2))
    timeline = list(run.call.timeline)
    assert run.send(late_event) == []
    assert run.state() is CallState.ENDING
    assert run.call.timeline == timeline
    run.send(LegEnded(at=T0 + 3, leg=Leg.A, cause=0))
    assert run.result()["status"] == "canceled"


# ---------------------------------------------------------------- invalid transitions


def test_whisper_finished_while_dialing_a_is_invalid() -> None:
    run = started()
    with pytest.raises(InvalidTransition) as info:
        run.send(WhisperFinished(at=T0 + 1, played=True))
    assert info.value.details == {"state": "dialing-a", "event": "WhisperFinished"}
    assert run.state() is CallState.DIALING_A


def test_leg_b_answered_while_a_rings_is_invalid() -> None:
    run = ringing_a()
    with pytest.raises(InvalidTransition) as info:
        run.send(LegAnswered(at=T0 + 1, leg=Leg.B))
    assert info.value.details["event"] == "LegAnswered(b)"
    assert run.state() is CallState.RINGING_A
    assert run.call.legs[Leg.B].status is LegStatus.PENDING


@pytest.mark.parametrize(
    "event",
    [
        LegCreated(at=T0 + 99, leg=Leg.A),
        LegRinging(at=T0 + 99, leg=Leg.A),
        LegAnswered(at=T0 + 99, leg=Leg.B),
        LegHungUp(at=T0 + 99, leg=Leg.A, cause=16),
        LegEnded(at=T0 + 99, leg=Leg.A, cause=16),
        OriginateFailed(at=T0 + 99, reason="late"),
        WhisperFinished(at=T0 + 99, played=True),
        DialFinished(at=T0 + 99, outcome=DialOutcome.NO_ANSWER),
        MessageFinished(at=T0 + 99),
        RecordingStarted(at=T0 + 99),
        HangupRequested(at=T0 + 99),
        CommandFailed(at=T0 + 99, command="x", reason="y"),
        TargetsChosen(at=T0 + 99, attempt=Attempt(("+27115550301",), 20)),
        RouteExhausted(at=T0 + 99, status=CallStatus.BUSY, reason="late"),
        AnswerAccepted(at=T0 + 99),
        AnswerDeclined(at=T0 + 99, reason="late"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_event_after_ended_is_invalid(event: Event) -> None:
    run = ringing_a()
    run.send(LegEnded(at=T0 + 3, leg=Leg.A, cause=17))
    assert run.call.finished
    with pytest.raises(InvalidTransition) as info:
        run.send(event)
    assert info.value.details["state"] == "ended"
    assert len(run.ended()) == 1
    assert run.state() is CallState.ENDED


# ---------------------------------------------------------------- late and duplicate events


def test_late_ringing_of_a_after_answer_changes_nothing() -> None:
    run = whispering()
    timeline = list(run.call.timeline)
    assert run.send(LegRinging(at=A_ANSWERED + 0.1, leg=Leg.A)) == []
    assert run.state() is CallState.WHISPERING
    assert run.call.legs[Leg.A].status is LegStatus.ANSWERED
    assert run.call.timeline == timeline


def test_late_ringing_of_b_after_bridge_changes_nothing() -> None:
    run = bridged()
    timeline = list(run.call.timeline)
    assert run.send(LegRinging(at=B_ANSWERED + 0.1, leg=Leg.B)) == []
    assert run.state() is CallState.BRIDGED
    assert run.call.legs[Leg.B].status is LegStatus.ANSWERED
    assert run.call.timeline == timeline


def test_duplicate_leg_created_changes_nothing() -> None:
    run = ringing_a()
    assert run.send(LegCreated(at=A_RINGING + 0.1, leg=Leg.A)) == []
    assert run.state() is CallState.RINGING_A
    assert run.call.legs[Leg.A].status is LegStatus.RINGING


def test_duplicate_ringing_of_a_changes_nothing() -> None:
    run = ringing_a()
    timeline = list(run.call.timeline)
    assert run.send(LegRinging(at=A_RINGING + 0.1, leg=Leg.A)) == []
    assert run.call.timeline == timeline


def test_late_originate_failed_after_answer_changes_nothing() -> None:
    run = whispering()
    assert run.send(OriginateFailed(at=A_ANSWERED + 0.1, reason="late")) == []
    assert run.state() is CallState.WHISPERING
    assert run.call.status is None


def test_duplicate_answer_of_a_changes_nothing() -> None:
    run = whispering()
    assert run.send(LegAnswered(at=A_ANSWERED + 0.01, leg=Leg.A)) == []
    assert run.state() is CallState.WHISPERING
    assert run.call.legs[Leg.A].answered_at == A_ANSWERED


def test_b_channel_gone_before_the_dial_end_is_still_no_answer() -> None:
    # Seen on the lab: B's Hangup (cause 0, ringing cancelled by the switch)
    # can arrive before the dialplan reports the dial's end.
    run = ringing_b()
    assert run.send(LegEnded(at=B_RINGING + 3, leg=Leg.B, cause=0, cause_text="Unknown")) == []
    assert run.send(DialFinished(at=B_RINGING + 3.01, outcome=DialOutcome.NO_ANSWER)) == [
        ChooseTargets("no-answer", {})]
    run.send(not_reached(B_RINGING + 3.02, CallStatus.NO_ANSWER),
             LegEnded(at=B_RINGING + 8, leg=Leg.A, cause=16))
    result = run.result()
    assert (result["status"], result["leg_b_status"]) == ("no-answer", "no-answer")
