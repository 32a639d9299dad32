"""Unit tests for the call-connect state machine (controller.core).

Each test drives a CallConnect with events, the way the backend adapter would,
and checks the commands it answers with, the state it is left in and the
result carried by the single CallEnded command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from controller.core.commands import (
    CallEnded,
    ChooseTargets,
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
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
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus, DialOutcome, Leg, LegStatus, leg_status_from_cause
from controller.core.plan import Attempt, CallPlan
from controller.core.states import CallState
from controller.errors import InvalidTransition

# ---------------------------------------------------------------- timestamps

T0 = 1_795_260_000.0  # created_at / start
A_CREATED = T0 + 0.1
A_RINGING = T0 + 0.2
A_ANSWERED = T0 + 5.0
WHISPER_DONE = T0 + 8.0
B_CREATED = T0 + 8.1
B_RINGING = T0 + 8.2
B_ANSWERED = T0 + 12.0
RECORDING = T0 + 12.1

PLAN = CallPlan(
    call_id="c1",
    leg_a="PJSIP/a",
    leg_b="PJSIP/b",
    ring_timeout=30,
    time_limit=60,
    whisper_audio="/w/whisper",
    recording_file="/r/c1.wav",
    first_attempt=Attempt(("PJSIP/b",), ring_timeout=30),
)


def make_plan(**overrides: Any) -> CallPlan:
    """The standard plan, with some fields changed."""
    return replace(PLAN, **overrides)


# ---------------------------------------------------------------- driver


@dataclass
class Run:
    """A call under test plus every command it has produced so far."""

    call: CallConnect
    commands: list[Command] = field(default_factory=list)

    def send(self, *events: Event) -> list[Command]:
        """Feed events in order; return the commands they produced."""
        out: list[Command] = []
        for event in events:
            out += self.call.handle(event)
        self.commands += out
        return out

    def state(self) -> CallState:
        # A method, not a property: type checkers would narrow a property
        # across the events that change it.
        return self.call.state

    def ended(self) -> list[CallEnded]:
        return [c for c in self.commands if isinstance(c, CallEnded)]

    def result(self) -> dict[str, Any]:
        """The result of the one and only CallEnded command."""
        ended = self.ended()
        assert len(ended) == 1, f"expected exactly one CallEnded, got {len(ended)}"
        assert self.call.finished
        return ended[0].result

    def of_type(self, kind: type[Command]) -> list[Command]:
        return [c for c in self.commands if isinstance(c, kind)]


def new_call(plan: CallPlan = PLAN) -> Run:
    return Run(CallConnect(plan, created_at=T0))


def started(plan: CallPlan = PLAN) -> Run:
    run = new_call(plan)
    run.commands += run.call.start()
    return run


def ringing_a(plan: CallPlan = PLAN) -> Run:
    run = started(plan)
    run.send(LegCreated(at=A_CREATED, leg=Leg.A), LegRinging(at=A_RINGING, leg=Leg.A))
    return run


def whispering(plan: CallPlan = PLAN) -> Run:
    run = ringing_a(plan)
    run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A))
    assert run.state() is CallState.WHISPERING
    return run


def dialing_b(plan: CallPlan = PLAN) -> Run:
    """Leg B dialed, but its channel not reported yet."""
    run = whispering(plan)
    run.send(WhisperFinished(at=WHISPER_DONE, played=True))
    assert run.state() is CallState.DIALING_B
    return run


def ringing_b(plan: CallPlan = PLAN) -> Run:
    run = dialing_b(plan)
    run.send(LegCreated(at=B_CREATED, leg=Leg.B), LegRinging(at=B_RINGING, leg=Leg.B))
    assert run.state() is CallState.RINGING_B
    return run


def bridged(plan: CallPlan = PLAN) -> Run:
    run = ringing_b(plan)
    run.send(LegAnswered(at=B_ANSWERED, leg=Leg.B), RecordingStarted(at=RECORDING))
    assert run.state() is CallState.BRIDGED
    return run


def to_states(run: Run) -> list[str]:
    return [str(t.to_state) for t in run.call.timeline]


def not_reached(at: float, status: CallStatus, message: str | None = "/w/sorry") -> RouteExhausted:
    """The router's answer when nobody is left to ring, with the message
    leg A hears (the "not reached" message by default)."""
    return RouteExhausted(at=at, status=status, reason=f"nobody more to ring ({status})",
                          message_audio=message)


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
    assert whisper.then_dial == DialLegB(("PJSIP/b",), 30, 60, "+27110000000")
    # The switch dials B itself when the whisper ends: no command then.
    assert run.send(WhisperFinished(at=WHISPER_DONE, played=True)) == []
    assert run.call.legs[Leg.B].status is LegStatus.INITIATED


def test_no_whisper_dials_b_when_a_answers() -> None:
    run = ringing_a(make_plan(whisper_audio=None))
    commands = run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A))
    assert commands == [DialLegB(("PJSIP/b",), 30, 60, None)]
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


WHISPER_THEN_B = PlayWhisper("/w/whisper", DialLegB(("PJSIP/b",), 30, 60, None))


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


# ---------------------------------------------------------------- leg B not reached
# The core no longer decides what a failed attempt means: it asks whom to ring
# next (ChooseTargets) and the router answers. With one target the router says
# nobody is left (RouteExhausted), with the "not reached" message to play.


def test_b_no_answer_asks_the_route_then_announces_then_ends() -> None:
    run = ringing_b()
    dial_end = B_RINGING + 30
    assert run.send(DialFinished(at=dial_end, outcome=DialOutcome.NO_ANSWER)) == [
        ChooseTargets("no-answer", {})]
    assert run.state() is CallState.ROUTING
    assert run.call.legs[Leg.B].status is LegStatus.NO_ANSWER

    # Recorded order (b-no-answer.ami): B's channel goes with cause 0.
    assert run.send(LegEnded(at=dial_end + 0.1, leg=Leg.B, cause=0, cause_text="Unknown")) == []
    assert run.state() is CallState.ROUTING
    assert run.send(not_reached(dial_end + 0.2, CallStatus.NO_ANSWER)) == [
        PlayMessageThenHangup("/w/sorry")]
    assert run.state() is CallState.ANNOUNCING
    assert run.send(MessageFinished(at=dial_end + 4)) == []
    assert run.state() is CallState.ANNOUNCING

    commands = run.send(LegEnded(at=dial_end + 4.1, leg=Leg.A, cause=16))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "no-answer"
    assert result["success"] is False
    assert result["leg_b_status"] == "no-answer"
    assert result["leg_b"]["hangup_cause"] == 0
    assert result["leg_a_status"] == "completed"
    assert result["hangup_by"] is None
    assert result["talk_seconds"] == 0.0
    assert result["leg_b_answered_at"] is None
    assert result["answered_by"] is None
    # The reason is the router's; the timeline keeps how the dial ended.
    assert result["reason"] == "nobody more to ring (no-answer)"
    assert "(dial no-answer)" in run.call.timeline[-4].reason
    assert to_states(run)[-5:] == ["ringing-b", "routing", "announcing", "ending", "ended"]
    assert result["attempts"] == [{
        "targets": ["PJSIP/b"], "ring_timeout": 30, "source": "request",
        "started_at": A_ANSWERED, "ended_at": dial_end, "outcome": "no-answer",
        "dial_outcome": "no-answer", "answered_by": None,
    }]


def test_b_busy() -> None:
    run = ringing_b()
    assert run.send(LegHungUp(at=T0 + 9, leg=Leg.B, cause=17)) == []
    assert run.call.legs[Leg.B].status is LegStatus.BUSY
    assert run.send(DialFinished(at=T0 + 9.1, outcome=DialOutcome.BUSY)) == [ChooseTargets("busy", {})]
    assert run.send(not_reached(T0 + 9.15, CallStatus.BUSY)) == [PlayMessageThenHangup("/w/sorry")]
    run.send(
        LegEnded(at=T0 + 9.2, leg=Leg.B, cause=17, cause_text="User busy"),
        MessageFinished(at=T0 + 13),
        LegEnded(at=T0 + 13.1, leg=Leg.A, cause=16),
    )
    result = run.result()
    assert result["status"] == "busy"
    assert result["leg_b_status"] == "busy"
    assert result["leg_b"]["hangup_cause"] == 17
    assert result["leg_b"]["sip_code"] == 486
    assert to_states(run)[-5:] == ["ringing-b", "routing", "announcing", "ending", "ended"]


def test_b_rejects() -> None:
    # Recorded order (b-reject.ami): HangupRequest cause 21, then the dial
    # ends as failed (nobody reached); leg A's channel even ends with cause 21.
    run = ringing_b()
    run.send(LegHungUp(at=T0 + 9, leg=Leg.B, cause=21))
    # The party's own cause wins over the dial status: rejected, not failed.
    assert run.send(DialFinished(at=T0 + 9.1, outcome=DialOutcome.FAILED)) == [
        ChooseTargets("rejected", {})]
    run.send(
        not_reached(T0 + 9.15, CallStatus.BUSY),
        LegEnded(at=T0 + 9.2, leg=Leg.B, cause=21, cause_text="Call Rejected"),
        MessageFinished(at=T0 + 13),
        LegEnded(at=T0 + 13.1, leg=Leg.A, cause=21, cause_text="Call Rejected"),
    )
    result = run.result()
    assert result["status"] == "busy"
    assert result["leg_b_status"] == "rejected"
    assert result["leg_b"]["sip_code"] == 603
    assert result["leg_a_status"] == "completed"
    assert result["attempts"][0]["dial_outcome"] == "failed"


@pytest.mark.parametrize(
    ("outcome", "leg_status"),
    [
        (DialOutcome.NO_ANSWER, "no-answer"),
        (DialOutcome.BUSY, "busy"),
        (DialOutcome.FAILED, "failed"),
    ],
)
def test_b_outcome_from_dial_outcome_alone(outcome: DialOutcome, leg_status: str) -> None:
    run = ringing_b()
    assert run.send(DialFinished(at=T0 + 40, outcome=outcome)) == [
        ChooseTargets(leg_status, {})]
    run.send(
        LegEnded(at=T0 + 40.1, leg=Leg.B, cause=0),
        not_reached(T0 + 40.2, CallStatus.FAILED),
        LegEnded(at=T0 + 44, leg=Leg.A, cause=16),
    )
    result = run.result()
    assert result["leg_b_status"] == leg_status
    assert result["attempts"][0]["outcome"] == leg_status
    # The call's status is the router's (RouteExhausted), whatever the dial said.
    assert result["status"] == "failed"


def test_b_fails_before_its_channel_exists() -> None:
    run = dialing_b()
    assert run.send(DialFinished(at=T0 + 8.5, outcome=DialOutcome.FAILED)) == [
        ChooseTargets("failed", {})]
    assert run.send(not_reached(T0 + 8.6, CallStatus.FAILED)) == [PlayMessageThenHangup("/w/sorry")]
    run.send(LegEnded(at=T0 + 12, leg=Leg.A, cause=16))
    result = run.result()
    assert result["status"] == "failed"
    assert result["leg_b_status"] == "failed"
    assert result["leg_b"]["dialed"] is False


def test_b_not_reached_without_message_hangs_a_up() -> None:
    run = ringing_b()
    assert run.send(DialFinished(at=T0 + 40, outcome=DialOutcome.NO_ANSWER)) == [
        ChooseTargets("no-answer", {})]
    assert run.send(not_reached(T0 + 40.05, CallStatus.NO_ANSWER, message=None)) == [
        HangupLegs((Leg.A,))]
    assert run.state() is CallState.ENDING
    assert run.of_type(PlayMessageThenHangup) == []
    assert run.send(LegEnded(at=T0 + 40.1, leg=Leg.B, cause=0)) == []
    commands = run.send(LegEnded(at=T0 + 40.2, leg=Leg.A, cause=16))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "no-answer"
    assert result["leg_b_status"] == "no-answer"
    assert to_states(run)[-4:] == ["ringing-b", "routing", "ending", "ended"]


def test_a_gone_before_the_dial_end_does_not_ask_the_route() -> None:
    # A hung up while B rang and the dial's end came first: A's own end
    # closes the call, nobody more is rung.
    run = ringing_b()
    run.send(LegHungUp(at=T0 + 20, leg=Leg.A, cause=16))
    assert run.send(DialFinished(at=T0 + 20.01, outcome=DialOutcome.CANCELED)) == []
    assert run.state() is CallState.RINGING_B
    run.send(LegEnded(at=T0 + 20.02, leg=Leg.B, cause=0), LegEnded(at=T0 + 20.03, leg=Leg.A, cause=16))
    assert run.of_type(ChooseTargets) == []
    assert run.result()["status"] == "canceled"


# ---------------------------------------------------------------- leg A goes while B rings


def test_a_hangs_up_while_b_rings() -> None:
    run = ringing_b()
    run.send(LegHungUp(at=T0 + 10, leg=Leg.A, cause=16))
    assert run.send(LegEnded(at=T0 + 10, leg=Leg.A, cause=16)) == [HangupLegs((Leg.B,))]
    assert run.state() is CallState.ENDING
    assert run.call.legs[Leg.B].status is LegStatus.CANCELED
    # The dial's own end after the cancel says nothing new.
    assert run.send(DialFinished(at=T0 + 10.05, outcome=DialOutcome.CANCELED)) == []
    commands = run.send(LegEnded(at=T0 + 10.1, leg=Leg.B, cause=0))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "leg_a"
    assert result["leg_b_status"] == "canceled"
    assert result["leg_a_status"] == "completed"
    assert result["talk_seconds"] == 0.0


def test_a_hangs_up_before_b_channel_exists() -> None:
    run = dialing_b()
    commands = run.send(LegEnded(at=T0 + 8.05, leg=Leg.A, cause=16))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "canceled"
    assert result["leg_b_status"] == "canceled"
    assert result["hangup_by"] == "leg_a"


# ---------------------------------------------------------------- bridged endings


def test_a_hangs_up_while_bridged() -> None:
    run = bridged()
    assert run.send(LegHungUp(at=T0 + 40, leg=Leg.A, cause=16)) == []
    assert run.send(LegEnded(at=T0 + 40, leg=Leg.A, cause=16)) == [HangupLegs((Leg.B,))]
    assert run.state() is CallState.ENDING
    commands = run.send(LegEnded(at=T0 + 40.2, leg=Leg.B, cause=16))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "completed"
    assert result["hangup_by"] == "leg_a"
    assert result["leg_a_status"] == "completed"
    assert result["leg_b_status"] == "completed"
    assert result["talk_seconds"] == pytest.approx(T0 + 40 - B_ANSWERED)


@pytest.mark.parametrize(
    ("talked", "hangup_by"),
    [(60.0, "time_limit"), (59.5, "time_limit"), (5.0, "switch")],
)
def test_bridged_call_ended_by_the_switch(talked: float, hangup_by: str) -> None:
    run = bridged()
    end = B_ANSWERED + talked
    assert run.send(LegEnded(at=end, leg=Leg.B, cause=16)) == [HangupLegs((Leg.A,))]
    run.send(LegEnded(at=end, leg=Leg.A, cause=16))
    result = run.result()
    assert result["status"] == "completed"
    assert result["hangup_by"] == hangup_by
    assert result["talk_seconds"] == pytest.approx(talked)


def test_dial_finished_after_bridge_changes_nothing() -> None:
    run = bridged()
    assert run.send(DialFinished(at=T0 + 30, outcome=DialOutcome.ANSWERED)) == []
    assert run.state() is CallState.BRIDGED
    assert run.call.status is None


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


# ---------------------------------------------------------------- routing leg B: attempts

# Whom to ring is not in the plan: the core asks once leg A has answered.
ROUTED = make_plan(first_attempt=None)
AGENTS = ("+27115550301", "+27115550302", "+27115550303")


def routing(plan: CallPlan = ROUTED) -> Run:
    """Leg A answered; the core waits for the router to choose whom to ring."""
    run = ringing_a(plan)
    assert run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A)) == [ChooseTargets(None, {})]
    assert run.state() is CallState.ROUTING
    return run


def chosen(at: float, *targets: str, state: dict[str, Any] | None = None) -> TargetsChosen:
    """The router's answer: ring these targets at once for 20 s."""
    return TargetsChosen(at=at, attempt=Attempt(targets, 20, "group:sales"), route_state=state or {})


