"""The generic call record, which every flow of a call shares.

A call is its legs (each with its channels), its timeline, and an outcome that
is decided once (ENDING) and final once no channel is left nor awaited (ENDED).
:class:`Call` keeps that and dispatches events through a flow's legality table
(:mod:`controller.core.table`) to the flow's ``_on_<Event>`` handlers. The
two-leg call connect (:class:`controller.core.machine.CallConnect`) is one such
flow; another (one leg, an inbound first leg) would bring its own plan, table
and handlers and reuse this part.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from controller.core.commands import CallEnded, Command, HangupLegs
from controller.core.events import Event, LegCreated, LegEnded
from controller.core.legs import LegRecord
from controller.core.outcomes import CallStatus, HangupBy, Leg, LegStatus, leg_status_from_cause
from controller.core.states import CallState, Transition
from controller.core.table import Table, Verdict, event_name, kind_of
from controller.errors import InvalidTransition

# Leg statuses that a hangup can still change; all others are final.
OPEN_LEG_STATUSES = (LegStatus.INITIATED, LegStatus.RINGING, LegStatus.ANSWERED)


@dataclass(kw_only=True)
class Call(ABC):
    table: ClassVar[Table]

    state: CallState = CallState.NEW
    status: CallStatus | None = None
    reason: str | None = None
    hangup_by: HangupBy | None = None
    ended_at: float | None = None
    timeline: list[Transition] = field(default_factory=list)
    legs: dict[Leg, LegRecord] = field(init=False, default_factory=dict)

    @abstractmethod
    def result(self) -> dict[str, Any]:
        """What CallEnded carries."""

    def handle(self, event: Event) -> list[Command]:
        # A state the flow never reaches has no row: it refuses everything.
        verdict = self.table.get(self.state, {}).get(kind_of(event, self.legs))
        if verdict is None:
            raise InvalidTransition(str(self.state), event_name(event))
        if verdict is Verdict.IGNORE:
            return []
        handler = getattr(self, "_on_" + type(event).__name__)
        commands: list[Command] = handler(event)
        return commands + self._maybe_end(event.at)

    @property
    def finished(self) -> bool:
        return self.state is CallState.ENDED

    # ------------------------------------------------------------ channels

    def _on_LegCreated(self, ev: LegCreated) -> list[Command]:
        record = self.legs[ev.leg]
        if ev.channel in record.channels:
            # Told again after a restart (a backend reports the channels it
            # finds on the switch): one channel, one end to wait for.
            return []
        record.channels.append(ev.channel)
        record.dialed = True
        record.awaiting_channel = False
        if self.state is CallState.ENDING:
            # A channel that appears after we decided to end the call (a cancel
            # raced the originate) is hung up at once.
            return [HangupLegs((ev.leg,))]
        return []

    def _live_legs(self) -> tuple[Leg, ...]:
        return tuple(leg for leg, record in self.legs.items() if record.channel_up)

    def _forget_channels(self) -> None:
        """The switch will tell nothing more of this call's channels."""
        for record in self.legs.values():
            record.channels.clear()
            record.awaiting_channel = False

    def _leg_hung_up(self, leg: Leg, cause: int) -> None:
        record = self.legs[leg]
        record.hung_up = True
        if record.answered_at is None:
            record.cause = cause
            if record.status in OPEN_LEG_STATUSES:
                record.status = leg_status_from_cause(cause, answered=False)

    def _leg_ended(self, record: LegRecord, ev: LegEnded, settled: bool) -> None:
        """Close a leg whose last channel went; ``settled``: its channel's end
        tells its status (it may not when another event reports the outcome)."""
        record.ended_at = ev.at
        if ev.cause or record.cause is None:
            record.cause = ev.cause
        record.cause_text = ev.cause_text
        if record.status in OPEN_LEG_STATUSES and settled:
            record.status = leg_status_from_cause(record.cause or 0, record.answered_at is not None)

    def _cancel_leg(self, leg: Leg) -> None:
        record = self.legs[leg]
        if record.status in (LegStatus.INITIATED, LegStatus.RINGING):
            record.status = LegStatus.CANCELED
        elif record.status is LegStatus.PENDING:
            record.status = LegStatus.NOT_DIALED

    # ------------------------------------------------------------ outcome

    def _decide(self, at: float, status: CallStatus, reason: str) -> None:
        """Fix the outcome; the call ends once no channel is left."""
        self.status = status
        self.reason = reason
        if self.state is not CallState.ENDING:
            self._goto(at, CallState.ENDING, reason)

    def _maybe_end(self, at: float) -> list[Command]:
        if self.state is not CallState.ENDING:
            return []
        if any(r.channel_up or r.awaiting_channel for r in self.legs.values()):
            return []
        self.ended_at = at
        self._goto(at, CallState.ENDED, f"{self.status}: {self.reason}")
        return [CallEnded(self.result())]

    def _goto(self, at: float, state: CallState, reason: str) -> None:
        self.timeline.append(Transition(at, self.state, state, reason))
        self.state = state
