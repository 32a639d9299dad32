"""A live call's queue: play, gather, pause, record, hangup, idle, and actions queued while it runs."""

from __future__ import annotations

from dataclasses import replace

from controller.core.commands import (
    CallEnded,
    FetchActions,
    GatherDigits,
    HangupLegs,
    OriginateLegA,
    PauseLegA,
    PlayToLegA,
    RecordLegA,
    Report,
    WaitForActions,
)
from controller.core.events import (
    ActionsFetchFailed,
    CommandFailed,
    DigitPressed,
    DigitsGathered,
    HangupRequested,
    IdleTimedOut,
    LegAnswered,
    LegEnded,
    LegHungUp,
    OriginateFailed,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
    SwitchLost,
)
from controller.core.outcomes import Leg
from controller.core.states import CallState
from tests.unit.core.helpers import T0
from tests.unit.core.live_helpers import (
    CALLER,
    CUSTOMER,
    NUMBER,
    OUTBOUND_PLAN,
    gather,
    hangup,
    inbound_answered,
    inbound_ringing,
    outbound_started,
    pause,
    play,
    record,
    redirect,
    steps,
)

# ---------------------------------------------------------------- inbound: an IVR


def test_inbound_play_then_gather_then_idle_timeout() -> None:
    run = inbound_ringing()
    assert steps(run.queue(T0 + 1, play("p1"), gather("g1"), source="number")) == [
        PlayToLegA("p1", ("/tts/p1",), 1)]
    assert run.state() is CallState.PLAYING
    assert run.live.running_action == play("p1")
    # The switch answers the caller for the play.
    assert steps(run.send(LegAnswered(at=T0 + 1.1, leg=Leg.A, channel="chan-a"))) == []
    assert run.state() is CallState.PLAYING

    assert run.send(PlayFinished(at=T0 + 4, action_id="p1", played=True))[0] == GatherDigits(
        "g1", "/tts/g1", max_digits=1, finish_on_key="#", timeout=5, inter_digit_timeout=3)
    assert run.state() is CallState.GATHERING
    run.send(DigitPressed(at=T0 + 5, action_id="g1", digit="2"))
    commands = run.send(DigitsGathered(at=T0 + 5, action_id="g1", digits="2", ended_by="max-digits"))
    # Nothing left: the caller, answered, waits in silence.
    assert commands[0] == WaitForActions(30, ringback=False)
    assert run.state() is CallState.IDLE
    assert run.live.running_action is None
    [gathered] = run.reports("call.gathered")
    assert gathered == {"call_uuid": "c1", "direction": "inbound", "from": CALLER, "to": NUMBER,
                        "state": "gathering", "action_id": "g1", "digits": "2",
                        "ended_by": "max-digits", "valid": True, "tries": 1}
    assert [r["id"] for r in run.reports("call.action.completed")] == ["p1", "g1"]

    assert steps(run.send(IdleTimedOut(at=T0 + 35))) == []
    assert run.state() is CallState.ENDING
    [ended] = run.send(LegEnded(at=T0 + 35.1, leg=Leg.A, cause=16, channel="chan-a"))
    assert isinstance(ended, CallEnded)
    result = run.result()
    assert result["status"] == "completed"
    assert result["reason"] == "idle timeout"
    assert (result["direction"], result["from"], result["to"]) == ("inbound", CALLER, NUMBER)
    assert result["digits"] == "2"
    assert result["leg_b_status"] == "not-dialed"
    assert [(a["id"], a["status"], a["outcome"]) for a in result["actions"]] == [
        ("p1", "completed", "played"), ("g1", "completed", "gathered")]
    g1 = result["actions"][1]
    assert (g1["queued_at"], g1["started_at"], g1["ended_at"], g1["source"]) == (
        T0 + 1, T0 + 4, T0 + 5, "number")
    assert (g1["digits"], g1["ended_by"]) == ("2", "max-digits")