def dial(*targets: str, ring_timeout: int = 20) -> DialLegB:
    return DialLegB(targets, ring_timeout, 60, None)


def test_a_answered_with_nobody_chosen_yet_asks_the_route() -> None:
    run = routing()
    assert run.call.legs[Leg.B].status is LegStatus.PENDING
    state = {"queue": [], "count": 1}
    # The route's answer comes with the router's memory, kept with the call.
    assert run.send(chosen(A_ANSWERED + 0.3, *AGENTS, state=state)) == [
        PlayWhisper("/w/whisper", dial(*AGENTS))]
    assert run.state() is CallState.WHISPERING
    assert run.call.route_state == state
    assert run.call.attempts[0]["started_at"] == A_ANSWERED + 0.3
    assert to_states(run) == ["dialing-a", "ringing-a", "routing", "whispering"]


def test_simultaneous_attempt_first_answer_wins_and_the_losers_do_not_end_the_call() -> None:
    run = routing()
    run.send(chosen(A_ANSWERED + 0.3, *AGENTS), WhisperFinished(at=WHISPER_DONE, played=True))
    run.send(*(LegCreated(at=B_CREATED, leg=Leg.B, channel=f"b{i}") for i in (1, 2, 3)),
             LegRinging(at=B_RINGING, leg=Leg.B))
    assert run.state() is CallState.RINGING_B
    # One target rejects while the others ring: the attempt goes on.
    assert run.send(LegHungUp(at=B_RINGING + 1, leg=Leg.B, cause=21, channel="b3"),
                    LegEnded(at=B_RINGING + 1, leg=Leg.B, cause=21, channel="b3")) == []
    assert run.state() is CallState.RINGING_B
    assert run.call.legs[Leg.B].status is LegStatus.RINGING

    assert run.send(LegAnswered(at=B_ANSWERED, leg=Leg.B, channel="b2", target=AGENTS[1])) == [
        StartRecording("/r/c1.wav")]
    assert run.state() is CallState.BRIDGED
    # The switch cancels the loser that still rang: its end is not the call's.
    assert run.send(LegHungUp(at=B_ANSWERED + 0.1, leg=Leg.B, cause=26, channel="b1"),
                    LegEnded(at=B_ANSWERED + 0.1, leg=Leg.B, cause=26, channel="b1")) == []
    assert run.state() is CallState.BRIDGED
    assert run.call.hangup_by is None

    b_end = B_ANSWERED + 30
    run.send(LegHungUp(at=b_end, leg=Leg.B, cause=16, channel="b2"))
    assert run.send(LegEnded(at=b_end, leg=Leg.B, cause=16, channel="b2")) == [HangupLegs((Leg.A,))]
    run.send(LegEnded(at=b_end + 0.2, leg=Leg.A, cause=16))
    result = run.result()
    assert result["status"] == "completed"
    assert result["hangup_by"] == "leg_b"
    assert result["answered_by"] == AGENTS[1]
    assert result["leg_b"]["target"] == AGENTS[1]
    assert (result["leg_b_status"], result["leg_b"]["hangup_cause"]) == ("completed", 16)
    assert result["talk_seconds"] == pytest.approx(30.0)
    assert result["attempts"] == [{
        "targets": list(AGENTS), "ring_timeout": 20, "source": "group:sales",
        "started_at": A_ANSWERED + 0.3, "ended_at": b_end, "outcome": "answered",
        "dial_outcome": "answered", "answered_by": AGENTS[1],
    }]


