"""The live-call flow: one leg, A, and a queue of actions run on it. Events in, commands out.

Pure, like :mod:`controller.core.machine`, whose two-leg flow it extends: a
``connect`` action puts its plan in place of the call's leg-B fields and runs
that flow's leg-B machinery unchanged (ROUTING, DIALING_B, RINGING_B,
CONFIRMING, BRIDGED). Which event each state takes is
:mod:`controller.core.live_table`; the record, result and snapshot are
:class:`controller.core.live_record.LiveRecord`.

Two ways in:

* inbound (:meth:`LiveCall.inbound`): the caller already rings on the switch.
  ``start()`` gives no command; the backend's claim reports leg A's channel.
  The service then queues the first actions (an empty ActionsQueued when the
  number's incoming_url answered 204: the call waits, with ringback);
* outbound (:meth:`LiveCall.outbound`): ``start()`` originates leg A; actions
  queued before it answers run once it does.

One action runs at a time, as one step on the switch, until the switch reports
its end; then the next runs. With nothing left the call waits
(WaitForActions) up to its idle timeout. The caller of an inbound call is
answered by the switch at the first step that needs audio (or at the bridge):
the core learns it from LegAnswered. However it ends, the call is completed
once leg A was answered, whatever its actions did.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from controller.core.commands import (
    ChooseTargets,
    Command,
    FetchActions,
    GatherDigits,
    HangupLegs,
    PauseLegA,
    PlayToLegA,
    RecordLegA,
    WaitForActions,
)
from controller.core.events import (
    ActionsFetchFailed,
    ActionsQueued,
    CommandFailed,
    DigitPressed,
    DigitsGathered,
    EndedWhileAway,
    FoundBetweenSteps,
    IdleTimedOut,
    LegAnswered,
    LegEnded,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
    RouteExhausted,
)
from controller.core.legs import LegRecord
from controller.core.live_record import FLOW_KEY, LIVE_FLOW, LiveRecord
from controller.core.live_table import LIVE_STATES, LIVE_TABLE
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus, DialOutcome, HangupBy, Leg, LegStatus
from controller.core.plan import CallPlan, PreparedAction
from controller.core.states import CallState
from controller.core.table import Table
from controller.errors import InvalidTransition

# The source an ActionsQueued has when it answers the FetchActions of a running action.
_ANSWER_SOURCE = {"gather": "action_url", "redirect": "redirect"}
_AWAY = "ended while the controller was away from the switch"
# The actions run as one step on leg A, and the state each runs in.
# The most tries of one step a backend keeps on the channel (a gather's are far fewer).
MAX_TRY = 99


def try_on_channel(text: str | None) -> int:
    """A step's try as the controller left it on the channel; 1 when it left
    none (a step set up by a version that did not mark it) or it reads as no try."""
    value = text or ""
    if len(value) <= len(str(MAX_TRY)) and value.isascii() and value.isdigit():
        return max(1, int(value))
    return 1


STEP_STATES = {"play": CallState.PLAYING, "gather": CallState.GATHERING,
               "pause": CallState.PAUSING, "record": CallState.RECORDING_STEP}


class LiveCall(LiveRecord):
    table: ClassVar[Table] = LIVE_TABLE

    @classmethod
    def inbound(cls, plan: CallPlan, from_: str, to: str, idle_timeout: int,
                created_at: float) -> LiveCall:
        """A call that arrived for number ``to`` from ``from_``; ``plan.leg_a`` is the caller."""
        return cls(plan, created_at=created_at, direction="inbound", from_=from_, to=to,
                   idle_timeout=idle_timeout)

    @classmethod
    def outbound(cls, plan: CallPlan, from_: str, idle_timeout: int, created_at: float) -> LiveCall:
        """A single-leg call to ``plan.leg_a``, placed from ``from_`` (its caller ID)."""
        return cls(plan, created_at=created_at, direction="outbound", from_=from_, to=plan.leg_a,
                   idle_timeout=idle_timeout)

    def start(self) -> list[Command]:
        if self.direction == "outbound":
            return super().start()
        if self.state is not CallState.NEW:
            raise InvalidTransition(str(self.state), "start")
        leg = self.legs[Leg.A]
        leg.status = LegStatus.RINGING
        leg.awaiting_channel = True  # the backend's claim reports it
        self._goto(self.created_at, CallState.RINGING_A, f"incoming call from {self.from_} to {self.to}")
        self._report("call.incoming", {"direction": self.direction, "from": self.from_, "to": self.to,
                                       "at": self.created_at})
        return self._take_reports()

    def _maybe_end(self, at: float) -> list[Command]:
        return self._take_reports() + super()._maybe_end(at)

    # ------------------------------------------------------------ the queue

    def _on_ActionsQueued(self, ev: ActionsQueued) -> list[Command]:
        running = self._running()
        answered = (self.state is CallState.FETCHING and running is not None
                    and ev.source == _ANSWER_SOURCE.get(running["type"]))
        if ev.replace or answered:
            self._drop_queued(ev.at, f"replaced by actions from {ev.source}")
        self._queue(ev.at, ev.actions, ev.source)
        if answered and running is not None:
            self._finish(ev.at, running, "completed",
                         None if running["type"] == "gather" else "redirected")
            return self._run_next(ev.at, f"{running['type']} {running['id']} answered")
        if self.state is CallState.IDLE or (
                self.state is CallState.RINGING_A and self.direction == "inbound"):
            return self._run_next(ev.at, f"actions from {ev.source}")
        return []

    def _on_ActionsFetchFailed(self, ev: ActionsFetchFailed) -> list[Command]:
        if not ev.action_id:
            # The number's incoming_url: the service queues its fallback actions next.
            self.incoming_error = ev.reason
            return []
        running = self._running()
        if self.state is not CallState.FETCHING or running is None or running["id"] != ev.action_id:
            return []  # late: that action was given up already
        self._finish(ev.at, running, "failed", reason=ev.reason)
        return self._run_next(ev.at, f"{running['type']} {running['id']} failed: {ev.reason}")

    def _run_next(self, at: float, why: str) -> list[Command]:
        """Start the next queued action; with none, wait for more."""
        if self.legs[Leg.A].hung_up:
            return []  # A is going: its LegEnded ends the call
        queued = self._queued()
        if not queued:
            if self.state is CallState.IDLE:
                return []
            self._goto(at, CallState.IDLE, f"{why}; waiting for actions")
            return [WaitForActions(self.idle_timeout, ringback=self.legs[Leg.A].answered_at is None)]
        record = queued[0]
        record.update(status="running", started_at=at)
        action = self.prepared[record["id"]]
        step = f"{why}; {action.type} {action.id}"
        spec = action.spec
        if action.type in STEP_STATES:
            if action.type == "gather":
                record.update(digits="", ended_by=None, tries=1)
            if action.type == "record" and action.record_file:
                record["file"] = action.record_file
            self._goto(at, STEP_STATES[action.type], step)
            return [self._step(action, 1)]
        if action.type == "redirect":
            self._goto(at, CallState.FETCHING, step)
            return [FetchActions(action.id, spec["url"], "redirect",
                                 {**self._about(), "action_id": action.id})]
        if action.type == "hangup":
            return self._hang_up(at, record, spec.get("reason"))
        if action.type == "connect" and action.connect is not None:
            return self._connect(at, action.connect, step)
        self._finish(at, record, "failed", reason=f"cannot run an action of type {action.type!r}")
        return self._run_next(at, f"{action.type} {action.id} failed")

    def _step(self, action: PreparedAction, try_number: int) -> Command:
        """The command that runs a play, gather, pause or record on leg A
        (only a gather is tried more than once)."""
        if action.type == "play":
            return PlayToLegA(action.id, action.audio, action.spec.get("loop", 1))
        if action.type == "gather":
            return self._gather(action, try_number)
        if action.type == "pause":
            return PauseLegA(action.id, action.spec["seconds"])
        return RecordLegA(action.id, action.record_file)

    def _step_done(self, at: float, action_id: str, status: str, outcome: str | None,
                   reason: str | None = None) -> list[Command]:
        """The switch ended the running action's step: the queue goes on."""
        running = self._running()
        if running is None or running["id"] != action_id:
            return []  # late: from a step already given up
        self._finish(at, running, status, outcome, reason)
        return self._run_next(at, f"{running['type']} {action_id} {outcome or status}")

    def _hang_up(self, at: float, record: dict[str, Any], reason: str | None) -> list[Command]:
        self._finish(at, record, "completed", "hung-up")
        self._cancel_leg(Leg.A)  # not answered: the caller is turned away
        self.hangup_by = self.hangup_by or HangupBy.API
        self._decide(at, CallStatus.CANCELED, reason or f"hangup action {record['id']}")
        return [HangupLegs(self._live_legs() or (Leg.A,))]

    # ------------------------------------------------------------ the steps

    def _on_PlayFinished(self, ev: PlayFinished) -> list[Command]:
        running = self._running()
        if running is not None and running["type"] == "connect":
            # The message of a connect that reached nobody: its outcome is set already.
            return self._step_done(ev.at, ev.action_id, "completed", None)
        if ev.played:
            return self._step_done(ev.at, ev.action_id, "completed", "played")
        return self._step_done(ev.at, ev.action_id, "failed", None, "could not be played")

    def _on_PauseFinished(self, ev: PauseFinished) -> list[Command]:
        return self._step_done(ev.at, ev.action_id, "completed", "paused")

    def _on_RecordingChanged(self, ev: RecordingChanged) -> list[Command]:
        if ev.error is not None:
            return self._step_done(ev.at, ev.action_id, "failed", None, ev.error)
        self.recording_started = self.recording_started or ev.recording
        return self._step_done(ev.at, ev.action_id, "completed", "started" if ev.recording else "stopped")

    def _on_FoundBetweenSteps(self, ev: FoundBetweenSteps) -> list[Command]:
        running = self._running()
        if running is None:
            return []
        end = ev.last_end
        try_number: int = running.get("tries", 1)
        if end is not None and end.action_id == running["id"] and ev.end_try == try_number:
            handler = getattr(self, "_on_" + type(end).__name__)
            commands: list[Command] = handler(end)
            return commands
        if running["type"] not in STEP_STATES:
            # A connect's message to leg A, not kept to send again: its outcome is set already.
            return self._step_done(ev.at, running["id"], "completed", None)
        # The step never started (the controller stopped before the switch took
        # it up): no end at all, another action's, or a gather's earlier try's.
        return [self._step(self.prepared[running["id"]], try_number)]

    def _on_IdleTimedOut(self, ev: IdleTimedOut) -> list[Command]:
        # The switch hangs leg A up itself.
        self.hangup_by = self.hangup_by or HangupBy.SWITCH
        self._cancel_leg(Leg.A)
        self._decide(ev.at, CallStatus.CANCELED, "idle timeout")
        return []

    def _gather(self, action: PreparedAction, try_number: int) -> GatherDigits:
        spec = action.spec
        return GatherDigits(action.id, action.audio[0] if action.audio else None, spec["max_digits"],
                            spec["finish_on_key"], spec["timeout"], spec["inter_digit_timeout"],
                            try_number)

    def _on_DigitPressed(self, ev: DigitPressed) -> list[Command]:
        running = self._running()
        if (running is not None and running["id"] == ev.action_id
                and len(running["digits"]) < running["spec"]["max_digits"]):
            running["digits"] += ev.digit
        return []

    def _on_DigitsGathered(self, ev: DigitsGathered) -> list[Command]:
        running = self._running()
        if running is None or running["id"] != ev.action_id:
            return []
        spec = running["spec"]
        valid = _valid(ev.digits, spec["valid_digits"])
        running.update(digits=ev.digits, ended_by=ev.ended_by)
        if not valid and running["tries"] <= spec["retries"]:
            running.update(tries=running["tries"] + 1, digits="")
            self._goto(ev.at, CallState.GATHERING,
                       f"gather {ev.action_id}: nothing valid ({ev.ended_by}); try {running['tries']}")
            return [self._gather(self.prepared[ev.action_id], running["tries"])]
        self.digits = ev.digits
        running["outcome"] = "gathered" if valid else ("invalid" if ev.digits else "no-input")
        gathered = {"action_id": ev.action_id, "digits": ev.digits, "ended_by": ev.ended_by,
                    "valid": valid, "tries": running["tries"]}
        self._report("call.gathered", {**self._about(), **gathered})
        if spec["action_url"]:
            self._goto(ev.at, CallState.FETCHING, f"gather {ev.action_id} {running['outcome']}; "
                                                   "asking its action_url")
            return [FetchActions(ev.action_id, spec["action_url"], "gather", {**self._about(), **gathered})]
        return self._step_done(ev.at, ev.action_id, "completed", None)

    # ------------------------------------------------------------ connect

    def _connect(self, at: float, plan: CallPlan, why: str) -> list[Command]:
        # Leg A is the caller, never the agent: the whisper is for leg B, on answer.
        self.plan = replace(plan, call_id=self.plan.call_id, leg_a=self.plan.leg_a,
                            whisper_on_answer=plan.whisper_on_answer or plan.whisper_audio is not None)
        self.legs[Leg.B] = LegRecord(plan.leg_b)
        self.route_state = {}
        self.whisper_played = None
        self.b_channel = None
        self.connect_from = len(self.attempts)
        if self.plan.first_attempt is None:
            self._goto(at, CallState.ROUTING, f"{why}: choosing whom to ring")
            return [ChooseTargets(None, self.route_state)]
        return self._start_attempt(at, self.plan.first_attempt, why)

    def _on_RouteExhausted(self, ev: RouteExhausted) -> list[Command]:
        running = self._running()
        if self.legs[Leg.A].hung_up or running is None:
            return []  # A is going: its LegEnded ends the call
        if len(self.attempts) == self.connect_from:
            self.legs[Leg.B].status = LegStatus.NOT_DIALED
        running.update(outcome=str(ev.status), reason=ev.reason)
        if ev.message_audio and self.legs[Leg.A].channel_up:
            self._goto(ev.at, CallState.PLAYING, f"{ev.reason}; telling leg A")
            return [PlayToLegA(running["id"], (ev.message_audio,))]
        return self._step_done(ev.at, running["id"], "completed", None)

    def _end_bridged(self, at: float) -> None:
        running = self._running()
        self._close_attempt(at, "answered", DialOutcome.ANSWERED)
        if running is not None and running["type"] == "connect":
            self._finish(at, running, "completed", "bridged")
        super()._end_bridged(at)

    # ------------------------------------------------------------ leg A, and the end

    def _on_LegAnswered(self, ev: LegAnswered) -> list[Command]:
        if ev.leg is Leg.B:
            return super()._on_LegAnswered(ev)
        leg = self.legs[Leg.A]
        if leg.answered_at is not None:
            return []  # told again (a restarted controller reads the channel): the first stands
        leg.status = LegStatus.ANSWERED
        leg.answered_at = ev.at
        if self.state in (CallState.DIALING_A, CallState.RINGING_A) and self.direction == "outbound":
            return self._run_next(ev.at, "leg A answered")
        return []  # the switch answered the caller for a step or the bridge

    def _on_leg_a_ended(self, ev: LegEnded, leg: LegRecord) -> list[Command]:
        outbound_ringing = self.direction == "outbound" and self.state in (
            CallState.DIALING_A, CallState.RINGING_A)
        if self.state is CallState.ENDING or outbound_ringing or self.state is CallState.BRIDGED:
            return super()._on_leg_a_ended(ev, leg)
        self.hangup_by = self.hangup_by or HangupBy.LEG_A
        if leg.answered_at is None:
            leg.status = LegStatus.CANCELED  # the caller gave up before being answered
        commands: list[Command] = []
        if self.state in (CallState.ROUTING, CallState.DIALING_B, CallState.RINGING_B,
                          CallState.CONFIRMING):
            self._cancel_leg(Leg.B)
            self._close_attempt(ev.at, "canceled")
            if self.legs[Leg.B].channel_up:
                commands.append(HangupLegs((Leg.B,)))
        self._decide(ev.at, CallStatus.CANCELED, f"leg A hung up while {self.state}")
        return commands

    def _on_CommandFailed(self, ev: CommandFailed) -> list[Command]:
        running = self._running()
        if running is None or (self.state is CallState.BRIDGED and ev.command == "StartRecording"):
            return super()._on_CommandFailed(ev)
        if ev.command == "RecordLegA":
            # A recording that did not start must not cut the call.
            return self._step_done(ev.at, running["id"], "failed", None, ev.reason)
        # The running action's own step (or dial) failed: the call cannot go on.
        self._finish(ev.at, running, "failed", reason=f"{ev.command} failed: {ev.reason}")
        return super()._on_CommandFailed(ev)

    def _on_EndedWhileAway(self, ev: EndedWhileAway) -> list[Command]:
        if self.state not in LIVE_STATES and not (
                self.state is CallState.RINGING_A and self.direction == "inbound"):
            return super()._on_EndedWhileAway(ev)
        a = self.legs[Leg.A]
        self._forget_channels()
        a.ended_at = a.ended_at or ev.at
        if ev.a_cause is not None:
            a.cause = ev.a_cause
        answered = ev.a_answered or a.answered_at is not None
        a.status = LegStatus.COMPLETED if answered else LegStatus.CANCELED
        self._decide(ev.at, CallStatus.CANCELED, _AWAY)
        return []

    def _decide(self, at: float, status: CallStatus, reason: str) -> None:
        a = self.legs[Leg.A]
        if a.answered_at is not None or a.status is LegStatus.COMPLETED:
            status = CallStatus.COMPLETED  # whatever the actions did
        if self.state is not CallState.ENDING:
            running = self._running()
            if running is not None:
                if running["type"] == "gather":
                    self.digits = running["digits"]
                    running["ended_by"] = running["ended_by"] or "hangup"
                self._finish(at, running, "canceled", reason=f"the call ended: {reason}")
            self._drop_queued(at, "the call ended first")
        if self.legs[Leg.B].status is LegStatus.PENDING:
            self.legs[Leg.B].status = LegStatus.NOT_DIALED
        super()._decide(at, status, reason)


def _valid(digits: str, allowed: str) -> bool:
    """Something was gathered, and every key is one of ``allowed`` ("" allows any)."""
    return bool(digits) and (not allowed or all(d in allowed for d in digits))


def core_from_snapshot(data: dict[str, Any]) -> CallConnect:
    """The call a snapshot was taken of, live or two-leg, as it was."""
    if data.get(FLOW_KEY) == LIVE_FLOW:
        return LiveCall.from_snapshot(data)
    return CallConnect.from_snapshot(data)

