"""Snapshots of a call under way, and routing events in the wrong state."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import pytest

from controller.core.commands import (
    HangupLegs,
    PlayWhisper,
    StartRecording,
)
from controller.core.events import (
    AnswerAccepted,
    AnswerDeclined,
    DialFinished,
    Event,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    RouteExhausted,
    WhisperFinished,
)
from controller.core.legs import LegRecord
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus, DialOutcome, Leg, LegStatus
from controller.core.plan import Attempt
from controller.core.states import CallState
from controller.errors import InvalidTransition
from tests.unit.core.helpers import (
    A_ANSWERED,
    AGENTS,
    B_ANSWERED,
    B_CREATED,
    CONFIRMED,
    T0,
    WHISPER_DONE,
    Run,
    bridged,
    chosen,
    confirming,
    dial,
    make_plan,
    ringing_b,
    routing,
    whispering,
)

# ---------------------------------------------------------------- routing leg B: snapshots and misuse


def test_a_restored_call_in_its_whisper_knows_the_dial_that_follows_it() -> None:
    run = whispering()
    [whisper] = [c for c in run.commands if isinstance(c, PlayWhisper)]
    assert restored(run).call.pending_dial() == whisper.then_dial
    assert ringing_b().call.pending_dial() is None


def test_a_channel_reported_again_after_a_restart_is_one_channel() -> None:
    # The FreeSWITCH backend reports the Leg B channels it finds on the switch
    # when it picks a call up again; the stored snapshot knows them already.
    run = restored(ringing_b())
    run.send(LegCreated(at=B_CREATED + 5, leg=Leg.B),
             LegEnded(at=B_CREATED + 6, leg=Leg.B, cause=19, cause_text="NO_ANSWER"),
             DialFinished(at=B_CREATED + 6, outcome=DialOutcome.NO_ANSWER))
    assert not run.call.legs[Leg.B].channel_up
    run.send(RouteExhausted(at=B_CREATED + 7, status=CallStatus.NO_ANSWER, reason="no one left"),
             LegEnded(at=B_CREATED + 9, leg=Leg.A, cause=16))
    assert run.result()["status"] == "no-answer"


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


def test_a_legs_snapshot_holds_every_field_and_is_its_own_copy() -> None:
    record = LegRecord("+27115550202", LegStatus.ANSWERED, ["c1", "c2"], dialed=True,
                       awaiting_channel=True, hung_up=True, answered_at=1.5, ended_at=2.5,
                       cause=16, cause_text="Normal Clearing")
    snapshot = record.snapshot()
    assert snapshot == {**asdict(record), "status": "answered"}
    record.channels.append("c3")  # the call goes on; the snapshot taken stays as it was
    assert snapshot["channels"] == ["c1", "c2"]
    assert LegRecord(**{**snapshot, "status": LegStatus(snapshot["status"])}).channels == ["c1", "c2"]