def test_one_busy_target_of_a_simultaneous_attempt_does_not_make_it_busy() -> None:
    run = routing(make_plan(first_attempt=None, whisper_audio=None))
    assert run.send(chosen(A_ANSWERED + 0.3, *AGENTS[:2])) == [dial(*AGENTS[:2])]
    run.send(LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"),
             LegCreated(at=B_CREATED, leg=Leg.B, channel="b2"),
             LegHungUp(at=B_CREATED + 0.5, leg=Leg.B, cause=17, channel="b1"))
    assert run.call.legs[Leg.B].status is LegStatus.INITIATED
    # The other target rang out: the attempt went unanswered.
    run.send(LegEnded(at=B_CREATED + 0.5, leg=Leg.B, cause=17, channel="b1"),
             LegEnded(at=T0 + 30, leg=Leg.B, cause=0, channel="b2"))
    assert run.send(DialFinished(at=T0 + 30.01, outcome=DialOutcome.NO_ANSWER)) == [
        ChooseTargets("no-answer", {})]


def test_answer_from_one_of_several_targets_the_switch_cannot_name() -> None:
    run = routing(make_plan(first_attempt=None, whisper_audio=None, recording_file=None))
    run.send(chosen(A_ANSWERED + 0.3, *AGENTS[:2]),
             LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"),
             LegAnswered(at=B_ANSWERED, leg=Leg.B, channel="b1"))
    assert run.state() is CallState.BRIDGED
    assert run.call.attempts[0]["answered_by"] is None
    run.send(LegEnded(at=B_ANSWERED + 5, leg=Leg.B, cause=16, channel="b1"),
             LegEnded(at=B_ANSWERED + 5, leg=Leg.A, cause=16))
    # Nothing made up: who answered is not known, the whole attempt is.
    assert run.result()["answered_by"] == ", ".join(AGENTS[:2])


