"""Leg A: the start, the happy path, leg A not reached or gone during the whisper."""

from __future__ import annotations

import pytest

from controller.core.commands import (
    CallEnded,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayWhisper,
    StartRecording,
)
from controller.core.events import (
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    OriginateFailed,
    RecordingStarted,
    WhisperFinished,
)
from controller.core.outcomes import Leg, LegStatus, leg_status_from_cause
from controller.core.states import CallState
from controller.errors import InvalidTransition
from tests.unit.core.helpers import (
    A_ANSWERED,
    A_CREATED,
    A_RINGING,
    B_ANSWERED,
    B_CREATED,
    B_RINGING,
    RECORDING,
    RECORDING_FILE,
    T0,
    WHISPER_DONE,
    WHISPER_THEN_B,
    bridged,
    make_plan,
    new_call,
    ringing_a,
    ringing_b,
    started,
    to_states,
    whispering,
)

# ---------------------------------------------------------------- helpers of the module


@pytest.mark.parametrize(
    ("cause", "answered", "expected"),
    [
        (16, True, LegStatus.COMPLETED),
        (17, True, LegStatus.COMPLETED),  # answered wins over any cause
        (17, False, LegStatus.BUSY),
        (18, False, LegStatus.NO_ANSWER),
        (19, False, LegStatus.NO_ANSWER),
        (21, False, LegStatus.REJECTED),
        (16, False, LegStatus.FAILED),
        (0, False, LegStatus.FAILED),
        (34, False, LegStatus.FAILED),
    ],
)
def test_leg_status_from_cause(cause: int, answered: bool, expected: LegStatus) -> None:
    assert leg_status_from_cause(cause, answered) is expected


# ---------------------------------------------------------------- start and initial response


def test_start_originates_leg_a() -> None:
    run = new_call()
    commands = run.call.start()
    assert commands == [OriginateLegA(target="PJSIP/a", ring_timeout=30, caller_id=None)]
    assert run.state() is CallState.DIALING_A
    assert run.call.legs[Leg.A].status is LegStatus.INITIATED
    assert run.call.legs[Leg.B].status is LegStatus.PENDING


def test_start_passes_caller_id() -> None:
    run = new_call(make_plan(caller_id="+27110000000"))
    assert run.call.start() == [OriginateLegA("PJSIP/a", 30, "+27110000000")]


def test_start_twice_is_invalid() -> None:
    run = started()
    with pytest.raises(InvalidTransition) as info:
        run.call.start()
    assert info.value.error_id == "invalid-transition"
    assert info.value.details == {"state": "dialing-a", "event": "start"}
    assert run.state() is CallState.DIALING_A
    assert len(run.call.timeline) == 1


def test_event_before_start_is_invalid() -> None:
    run = new_call()
    with pytest.raises(InvalidTransition):
        run.send(LegCreated(at=A_CREATED, leg=Leg.A))
    assert run.state() is CallState.NEW


def test_initial_response_after_start() -> None:
    run = started()
    assert run.call.initial_response() == {
        "success": True,
        "call_uuid": "c1",
        "state": "dialing-a",
        "leg_a_status": "initiated",
        "leg_b_status": "pending",
        "recorded": True,
    }


def test_initial_response_before_start_and_without_recording() -> None:
    run = new_call(make_plan(recording_file=None))
    response = run.call.initial_response()
    assert response["leg_a_status"] == "pending"
    assert response["state"] == "new"
    assert response["recorded"] is False


# ---------------------------------------------------------------- happy path


