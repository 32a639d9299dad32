"""Routing leg B: attempts, and running out of whom to ring."""

from __future__ import annotations

import pytest

from controller.core.commands import (
    CallEnded,
    ChooseTargets,
    DialLegB,
    HangupLegs,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.core.events import (
    AnswerDeclined,
    DialFinished,
    Event,
    HangupRequested,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    MessageFinished,
    RouteExhausted,
    WhisperFinished,
)
from controller.core.outcomes import CallStatus, DialOutcome, Leg, LegStatus
from controller.core.plan import Attempt
from controller.core.states import CallState
from controller.errors import InvalidTransition
from tests.unit.core.helpers import (
    A_ANSWERED,
    AGENTS,
    B_ANSWERED,
    B_CREATED,
    B_RINGING,
    T0,
    WHISPER_DONE,
    chosen,
    dial,
    make_plan,
    ringing_b,
    routing,
    to_states,
)

# ---------------------------------------------------------------- routing leg B: attempts


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