def test_sequential_attempts_a_failed_one_then_the_next_answers() -> None:
    run = routing()
    first_state = {"queue": [{"dial": [AGENTS[1]]}], "count": 1}
    run.send(chosen(A_ANSWERED + 0.3, AGENTS[0], state=first_state),
             WhisperFinished(at=WHISPER_DONE, played=True),
             LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"), LegRinging(at=B_RINGING, leg=Leg.B),
             LegEnded(at=T0 + 28, leg=Leg.B, cause=0, channel="b1"))
    # The route is asked again with its own memory and how the attempt ended.
    assert run.send(DialFinished(at=T0 + 28.01, outcome=DialOutcome.NO_ANSWER)) == [
        ChooseTargets("no-answer", first_state)]
    assert run.state() is CallState.ROUTING

    # Leg A heard the whisper already: the next attempt dials straight away.
    second_state = {"queue": [], "count": 2}
    assert run.send(chosen(T0 + 28.2, AGENTS[1], state=second_state)) == [dial(AGENTS[1])]
    assert run.state() is CallState.DIALING_B
    assert run.call.legs[Leg.B].status is LegStatus.INITIATED
    assert run.call.route_state == second_state
    run.send(LegCreated(at=T0 + 28.3, leg=Leg.B, channel="b2"), LegRinging(at=T0 + 28.4, leg=Leg.B))
    assert run.send(LegAnswered(at=T0 + 31, leg=Leg.B, channel="b2", target=AGENTS[1])) == [
        StartRecording("/r/c1.wav")]
    run.send(LegHungUp(at=T0 + 50, leg=Leg.A, cause=16), LegEnded(at=T0 + 50, leg=Leg.A, cause=16),
             LegEnded(at=T0 + 50.1, leg=Leg.B, cause=16, channel="b2"))
    result = run.result()
    assert result["status"] == "completed"
    assert result["hangup_by"] == "leg_a"
    assert result["answered_by"] == AGENTS[1]
    assert result["leg_b_answered_at"] == T0 + 31
    assert [(a["targets"], a["outcome"], a["dial_outcome"], a["answered_by"])
            for a in result["attempts"]] == [
        ([AGENTS[0]], "no-answer", "no-answer", None),
        ([AGENTS[1]], "answered", "answered", AGENTS[1]),
    ]
    assert to_states(run) == ["dialing-a", "ringing-a", "routing", "whispering", "dialing-b",
                              "ringing-b", "routing", "dialing-b", "ringing-b", "bridged",
                              "ending", "ended"]


