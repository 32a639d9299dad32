"""What became of a request to place a call: placed, scheduled for its
calling window, replayed (its idempotency key was seen before), or refused
with the reason. The reason is the error itself, which carries its
``error_id`` (and, for a compliance rule or limit, the HTTP status and when
to retry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.calls.runner import ActiveCall
from controller.errors import CallRefused, InvalidRequest, SwitchError, WhisperError
from controller.store import StoredCall


@dataclass(frozen=True)
class Placed:
    call: ActiveCall

    def initial_response(self) -> dict[str, Any]:
        return self.call.initial_response()


@dataclass(frozen=True)
class Scheduled:
    call: StoredCall

    def initial_response(self) -> dict[str, Any]:
        return initial_of(self.call)


@dataclass(frozen=True)
class Replayed:
    call: StoredCall

    def initial_response(self) -> dict[str, Any]:
        return initial_of(self.call)


@dataclass(frozen=True)
class Refused:
    # WhisperError: the whisper could not be rendered (503 whisper-failed).
    reason: InvalidRequest | CallRefused | SwitchError | WhisperError


Decision = Placed | Scheduled | Replayed | Refused


def initial_of(stored: StoredCall) -> dict[str, Any]:
    """The answer to the request that placed (or scheduled) a stored call."""
    legs = stored.snapshot.get("legs", {})
    return {"success": stored.status in (None, "completed"), "call_uuid": stored.call_id,
            "state": stored.state, "scheduled_for": stored.snapshot.get("scheduled_for"),
            "leg_a_status": legs.get("a", {}).get(
                "status", "pending" if stored.state == "scheduled" else "initiated"),
            "leg_b_status": legs.get("b", {}).get("status", "pending"),
            "recorded": bool(stored.snapshot.get("plan", {}).get("recording_file"))}
