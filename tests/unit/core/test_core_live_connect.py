"""A connect action on a live call: leg B's two-leg machinery, then the queue goes on or the call ends."""

from __future__ import annotations

from controller.core.commands import (
    CallEnded,
    ChooseTargets,
    DialLegB,
    HangupLegs,
    PlayToLegA,
    StartRecording,
    WaitForActions,
)
from controller.core.events import (
    AnswerAccepted,
    CommandFailed,
    DialFinished,
    IdleTimedOut,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    PlayFinished,
    RouteExhausted,
)
from controller.core.outcomes import CallStatus, DialOutcome, Leg, LegStatus
from controller.core.plan import Attempt
from controller.core.states import CallState
from tests.unit.core.helpers import T0, chosen
from tests.unit.core.live_helpers import (
    AGENT,
    CALLER,
    LiveRun,
    connect,
    connect_plan,
    inbound_ringing,
    outbound_started,
    play,
    steps,
)

AGENT_2 = "+27115550302"
# The connect of a group: the router chooses whom to ring.
GROUP = connect_plan(leg_b="group:sales", first_attempt=None, whisper_audio=None, recording_file=None)


def ringing_agent() -> LiveRun:
    """An inbound caller, not answered, while the agent's phone rings."""
    run = inbound_ringing()
    [dial] = steps(run.queue(T0 + 1, connect("k1"), play("p1"), source="number"))
    # The whisper is for the agent, on answer: never for the caller.
    assert dial == DialLegB((AGENT,), 20, 600, CALLER, answer_audio="/tts/whisper",
                            record_file="/r/c1.wav")
    assert run.state() is CallState.DIALING_B
    assert run.live.running_action == connect("k1")
    run.send(LegCreated(at=T0 + 1.1, leg=Leg.B, channel="chan-b"), LegRinging(at=T0 + 1.2, leg=Leg.B))
    assert run.state() is CallState.RINGING_B
    return run


def test_an_inbound_call_connected_to_an_agent_ends_with_the_bridge() -> None:
    run = ringing_agent()
    assert run.send(LegAnswered(at=T0 + 5, leg=Leg.B, channel="chan-b")) == []
    assert run.state() is CallState.CONFIRMING  # the agent hears the whisper
    assert run.send(AnswerAccepted(at=T0 + 8)) == [StartRecording("/r/c1.wav")]
    assert run.state() is CallState.BRIDGED
    # The switch answers the caller at the bridge.
    assert run.send(LegAnswered(at=T0 + 8, leg=Leg.A, channel="chan-a")) == []
    assert run.call.legs[Leg.A].status is LegStatus.ANSWERED

    run.send(LegHungUp(at=T0 + 60, leg=Leg.B, cause=16, channel="chan-b"))
    assert steps(run.send(LegEnded(at=T0 + 60, leg=Leg.B, cause=16, channel="chan-b"))) == [
        HangupLegs((Leg.A,))]
    [*_, ended] = run.send(LegEnded(at=T0 + 60.1, leg=Leg.A, cause=16, channel="chan-a"))
    assert isinstance(ended, CallEnded)
    result = run.result()
    assert (result["status"], result["hangup_by"], result["answered_by"]) == ("completed", "leg_b", AGENT)
    assert result["talk_seconds"] == 52.0
    k1, p1 = result["actions"]
    assert (k1["status"], k1["outcome"]) == ("completed", "bridged")
    assert [(a["targets"], a["outcome"]) for a in k1["attempts"]] == [([AGENT], "answered")]
    assert result["attempts"] == k1["attempts"]
    assert p1["status"] == "dropped"


