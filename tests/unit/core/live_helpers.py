"""What the live-call tests share: the plans, the prepared actions of each
type (their specs as the API's validation leaves them, defaults filled), and
live calls driven to a first state, inbound and outbound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.core.commands import Command, Report
from controller.core.events import (
    ActionsQueued,
    LegAnswered,
    LegCreated,
    LegRinging,
)
from controller.core.live import LiveCall
from controller.core.outcomes import Leg
from controller.core.plan import Attempt, CallPlan, PreparedAction
from controller.core.states import CallState
from tests.unit.core.helpers import T0, Run

CALLER = "+27825550123"
NUMBER = "+27115550900"
CUSTOMER = "+27115550101"
AGENT = "+27115550301"

# An inbound call's plan: leg A is the caller, leg B nobody until a connect.
INBOUND_PLAN = CallPlan(call_id="c1", leg_a=CALLER, leg_b="", ring_timeout=30, time_limit=3600)
# A single-leg call's plan: leg A is the customer called.
OUTBOUND_PLAN = CallPlan(call_id="c1", leg_a=CUSTOMER, leg_b="", ring_timeout=30, time_limit=3600,
                         caller_id=NUMBER)

A_CLAIMED = T0 + 0.1
A_ANSWERED = T0 + 1.0


def play(action_id: str, text: str = "Hello", loop: int = 1) -> PreparedAction:
    spec = {"type": "play", "text": text, "file": None, "voice": None, "language": None, "loop": loop}
    return PreparedAction(action_id, "play", spec, audio=(f"/tts/{action_id}",))


def gather(action_id: str, prompt: str | None = "Press 1", **overrides: Any) -> PreparedAction:
    spec = {"type": "gather", "prompt": prompt, "max_digits": 1, "finish_on_key": "#", "timeout": 5,
            "inter_digit_timeout": 3, "retries": 0, "valid_digits": "", "action_url": None, **overrides}
    return PreparedAction(action_id, "gather", spec, audio=(f"/tts/{action_id}",) if prompt else ())


def pause(action_id: str, seconds: int = 2) -> PreparedAction:
    return PreparedAction(action_id, "pause", {"type": "pause", "seconds": seconds})


def hangup(action_id: str, reason: str | None = None) -> PreparedAction:
    return PreparedAction(action_id, "hangup", {"type": "hangup", "reason": reason})


def record(action_id: str, command: str = "start") -> PreparedAction:
    return PreparedAction(action_id, "record", {"type": "record", "command": command},
                          record_file=f"/r/{action_id}.wav" if command == "start" else None)


def redirect(action_id: str, url: str = "https://app.example/next") -> PreparedAction:
    return PreparedAction(action_id, "redirect", {"type": "redirect", "url": url})


def connect_plan(**overrides: Any) -> CallPlan:
    """A connect's plan for leg B, as the service builds it: one agent, a whisper."""
    fields: dict[str, Any] = {
        "call_id": "c1", "leg_a": CALLER, "leg_b": AGENT, "ring_timeout": 20, "time_limit": 600,
        "whisper_audio": "/tts/whisper", "recording_file": "/r/c1.wav", "caller_id": CALLER,
        "first_attempt": Attempt((AGENT,), 20), **overrides}
    return CallPlan(**fields)


def connect(action_id: str, plan: CallPlan | None = None, to: str = AGENT) -> PreparedAction:
    return PreparedAction(action_id, "connect", {"type": "connect", "to": to},
                          connect=plan or connect_plan())


def steps(commands: list[Command]) -> list[Command]:
    """The commands for the switch (and the router), without the status callbacks."""
    return [c for c in commands if not isinstance(c, Report)]


@dataclass
class LiveRun(Run):
    """A live call under test: Run, with the live call's own parts typed."""

    @property
    def live(self) -> LiveCall:
        assert isinstance(self.call, LiveCall)
        return self.call

    def queue(self, at: float, *actions: PreparedAction, replace: bool = False,
              source: str = "api") -> list[Command]:
        return self.send(ActionsQueued(at=at, actions=actions, replace=replace, source=source))

    def reports(self, event: str) -> list[dict[str, Any]]:
        return [c.data for c in self.commands if isinstance(c, Report) and c.event == event]

    def record_of(self, action_id: str) -> dict[str, Any]:
        [found] = [r for r in self.live.actions if r["id"] == action_id]
        return found


def inbound_ringing(idle_timeout: int = 30) -> LiveRun:
    """An inbound call claimed by the controller: the caller rings, nothing queued yet."""
    run = LiveRun(LiveCall.inbound(INBOUND_PLAN, CALLER, NUMBER, idle_timeout, created_at=T0))
    # Nothing for the switch (the caller is there already): the news of the call only.
    assert run.call.start() == [Report("call.incoming", {
        "call_uuid": INBOUND_PLAN.call_id, "direction": "inbound", "from": CALLER, "to": NUMBER,
        "at": T0})]
    run.send(LegCreated(at=A_CLAIMED, leg=Leg.A, channel="chan-a"),
             LegRinging(at=A_CLAIMED, leg=Leg.A))
    assert run.state() is CallState.RINGING_A
    return run


def inbound_answered(*actions: PreparedAction) -> LiveRun:
    """An inbound call running its first action, answered by the switch for it."""
    run = inbound_ringing()
    run.queue(A_CLAIMED, *actions, source="number")
    run.send(LegAnswered(at=A_ANSWERED, leg=Leg.A, channel="chan-a"))
    return run


def outbound_started(idle_timeout: int = 30) -> LiveRun:
    run = LiveRun(LiveCall.outbound(OUTBOUND_PLAN, NUMBER, idle_timeout, created_at=T0))
    run.commands += run.call.start()
    run.send(LegCreated(at=T0 + 0.1, leg=Leg.A, channel="chan-a"), LegRinging(at=T0 + 0.2, leg=Leg.A))
    assert run.state() is CallState.RINGING_A
    return run
