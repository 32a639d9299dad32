"""What a live call's leg A events mean: the ends of its steps (``live.py``),
the keys of a gather, and the idle timeout. Pure, like ``translator.py``,
which this is part of."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.events import (
    DigitPressed,
    DigitsGathered,
    Event,
    IdleTimedOut,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
    StepEnd,
)

from .live import DIGITS_VARIABLE, IDLE_CAUSE, TRAILER
from .tracking import CallTracker, FollowedCall, LiveStep, StepKind

KEYS = "0123456789*#"
MAX_DIGITS = 32


@dataclass(frozen=True)
class Routed:
    """A core event for one call: what the translator gives out."""

    call_id: str
    event: Event


class LiveEvents(CallTracker):
    """Leg A's step events; None from a method means "not a step's event"."""

    def _step_execute_complete(self, call_id: str, call: FollowedCall, e: Mapping[str, str],
                               at: float) -> list[Routed] | None:
        step = call.step
        if step is None:
            return None
        application = e.get("Application", "")
        if (not step.done and application == step.app
                and step.data in (None, e.get("Application-Data"))):
            step.done = True
            if step.kind is StepKind.PLAY:
                step.played = e.get("Application-Response") == "FILE PLAYED"
            elif step.kind is StepKind.GATHER:
                step.digits, step.ended_by = gathered(step, e)
            return []
        if step.done and application == "sched_hangup" and e.get("Application-Data") == TRAILER:
            call.step = None
            if call.a_going:
                return []  # A hung up meanwhile; its hangup ends the call
            return [Routed(call_id, step_end(step, at))]
        return None

    def _step_key(self, call_id: str, call: FollowedCall, e: Mapping[str, str],
                  at: float) -> list[Routed]:
        """A key leg A pressed: a gather's digit, reported as it comes (the
        finish key ends the gather, and is no digit)."""
        step = call.step
        digit = e.get("DTMF-Digit", "")
        if (step is None or step.kind is not StepKind.GATHER or step.done or len(digit) != 1
                or digit not in KEYS or digit == step.finish_key
                or len(step.pressed) >= step.max_digits):
            return []
        step.pressed += digit
        return [Routed(call_id, DigitPressed(at, step.action_id, digit))]

    def _step_record(self, call: FollowedCall, started: bool) -> bool:
        """A record step's RECORD_START/STOP; False if no record step runs."""
        step = call.step
        if step is None or step.kind not in (StepKind.RECORD_START, StepKind.RECORD_STOP):
            return False
        step.recording = started
        return True

    def _idle_over(self, call_id: str, call: FollowedCall, e: Mapping[str, str],
                   at: float) -> list[Routed]:
        """Leg A hung up by the switch while it waited for actions: the idle
        timeout (the wait replaced the hold limit, whose cause it has)."""
        if not call.idle or call.a_hung_up:
            return []
        call.idle = False
        cause = e.get("Hangup-Cause") or e.get("variable_hangup_cause", "")
        if cause != IDLE_CAUSE:
            return []
        return [Routed(call_id, IdleTimedOut(at))]


def gathered(step: LiveStep, e: Mapping[str, str]) -> tuple[str, str]:
    """The digits ``read`` left and how it ended: finish-key, max-digits or
    timeout. A finish key pressed during the prompt when one key is asked
    is in the digits (switch_ivr_read reads only the prompt's key then)."""
    digits = "".join(c for c in e.get(f"variable_{DIGITS_VARIABLE}", "") if c in KEYS)
    terminator = e.get("variable_read_terminator_used", "")
    if step.finish_key and not terminator and digits.endswith(step.finish_key):
        digits, terminator = digits[:-1], step.finish_key
    digits = digits[:MAX_DIGITS]
    if terminator and terminator == step.finish_key:
        return digits, "finish-key"
    if len(digits) >= step.max_digits:
        return digits, "max-digits"
    return digits, "timeout"


def step_end(step: LiveStep, at: float) -> StepEnd:
    if step.kind is StepKind.PLAY:
        return PlayFinished(at, step.action_id, step.played)
    if step.kind is StepKind.GATHER:
        return DigitsGathered(at, step.action_id, step.digits, step.ended_by)
    if step.kind is StepKind.PAUSE:
        return PauseFinished(at, step.action_id)
    if step.kind is StepKind.RECORD_START and not step.recording:
        return RecordingChanged(at, step.action_id, False,
                                "FreeSWITCH did not start recording (see its log)")
    return RecordingChanged(at, step.action_id, step.kind is StepKind.RECORD_START)
