"""A live call's snapshot: restored mid-gather, idle or mid-connect, it goes on as if never stored."""

from __future__ import annotations

import json

import pytest

from controller.core.commands import CallEnded, DialLegB, GatherDigits, HangupLegs, PlayToLegA
from controller.core.events import (
    DigitPressed,
    DigitsGathered,
    EndedWhileAway,
    FoundBetweenSteps,
    IdleTimedOut,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegRinging,
    PlayFinished,
)
from controller.core.live import LiveCall, core_from_snapshot, try_on_channel
from controller.core.machine import CallConnect
from controller.core.outcomes import Leg
from controller.core.states import CallState
from tests.unit.core.helpers import T0, bridged
from tests.unit.core.live_helpers import (
    AGENT,
    CALLER,
    NUMBER,
    LiveRun,
    connect,
    gather,
    hangup,
    inbound_answered,
    inbound_ringing,
    play,
    steps,
)


def restored(run: LiveRun) -> LiveRun:
    """The call as a restarted daemon picks it up from its stored snapshot."""
    stored = json.loads(json.dumps(run.call.snapshot()))
    call = core_from_snapshot(stored)
    assert isinstance(call, LiveCall)
    assert json.loads(json.dumps(call.snapshot())) == stored
    return LiveRun(call)


def test_core_from_snapshot_restores_either_flow() -> None:
    two_leg = bridged()
    assert type(core_from_snapshot(two_leg.call.snapshot())) is CallConnect
    live = inbound_ringing()
    call = core_from_snapshot(live.call.snapshot())
    assert type(call) is LiveCall
    assert call.result() == live.call.result()


def test_a_call_restored_mid_gather_keeps_the_digits_so_far() -> None:
    run = inbound_answered(gather("g1", max_digits=3, action_url=None), play("p2"))
    run.send(DigitPressed(at=T0 + 5, action_id="g1", digit="7"))
    again = restored(run)
    assert again.state() is CallState.GATHERING
    assert again.live.running_action == gather("g1", max_digits=3)
    assert again.record_of("g1")["digits"] == "7"
    # The switch's gather went on meanwhile, and reports its end.
    again.send(DigitPressed(at=T0 + 6, action_id="g1", digit="8"))
    commands = again.send(DigitsGathered(at=T0 + 7, action_id="g1", digits="78", ended_by="finish-key"))
    assert steps(commands) == [PlayToLegA("p2", ("/tts/p2",), 1)]
    [gathered] = again.reports("call.gathered")
    assert (gathered["digits"], gathered["from"], gathered["to"]) == ("78", CALLER, NUMBER)


def test_a_call_restored_mid_gather_that_ended_meanwhile_keeps_the_digits_so_far() -> None:
    run = inbound_answered(gather("g1", max_digits=3))
    run.send(DigitPressed(at=T0 + 5, action_id="g1", digit="7"))
    again = restored(run)
    [*_, ended] = again.send(EndedWhileAway(at=T0 + 9, a_cause=16, a_answered=True, b_outcome=None,
                                            talk_seconds=None))
    assert isinstance(ended, CallEnded)
    result = again.result()
    assert (result["status"], result["digits"]) == ("completed", "7")
    assert result["reason"] == "ended while the controller was away from the switch"
    assert (result["actions"][0]["status"], result["actions"][0]["digits"]) == ("canceled", "7")


def test_a_call_restored_mid_gather_learns_its_answer_once() -> None:
    """Gone just after the gather started: the restarted controller learns
    from the switch that the caller was answered; told again, the first
    answer stands."""
    run = inbound_ringing()
    run.queue(T0 + 0.5, gather("g1", max_digits=3), source="number")
    again = restored(run)
    assert again.state() is CallState.GATHERING and again.live.legs[Leg.A].answered_at is None
    again.send(LegAnswered(at=T0 + 4, leg=Leg.A, channel="chan-a"))
    again.send(LegAnswered(at=T0 + 6, leg=Leg.A, channel="chan-a"))
    again.send(DigitsGathered(at=T0 + 8, action_id="g1", digits="123", ended_by="max-digits"),
               IdleTimedOut(at=T0 + 38), LegEnded(at=T0 + 38, leg=Leg.A, cause=16, channel="chan-a"))
    result = again.result()
    assert (result["status"], result["digits"]) == ("completed", "123")
    assert result["leg_a_answered_at"] == T0 + 4


def test_a_step_chosen_but_never_started_is_sent_again() -> None:
    """Gone after the gather was stored as running, before the switch took
    it up: the restarted controller finds the caller waiting between steps
    with no end of the gather (none at all, or the previous step's), and
    sends the gather again; its digits count once it ends."""
    for last_end in (None, PlayFinished(at=T0 + 2, action_id="p0", played=True)):
        run = inbound_ringing()
        gather_sent = GatherDigits("g1", "/tts/g1", max_digits=3, finish_on_key="#", timeout=5,
                                   inter_digit_timeout=3)
        assert steps(run.queue(T0 + 0.5, gather("g1", max_digits=3), hangup("h1"),
                               source="number")) == [gather_sent]
        again = restored(run)
        assert steps(again.send(FoundBetweenSteps(at=T0 + 3, last_end=last_end))) == [gather_sent]
        assert again.state() is CallState.GATHERING and again.record_of("g1")["tries"] == 1
        again.send(LegAnswered(at=T0 + 3.1, leg=Leg.A, channel="chan-a"))
        assert steps(again.send(DigitsGathered(at=T0 + 9, action_id="g1", digits="123",
                                               ended_by="max-digits"))) == [HangupLegs((Leg.A,))]
        again.send(LegEnded(at=T0 + 9.1, leg=Leg.A, cause=16, channel="chan-a"))
        result = again.result()
        assert (result["status"], result["digits"]) == ("completed", "123")
        assert [(a["id"], a["status"]) for a in result["actions"]] == [
            ("g1", "completed"), ("h1", "completed")]


