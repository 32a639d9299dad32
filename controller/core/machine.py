"""The call-connect flow: two legs, A then B, bridged. Events in, commands out.

Pure: no sockets, no clock, no files. Every event carries the time it happened
(the switch's timestamp where it has one); the backend adapters turn wire events
into these events and these commands into switch actions. Which event each
state takes, ignores or refuses is :mod:`controller.core.table`; the generic
record (legs, timeline, outcome, the end once no channel is left) is
:class:`controller.core.call.Call`; the result and snapshot are
:class:`controller.core.record.ConnectRecord`. This module holds only the flow's
decisions.

The flow: originate Leg A; when A answers, play the whisper to A only; when the
whisper has finished, dial Leg B; when B answers, record; when either side hangs
up, the call ends. Every failure path ends with every leg hung up and exactly one
:class:`CallEnded` command carrying the result.

Leg B is dialed in attempts: each :class:`Attempt` rings one or more targets at
once and the first to answer wins. Whom to ring next is not decided here: the
core asks with :class:`ChooseTargets` and is told with :class:`TargetsChosen`
or :class:`RouteExhausted` (groups, dial-whom URLs and fallbacks need I/O).
With an on-answer whisper or a confirm key, Leg B hears the whisper the moment
it answers and may decline; only then are the legs bridged.
"""

from __future__ import annotations

from typing import Any, ClassVar

