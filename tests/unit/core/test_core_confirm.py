"""Leg B confirms: the whisper on answer and the confirm key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.commands import (
    ChooseTargets,
    HangupLegs,
    OriginateLegA,
    StartRecording,
)
from controller.core.events import (
    AnswerAccepted,
    AnswerDeclined,
    DialFinished,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
)
from controller.core.outcomes import CallStatus, DialOutcome, Leg, LegStatus
from controller.core.plan import Attempt
from controller.core.states import CallState
from tests.unit.core.helpers import (
    AGENTS,
    B_ANSWERED,
    CONFIRMED,
    chosen,
    confirming,
    new_call,
    not_reached,
    to_states,
)

# ---------------------------------------------------------------- leg B confirms



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
