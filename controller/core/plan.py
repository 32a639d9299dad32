"""What a call is to do, decided before it starts: the plan and each attempt at leg B."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attempt:
    """One round of dialing leg B: every target rung at once, first answer wins.

    Targets are normalised (E.164, sip: URI, endpoint:NAME); ``source`` says
    what chose them (the request, a group, a dial-whom URL, a fallback).
    """

    targets: tuple[str, ...]
    ring_timeout: int
    source: str = "request"
    # (target, rule) the router left out of this attempt: do-not-call, attempt-cap.
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CallPlan:
    """Everything the core needs to run one call, decided before it starts.

    Targets are already validated; audio and recording paths are as the switch
    sees them. ``leg_b`` describes whom leg B is (a number, a list, a group, a
    URL); ``first_attempt`` is set when that is known before the call starts,
    otherwise the core asks once leg A has answered.
    """

    call_id: str
    leg_a: str
    leg_b: str
    ring_timeout: int
    time_limit: int
    whisper_audio: str | None = None
    recording_file: str | None = None
    caller_id: str | None = None
    first_attempt: Attempt | None = None
    # Leg B hears the whisper on answer (not leg A before the dial).
    whisper_on_answer: bool = False
    # Leg B must press this key after answering, within confirm_timeout seconds.
    confirm_key: str | None = None
    confirm_timeout: int = 5
    # Leg A hears music (not ringback) while leg B is chosen and rung.
    hold_music: bool = False

    @property
    def answer_steps(self) -> bool:
        """Leg B has something to do between answering and the bridge."""
        return bool(self.confirm_key or (self.whisper_on_answer and self.whisper_audio))




@dataclass(frozen=True)
class PreparedAction:
    """One action of a live call, checked and made ready for the switch.

    ``spec`` is the action as the API received it (validated JSON, kept for the
    record and sent back in webhooks). What the switch needs is resolved
    beforehand: ``audio`` is a play's files (its text rendered by the TTS) or a
    gather's prompt; ``record_file`` a record start's path; ``connect`` a
    connect's plan for leg B (the call's own ids, leg A its one leg).
    """

    id: str
    type: str  # play, gather, pause, hangup, connect, record, redirect
    spec: dict[str, Any]
    audio: tuple[str, ...] = ()
    record_file: str | None = None
    connect: CallPlan | None = None