def test_stale_end_of_an_earlier_attempts_channel_is_ignored() -> None:
    run = routing(make_plan(first_attempt=None, whisper_audio=None))
    run.send(chosen(A_ANSWERED + 0.3, AGENTS[0]), LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"),
             DialFinished(at=T0 + 28, outcome=DialOutcome.NO_ANSWER), chosen(T0 + 28.2, *AGENTS[1:]))
    stale = [LegHungUp(at=T0 + 28.3, leg=Leg.B, cause=19, channel="b1"),
             LegEnded(at=T0 + 28.3, leg=Leg.B, cause=19, channel="b1")]
    # The first attempt's channel goes only now, before the second's appear...
    assert run.send(*stale) == []
    assert run.state() is CallState.DIALING_B
    leg_b = run.call.legs[Leg.B]
    assert (leg_b.status, leg_b.channels, leg_b.cause, leg_b.ended_at) == (
        LegStatus.INITIATED, [], None, None)
    # ... or while they ring.
    run.send(LegCreated(at=T0 + 28.4, leg=Leg.B, channel="b2"),
             LegCreated(at=T0 + 28.4, leg=Leg.B, channel="b3"), LegRinging(at=T0 + 28.5, leg=Leg.B))
    timeline = list(run.call.timeline)
    assert run.send(*stale) == []
    assert run.call.timeline == timeline
    assert (leg_b.status, leg_b.channels, leg_b.cause, leg_b.ended_at) == (
        LegStatus.RINGING, ["b2", "b3"], None, None)
    run.send(LegAnswered(at=T0 + 31, leg=Leg.B, channel="b2", target=AGENTS[1]))
    assert run.state() is CallState.BRIDGED


def test_attempt_after_a_declined_one_keeps_its_own_outcome() -> None:
    # The declined target's answer must not make the next attempt's channel
    # look like the loser of a simultaneous ring.
    run = ringing_b(make_plan(first_attempt=Attempt((AGENTS[0],), 30), confirm_key="1"))
    run.send(LegAnswered(at=B_ANSWERED, leg=Leg.B, channel=""),
             AnswerDeclined(at=B_ANSWERED + 5, reason="pressed no key in time"),
             DialFinished(at=B_ANSWERED + 5.1, outcome=DialOutcome.ANSWERED),
             chosen(B_ANSWERED + 5.2, AGENTS[1]), LegCreated(at=B_ANSWERED + 5.3, leg=Leg.B, channel="b2"))
    assert run.send(LegHungUp(at=B_ANSWERED + 6, leg=Leg.B, cause=21, channel="b2")) == []
    assert run.call.legs[Leg.B].status is LegStatus.REJECTED
    assert run.send(DialFinished(at=B_ANSWERED + 6.1, outcome=DialOutcome.FAILED)) == [
        ChooseTargets("rejected", {})]


# ---------------------------------------------------------------- routing leg B: running out


def test_route_exhausted_before_any_attempt_with_a_message() -> None:
    run = routing()
    assert run.send(RouteExhausted(at=A_ANSWERED + 0.5, status=CallStatus.BUSY,
                                   reason="every agent of group sales is busy",
                                   message_audio="/w/all-busy")) == [
        PlayMessageThenHangup("/w/all-busy")]
    assert run.state() is CallState.ANNOUNCING
    run.send(MessageFinished(at=A_ANSWERED + 4), LegEnded(at=A_ANSWERED + 4.1, leg=Leg.A, cause=16))
    result = run.result()
    assert (result["status"], result["reason"]) == ("busy", "every agent of group sales is busy")
    assert result["leg_b_status"] == "not-dialed"
    assert result["attempts"] == []
    assert result["whisper_played"] is None
    assert run.of_type(DialLegB) == [] and run.of_type(PlayWhisper) == []
    assert to_states(run) == ["dialing-a", "ringing-a", "routing", "announcing", "ending", "ended"]