def test_an_incoming_url_that_answers_nothing_leaves_the_caller_ringing_until_the_idle_timeout() -> None:
    run = inbound_ringing(idle_timeout=10)
    assert steps(run.queue(T0 + 1, source="incoming_url")) == [WaitForActions(10, ringback=True)]
    assert run.state() is CallState.IDLE
    run.send(IdleTimedOut(at=T0 + 11), LegEnded(at=T0 + 11.1, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    # Never answered: the caller was turned away, not served.
    assert (result["status"], result["reason"]) == ("canceled", "idle timeout")
    assert result["leg_a_status"] == "canceled"
    assert result["actions"] == [] and result["digits"] is None


def test_actions_queued_while_idle_run_at_once() -> None:
    run = inbound_ringing()
    run.queue(T0 + 1, source="incoming_url")
    assert steps(run.queue(T0 + 3, play("p1"))) == [PlayToLegA("p1", ("/tts/p1",), 1)]
    assert run.state() is CallState.PLAYING
    assert run.record_of("p1")["source"] == "api"


def test_an_incoming_url_that_failed_is_recorded_and_its_fallback_runs() -> None:
    run = inbound_ringing()
    assert steps(run.send(ActionsFetchFailed(at=T0 + 5, action_id="", reason="incoming_url timed out"))) == []
    assert run.state() is CallState.RINGING_A
    assert steps(run.queue(T0 + 5, play("f1"), source="fallback")) == [PlayToLegA("f1", ("/tts/f1",), 1)]
    assert run.live.result()["incoming_error"] == "incoming_url timed out"


def test_the_caller_hangs_up_before_any_action() -> None:
    run = inbound_ringing()
    run.send(LegHungUp(at=T0 + 2, leg=Leg.A, cause=16, channel="chan-a"),
             LegEnded(at=T0 + 2, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    assert result["status"] == "canceled"
    assert result["leg_a_status"] == "canceled"
    assert result["hangup_by"] == "leg_a"


# ---------------------------------------------------------------- gather


def test_gather_retries_until_a_valid_key() -> None:
    run = inbound_answered(gather("g1", retries=2, valid_digits="12"))
    first = run.commands[0]
    assert isinstance(first, GatherDigits)
    # 5 is not valid: the prompt is played again.
    retry = run.send(DigitsGathered(at=T0 + 5, action_id="g1", digits="5", ended_by="max-digits"))
    assert retry == [replace(first, try_number=2)]  # the same gather, as its second try
    assert (first.try_number, run.state()) == (1, CallState.GATHERING)
    assert run.record_of("g1")["tries"] == 2
    retry = run.send(DigitsGathered(at=T0 + 9, action_id="g1", digits="", ended_by="timeout"))
    assert retry == [replace(first, try_number=3)]
    run.send(DigitsGathered(at=T0 + 12, action_id="g1", digits="1", ended_by="max-digits"))
    g1 = run.record_of("g1")
    assert (g1["status"], g1["outcome"], g1["digits"], g1["tries"]) == ("completed", "gathered", "1", 3)
    assert len(run.reports("call.gathered")) == 1  # one result, not one per try
    assert run.live.digits == "1"


def test_gather_with_no_input_after_its_retries() -> None:
    run = inbound_answered(gather("g1", retries=1), play("p2"))
    run.send(DigitsGathered(at=T0 + 5, action_id="g1", digits="", ended_by="timeout"))
    commands = run.send(DigitsGathered(at=T0 + 10, action_id="g1", digits="", ended_by="timeout"))
    assert commands[0] == PlayToLegA("p2", ("/tts/p2",), 1)
    g1 = run.record_of("g1")
    assert (g1["status"], g1["outcome"], g1["digits"], g1["ended_by"]) == (
        "completed", "no-input", "", "timeout")
    [gathered] = run.reports("call.gathered")
    assert (gathered["digits"], gathered["valid"], gathered["tries"]) == ("", False, 2)


def test_gather_keeps_wrong_digits_once_its_retries_are_spent() -> None:
    run = inbound_answered(gather("g1", max_digits=2, valid_digits="12"))
    run.send(DigitsGathered(at=T0 + 5, action_id="g1", digits="39", ended_by="max-digits"))
    assert run.record_of("g1")["outcome"] == "invalid"
    assert run.live.digits == "39"


def test_gather_with_an_action_url_asks_it_and_its_answer_replaces_the_queue() -> None:
    run = inbound_answered(gather("g1", action_url="https://app.example/menu"), play("p2"))
    [fetch, *_] = run.send(DigitsGathered(at=T0 + 5, action_id="g1", digits="2", ended_by="max-digits"))
    assert isinstance(fetch, FetchActions)
    assert (fetch.action_id, fetch.url, fetch.kind) == ("g1", "https://app.example/menu", "gather")
    assert fetch.payload["digits"] == "2" and fetch.payload["from"] == CALLER
    assert run.state() is CallState.FETCHING
    assert run.record_of("g1")["status"] == "running"
    # Actions sent over the API meanwhile are not the URL's answer: they queue.
    assert steps(run.queue(T0 + 5.5, play("p3"))) == []
    assert run.state() is CallState.FETCHING

    commands = run.queue(T0 + 6, play("m1"), source="action_url")
    assert commands[0] == PlayToLegA("m1", ("/tts/m1",), 1)
    assert (run.record_of("g1")["status"], run.record_of("g1")["outcome"]) == ("completed", "gathered")
    assert [(run.record_of(i)["status"]) for i in ("p2", "p3")] == ["dropped", "dropped"]


def test_an_action_url_that_fails_fails_the_gather_and_the_queue_goes_on() -> None:
    run = inbound_answered(gather("g1", action_url="https://app.example/menu"), play("p2"))
    run.send(DigitsGathered(at=T0 + 5, action_id="g1", digits="2", ended_by="max-digits"))
    commands = run.send(ActionsFetchFailed(at=T0 + 10, action_id="g1", reason="answered 500"))
    assert commands[0] == PlayToLegA("p2", ("/tts/p2",), 1)
    g1 = run.record_of("g1")
    assert (g1["status"], g1["outcome"], g1["reason"]) == ("failed", "gathered", "answered 500")


def test_the_caller_hangs_up_mid_gather_with_the_digits_so_far() -> None:
    run = inbound_answered(gather("g1", max_digits=4), play("p2"))
    run.send(DigitPressed(at=T0 + 5, action_id="g1", digit="4"),
             DigitPressed(at=T0 + 5.5, action_id="g1", digit="2"),
             LegHungUp(at=T0 + 6, leg=Leg.A, cause=16, channel="chan-a"))
    commands = run.send(LegEnded(at=T0 + 6, leg=Leg.A, cause=16, channel="chan-a"))
    # The gather's report comes before the call's end.
    assert isinstance(commands[-1], CallEnded) and isinstance(commands[-2], Report)
    result = run.result()
    assert (result["status"], result["hangup_by"], result["digits"]) == ("completed", "leg_a", "42")
    g1, p2 = result["actions"]
    assert (g1["status"], g1["digits"], g1["ended_by"]) == ("canceled", "42", "hangup")
    assert p2["status"] == "dropped"


def test_a_late_key_of_another_step_is_ignored() -> None:
    run = inbound_answered(play("p1"))
    assert steps(run.send(DigitPressed(at=T0 + 2, action_id="g0", digit="1"))) == []
    assert steps(run.send(PlayFinished(at=T0 + 2, action_id="p0", played=True))) == []
    assert run.state() is CallState.PLAYING


# ---------------------------------------------------------------- the other steps


def test_pause_record_and_hangup_in_turn() -> None:
    run = inbound_answered(record("r1"), pause("w1", 3), record("r2", "stop"), hangup("h1", "done"))
    assert run.commands[0] == RecordLegA("r1", "/r/r1.wav")
    assert run.state() is CallState.RECORDING_STEP
    started = run.send(RecordingChanged(at=T0 + 2, action_id="r1", recording=True))
    assert steps(started) == [PauseLegA("w1", 3)]
    assert run.state() is CallState.PAUSING
    assert steps(run.send(PauseFinished(at=T0 + 5, action_id="w1"))) == [RecordLegA("r2", None)]
    commands = run.send(RecordingChanged(at=T0 + 5.1, action_id="r2", recording=False))
    assert commands[0] == HangupLegs((Leg.A,))
    assert run.state() is CallState.ENDING
    run.send(LegEnded(at=T0 + 5.2, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    assert (result["status"], result["reason"], result["hangup_by"]) == ("completed", "done", "api")
    assert result["recorded"] is True
    assert [(a["id"], a["outcome"]) for a in result["actions"]] == [
        ("r1", "started"), ("w1", "paused"), ("r2", "stopped"), ("h1", "hung-up")]
    assert result["actions"][0]["file"] == "/r/r1.wav"


def test_a_recording_that_fails_does_not_end_the_call() -> None:
    run = inbound_answered(record("r1"), play("p1"))
    commands = run.send(RecordingChanged(at=T0 + 2, action_id="r1", recording=False, error="no disk"))
    assert commands[0] == PlayToLegA("p1", ("/tts/p1",), 1)
    assert (run.record_of("r1")["status"], run.record_of("r1")["reason"]) == ("failed", "no disk")
    run2 = inbound_answered(record("r1"), play("p1"))
    assert run2.send(CommandFailed(at=T0 + 2, command="RecordLegA", reason="refused"))[0] == PlayToLegA(
        "p1", ("/tts/p1",), 1)


def test_a_step_the_switch_cannot_run_ends_the_call() -> None:
    run = inbound_answered(play("p1"), play("p2"))
    assert steps(run.send(CommandFailed(at=T0 + 2, command="PlayToLegA", reason="no channel"))) == [
        HangupLegs((Leg.A,))]
    run.send(LegEnded(at=T0 + 2.1, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    assert result["status"] == "completed"  # the caller was answered
    assert [(a["status"], a["reason"]) for a in result["actions"]] == [
        ("failed", "PlayToLegA failed: no channel"), ("dropped", "the call ended first")]


def test_a_play_not_played_fails_and_the_queue_goes_on() -> None:
    run = inbound_answered(play("p1"), pause("w1"))
    assert steps(run.send(PlayFinished(at=T0 + 2, action_id="p1", played=False))) == [PauseLegA("w1", 2)]
    assert run.record_of("p1")["status"] == "failed"


def test_redirect_asks_its_url_and_runs_its_answer() -> None:
    run = inbound_answered(redirect("d1"), play("p1"))
    [fetch] = run.commands[:1]
    assert isinstance(fetch, FetchActions) and (fetch.kind, fetch.url) == ("redirect", "https://app.example/next")
    assert run.state() is CallState.FETCHING
    assert steps(run.queue(T0 + 2, pause("w1"), source="redirect", replace=True)) == [PauseLegA("w1", 2)]
    assert (run.record_of("d1")["status"], run.record_of("d1")["outcome"]) == ("completed", "redirected")
    assert run.record_of("p1")["status"] == "dropped"


# ---------------------------------------------------------------- the queue


def test_replace_drops_the_queued_actions_and_lets_the_running_one_finish() -> None:
    run = inbound_answered(play("p1"), play("p2"))
    assert steps(run.queue(T0 + 2, play("p3"), replace=True)) == []
    assert run.record_of("p2")["status"] == "dropped"
    assert run.record_of("p1")["status"] == "running"
    assert run.send(PlayFinished(at=T0 + 3, action_id="p1", played=True))[0] == PlayToLegA(
        "p3", ("/tts/p3",), 1)


def test_actions_queued_while_one_runs_wait_their_turn() -> None:
    run = inbound_answered(play("p1"))
    assert steps(run.queue(T0 + 2, play("p2", loop=3))) == []
    assert run.send(PlayFinished(at=T0 + 3, action_id="p1", played=True))[0] == PlayToLegA(
        "p2", ("/tts/p2",), 3)


def test_hangup_requested_over_the_api_cancels_the_running_action() -> None:
    run = inbound_answered(play("p1"), play("p2"))
    assert steps(run.send(HangupRequested(at=T0 + 2, reason="api"))) == [HangupLegs((Leg.A,))]
    run.send(LegEnded(at=T0 + 2.1, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    assert (result["status"], result["hangup_by"]) == ("completed", "api")
    assert [a["status"] for a in result["actions"]] == ["canceled", "dropped"]


# ---------------------------------------------------------------- outbound: one leg


def test_outbound_runs_its_actions_once_leg_a_answers() -> None:
    run = outbound_started()
    assert run.commands[0] == OriginateLegA(CUSTOMER, 30, NUMBER)
    assert steps(run.queue(T0 + 0.3, gather("g1", prompt="Press 1 to confirm"))) == []
    assert run.state() is CallState.RINGING_A
    commands = run.send(LegAnswered(at=T0 + 3, leg=Leg.A, channel="chan-a"))
    assert isinstance(commands[0], GatherDigits) and commands[0].action_id == "g1"
    run.send(DigitsGathered(at=T0 + 6, action_id="g1", digits="1", ended_by="max-digits"))
    assert run.state() is CallState.IDLE
    run.send(IdleTimedOut(at=T0 + 36), LegEnded(at=T0 + 36, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    assert (result["direction"], result["from"], result["to"]) == ("outbound", NUMBER, CUSTOMER)
    assert (result["status"], result["digits"]) == ("completed", "1")


def test_outbound_not_answered_drops_its_actions() -> None:
    run = outbound_started()
    run.queue(T0 + 0.3, play("p1"))
    run.send(LegEnded(at=T0 + 30, leg=Leg.A, cause=19, channel="chan-a"))
    result = run.result()
    assert (result["status"], result["leg_a_status"]) == ("no-answer", "no-answer")
    assert result["actions"][0]["status"] == "dropped"
    assert run.live.plan == OUTBOUND_PLAN


def test_outbound_that_cannot_be_placed_fails() -> None:
    run = outbound_started()
    run.queue(T0 + 0.3, play("p1"))
    run.send(OriginateFailed(at=T0 + 0.4, reason="no route"),
             LegEnded(at=T0 + 0.5, leg=Leg.A, cause=3, channel="chan-a"))
    result = run.result()
    assert result["status"] == "failed"
    assert result["actions"][0]["status"] == "dropped"


def test_the_switch_lost_while_idle_ends_an_answered_call_completed() -> None:
    run = inbound_answered(play("p1"))
    run.send(PlayFinished(at=T0 + 3, action_id="p1", played=True))
    run.send(SwitchLost(at=T0 + 9, reason="connection lost"))
    result = run.result()
    assert (result["status"], result["reason"]) == ("completed", "switch lost: connection lost")