def test_happy_path_step_by_step() -> None:
    run = started()

    assert run.send(LegCreated(at=A_CREATED, leg=Leg.A)) == []
    assert run.state() is CallState.DIALING_A

    assert run.send(LegRinging(at=A_RINGING, leg=Leg.A)) == []
    assert run.state() is CallState.RINGING_A
    assert run.call.legs[Leg.A].status is LegStatus.RINGING

    assert run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A)) == [WHISPER_THEN_B]
    assert run.state() is CallState.WHISPERING
    assert run.call.legs[Leg.A].status is LegStatus.ANSWERED
    assert run.call.legs[Leg.B].status is LegStatus.PENDING

    # The switch dials B itself once the whisper ends (PlayWhisper.then_dial).
    assert run.send(WhisperFinished(at=WHISPER_DONE, played=True)) == []
    assert run.state() is CallState.DIALING_B
    assert run.call.legs[Leg.B].status is LegStatus.INITIATED

    assert run.send(LegCreated(at=B_CREATED, leg=Leg.B)) == []
    assert run.send(LegRinging(at=B_RINGING, leg=Leg.B)) == []
    assert run.state() is CallState.RINGING_B
    assert run.call.legs[Leg.B].status is LegStatus.RINGING

    assert run.send(LegAnswered(at=B_ANSWERED, leg=Leg.B)) == [StartRecording("/r/c1.wav")]
    assert run.state() is CallState.BRIDGED
    assert run.call.bridged_at == B_ANSWERED

    assert run.send(RecordingStarted(at=RECORDING)) == []
    assert run.call.recording_started is True

    b_end = B_ANSWERED + 20.0
    assert run.send(LegHungUp(at=b_end, leg=Leg.B, cause=16)) == []
    assert run.state() is CallState.BRIDGED

    assert run.send(LegEnded(at=b_end, leg=Leg.B, cause=16, cause_text="Normal Clearing")) == [
        HangupLegs((Leg.A,))
    ]
    assert run.state() is CallState.ENDING
    assert run.ended() == []

    a_end = b_end + 0.5
    commands = run.send(LegEnded(at=a_end, leg=Leg.A, cause=16, cause_text="Normal Clearing"))
    assert len(commands) == 1
    assert isinstance(commands[0], CallEnded)
    assert run.state() is CallState.ENDED
    assert run.call.finished

    result = run.result()
    assert result["call_uuid"] == "c1"
    assert result["status"] == "completed"
    assert result["success"] is True
    assert result["state"] == "ended"
    assert result["hangup_by"] == "leg_b"
    # Talk time ends when the bridge ends (B's hangup), not with the last channel.
    assert result["talk_seconds"] == pytest.approx(b_end - B_ANSWERED)
    assert result["leg_a_status"] == "completed"
    assert result["leg_b_status"] == "completed"
    assert result["recorded"] is True
    assert result["whisper_played"] is True
    assert result["created_at"] == T0
    assert result["leg_a_answered_at"] == A_ANSWERED
    assert result["leg_b_answered_at"] == B_ANSWERED
    assert result["ended_at"] == a_end
    # A subset check: the leg record may grow fields without breaking this test.
    expected_leg_b = {
        "target": "PJSIP/b",
        "status": "completed",
        "hangup_cause": 16,
        "hangup_cause_text": "Normal Clearing",
        "sip_code": None,
        "answered_at": B_ANSWERED,
        "ended_at": b_end,
    }
    assert {key: result["leg_b"].get(key) for key in expected_leg_b} == expected_leg_b
    assert result["leg_a"]["ended_at"] == a_end


def test_happy_path_timeline_records_every_transition_in_order() -> None:
    run = bridged()
    run.send(
        LegHungUp(at=T0 + 30, leg=Leg.B, cause=16),
        LegEnded(at=T0 + 30, leg=Leg.B, cause=16),
        LegEnded(at=T0 + 31, leg=Leg.A, cause=16),
    )
    timeline = run.call.timeline
    assert to_states(run) == [
        "dialing-a",
        "ringing-a",
        "whispering",
        "dialing-b",
        "ringing-b",
        "bridged",
        "ending",
        "ended",
    ]
    assert [str(t.from_state) for t in timeline] == [
        "new",
        "dialing-a",
        "ringing-a",
        "whispering",
        "dialing-b",
        "ringing-b",
        "bridged",
        "ending",
    ]
    assert [t.at for t in timeline] == [
        T0,
        A_RINGING,
        A_ANSWERED,
        WHISPER_DONE,
        B_RINGING,
        B_ANSWERED,
        T0 + 30,
        T0 + 31,
    ]
    assert all(t.reason for t in timeline)
    assert run.result()["timeline"] == [
        {"at": t.at, "from": str(t.from_state), "to": str(t.to_state), "reason": t.reason} for t in timeline
    ]