def test_route_exhausted_before_any_attempt_without_a_message_hangs_a_up() -> None:
    run = routing()
    assert run.send(RouteExhausted(at=A_ANSWERED + 0.5, status=CallStatus.FAILED,
                                   reason="dial whom: no answer")) == [HangupLegs((Leg.A,))]
    assert run.state() is CallState.ENDING
    run.send(LegEnded(at=A_ANSWERED + 0.6, leg=Leg.A, cause=16))
    result = run.result()
    assert (result["status"], result["reason"]) == ("failed", "dial whom: no answer")
    assert result["leg_b_status"] == "not-dialed"
    assert result["hangup_by"] is None


def test_a_hangs_up_while_leg_b_is_chosen() -> None:
    run = routing()
    run.send(LegHungUp(at=A_ANSWERED + 1, leg=Leg.A, cause=16))
    commands = run.send(LegEnded(at=A_ANSWERED + 1, leg=Leg.A, cause=16))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "leg_a"
    assert result["leg_b_status"] == "not-dialed"
    assert "being chosen" in result["reason"]
    assert run.of_type(DialLegB) == [] and run.of_type(PlayWhisper) == []
    # The router's late answer finds the call over.
    with pytest.raises(InvalidTransition):
        run.send(chosen(A_ANSWERED + 2, AGENTS[0]))
    assert len(run.ended()) == 1


@pytest.mark.parametrize("answer", [
    chosen(A_ANSWERED + 1.5, AGENTS[0]),
    RouteExhausted(at=A_ANSWERED + 1.5, status=CallStatus.BUSY, reason="all busy", message_audio="/w/x"),
], ids=lambda e: type(e).__name__)
def test_the_routes_answer_after_a_hung_up_dials_nobody(answer: Event) -> None:
    # A's hangup is reported, its channel not gone yet, when the router answers.
    run = routing()
    run.send(LegHungUp(at=A_ANSWERED + 1, leg=Leg.A, cause=16))
    assert run.send(answer) == []
    assert run.state() is CallState.ROUTING
    run.send(LegEnded(at=A_ANSWERED + 2, leg=Leg.A, cause=16))
    result = run.result()
    assert (result["status"], result["hangup_by"]) == ("canceled", "leg_a")
    assert result["attempts"] == []
    assert run.of_type(DialLegB) == run.of_type(PlayWhisper) == run.of_type(PlayMessageThenHangup) == []


def test_a_hangs_up_while_the_next_attempt_is_chosen() -> None:
    run = ringing_b()
    run.send(DialFinished(at=T0 + 40, outcome=DialOutcome.BUSY), LegEnded(at=T0 + 40.1, leg=Leg.B, cause=17))
    assert run.state() is CallState.ROUTING
    commands = run.send(LegEnded(at=T0 + 41, leg=Leg.A, cause=16))
    assert len(commands) == 1 and isinstance(commands[0], CallEnded)
    result = run.result()
    assert (result["status"], result["hangup_by"]) == ("canceled", "leg_a")
    assert result["leg_b_status"] == "busy"
    assert [a["outcome"] for a in result["attempts"]] == ["busy"]


def test_hangup_requested_while_leg_b_is_chosen() -> None:
    run = routing()
    assert run.send(HangupRequested(at=A_ANSWERED + 1, reason="api")) == [HangupLegs((Leg.A,))]
    run.send(LegEnded(at=A_ANSWERED + 1.1, leg=Leg.A, cause=16))
    result = run.result()
    assert (result["status"], result["hangup_by"], result["leg_b_status"]) == (
        "canceled", "api", "not-dialed")


# ---------------------------------------------------------------- leg B confirms


CONFIRMED = make_plan(whisper_on_answer=True, confirm_key="1", confirm_timeout=8, hold_music=True)


