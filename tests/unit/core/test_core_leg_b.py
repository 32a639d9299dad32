"""Leg B not reached, leg A gone while B rings, and the endings of a bridged call."""

from __future__ import annotations

import pytest

from controller.core.commands import (
    CallEnded,
    ChooseTargets,
    HangupLegs,
    PlayMessageThenHangup,
)
from controller.core.events import (
    DialFinished,
    LegEnded,
    LegHungUp,
    MessageFinished,
)
from controller.core.outcomes import CallStatus, DialOutcome, Leg, LegStatus
from controller.core.states import CallState
from tests.unit.core.helpers import (
    A_ANSWERED,
    B_ANSWERED,
    B_RINGING,
    T0,
    bridged,
    dialing_b,
    not_reached,
    ringing_b,
    to_states,
)

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
