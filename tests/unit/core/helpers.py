"""What the core tests share: the standard plan, the timestamps, a driver
that feeds a CallConnect events and keeps its commands, and the calls
driven to each state."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from controller.core.commands import (
    CallEnded,
    ChooseTargets,
    Command,
    DialLegB,
    PlayWhisper,
)
from controller.core.events import (
    Event,
    LegAnswered,
    LegCreated,
    LegRinging,
    RecordingStarted,
    RouteExhausted,
    TargetsChosen,
    WhisperFinished,
)
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus, Leg
from controller.core.plan import Attempt, CallPlan
from controller.core.states import CallState

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
RECORDING_FILE = "/r/c1.wav"  # the plan's: every dial of leg B carries it

PLAN = CallPlan(
    call_id="c1",
    leg_a="PJSIP/a",
    leg_b="PJSIP/b",
    ring_timeout=30,
    time_limit=60,
    whisper_audio="/w/whisper",
    recording_file=RECORDING_FILE,
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


WHISPER_THEN_B = PlayWhisper("/w/whisper", DialLegB(("PJSIP/b",), 30, 60, None,
                                                     record_file=RECORDING_FILE))


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
    return DialLegB(targets, ring_timeout, 60, None, record_file=RECORDING_FILE)


CONFIRMED = make_plan(whisper_on_answer=True, confirm_key="1", confirm_timeout=8, hold_music=True)


def confirming(plan: CallPlan = CONFIRMED) -> Run:
    """Leg B answered and hears the whisper; it has not pressed the key yet."""
    run = ringing_a(plan)
    assert plan.first_attempt is not None
    first = plan.first_attempt
    # The whisper is for B on answer: leg A is not whispered to.
    assert run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A)) == [DialLegB(
        first.targets, first.ring_timeout, 60, None, answer_audio="/w/whisper",
        confirm_key=plan.confirm_key, confirm_timeout=8, hold_music=True,
        record_file=plan.recording_file)]
    run.send(LegCreated(at=B_CREATED, leg=Leg.B, channel="b1"), LegRinging(at=B_RINGING, leg=Leg.B))
    assert run.send(LegAnswered(at=B_ANSWERED, leg=Leg.B, channel="b1")) == []
    assert run.state() is CallState.CONFIRMING
    return run