def test_dial_leg_b_carries_caller_id() -> None:
    run = whispering(make_plan(caller_id="+27110000000"))
    [whisper] = run.of_type(PlayWhisper)
    assert whisper.then_dial == DialLegB(("PJSIP/b",), 30, 60, "+27110000000",
                                         record_file=RECORDING_FILE)
    # The switch dials B itself when the whisper ends: no command then.
    assert run.send(WhisperFinished(at=WHISPER_DONE, played=True)) == []
    assert run.call.legs[Leg.B].status is LegStatus.INITIATED


def test_no_whisper_dials_b_when_a_answers() -> None:
    run = ringing_a(make_plan(whisper_audio=None, recording_file=None))
    commands = run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A))
    assert commands == [DialLegB(("PJSIP/b",), 30, 60, None, record_file=None)]
    assert run.state() is CallState.DIALING_B
    assert run.of_type(PlayWhisper) == []
    assert to_states(run) == ["dialing-a", "ringing-a", "dialing-b"]
    run.send(
        LegCreated(at=B_CREATED, leg=Leg.B),
        LegAnswered(at=B_ANSWERED, leg=Leg.B),
        LegEnded(at=B_ANSWERED + 3, leg=Leg.B, cause=16),
        LegEnded(at=B_ANSWERED + 3, leg=Leg.A, cause=16),
    )
    assert run.result()["whisper_played"] is None


def test_whisper_that_could_not_play_still_dials_b() -> None:
    run = whispering()
    assert run.send(WhisperFinished(at=WHISPER_DONE, played=False)) == []
    assert run.state() is CallState.DIALING_B
    assert run.call.whisper_played is False
    assert "could not be played" in run.call.timeline[-1].reason




def test_a_answers_without_ringing_first() -> None:
    run = started()
    run.send(LegCreated(at=A_CREATED, leg=Leg.A))
    assert run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A)) == [WHISPER_THEN_B]
    assert run.state() is CallState.WHISPERING


def test_no_recording_file_means_no_recording() -> None:
    run = ringing_b(make_plan(recording_file=None))
    assert run.send(LegAnswered(at=B_ANSWERED, leg=Leg.B)) == []
    assert run.state() is CallState.BRIDGED
    run.send(
        LegEnded(at=B_ANSWERED + 3, leg=Leg.B, cause=16),
        LegEnded(at=B_ANSWERED + 3, leg=Leg.A, cause=16),
    )
    assert run.result()["recorded"] is False
    assert run.of_type(StartRecording) == []


def test_recorded_only_once_the_recording_has_started() -> None:
    run = ringing_b()
    run.send(
        LegAnswered(at=B_ANSWERED, leg=Leg.B),
        LegEnded(at=B_ANSWERED + 3, leg=Leg.B, cause=16),
        LegEnded(at=B_ANSWERED + 3, leg=Leg.A, cause=16),
    )
    assert run.of_type(StartRecording) == [StartRecording("/r/c1.wav")]
    assert run.result()["recorded"] is False


# ---------------------------------------------------------------- leg A not reached


@pytest.mark.parametrize("with_hungup", [True, False], ids=["hungup-then-ended", "ended-only"])
@pytest.mark.parametrize(
    ("cause", "leg_status", "call_status", "sip_code"),
    [
        (17, "busy", "busy", 486),
        (18, "no-answer", "no-answer", 408),
        (19, "no-answer", "no-answer", 480),
        (21, "rejected", "busy", 603),
        (34, "failed", "failed", 503),
    ],
)
def test_leg_a_not_reached(
    cause: int, leg_status: str, call_status: str, sip_code: int, with_hungup: bool
) -> None:
    run = ringing_a()
    end = A_RINGING + 3
    if with_hungup:
        assert run.send(LegHungUp(at=end, leg=Leg.A, cause=cause)) == []
        assert run.state() is CallState.RINGING_A
    commands = run.send(LegEnded(at=end, leg=Leg.A, cause=cause, cause_text="why"))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)

    result = run.result()
    assert result["status"] == call_status
    assert result["success"] is False
    assert result["leg_a_status"] == leg_status
    assert result["leg_b_status"] == "not-dialed"
    assert result["leg_a"]["hangup_cause"] == cause
    assert result["leg_a"]["sip_code"] == sip_code
    assert result["leg_a_answered_at"] is None
    assert result["hangup_by"] is None
    assert result["talk_seconds"] == 0.0
    assert result["ended_at"] == end
    assert run.of_type(DialLegB) == []
    assert run.of_type(PlayWhisper) == []
    assert to_states(run) == ["dialing-a", "ringing-a", "ending", "ended"]


