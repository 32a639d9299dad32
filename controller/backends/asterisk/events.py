"""AMI events to core events: a pure translation, tested on recorded wire text.

panoramisk frames the stream (frames split across reads, stray bytes); this
module decides what each parsed message means for our calls. Its only state is
which channel belongs to which call: Leg A's Uniqueid is the ChannelId we chose
before originating; Leg B's is learnt from the DialBegin that Leg A's Dial
raises, which names both channels. Nothing is matched by timing or by parsing
Uniqueid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from controller.backends.base import IncomingCall
from controller.backends.held import EventHold
from controller.core.events import (
    AnswerAccepted,
    AnswerDeclined,
    CommandFailed,
    DialFinished,
    DigitPressed,
    DigitsGathered,
    Event,
    IdleTimedOut,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    MessageFinished,
    OriginateFailed,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
    RecordingStarted,
    WhisperFinished,
)
from controller.core.outcomes import DialOutcome, Leg

log = structlog.get_logger(__name__)

USER_EVENT_NAME = "CallConnect"
LEG_A_SUFFIX = "-a"

# OriginateResponse Reason: the AST_CONTROL value the originate ended on.
_ORIGINATE_REASONS = {
    "0": "the switch could not create the channel (unknown endpoint or no route)",
    "1": "the channel hung up",
    "3": "no answer within the ring timeout",
    "5": "busy",
    "8": "congestion",
}


# What the inbound dialplan hands over (it FILTERs the caller to these
# characters already; checked again, as any outside input).
_NUMBER = re.compile(r"\+?[0-9]{1,32}")
# Asterisk's Uniqueid: [systemname-]epoch.sequence
_UNIQUEID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")
_ACTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DIGITS = re.compile(r"[0-9*#]{0,32}")
_GATHER_ENDINGS = frozenset({"finish-key", "max-digits", "timeout"})


def leg_a_channel_id(call_id: str) -> str:
    return call_id + LEG_A_SUFFIX


@dataclass(frozen=True)
class Routed:
    call_id: str
    event: Event


class AmiEventTranslator:
    def __init__(self) -> None:
        self._hold = EventHold()
        # Uniqueid -> (call id, leg), and per call its channels in the order
        # they became ours: both changed only through _own and _disown.
        self._legs: dict[str, tuple[str, Leg]] = {}
        self._channels: dict[str, dict[str, Leg]] = {}
        # Per call: the dial strings of leg B's current attempt -> targets.
        self._dials: dict[str, dict[str, str]] = {}
        self._targets: dict[str, str] = {}  # leg B uniqueid -> its target

        # Call id -> leg A's channel for incoming calls: answered by a step
        # (or the bridge), which the channel's own Newstate tells.
        self._claimed: dict[str, str] = {}

    def watch(self, call_id: str) -> None:
        if call_id not in self._claimed:
            self._own(leg_a_channel_id(call_id), call_id, Leg.A)

    def claim(self, call_id: str, uniqueid: str) -> None:
        """An incoming call's channel is leg A of this call from now on."""
        self._disown(leg_a_channel_id(call_id))
        self._own(uniqueid, call_id, Leg.A)
        self._claimed[call_id] = uniqueid

    def incoming(self, message: Mapping[str, str], now: float) -> IncomingCall | None:
        """The call the inbound dialplan announces (UserEvent Step: incoming)
        on a channel nobody has claimed; None for anything else, or when a
        value is not what the dialplan sends (logged)."""
        if message.get("Event") != "UserEvent" or message.get("UserEvent") != USER_EVENT_NAME \
                or message.get("Step") != "incoming":
            return None
        uniqueid, caller, dialed = (message.get(key, "") for key in ("Uniqueid", "Caller", "Dialed"))
        fields = (uniqueid, caller, dialed)
        if not all(isinstance(value, str) for value in fields) or uniqueid in self._legs:
            return None
        if not _UNIQUEID.fullmatch(uniqueid) or not _NUMBER.fullmatch(dialed) \
                or (caller and not _NUMBER.fullmatch(caller)):
            log.warning("ami.incoming.malformed", uniqueid=uniqueid[:40], dialed=dialed[:40])
            return None
        try:
            at = _timestamp(message, now)
        except TypeError:
            at = now
        return IncomingCall(channel=uniqueid, caller=caller, dialed=dialed, at=at)

    def expect_dial(self, call_id: str, dial_strings: dict[str, str]) -> None:
        """Leg B is about to be dialed with these dial strings (-> targets):
        its DialBegin events tell which channel rings which target."""
        self._dials[call_id] = dial_strings

    def forget(self, call_id: str) -> None:
        for uniqueid in self._channels.pop(call_id, {}):
            del self._legs[uniqueid]
            self._targets.pop(uniqueid, None)
        self._claimed.pop(call_id, None)
        self._dials.pop(call_id, None)

    def adopt(self, call_id: str, leg: Leg, uniqueid: str) -> None:
        """A channel of ours found on the switch after a restart."""
        self._own(uniqueid, call_id, leg)

    def channel_of(self, call_id: str, leg: Leg) -> str | None:
        """The call's first channel of that leg still ours."""
        channels = self._channels.get(call_id, {})
        return next((uniqueid for uniqueid, its_leg in channels.items() if its_leg is leg), None)

    def _own(self, uniqueid: str, call_id: str, leg: Leg) -> None:
        self._disown(uniqueid)
        self._legs[uniqueid] = (call_id, leg)
        self._channels.setdefault(call_id, {})[uniqueid] = leg

    def _disown(self, uniqueid: str) -> None:
        owner = self._legs.pop(uniqueid, None)
        if owner is None:
            return
        channels = self._channels[owner[0]]
        del channels[uniqueid]
        if not channels:
            del self._channels[owner[0]]

    def hold(self) -> None:
        """Keep events untranslated until :meth:`release` (see ``held.py``)."""
        self._hold.hold()

    def release(self) -> list[Routed]:
        """One hold is over; after the last, the held events translated."""
        return self._hold.release(self.translate)

    def translate(self, message: Mapping[str, str], now: float) -> list[Routed]:
        """The core events one AMI event means; [] for anything not ours (or
        held: see :meth:`hold`).

        ``now`` stands in for the event's time when Asterisk sent no
        Timestamp header (manager.conf timestampevents=no).
        """
        if self._hold.keep(message, now):
            return []
        name = message.get("Event", "")
        # A header that came twice is a list: no event of ours.
        handler = EVENT_HANDLERS.get(name) if isinstance(name, str) else None
        if handler is None:
            return []
        try:
            at = _timestamp(message, now)
            routed = handler(self, message, at)
        # TypeError, AttributeError: a header that came twice, which panoramisk
        # gives as a list instead of a string.
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ami.event.malformed", ami_event=name, error=str(exc))
            return []
        return routed

    # ------------------------------------------------------------ events

    def _leg_of(self, message: Mapping[str, str], key: str = "Uniqueid") -> tuple[str, Leg] | None:
        return self._legs.get(message.get(key, ""))

    def _Newchannel(self, m: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._leg_of(m)
        if owner is None or owner[1] is not Leg.A:
            return []
        return [Routed(owner[0], LegCreated(at, Leg.A, m["Uniqueid"]))]

    def _Newstate(self, m: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._leg_of(m)
        if owner is None:
            return []
        if owner[1] is Leg.B:
            # Leg B answering: with Dial's U() its DialEnd comes only after
            # the on-answer whisper and confirm key, so the answer is taken
            # from the channel itself.
            if m.get("ChannelStateDesc") != "Up":
                return []
            uniqueid = m["Uniqueid"]
            return [Routed(owner[0], LegAnswered(at, Leg.B, uniqueid,
                                                 self._targets.get(uniqueid, "")))]
        state = m.get("ChannelStateDesc")
        if state == "Up" and self._claimed.get(owner[0]) == m["Uniqueid"]:
            return [Routed(owner[0], LegAnswered(at, Leg.A, m["Uniqueid"]))]
        if state != "Ringing":
            return []
        return [Routed(owner[0], LegRinging(at, Leg.A))]

    def _DialBegin(self, m: Mapping[str, str], at: float) -> list[Routed]:
        # Leg A's own Dial (Uniqueid = A) creates Leg B. An Originate also
        # raises a DialBegin, with no Uniqueid and Leg A as the destination.
        owner = self._leg_of(m)
        dest = m.get("DestUniqueid", "")
        if owner is None or owner[1] is not Leg.A or not dest:
            return []
        self._own(dest, owner[0], Leg.B)
        tech = m.get("DestChannel", "").split("/", 1)[0]
        dialed = f"{tech}/{m.get('DialString', '')}"
        self._targets[dest] = self._dials.get(owner[0], {}).get(dialed, "")
        return [Routed(owner[0], LegCreated(at, Leg.B, dest))]

    def _DialState(self, m: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._leg_of(m)
        if owner is None or owner[1] is not Leg.A or m.get("DialStatus") != "RINGING":
            return []
        if self._legs.get(m.get("DestUniqueid", "")) != (owner[0], Leg.B):
            return []
        return [Routed(owner[0], LegRinging(at, Leg.B))]

    def _DialEnd(self, m: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._leg_of(m)
        if owner is None or owner[1] is not Leg.A or m.get("DialStatus") != "ANSWER":
            return []
        dest = m.get("DestUniqueid", "")
        if self._legs.get(dest) != (owner[0], Leg.B):
            return []
        return [Routed(owner[0], LegAnswered(at, Leg.B, dest, self._targets.get(dest, "")))]

    def _UserEvent(self, m: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._leg_of(m)
        if m.get("UserEvent") != USER_EVENT_NAME:
            return []
        step = m.get("Step", "")
        if owner is None:
            if step == "unclaimed":
                log.warning("ami.incoming.unclaimed", uniqueid=m.get("Uniqueid", "")[:40],
                            dialed=str(m.get("Dialed", ""))[:40],
                            hint="nobody claimed the incoming call in time; the switch hung it up")
            return []
        call_id = owner[0]
        live = _LIVE_STEPS.get(step)
        if live is not None and owner[1] is Leg.A:
            event = live(m, at)
            if event is None:
                log.warning("ami.userevent.malformed", step=step, call_id=call_id)
                return []
            return [Routed(call_id, event)]
        if step == "answered":
            return [Routed(call_id, LegAnswered(at, Leg.A))]
        if step == "whisper-done":
            return [Routed(call_id, WhisperFinished(at, m.get("PlaybackStatus") == "SUCCESS"))]
        if step == "dial-done":
            return [Routed(call_id, DialFinished(at, dial_outcome(m.get("DialStatus", ""))))]
        if step == "accepted" and owner[1] is Leg.B:
            return [Routed(call_id, AnswerAccepted(at))]
        if step == "declined" and owner[1] is Leg.B:
            key = m.get("Key", "")
            return [Routed(call_id, AnswerDeclined(
                at, f"pressed {key}, not the confirm key" if key else "pressed no key in time"))]
        if step == "recording-started":
            return [Routed(call_id, RecordingStarted(at))]
        if step == "recording-failed":
            return [Routed(call_id, CommandFailed(at, "StartRecording", _recording_failure(
                m.get("Status", ""))))]
        if step == "message-done":
            return [Routed(call_id, MessageFinished(at))]
        if step == "hold-timeout":
            return [Routed(call_id, CommandFailed(
                at, "dialplan", "leg A waited too long for the controller's next step"))]
        log.warning("ami.userevent.unknown_step", step=step, call_id=call_id)
        return []

    def _OriginateResponse(self, m: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._leg_of(m)
        if owner is None or m.get("Response") != "Failure":
            return []
        reason = _ORIGINATE_REASONS.get(m.get("Reason", ""), f"reason {m.get('Reason')}")
        return [Routed(owner[0], OriginateFailed(at, reason))]

    def _HangupRequest(self, m: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._leg_of(m)
        if owner is None:
            return []
        return [Routed(owner[0], LegHungUp(at, owner[1], int(m.get("Cause") or 0),
                                           m["Uniqueid"]))]

    def _Hangup(self, m: Mapping[str, str], at: float) -> list[Routed]:
        uniqueid = m.get("Uniqueid", "")
        owner = self._legs.get(uniqueid)
        if owner is None:
            return []
        if owner[1] is Leg.B:
            self._disown(uniqueid)
            self._targets.pop(uniqueid, None)
        cause = int(m.get("Cause") or 0)
        return [Routed(owner[0], LegEnded(at, owner[1], cause, m.get("Cause-txt", ""), uniqueid))]


# The AMI events the translator reads (manager_callconnect.conf's eventfilter
# lets only these through), each to its handler.
EVENT_HANDLERS: dict[str, Callable[[AmiEventTranslator, Mapping[str, str], float], list[Routed]]] = {
    name: getattr(AmiEventTranslator, "_" + name)
    for name in ("Newchannel", "Newstate", "DialBegin", "DialState", "DialEnd", "UserEvent",
                 "OriginateResponse", "HangupRequest", "Hangup")}


def _action(m: Mapping[str, str]) -> str | None:
    action_id = m.get("CallAction", "")
    return action_id if _ACTION_ID.fullmatch(action_id) else None


def _play_done(m: Mapping[str, str], at: float) -> Event | None:
    action_id = _action(m)
    return None if action_id is None else PlayFinished(
        at, action_id, m.get("PlaybackStatus") == "SUCCESS")


def _digit(m: Mapping[str, str], at: float) -> Event | None:
    action_id, digit = _action(m), m.get("Digit", "")
    if action_id is None or len(digit) != 1 or not _DIGITS.fullmatch(digit):
        return None
    return DigitPressed(at, action_id, digit)


def _gather_done(m: Mapping[str, str], at: float) -> Event | None:
    action_id, digits, ended_by = _action(m), m.get("Digits", ""), m.get("EndedBy", "")
    if action_id is None or not _DIGITS.fullmatch(digits) or ended_by not in _GATHER_ENDINGS:
        return None
    return DigitsGathered(at, action_id, digits, ended_by)


def _pause_done(m: Mapping[str, str], at: float) -> Event | None:
    action_id = _action(m)
    return None if action_id is None else PauseFinished(at, action_id)


def _record(recording: bool) -> Callable[[Mapping[str, str], float], Event | None]:
    def translate(m: Mapping[str, str], at: float) -> Event | None:
        action_id = _action(m)
        return None if action_id is None else RecordingChanged(at, action_id, recording)
    return translate


def _record_failed(m: Mapping[str, str], at: float) -> Event | None:
    action_id = _action(m)
    return None if action_id is None else RecordingChanged(
        at, action_id, False, _recording_failure(m.get("Status", "")))


def _idle_timeout(m: Mapping[str, str], at: float) -> Event | None:
    return IdleTimedOut(at)


# The live-call steps' UserEvents (callconnect-play, -gather, ...) on leg A.
_LIVE_STEPS: dict[str, Callable[[Mapping[str, str], float], Event | None]] = {
    "play-done": _play_done,
    "digit": _digit,
    "gather-done": _gather_done,
    "pause-done": _pause_done,
    "record-started": _record(True),
    "record-stopped": _record(False),
    "record-failed": _record_failed,
    "idle-timeout": _idle_timeout,
}


def _recording_failure(status: str) -> str:
    """Why MixMonitor did not start, from the dialplan's TryExec status."""
    if status == "NOAPP":
        return ("MixMonitor is not available on Asterisk: load app_mixmonitor.so "
                "(module load app_mixmonitor.so)")
    return (f"MixMonitor did not start (TryExec status {status[:20] or 'unknown'}); "
            "see the Asterisk log")


def _timestamp(message: Mapping[str, str], now: float) -> float:
    value = message.get("Timestamp")
    if not value:
        return now
    try:
        return float(value)
    except (ValueError, TypeError):  # TypeError: the header came twice, as a list
        return now


# Dial's DIALSTATUS in the core's words; CHANUNAVAIL, CONGESTION and the rest
# mean nobody was reached.
_DIAL_OUTCOME = {
    "ANSWER": DialOutcome.ANSWERED,
    "BUSY": DialOutcome.BUSY,
    "NOANSWER": DialOutcome.NO_ANSWER,
    "CANCEL": DialOutcome.CANCELED,
}


def dial_outcome(dial_status: str) -> DialOutcome:
    """How Dial ended (its DIALSTATUS), as the core says it."""
    return _DIAL_OUTCOME.get(dial_status.upper(), DialOutcome.FAILED)
