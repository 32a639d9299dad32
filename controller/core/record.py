"""The record of a call connect: what the flow keeps beyond the generic call,
its result (what its caller is told) and its snapshot (what is stored to pick
the call up again after a restart). The flow's handlers are
:mod:`controller.core.machine`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from controller.core.call import Call
from controller.core.legs import LegRecord
from controller.core.outcomes import CallStatus, HangupBy, Leg, LegStatus
from controller.core.plan import Attempt, CallPlan
from controller.core.states import CallState, Transition


def plan_of(data: dict[str, Any]) -> CallPlan:
    """The plan stored in a snapshot."""
    plan = dict(data["plan"])
    if plan.get("first_attempt"):
        first = plan["first_attempt"]
        plan["first_attempt"] = Attempt(tuple(first["targets"]), first["ring_timeout"],
                                        first["source"], tuple(
                                            (t, rule) for t, rule in first.get("skipped", ())))
    return CallPlan(**plan)


@dataclass
class ConnectRecord(Call):
    plan: CallPlan
    created_at: float
    whisper_played: bool | None = None
    recording_started: bool = False
    recording_error: str | None = None
    bridged_at: float | None = None
    bridge_ended_at: float | None = None
    # Every attempt at leg B: its targets, how it ended, who answered.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    route_state: dict[str, Any] = field(default_factory=dict)
    b_channel: str | None = None  # the leg B channel that answered

    def __post_init__(self) -> None:
        self.legs = {Leg.A: LegRecord(self.plan.leg_a), Leg.B: LegRecord(self.plan.leg_b)}
        # The plan as snapshots keep it, made once per plan (it is frozen).
        self._plan_data: tuple[CallPlan, dict[str, Any]] | None = None

    def _plan_snapshot(self) -> dict[str, Any]:
        if self._plan_data is None or self._plan_data[0] is not self.plan:
            self._plan_data = (self.plan, asdict(self.plan))
        return self._plan_data[1]

    def initial_response(self) -> dict[str, Any]:
        """The answer a caller gets at once, in the shape hosted products use."""
        return {
            "success": True,
            "call_uuid": self.plan.call_id,
            "state": str(self.state),
            "leg_a_status": str(self.legs[Leg.A].status),
            "leg_b_status": str(self.legs[Leg.B].status),
            "recorded": self.plan.recording_file is not None,
        }


    def result(self) -> dict[str, Any]:
        a, b = self.legs[Leg.A], self.legs[Leg.B]
        talk = 0.0
        if self.bridged_at is not None and self.bridge_ended_at is not None:
            talk = round(self.bridge_ended_at - self.bridged_at, 3)
        return {
            "call_uuid": self.plan.call_id,
            "status": str(self.status) if self.status else None,
            "reason": self.reason,
            "success": self.status is CallStatus.COMPLETED,
            "state": str(self.state),
            "leg_a": a.as_dict(),
            "leg_b": b.as_dict(),
            "leg_a_status": str(a.status),
            "leg_b_status": str(b.status),
            "hangup_by": str(self.hangup_by) if self.hangup_by else None,
            "whisper_played": self.whisper_played,
            "created_at": self.created_at,
            "leg_a_answered_at": a.answered_at,
            "leg_b_answered_at": b.answered_at,
            "ended_at": self.ended_at,
            "talk_seconds": talk,
            "recorded": self.recording_started,
            "recording_error": self.recording_error,
            "answered_by": b.target if self.bridged_at is not None else None,
            "attempts": self.attempts,
            # Every call says which way it went: a call connect is placed like
            # a single-leg call (a live call's record says its own).
            "direction": "outbound",
            "from": self.plan.caller_id,
            "to": self.plan.leg_a,
            "actions": [],
            "digits": None,
            "timeline": [
                {"at": t.at, "from": str(t.from_state), "to": str(t.to_state), "reason": t.reason}
                for t in self.timeline
            ],
        }


    def snapshot(self) -> dict[str, Any]:
        """Everything needed to pick the call up again after a restart."""
        return {
            "plan": self._plan_snapshot(),
            "created_at": self.created_at,
            "state": str(self.state),
            "status": str(self.status) if self.status else None,
            "reason": self.reason,
            "hangup_by": str(self.hangup_by) if self.hangup_by else None,
            "whisper_played": self.whisper_played,
            "recording_started": self.recording_started,
            "recording_error": self.recording_error,
            "bridged_at": self.bridged_at,
            "bridge_ended_at": self.bridge_ended_at,
            "ended_at": self.ended_at,
            "timeline": [[t.at, str(t.from_state), str(t.to_state), t.reason] for t in self.timeline],
            "legs": {str(leg): record.snapshot() for leg, record in self.legs.items()},
            "attempts": self.attempts,
            "route_state": self.route_state,
            "b_channel": self.b_channel,
        }


    def _restore(self, data: dict[str, Any]) -> None:
        """Bring a call made from the snapshot's plan to where the snapshot left it."""
        self.state = CallState(data["state"])
        self.status = CallStatus(data["status"]) if data["status"] else None
        self.reason = data["reason"]
        self.hangup_by = HangupBy(data["hangup_by"]) if data["hangup_by"] else None
        self.whisper_played = data["whisper_played"]
        self.recording_started = data["recording_started"]
        self.recording_error = data["recording_error"]
        self.bridged_at = data["bridged_at"]
        self.bridge_ended_at = data["bridge_ended_at"]
        self.ended_at = data["ended_at"]
        self.timeline = [Transition(at, CallState(a), CallState(b), why)
                         for at, a, b, why in data["timeline"]]
        for leg, record in data["legs"].items():
            self.legs[Leg(leg)] = LegRecord(**{**record, "status": LegStatus(record["status"])})
        self.attempts = data["attempts"]
        self.route_state = data["route_state"]
        self.b_channel = data["b_channel"]