def test_a_busy_cause_from_hungup_survives_a_bland_final_cause() -> None:
    # The party's own cause (busy) is kept when the channel ends with cause 0.
    run = ringing_a()
    run.send(LegHungUp(at=T0 + 3, leg=Leg.A, cause=17), LegEnded(at=T0 + 3, leg=Leg.A, cause=0))
    result = run.result()
    assert result["status"] == "busy"
    assert result["leg_a"]["hangup_cause"] == 17


def test_a_no_answer_as_the_switch_reports_it() -> None:
    # Recorded order (a-no-answer.ami): the channel exists, the originate
    # fails, then the channel hangs up with cause 19.
    run = ringing_a()
    assert run.send(OriginateFailed(at=T0 + 30, reason="no answer")) == []
    assert run.state() is CallState.RINGING_A
    run.send(LegEnded(at=T0 + 30.1, leg=Leg.A, cause=19, cause_text="User alerting, no answer"))
    result = run.result()
    assert result["status"] == "no-answer"
    assert result["leg_a_status"] == "no-answer"
    assert result["leg_b_status"] == "not-dialed"


def test_originate_failed_without_channel_fails_at_once() -> None:
    run = started()
    commands = run.send(OriginateFailed(at=T0 + 0.5, reason="endpoint not found"))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "failed"
    assert result["leg_a_status"] == "failed"
    assert result["leg_b_status"] == "not-dialed"
    assert "endpoint not found" in result["reason"]
    assert result["leg_a"]["ended_at"] == T0 + 0.5
    assert result["ended_at"] == T0 + 0.5
    assert to_states(run) == ["dialing-a", "ending", "ended"]


def test_originate_failed_after_leg_created_is_ignored() -> None:
    run = started()
    run.send(LegCreated(at=A_CREATED, leg=Leg.A))
    assert run.send(OriginateFailed(at=T0 + 1, reason="failure")) == []
    assert run.state() is CallState.DIALING_A
    assert run.call.legs[Leg.A].status is LegStatus.INITIATED
    assert run.call.status is None
    assert len(run.call.timeline) == 1


# ---------------------------------------------------------------- leg A goes during the whisper


def test_a_hangs_up_during_whisper() -> None:
    run = whispering()
    run.send(LegHungUp(at=T0 + 6, leg=Leg.A, cause=16))
    commands = run.send(LegEnded(at=T0 + 6, leg=Leg.A, cause=0))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "leg_a"
    assert result["leg_a_status"] == "completed"
    assert result["leg_b_status"] == "not-dialed"
    assert result["whisper_played"] is None
    assert run.of_type(DialLegB) == []
    assert to_states(run)[-3:] == ["whispering", "ending", "ended"]


def test_a_ended_during_whisper_without_hungup_is_still_leg_a() -> None:
    run = whispering()
    run.send(LegEnded(at=T0 + 6, leg=Leg.A, cause=0))
    result = run.result()
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "leg_a"
    assert run.of_type(DialLegB) == []


def test_whisper_finishing_after_a_hung_up_does_not_dial_b() -> None:
    run = whispering()
    run.send(LegHungUp(at=T0 + 6, leg=Leg.A, cause=16))
    assert run.send(WhisperFinished(at=T0 + 6.01, played=False)) == []
    run.send(LegEnded(at=T0 + 6.02, leg=Leg.A, cause=0))
    result = run.result()
    assert result["leg_b_status"] == "not-dialed"
    assert run.of_type(DialLegB) == []