def test_a_connect_that_reaches_nobody_tells_the_caller_and_the_queue_goes_on() -> None:
    run = inbound_ringing()
    assert steps(run.queue(T0 + 1, connect("k1", GROUP), play("p1"))) == [ChooseTargets(None, {})]
    assert run.state() is CallState.ROUTING
    assert run.live.running_action == connect("k1", GROUP)
    assert steps(run.send(chosen(T0 + 2, AGENT, state={"next": 1}))) == [
        DialLegB((AGENT,), 20, 600, CALLER)]
    run.send(LegCreated(at=T0 + 2.1, leg=Leg.B, channel="b1"),
             LegEnded(at=T0 + 22, leg=Leg.B, cause=19, channel="b1"))
    assert steps(run.send(DialFinished(at=T0 + 22, outcome=DialOutcome.NO_ANSWER))) == [
        ChooseTargets("no-answer", {"next": 1})]
    sorry = RouteExhausted(at=T0 + 23, status=CallStatus.NO_ANSWER, reason="nobody in sales answered",
                           message_audio="/tts/sorry")
    assert steps(run.send(sorry)) == [PlayToLegA("k1", ("/tts/sorry",))]
    assert run.state() is CallState.PLAYING
    assert steps(run.send(PlayFinished(at=T0 + 26, action_id="k1", played=True))) == [
        PlayToLegA("p1", ("/tts/p1",), 1)]
    k1 = run.record_of("k1")
    assert (k1["status"], k1["outcome"]) == ("completed", "no-answer")
    assert k1["reason"] == "nobody in sales answered"
    assert [a["outcome"] for a in k1["attempts"]] == ["no-answer"]
    assert run.call.status is None  # the call goes on
    [report] = [r for r in run.reports("call.action.completed") if r["id"] == "k1"]
    assert report["attempts"] == k1["attempts"]


def test_a_connect_with_nobody_to_ring_and_no_message_goes_straight_on() -> None:
    run = inbound_ringing()
    run.queue(T0 + 1, connect("k1", GROUP))
    commands = run.send(RouteExhausted(at=T0 + 2, status=CallStatus.FAILED, reason="group sales is empty"))
    assert steps(commands) == [WaitForActions(30, ringback=True)]
    assert run.call.legs[Leg.B].status is LegStatus.NOT_DIALED
    assert run.record_of("k1")["attempts"] == []
    # A second connect finds an agent: its record has its own attempts only.
    run.queue(T0 + 3, connect("k2", connect_plan(leg_b=AGENT_2, first_attempt=Attempt((AGENT_2,), 20))))
    assert run.state() is CallState.DIALING_B
    run.send(LegCreated(at=T0 + 3.1, leg=Leg.B, channel="b2"),
             LegEnded(at=T0 + 9, leg=Leg.B, cause=17, channel="b2"),
             DialFinished(at=T0 + 9, outcome=DialOutcome.BUSY),
             RouteExhausted(at=T0 + 9.5, status=CallStatus.BUSY, reason="busy"))
    assert [a["targets"] for a in run.record_of("k2")["attempts"]] == [[AGENT_2]]
    run.send(IdleTimedOut(at=T0 + 40), LegEnded(at=T0 + 40, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    # Never answered: nobody was reached, and the caller was turned away.
    assert (result["status"], result["leg_b_status"]) == ("canceled", "busy")


def test_the_caller_hangs_up_while_the_agent_rings() -> None:
    run = ringing_agent()
    run.send(LegHungUp(at=T0 + 4, leg=Leg.A, cause=16, channel="chan-a"))
    assert steps(run.send(LegEnded(at=T0 + 4, leg=Leg.A, cause=16, channel="chan-a"))) == [
        HangupLegs((Leg.B,))]
    assert run.state() is CallState.ENDING
    run.send(DialFinished(at=T0 + 4.1, outcome=DialOutcome.CANCELED),
             LegEnded(at=T0 + 4.1, leg=Leg.B, cause=0, channel="chan-b"))
    result = run.result()
    assert (result["status"], result["hangup_by"]) == ("canceled", "leg_a")
    assert (result["leg_a_status"], result["leg_b_status"]) == ("canceled", "canceled")
    k1 = result["actions"][0]
    assert k1["status"] == "canceled"
    assert [a["outcome"] for a in k1["attempts"]] == ["canceled"]


def test_a_dial_the_switch_refuses_fails_the_connect_and_ends_the_call() -> None:
    run = outbound_started()
    run.queue(T0 + 0.5, connect("k1"))
    run.send(LegAnswered(at=T0 + 2, leg=Leg.A, channel="chan-a"))
    assert run.state() is CallState.DIALING_B
    assert steps(run.send(CommandFailed(at=T0 + 2.1, command="DialLegB", reason="no route"))) == [
        HangupLegs((Leg.A,))]
    run.send(LegEnded(at=T0 + 2.2, leg=Leg.A, cause=16, channel="chan-a"))
    result = run.result()
    # Leg A was answered: the call completed, whatever its connect did.
    assert result["status"] == "completed"
    assert (result["actions"][0]["status"], result["actions"][0]["reason"]) == (
        "failed", "DialLegB failed: no route")
