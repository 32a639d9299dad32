"""The result and snapshot of a call connect: what its caller is told, and what
is stored to pick the call up again after a restart."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from controller.core.legs import LegRecord
from controller.core.outcomes import CallStatus, HangupBy, Leg, LegStatus
from controller.core.plan import Attempt, CallPlan
from controller.core.states import CallState, Transition

if TYPE_CHECKING:
    from controller.core.machine import CallConnect


def initial_response(call: CallConnect) -> dict[str, Any]:
    """The answer a caller gets at once, in the shape hosted products use."""
    return {
        "success": True,
        "call_uuid": call.plan.call_id,
        "state": str(call.state),
        "leg_a_status": str(call.legs[Leg.A].status),
        "leg_b_status": str(call.legs[Leg.B].status),
        "recorded": call.plan.recording_file is not None,
    }


def result(call: CallConnect) -> dict[str, Any]:
    a, b = call.legs[Leg.A], call.legs[Leg.B]
    talk = 0.0
    if call.bridged_at is not None and call.bridge_ended_at is not None:
        talk = round(call.bridge_ended_at - call.bridged_at, 3)
    return {
        "call_uuid": call.plan.call_id,
        "status": str(call.status) if call.status else None,
        "reason": call.reason,
        "success": call.status is CallStatus.COMPLETED,
        "state": str(call.state),
        "leg_a": a.as_dict(),
        "leg_b": b.as_dict(),
        "leg_a_status": str(a.status),
        "leg_b_status": str(b.status),
        "hangup_by": str(call.hangup_by) if call.hangup_by else None,
        "whisper_played": call.whisper_played,
        "created_at": call.created_at,
        "leg_a_answered_at": a.answered_at,
        "leg_b_answered_at": b.answered_at,
        "ended_at": call.ended_at,
        "talk_seconds": talk,
        "recorded": call.recording_started,
        "recording_error": call.recording_error,
        "answered_by": b.target if call.bridged_at is not None else None,
        "attempts": call.attempts,
        "timeline": [
            {"at": t.at, "from": str(t.from_state), "to": str(t.to_state), "reason": t.reason}
            for t in call.timeline
        ],
    }


def snapshot(call: CallConnect) -> dict[str, Any]:
    """Everything needed to pick the call up again after a restart."""
    return {
        "plan": asdict(call.plan),
        "created_at": call.created_at,
        "state": str(call.state),
        "status": str(call.status) if call.status else None,
        "reason": call.reason,
        "hangup_by": str(call.hangup_by) if call.hangup_by else None,
        "whisper_played": call.whisper_played,
        "recording_started": call.recording_started,
        "recording_error": call.recording_error,
        "bridged_at": call.bridged_at,
        "bridge_ended_at": call.bridge_ended_at,
        "ended_at": call.ended_at,
        "timeline": [[t.at, str(t.from_state), str(t.to_state), t.reason] for t in call.timeline],
        "legs": {str(leg): {**asdict(r), "status": str(r.status)} for leg, r in call.legs.items()},
        "attempts": call.attempts,
        "route_state": call.route_state,
        "b_channel": call.b_channel,
    }


def plan_of(data: dict[str, Any]) -> CallPlan:
    """The plan stored in a snapshot."""
    plan = dict(data["plan"])
    if plan.get("first_attempt"):
        first = plan["first_attempt"]
        plan["first_attempt"] = Attempt(tuple(first["targets"]), first["ring_timeout"],
                                        first["source"], tuple(
                                            (t, rule) for t, rule in first.get("skipped", ())))
    return CallPlan(**plan)


def restore(call: CallConnect, data: dict[str, Any]) -> None:
    """Bring a call made from the snapshot's plan to where the snapshot left it."""
    call.state = CallState(data["state"])
    call.status = CallStatus(data["status"]) if data["status"] else None
    call.reason = data["reason"]
    call.hangup_by = HangupBy(data["hangup_by"]) if data["hangup_by"] else None
    call.whisper_played = data["whisper_played"]
    call.recording_started = data["recording_started"]
    call.recording_error = data["recording_error"]
    call.bridged_at = data["bridged_at"]
    call.bridge_ended_at = data["bridge_ended_at"]
    call.ended_at = data["ended_at"]
    call.timeline = [Transition(at, CallState(a), CallState(b), why)
                     for at, a, b, why in data["timeline"]]
    for leg, record in data["legs"].items():
        call.legs[Leg(leg)] = LegRecord(**{**record, "status": LegStatus(record["status"])})
    call.attempts = data["attempts"]
    call.route_state = data["route_state"]
    call.b_channel = data["b_channel"]