def test_a_step_that_ended_while_away_is_taken_from_its_end_as_found() -> None:
    run = inbound_answered(gather("g1", max_digits=3), play("p2"))
    again = restored(run)
    commands = again.send(FoundBetweenSteps(at=T0 + 9, last_end=DigitsGathered(
        at=T0 + 9, action_id="g1", digits="42", ended_by="timeout")))
    assert steps(commands) == [PlayToLegA("p2", ("/tts/p2",), 1)]
    assert again.record_of("g1")["digits"] == "42"
    [gathered] = again.reports("call.gathered")
    assert (gathered["digits"], gathered["ended_by"]) == ("42", "timeout")
    # Found between steps again (the link lost once more) with only the
    # gather's end: the play never started, and is sent again.
    assert again.state() is CallState.PLAYING
    assert steps(again.send(FoundBetweenSteps(at=T0 + 10, last_end=DigitsGathered(
        at=T0 + 10, action_id="g1", digits="42", ended_by="timeout")))) == [
        PlayToLegA("p2", ("/tts/p2",), 1)]


def _retry_stored() -> tuple[LiveRun, GatherDigits]:
    """A gather with one retry whose try 1 ended with nothing valid: try 2
    is stored, and its command returned (not yet sent) when the daemon stops."""
    run = inbound_answered(gather("g1", retries=1, valid_digits="12"), play("p2"))
    [retry] = steps(run.send(DigitsGathered(at=T0 + 5, action_id="g1", digits="9",
                                            ended_by="max-digits")))
    assert isinstance(retry, GatherDigits) and retry.try_number == 2
    return run, retry


def test_a_gather_retry_stored_but_never_sent_is_sent_again() -> None:
    """The switch still shows try 1's end: it is not taken as try 2's (one
    more failed try, or no-input), the retry is sent again, as try 2."""
    run, retry = _retry_stored()
    again = restored(run)
    try_1_end = DigitsGathered(at=T0 + 5, action_id="g1", digits="9", ended_by="max-digits")
    assert steps(again.send(FoundBetweenSteps(at=T0 + 8, last_end=try_1_end, end_try=1))) == [retry]
    g1 = again.record_of("g1")
    assert (again.state(), g1["status"], g1["tries"], g1["digits"]) == (
        CallState.GATHERING, "running", 2, "")
    assert again.reports("call.gathered") == []
    # Try 2 runs, and its keys are the gather's.
    assert steps(again.send(DigitsGathered(at=T0 + 11, action_id="g1", digits="2",
                                           ended_by="max-digits"))) == [PlayToLegA("p2", ("/tts/p2",), 1)]
    [gathered] = again.reports("call.gathered")
    assert (gathered["digits"], gathered["valid"], gathered["tries"]) == ("2", True, 2)


def test_a_gather_retry_that_ended_while_away_is_taken_as_its_end() -> None:
    """Try 2 reached the switch and ended: its end, found, is try 2's."""
    for digits, outcome, valid in (("1", "gathered", True), ("", "no-input", False)):
        run, _ = _retry_stored()
        again = restored(run)
        try_2_end = DigitsGathered(at=T0 + 9, action_id="g1", digits=digits, ended_by="timeout")
        commands = again.send(FoundBetweenSteps(at=T0 + 10, last_end=try_2_end, end_try=2))
        assert steps(commands) == [PlayToLegA("p2", ("/tts/p2",), 1)]
        g1 = again.record_of("g1")
        assert (g1["status"], g1["outcome"], g1["tries"]) == ("completed", outcome, 2)
        [gathered] = again.reports("call.gathered")
        assert (gathered["digits"], gathered["valid"], gathered["tries"]) == (digits, valid, 2)


def test_a_call_restored_while_idle_times_out() -> None:
    run = inbound_answered(play("p1"))
    run.send(PlayFinished(at=T0 + 3, action_id="p1", played=True))
    again = restored(run)
    assert again.state() is CallState.IDLE
    again.send(IdleTimedOut(at=T0 + 33), LegEnded(at=T0 + 33, leg=Leg.A, cause=16, channel="chan-a"))
    result = again.result()
    assert (result["status"], result["reason"]) == ("completed", "idle timeout")
    assert len(again.ended()) == 1


def test_a_call_restored_mid_connect_still_has_its_queue() -> None:
    run = inbound_ringing()
    run.queue(T0 + 1, connect("k1"), play("p1"))
    run.send(LegCreated(at=T0 + 1.1, leg=Leg.B, channel="chan-b"), LegRinging(at=T0 + 1.2, leg=Leg.B))
    again = restored(run)
    assert again.state() is CallState.RINGING_B
    assert again.live.running_action == connect("k1")
    assert again.live.plan.leg_b == AGENT and again.live.plan.whisper_on_answer
    assert isinstance(run.commands[0], DialLegB)
    again.send(LegAnswered(at=T0 + 4, leg=Leg.B, channel="chan-b"))
    assert again.state() is CallState.CONFIRMING
    assert [r["status"] for r in again.live.actions] == ["running", "queued"]


@pytest.mark.parametrize(("on_channel", "try_number"), [
    ("2", 2), ("99", 99), (None, 1), ("", 1), ("0", 1), ("100", 1), ("-2", 1), ("٣", 1), ("2 ", 1)])
def test_a_try_is_read_from_the_channel_as_the_controller_left_it(
        on_channel: str | None, try_number: int) -> None:
    assert try_on_channel(on_channel) == try_number