from controller.core.call import OPEN_LEG_STATUSES
from controller.core.commands import (
    AnnounceToLegA,
    ChooseTargets,
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.core.events import (
    Announcement,
    AnswerAccepted,
    AnswerDeclined,
    CommandFailed,
    DialFinished,
    EndedWhileAway,
    HangupRequested,
    LegAnswered,
    LegEnded,
    LegHungUp,
    LegRinging,
    OriginateFailed,
    RecordingStarted,
    RouteExhausted,
    SwitchLost,
    TargetsChosen,
    WhisperFinished,
)
from controller.core.legs import LegRecord
from controller.core.outcomes import (
    CALL_STATUS_OF_UNANSWERED_LEG,
    CallStatus,
    DialOutcome,
    HangupBy,
    Leg,
    LegStatus,
    leg_status_from_cause,
    leg_status_from_dial,
)
from controller.core.plan import Attempt
from controller.core.record import ConnectRecord, plan_of
from controller.core.states import CallState
from controller.core.table import TABLE, Table
from controller.errors import InvalidTransition

_LIVE_A_STATES = (CallState.DIALING_A, CallState.RINGING_A)
_DIALING_B_STATES = (CallState.DIALING_B, CallState.RINGING_B, CallState.CONFIRMING)


class CallConnect(ConnectRecord):
    table: ClassVar[Table] = TABLE

    # ------------------------------------------------------------ API

    def start(self) -> list[Command]:
        if self.state is not CallState.NEW:
            raise InvalidTransition(str(self.state), "start")
        self.legs[Leg.A].status = LegStatus.INITIATED
        self.legs[Leg.A].awaiting_channel = True
        self._goto(self.created_at, CallState.DIALING_A, "originating leg A")
        return [OriginateLegA(self.plan.leg_a, self.plan.ring_timeout, self.plan.caller_id,
                              self.plan.hold_music)]

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> CallConnect:
        call = cls(plan_of(data), created_at=data["created_at"])
        call._restore(data)
        return call

    # ------------------------------------------------------------ handlers

    def _on_LegRinging(self, ev: LegRinging) -> list[Command]:
        leg = self.legs[ev.leg]
        if leg.status in (LegStatus.INITIATED, LegStatus.PENDING):
            leg.status = LegStatus.RINGING
        if ev.leg is Leg.A and self.state is CallState.DIALING_A:
            self._goto(ev.at, CallState.RINGING_A, "leg A ringing")
        elif ev.leg is Leg.B and self.state is CallState.DIALING_B:
            self._goto(ev.at, CallState.RINGING_B, "leg B ringing")
        return []

    def _on_LegAnswered(self, ev: LegAnswered) -> list[Command]:
        leg = self.legs[ev.leg]
        if ev.leg is Leg.A:
            leg.status = LegStatus.ANSWERED
            leg.answered_at = ev.at
            if self.plan.first_attempt is None:
                self._goto(ev.at, CallState.ROUTING, "leg A answered; choosing whom to ring")
                return [ChooseTargets(None, self.route_state)]
            return self._start_attempt(ev.at, self.plan.first_attempt, "leg A answered")
        leg.status = LegStatus.ANSWERED
        leg.answered_at = ev.at
        self.b_channel = ev.channel
        attempt = self.attempts[-1]
        attempt["answered_by"] = ev.target or (
            attempt["targets"][0] if len(attempt["targets"]) == 1 else None)
        leg.target = attempt["answered_by"] or leg.target
        if self.plan.answer_steps:
            self._goto(ev.at, CallState.CONFIRMING,
                       f"leg B answered ({leg.target}); whisper and confirm to leg B")
            return []
        return self._bridge(ev.at, f"leg B answered ({leg.target}); legs bridged")

    def _on_AnswerAccepted(self, ev: AnswerAccepted) -> list[Command]:
        if self.plan.whisper_on_answer and self.plan.whisper_audio:
            self.whisper_played = True  # the switch plays it to B before accepting
        return self._bridge(ev.at, "leg B accepted the call; legs bridged")

    def _on_AnswerDeclined(self, ev: AnswerDeclined) -> list[Command]:
        # The switch hangs B up and ends the dial: DialFinished moves on.
        self.legs[Leg.B].status = LegStatus.DECLINED
        self.attempts[-1]["declined"] = ev.reason
        return []

    def _on_LegHungUp(self, ev: LegHungUp) -> list[Command]:
        leg = self.legs[ev.leg]
        if ev.leg is Leg.B:
            if ev.channel not in leg.channels:
                return []  # a channel of an earlier attempt at leg B: says nothing of this one
            if self.b_channel is not None and ev.channel != self.b_channel:
                return []  # a losing target of a simultaneous ring
            if self.b_channel is None and len(leg.channels) > 1:
                # One target of several refused while the others still ring: the
                # attempt is not busy (nor rejected) for that; the dial's end says.
                return []
        self._leg_hung_up(ev.leg, ev.cause)
        if leg.answered_at is not None and self.hangup_by is None and (
                # Leg B ends the call only once bridged: before that it declined.
                self.state is CallState.BRIDGED if ev.leg is Leg.B
                else self.state not in (CallState.ANNOUNCING, CallState.CONFIRMING)):
            self.hangup_by = HangupBy.LEG_A if ev.leg is Leg.A else HangupBy.LEG_B
        return []

    def _on_LegEnded(self, ev: LegEnded) -> list[Command]:
        leg = self.legs[ev.leg]
        if ev.channel not in leg.channels:
            return []  # a channel of an earlier attempt at leg B, already closed
        leg.channels.remove(ev.channel)
        if ev.leg is Leg.B and self.b_channel is not None and ev.channel != self.b_channel:
            return []  # a losing target of a simultaneous ring, cancelled by the switch
        if ev.leg is Leg.B and self.b_channel is None and leg.channel_up:
            return []  # other targets of this attempt still ring
        # Before a bridge, leg B's outcome comes with the end of its dial
        # (DialFinished): its channel may go first, with cause 0 after the
        # switch cancelled its ringing.
        b_still_dialing = ev.leg is Leg.B and self.state in _DIALING_B_STATES
        self._leg_ended(leg, ev, settled=not b_still_dialing)

        if ev.leg is Leg.A:
            return self._on_leg_a_ended(ev, leg)
        return self._on_leg_b_ended(ev, leg)

    def _on_leg_a_ended(self, ev: LegEnded, leg: LegRecord) -> list[Command]:
        if self.state in _LIVE_A_STATES:
            self.legs[Leg.B].status = LegStatus.NOT_DIALED
            self._decide(ev.at, CALL_STATUS_OF_UNANSWERED_LEG.get(leg.status, CallStatus.FAILED),
                         f"leg A {leg.status}: {ev.cause_text or ev.cause}")
        elif self.state in (CallState.WHISPERING, CallState.ROUTING):
            self._cancel_leg(Leg.B)
            self.hangup_by = self.hangup_by or HangupBy.LEG_A
            why = "during the whisper" if self.state is CallState.WHISPERING else (
                "while leg B was being chosen")
            self._decide(ev.at, CallStatus.CANCELED, f"leg A hung up {why}")
        elif self.state in _DIALING_B_STATES:
            self.hangup_by = self.hangup_by or HangupBy.LEG_A
            self._cancel_leg(Leg.B)
            self._close_attempt(ev.at, "canceled")
            self._decide(ev.at, CallStatus.CANCELED, "leg A hung up while leg B was ringing")
            # The switch cancels B's dial when A goes; if it is still up, end it.
            if self.legs[Leg.B].channel_up:
                return [HangupLegs((Leg.B,))]
        elif self.state is CallState.BRIDGED:
            self._end_bridged(ev.at)
            if self.legs[Leg.B].channel_up:
                return [HangupLegs((Leg.B,))]
        elif self.state is CallState.ANNOUNCING:
            self._decide(ev.at, self.status or CallStatus.FAILED, self.reason or "leg B not reached")
        return []

    def _on_leg_b_ended(self, ev: LegEnded, leg: LegRecord) -> list[Command]:
        if self.state is CallState.BRIDGED:
            self._end_bridged(ev.at)
            if self.legs[Leg.A].channel_up:
                return [HangupLegs((Leg.A,))]
        # Before a bridge, B's end is reported with the dial's end (DialFinished).
        return []

    def _on_OriginateFailed(self, ev: OriginateFailed) -> list[Command]:
        leg = self.legs[Leg.A]
        leg.awaiting_channel = False  # no channel will come: an ending call may now end
        if self.state is CallState.ENDING or leg.answered_at is not None or leg.channel_up:
            # Decided already, or A was placed after all: its channel tells the rest.
            return []
        leg.status = LegStatus.FAILED
        leg.ended_at = ev.at
        self.legs[Leg.B].status = LegStatus.NOT_DIALED
        self._decide(ev.at, CallStatus.FAILED, f"leg A could not be placed: {ev.reason}")
        return []

    def _on_TargetsChosen(self, ev: TargetsChosen) -> list[Command]:
        self.route_state = ev.route_state
        if self.legs[Leg.A].hung_up:
            return []  # A is going: its LegEnded ends the call, B is not dialed
        return self._start_attempt(ev.at, ev.attempt, "targets chosen")

    def _on_RouteExhausted(self, ev: RouteExhausted) -> list[Command]:
        if self.legs[Leg.A].hung_up:
            return []  # A is going: its LegEnded ends the call (canceled)
        if not self.attempts:
            self.legs[Leg.B].status = LegStatus.NOT_DIALED
        self.status = ev.status
        self.reason = ev.reason
        if ev.message_audio and self.legs[Leg.A].channel_up:
            self._goto(ev.at, CallState.ANNOUNCING, ev.reason + "; telling leg A")
            return [PlayMessageThenHangup(ev.message_audio)]
        self._decide(ev.at, ev.status, ev.reason)
        return [HangupLegs((Leg.A,))] if self.legs[Leg.A].channel_up else []

    def _on_Announcement(self, ev: Announcement) -> list[Command]:
        if self.legs[Leg.A].hung_up:
            return []  # the call is ending
        return [AnnounceToLegA(ev.audio, ev.hold_for)]

    def _on_WhisperFinished(self, ev: WhisperFinished) -> list[Command]:
        self.whisper_played = ev.played
        if self.legs[Leg.A].hung_up:
            return []  # A is going: its LegEnded ends the call, B is not dialed
        reason = "whisper played" if ev.played else "whisper could not be played"
        # The switch dials B itself now, as PlayWhisper asked it to.
        self.legs[Leg.B].status = LegStatus.INITIATED
        self._goto(ev.at, CallState.DIALING_B, f"{reason}; dialing leg B")
        return []

    def _on_DialFinished(self, ev: DialFinished) -> list[Command]:
        leg_b = self.legs[Leg.B]
        if self.state is CallState.CONFIRMING and leg_b.status is not LegStatus.DECLINED:
            # Answered but never accepted: hung up during the whisper.
            leg_b.status = LegStatus.DECLINED
            self.attempts[-1]["declined"] = "hung up before accepting"
        if leg_b.status in OPEN_LEG_STATUSES:
            leg_b.status = leg_status_from_dial(ev.outcome)
        outcome = leg_b.status
        self._close_attempt(ev.at, str(outcome), ev.outcome)
        if self.legs[Leg.A].hung_up or not self.legs[Leg.A].channel_up:
            return []  # A is going: its LegEnded ends the call
        self._goto(ev.at, CallState.ROUTING,
                   f"leg B {outcome} (dial {ev.outcome}); choosing whom to ring next")
        return [ChooseTargets(str(outcome), self.route_state)]

    def _on_RecordingStarted(self, ev: RecordingStarted) -> list[Command]:
        self.recording_started = True
        return []

    def _on_HangupRequested(self, ev: HangupRequested) -> list[Command]:
        self.hangup_by = self.hangup_by or HangupBy.API
        live = self._live_legs()
        if self.state is CallState.BRIDGED:
            self._end_bridged(ev.at)
        else:
            for leg in (Leg.A, Leg.B):
                if self.legs[leg].answered_at is None:
                    self._cancel_leg(leg)
            self._decide(ev.at, CallStatus.CANCELED, f"hangup requested: {ev.reason}")
        # Leg A is hung up even if its channel is not reported yet: the
        # originate may be in flight, and LegCreated will hang it up again.
        return [HangupLegs(live or (Leg.A,))]

    def _on_CommandFailed(self, ev: CommandFailed) -> list[Command]:
        if self.state is CallState.BRIDGED and ev.command == "StartRecording":
            # A recording that did not start must not cut a live conversation.
            self.recording_error = ev.reason
            return []
        for rec in self.legs.values():
            rec.awaiting_channel = False
            if rec.status is LegStatus.PENDING:
                rec.status = LegStatus.NOT_DIALED
            elif rec.status in (LegStatus.INITIATED, LegStatus.RINGING):
                rec.status = LegStatus.FAILED
        self.hangup_by = self.hangup_by or HangupBy.SWITCH
        self._decide(ev.at, CallStatus.FAILED, f"{ev.command} failed: {ev.reason}")
        live = self._live_legs()
        return [HangupLegs(live)] if live else []

    def _on_SwitchLost(self, ev: SwitchLost) -> list[Command]:
        live = self._live_legs()
        self._forget_channels()
        if self.state is CallState.ENDING:
            return [HangupLegs(live)] if live else []
        self.hangup_by = self.hangup_by or HangupBy.SWITCH
        if self.state is CallState.BRIDGED:
            self._decide(ev.at, CallStatus.COMPLETED, f"switch lost: {ev.reason}")
        else:
            for leg in (Leg.A, Leg.B):
                self._cancel_leg(leg)
            self._decide(ev.at, CallStatus.FAILED, f"switch lost: {ev.reason}")
        # Ask the switch to hang up what may still be there, in case it can.
        return [HangupLegs(live)] if live else []

    def _on_EndedWhileAway(self, ev: EndedWhileAway) -> list[Command]:
        a, b = self.legs[Leg.A], self.legs[Leg.B]
        self._forget_channels()
        for rec in (a, b):
            rec.ended_at = rec.ended_at or ev.at
        if ev.a_cause is not None:
            a.cause = ev.a_cause
        if self.state is CallState.ENDING:
            return []
        away = "ended while the controller was away from the switch"
        if self.state is CallState.BRIDGED or ev.b_outcome is DialOutcome.ANSWERED:
            talk = ev.talk_seconds or 0.0
            self.bridged_at = self.bridged_at or ev.at - talk
            self.bridge_ended_at = ev.at
            a.status = b.status = LegStatus.COMPLETED
            if ev.b_outcome is None:
                # A switch that crashed runs no hangup handler: the end is when we noticed.
                self.hangup_by = self.hangup_by or HangupBy.SWITCH
                away += "; the switch kept no outcome (did it restart?)"
            self._decide(ev.at, CallStatus.COMPLETED, away)
        elif self.state in _LIVE_A_STATES and not ev.a_answered:
            a.status = (leg_status_from_cause(ev.a_cause, answered=False)
                        if ev.a_cause is not None else LegStatus.FAILED)
            b.status = LegStatus.NOT_DIALED
            self._decide(ev.at, CALL_STATUS_OF_UNANSWERED_LEG.get(a.status, CallStatus.FAILED),
                         f"leg A {a.status}; {away}")
        elif ev.b_outcome is not None:
            a.status = LegStatus.COMPLETED
            if b.status in OPEN_LEG_STATUSES:
                b.status = leg_status_from_dial(ev.b_outcome)
            self._decide(ev.at, CALL_STATUS_OF_UNANSWERED_LEG.get(b.status, CallStatus.FAILED),
                         f"leg B {b.status}; {away}")
        else:
            for leg in (Leg.A, Leg.B):
                self._cancel_leg(leg)
            if ev.a_answered:
                a.status = LegStatus.COMPLETED
            self._decide(ev.at, CallStatus.FAILED, f"{away}; the switch kept no outcome")
        return []

    # ------------------------------------------------------------ helpers

    def _start_attempt(self, at: float, attempt: Attempt, why: str) -> list[Command]:
        self.attempts.append({"targets": list(attempt.targets), "ring_timeout": attempt.ring_timeout,
                              "source": attempt.source, "started_at": at, "ended_at": None,
                              "outcome": None, "dial_outcome": None, "answered_by": None})
        if attempt.skipped:
            self.attempts[-1]["skipped"] = [{"target": t, "rule": rule}
                                            for t, rule in attempt.skipped]
        self.legs[Leg.B] = LegRecord(", ".join(attempt.targets))
        self.b_channel = None  # an earlier attempt's answer (declined) is not this one's
        dial = self._dial(tuple(attempt.targets), attempt.ring_timeout)
        if (self.plan.whisper_audio and not self.plan.whisper_on_answer
                and self.whisper_played is None):
            self._goto(at, CallState.WHISPERING, f"{why}; whisper to leg A")
            return [PlayWhisper(self.plan.whisper_audio, dial)]
        self.legs[Leg.B].status = LegStatus.INITIATED
        self._goto(at, CallState.DIALING_B, f"{why}; dialing leg B")
        return [dial]

    def _dial(self, targets: tuple[str, ...], ring_timeout: int) -> DialLegB:
        return DialLegB(targets, ring_timeout, self.plan.time_limit, self.plan.caller_id,
                        answer_audio=self.plan.whisper_audio if self.plan.whisper_on_answer else None,
                        confirm_key=self.plan.confirm_key,
                        confirm_timeout=self.plan.confirm_timeout,
                        hold_music=self.plan.hold_music,
                        record_file=self.plan.recording_file)

    def pending_dial(self) -> DialLegB | None:
        """During the whisper: the dial of leg B that follows it (the
        PlayWhisper's then_dial), for a backend that picks the call up again."""
        if self.state is not CallState.WHISPERING or not self.attempts:
            return None
        attempt = self.attempts[-1]
        return self._dial(tuple(attempt["targets"]), attempt["ring_timeout"])

    def _close_attempt(self, at: float, outcome: str, dial: DialOutcome | None = None) -> None:
        if self.attempts and self.attempts[-1]["ended_at"] is None:
            self.attempts[-1].update(ended_at=at, outcome=outcome,
                                     dial_outcome=str(dial) if dial else None)

    def _bridge(self, at: float, why: str) -> list[Command]:
        self.bridged_at = at
        self._goto(at, CallState.BRIDGED, why)
        if self.plan.recording_file:
            return [StartRecording(self.plan.recording_file)]
        return []

    def _end_bridged(self, at: float) -> None:
        self.bridge_ended_at = at
        self._close_attempt(at, "answered", DialOutcome.ANSWERED)
        if self.hangup_by is None:
            # No party hung up: the switch ended the call, by the time limit
            # when the talk lasted that long.
            talked = at - (self.legs[Leg.B].answered_at or self.bridged_at or at)
            limit = self.plan.time_limit
            self.hangup_by = HangupBy.TIME_LIMIT if limit and talked >= limit - 1 else HangupBy.SWITCH
        self._decide(at, CallStatus.COMPLETED, f"call ended; hung up by {self.hangup_by}")