def confirming(plan: CallPlan = CONFIRMED) -> Run:
    """Leg B answered and hears the whisper; it has not pressed the key yet."""
    run = ringing_a(plan)
    assert plan.first_attempt is not None
    first = plan.first_attempt
    # The whisper is for B on answer: leg A is not whispered to.
    assert run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A)) == [DialLegB(
        first.targets, first.ring_timeout, 60, None, answer_audio="/w/whisper",
        confirm_key=plan.confirm_key, confirm_timeout=8, hold_music=True)]
    run.send(LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"), LegRinging(at=B_RINGING, leg=Leg.B))
    assert run.send(LegAnswered(at=B_ANSWERED, leg=Leg.B, channel="b1")) == []
    assert run.state() is CallState.CONFIRMING
    return run


def test_hold_music_is_asked_for_leg_a() -> None:
    assert new_call(CONFIRMED).call.start() == [OriginateLegA("PJSIP/a", 30, None, hold_music=True)]


def test_confirm_key_pressed_bridges_and_records() -> None:
    run = confirming()
    assert run.call.bridged_at is None
    assert run.of_type(StartRecording) == []
    accepted = B_ANSWERED + 4
    assert run.send(AnswerAccepted(at=accepted)) == [StartRecording("/r/c1.wav")]
    assert run.state() is CallState.BRIDGED
    assert run.call.bridged_at == accepted
    run.send(LegHungUp(at=accepted + 10, leg=Leg.B, cause=16, channel="b1"),
             LegEnded(at=accepted + 10, leg=Leg.B, cause=16, channel="b1"),
             LegEnded(at=accepted + 10.1, leg=Leg.A, cause=16))
    result = run.result()
    assert (result["status"], result["hangup_by"], result["answered_by"]) == (
        "completed", "leg_b", "PJSIP/b")
    # Talk time starts at the bridge, not when B answered.
    assert result["talk_seconds"] == pytest.approx(10.0)
    assert to_states(run)[-5:] == ["ringing-b", "confirming", "bridged", "ending", "ended"]


def test_whisper_on_answer_alone_also_waits_for_b() -> None:
    run = confirming(replace(CONFIRMED, confirm_key=None))
    assert run.send(AnswerAccepted(at=B_ANSWERED + 3)) == [StartRecording("/r/c1.wav")]


def test_declined_answer_asks_the_route_for_someone_else() -> None:
    run = confirming()
    assert run.send(AnswerDeclined(at=B_ANSWERED + 8, reason="pressed no key in time")) == []
    assert run.state() is CallState.CONFIRMING
    assert run.call.legs[Leg.B].status is LegStatus.DECLINED
    # The switch hangs B up and ends the dial.
    run.send(LegHungUp(at=B_ANSWERED + 8.1, leg=Leg.B, cause=16, channel="b1"),
             LegEnded(at=B_ANSWERED + 8.1, leg=Leg.B, cause=16, channel="b1"))
    assert run.send(DialFinished(at=B_ANSWERED + 8.2, outcome=DialOutcome.ANSWERED)) == [
        ChooseTargets("declined", {})]
    assert run.state() is CallState.ROUTING
    assert run.call.hangup_by is None
    assert run.call.attempts[0]["declined"] == "pressed no key in time"
    assert run.call.attempts[0]["outcome"] == "declined"
    run.send(not_reached(B_ANSWERED + 8.3, CallStatus.NO_ANSWER),
             LegEnded(at=B_ANSWERED + 12, leg=Leg.A, cause=16))
    result = run.result()
    assert (result["status"], result["leg_b_status"], result["hangup_by"]) == (
        "no-answer", "declined", None)
    assert result["talk_seconds"] == 0.0
    assert run.of_type(StartRecording) == []


def test_b_hanging_up_before_confirming_is_a_decline() -> None:
    run = confirming()
    assert run.send(LegHungUp(at=B_ANSWERED + 2, leg=Leg.B, cause=16, channel="b1"),
                    LegEnded(at=B_ANSWERED + 2, leg=Leg.B, cause=16, channel="b1")) == []
    assert run.state() is CallState.CONFIRMING
    assert run.send(DialFinished(at=B_ANSWERED + 2.1, outcome=DialOutcome.ANSWERED)) == [
        ChooseTargets("declined", {})]
    assert run.call.attempts[0]["declined"] == "hung up before accepting"
    assert run.call.hangup_by is None


def test_declined_bs_late_hangup_does_not_count_as_b_ending_the_call() -> None:
    # The declined channel's hangup arrives while the next target is chosen;
    # the next target answers and leg A ends the conversation.
    run = confirming(replace(CONFIRMED, first_attempt=Attempt((AGENTS[0],), 30)))
    run.send(AnswerDeclined(at=B_ANSWERED + 8, reason="pressed 2, not the confirm key"),
             DialFinished(at=B_ANSWERED + 8.1, outcome=DialOutcome.ANSWERED),
             LegHungUp(at=B_ANSWERED + 8.2, leg=Leg.B, cause=16, channel="b1"),
             LegEnded(at=B_ANSWERED + 8.2, leg=Leg.B, cause=16, channel="b1"),
             chosen(B_ANSWERED + 8.3, AGENTS[1]),
             LegCreated(at=B_ANSWERED + 8.4, leg=Leg.B, channel="b2"),
             LegAnswered(at=B_ANSWERED + 10, leg=Leg.B, channel="b2", target=AGENTS[1]),
             AnswerAccepted(at=B_ANSWERED + 12),
             LegHungUp(at=B_ANSWERED + 30, leg=Leg.A, cause=16),
             LegEnded(at=B_ANSWERED + 30, leg=Leg.A, cause=16),
             LegEnded(at=B_ANSWERED + 30.1, leg=Leg.B, cause=16, channel="b2"))
    result = run.result()
    assert (result["status"], result["hangup_by"], result["answered_by"]) == (
        "completed", "leg_a", AGENTS[1])
    assert [(a["outcome"], a.get("declined")) for a in result["attempts"]] == [
        ("declined", "pressed 2, not the confirm key"), ("answered", None)]


def test_a_hangs_up_while_b_confirms() -> None:
    run = confirming()
    assert run.send(LegEnded(at=B_ANSWERED + 1, leg=Leg.A, cause=16)) == [HangupLegs((Leg.B,))]
    run.send(LegEnded(at=B_ANSWERED + 1.1, leg=Leg.B, cause=16, channel="b1"))
    result = run.result()
    assert (result["status"], result["hangup_by"]) == ("canceled", "leg_a")
    assert result["attempts"][0]["outcome"] == "canceled"
    assert run.of_type(StartRecording) == []


# ---------------------------------------------------------------- routing leg B: snapshots and misuse


def restored(run: Run) -> Run:
    """The call as a restarted daemon picks it up from its stored snapshot."""
    stored = json.loads(json.dumps(run.call.snapshot()))
    call = CallConnect.from_snapshot(stored)
    assert json.loads(json.dumps(call.snapshot())) == stored
    return Run(call, list(run.commands))


def test_snapshot_while_routing_carries_on() -> None:
    run = routing()
    run.send(chosen(A_ANSWERED + 0.3, AGENTS[0], state={"tried": [AGENTS[0]], "count": 1}),
             WhisperFinished(at=WHISPER_DONE, played=True),
             LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"),
             LegHungUp(at=B_CREATED + 1, leg=Leg.B, cause=17, channel="b1"),
             DialFinished(at=B_CREATED + 1.1, outcome=DialOutcome.BUSY))
    assert run.state() is CallState.ROUTING

    again = restored(run)
    assert again.state() is CallState.ROUTING
    assert again.call.plan == run.call.plan
    assert again.call.route_state == {"tried": [AGENTS[0]], "count": 1}
    assert again.call.attempts == run.call.attempts
    # The first attempt's channel ends after the restart, then the route goes on.
    assert again.send(LegEnded(at=B_CREATED + 1.2, leg=Leg.B, cause=17, channel="b1")) == []
    assert again.send(chosen(B_CREATED + 1.5, AGENTS[1])) == [dial(AGENTS[1])]
    again.send(LegCreated(at=B_CREATED + 1.6, leg=Leg.B, channel="b2"),
               LegAnswered(at=B_CREATED + 4, leg=Leg.B, channel="b2", target=AGENTS[1]),
               LegEnded(at=B_CREATED + 20, leg=Leg.B, cause=16, channel="b2"),
               LegEnded(at=B_CREATED + 20.1, leg=Leg.A, cause=16))
    result = again.result()
    assert result["answered_by"] == AGENTS[1]
    assert [a["outcome"] for a in result["attempts"]] == ["busy", "answered"]
    assert result["whisper_played"] is True


def test_snapshot_while_confirming_carries_on() -> None:
    run = confirming(replace(CONFIRMED, first_attempt=Attempt(AGENTS, 25, "group:sales")))
    again = restored(run)
    assert again.state() is CallState.CONFIRMING
    assert again.call.plan.first_attempt == Attempt(AGENTS, 25, "group:sales")
    assert again.call.b_channel == "b1"
    assert again.send(AnswerAccepted(at=B_ANSWERED + 3)) == [StartRecording("/r/c1.wav")]
    again.send(LegEnded(at=B_ANSWERED + 9, leg=Leg.B, cause=16, channel="b1"),
               LegEnded(at=B_ANSWERED + 9.1, leg=Leg.A, cause=16))
    result = again.result()
    assert result["status"] == "completed"
    assert result["talk_seconds"] == pytest.approx(6.0)


def _bridged_run() -> Run:
    return bridged()


@pytest.mark.parametrize(("setup", "event", "name"), [
    (_bridged_run, chosen(T0 + 20, AGENTS[0]), "TargetsChosen"),
    (_bridged_run, RouteExhausted(at=T0 + 20, status=CallStatus.BUSY, reason="x"), "RouteExhausted"),
    (ringing_b, chosen(T0 + 20, AGENTS[0]), "TargetsChosen"),
    (whispering, RouteExhausted(at=T0 + 20, status=CallStatus.BUSY, reason="x"), "RouteExhausted"),
    (ringing_b, AnswerAccepted(at=T0 + 20), "AnswerAccepted"),
    (_bridged_run, AnswerAccepted(at=T0 + 20), "AnswerAccepted"),
    (routing, AnswerDeclined(at=T0 + 20, reason="x"), "AnswerDeclined"),
    (routing, LegAnswered(at=T0 + 20, leg=Leg.B), "LegAnswered(b)"),
    (whispering, LegAnswered(at=T0 + 20, leg=Leg.B), "LegAnswered(b)"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_routing_events_in_the_wrong_state_are_invalid(setup: Any, event: Event, name: str) -> None:
    run = setup()
    state, timeline = run.state(), list(run.call.timeline)
    with pytest.raises(InvalidTransition) as info:
        run.send(event)
    assert info.value.details == {"state": str(state), "event": name}
    assert run.state() is state
    assert run.call.timeline == timeline


def test_winner_hanging_up_before_a_losers_channel_is_gone_ends_the_call() -> None:
    run = routing(make_plan(first_attempt=None, whisper_audio=None, recording_file=None))
    run.send(chosen(A_ANSWERED + 0.3, *AGENTS[:2]),
             LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"),
             LegCreated(at=B_CREATED, leg=Leg.B, channel="b2"),
             LegAnswered(at=B_ANSWERED, leg=Leg.B, channel="b2", target=AGENTS[1]))
    # b1, cancelled by the switch, is slow to go; B hangs up meanwhile.
    run.send(LegHungUp(at=B_ANSWERED + 2, leg=Leg.B, cause=16, channel="b2"))
    assert run.send(LegEnded(at=B_ANSWERED + 2, leg=Leg.B, cause=16, channel="b2")) == [
        HangupLegs((Leg.A,))]
    assert run.state() is CallState.ENDING
    run.send(LegEnded(at=B_ANSWERED + 2.1, leg=Leg.A, cause=16))
    assert run.ended() == []  # b1 may still be up
    run.send(LegEnded(at=B_ANSWERED + 2.2, leg=Leg.B, cause=26, channel="b1"))
    result = run.result()
    assert (result["status"], result["hangup_by"], result["answered_by"]) == (
        "completed", "leg_b", AGENTS[1])
    assert result["talk_seconds"] == pytest.approx(2.0)
    assert result["leg_b"]["hangup_cause"] == 16
