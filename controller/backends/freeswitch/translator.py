"""FreeSWITCH events to core events: the rules, pure and tested on wire text.

:class:`FsEventTranslator` decides what an event means for our calls, whose
channels it knows by the ids we gave them (see ``ids.py`` and
``tracking.py``). Which target a Leg B channel rings is the
``callconnect_target`` variable set on it (``[...]`` in the dial string), read
back from its events. Leg B answered means: without answer steps, the channel
FreeSWITCH bridges (``CHANNEL_BRIDGE``; two targets may answer at once and
only one wins); with them, the first ``CHANNEL_ANSWER``, whose confirm step is
then read from its ``PLAYBACK_*`` and ``DTMF`` events and ended by
``CHANNEL_BRIDGE`` (accepted) or a wrong key, the prompt starting again, or
the backend's timer (declined).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from controller.backends.held import EventHold
from controller.core.events import (
    AnswerAccepted,
    AnswerDeclined,
    DialFinished,
    Event,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    MessageFinished,
    OriginateFailed,
    RecordingStarted,
    WhisperFinished,
)
from controller.core.outcomes import Leg

from .causes import HANGUP_CAUSES, REFUSALS, cause_name, dial_outcome, originate_failure, q850_cause
from .live_events import LiveEvents, Routed
from .tracking import BLeg, Dial, FollowedCall, PlaybackKind
from .wire import BODY_KEY

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WaitForKey(Event):
    """Not a core event: Leg B ``channel`` now has ``seconds`` to press the
    confirm key (the backend declines it if the switch says nothing by then)."""

    channel: str
    seconds: float


class FsEventTranslator(LiveEvents):
    """The calls it follows (see CallTracker), and what their events mean
    (a live call's steps: LiveEvents)."""

    def __init__(self) -> None:
        super().__init__()
        self._hold = EventHold()

    def hold(self) -> None:
        """Keep events untranslated until :meth:`release` (see ``held.py``)."""
        self._hold.hold()

    def release(self) -> list[Routed]:
        """One hold is over; after the last, the held events translated."""
        return self._hold.release(self.translate)

    def translate(self, event: Mapping[str, str], now: float) -> list[Routed]:
        """The core events one FreeSWITCH event means; [] for anything not ours
        (or held: see :meth:`hold`). ``now`` stands in for the event's time if
        it has no timestamp."""
        if self._hold.keep(event, now):
            return []
        name = event.get("Event-Name", "")
        handler = getattr(self, "_" + name, None)
        if handler is None:
            return []
        at = _timestamp(event, now)
        try:
            routed: list[Routed] = handler(event, at)
        except (KeyError, ValueError) as exc:
            log.warning("esl.event.unreadable", event_name=name, error=str(exc))
            return []
        return routed

    def confirm_expired(self, call_id: str, channel: str, at: float) -> list[Routed]:
        """The time to press the confirm key is up (the backend's timer)."""
        call = self._calls.get(call_id)
        if call is None or call.dial is None:
            return []
        dial = call.dial
        if dial.winner != channel or dial.decided or dial.bridged or call.a_going:
            return []
        return self._decline(call_id, dial, "pressed no key in time", at)

    # ------------------------------------------------------------ channel events

    def _CHANNEL_CREATE(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is not None:
            return [Routed(a[0], LegCreated(at, Leg.A, e["Unique-ID"]))]
        b = self._b_owner(e)
        if b is None:
            return []
        call_id, _, leg, channel = b
        leg.created = True
        leg.target = e.get("variable_callconnect_target") or leg.target
        return [Routed(call_id, LegCreated(at, Leg.B, channel))]

    def _CHANNEL_PROGRESS(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is not None:
            return [Routed(a[0], LegRinging(at, Leg.A))]
        b = self._b_owner(e)
        if b is None or b[2].answered_at is not None:
            return []
        return [Routed(b[0], LegRinging(at, Leg.B))]

    _CHANNEL_PROGRESS_MEDIA = _CHANNEL_PROGRESS

    def _CHANNEL_ANSWER(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is not None:
            if a[1].a_channel is None:
                self.answered_before_park(a[0], at)
                return []
            a[1].a_answered = True
            return [Routed(a[0], LegAnswered(at, Leg.A, e["Unique-ID"]))]
        b = self._b_owner(e)
        if b is None:
            return []
        call_id, call, leg, channel = b
        leg.answered_at = at
        leg.target = e.get("variable_callconnect_target") or leg.target
        dial = call.dial
        if dial is None or dial.steps is None or dial.winner is not None or call.a_going:
            # Without answer steps the winner is the channel FreeSWITCH bridges
            # (CHANNEL_BRIDGE): two legs may answer at once.
            return []
        # With answer steps FreeSWITCH keeps the others ringing while this one
        # hears the whisper; the backend cancels them (the first answer wins).
        dial.winner = channel
        routed = [Routed(call_id, LegAnswered(at, Leg.B, channel, leg.target))]
        if dial.steps.key is not None and dial.steps.audio is None:
            dial.waiting = True
            routed.append(Routed(call_id, WaitForKey(at, channel, dial.steps.timeout)))
        return routed

    def _CHANNEL_PARK(self, e: Mapping[str, str], at: float) -> list[Routed]:
        # The leg A we originate answers before originate() hands it to
        # park(). A playback sent to it in between runs in that state and can
        # end at once with PLAYBACK ERROR (python -m bench.fs_answer_race),
        # so its next step waits for this.
        a = self._a_owner(e)
        if a is None:
            return []
        return self._a_answer_reported(a[0], a[1], e)

    def _a_answer_reported(self, call_id: str, call: FollowedCall,
                           e: Mapping[str, str]) -> list[Routed]:
        answered_at, call.a_answer_unreported = call.a_answer_unreported, None
        if answered_at is None:
            return []
        return [Routed(call_id, LegAnswered(answered_at, Leg.A, e["Unique-ID"]))]

    def _CHANNEL_BRIDGE(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is None:
            return []
        call_id, call = a
        channel = e.get("Bridge-B-Unique-ID") or e.get("Other-Leg-Unique-ID", "")
        leg = self._b.get(channel)
        dial = call.dial
        if leg is None or leg.call_id != call_id or dial is None or dial.bridged:
            return []
        dial.bridged = True
        if dial.steps is None:
            dial.winner = channel
            answered = leg.answered_at if leg.answered_at is not None else at
            return [Routed(call_id, LegAnswered(answered, Leg.B, channel, leg.target))]
        routed = []
        if dial.winner is None:  # its answer was not seen (a restart)
            dial.winner = channel
            routed.append(Routed(call_id, LegAnswered(leg.answered_at or at, Leg.B, channel,
                                                      leg.target)))
        dial.decided = True
        routed.append(Routed(call_id, AnswerAccepted(at)))
        return routed

    def _CHANNEL_HANGUP(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is not None:
            answered = self._a_answer_reported(a[0], a[1], e)  # hung up before park()
            idle = self._idle_over(a[0], a[1], e, at)
            a[1].a_going = True
            return answered + idle + self._a_hung_up(a[0], a[1], e, at)
        b = self._b_owner(e)
        if b is None:
            return []
        return self._b_hung_up(b[0], b[2], b[3], e, at)

    def _CHANNEL_HANGUP_COMPLETE(self, e: Mapping[str, str], at: float) -> list[Routed]:
        # The disposition of a switch-side hangup (send_bye, send_cancel) is
        # only set after CHANNEL_HANGUP; a party's (recv_*) before it. Either
        # way it is here now.
        a = self._a_owner(e)
        if a is not None:
            call_id, call = a
            if call.a_ended:
                return []
            routed = self._a_answer_reported(call_id, call, e)
            routed += self._idle_over(call_id, call, e, at)
            call.a_going = True
            routed += self._a_hung_up(call_id, call, e, at)
            call.a_ended = True
            routed.append(Routed(call_id, LegEnded(at, Leg.A, q850_cause(e), cause_name(e),
                                                   e["Unique-ID"])))
            return routed
        b = self._b_owner(e)
        if b is None or b[2].ended:
            return []
        call_id, _, leg, channel = b
        routed = self._b_hung_up(call_id, leg, channel, e, at)
        leg.ended = True
        routed.append(Routed(call_id, LegEnded(at, Leg.B, q850_cause(e), cause_name(e), channel)))
        return routed

    def _a_hung_up(self, call_id: str, call: FollowedCall, e: Mapping[str, str],
                   at: float) -> list[Routed]:
        """LegHungUp when the party hung up or refused (sip_hangup_disposition
        recv_bye, recv_cancel, recv_refuse), once per channel."""
        if call.a_hung_up or not _party_hangup(e):
            return []
        call.a_hung_up = True
        return [Routed(call_id, LegHungUp(at, Leg.A, q850_cause(e), e["Unique-ID"]))]

    def _b_hung_up(self, call_id: str, leg: BLeg, channel: str, e: Mapping[str, str],
                   at: float) -> list[Routed]:
        if leg.hung_up or not _party_hangup(e):
            return []
        leg.hung_up = True
        return [Routed(call_id, LegHungUp(at, Leg.B, q850_cause(e), channel))]

    # ------------------------------------------------------------ the confirm step

    def _PLAYBACK_START(self, e: Mapping[str, str], at: float) -> list[Routed]:
        confirming = self._confirming(e)
        if confirming is None:
            return []
        call_id, dial = confirming
        if dial.steps is None or e.get("Playback-File-Path") != dial.steps.audio:
            return []
        dial.prompts += 1
        if dial.prompts > 1:
            # group_confirm plays the file again once the read timed out
            # without the key (switch_ivr_originate.c collect_thread_run).
            return self._decline(call_id, dial, "pressed no key in time", at)
        return []

    def _DTMF(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is not None:
            return self._step_key(a[0], a[1], e, at)
        confirming = self._confirming(e)
        if confirming is None:
            return []
        call_id, dial = confirming
        digit = e.get("DTMF-Digit", "")
        if dial.steps is not None and digit == dial.steps.key:
            dial.decided = True  # FreeSWITCH bridges it now: CHANNEL_BRIDGE says so
            return []
        shown = digit if len(digit) == 1 and digit in "0123456789*#ABCD" else "?"
        return self._decline(call_id, dial, f"pressed {shown}, not the confirm key", at)

    def _confirming(self, e: Mapping[str, str]) -> tuple[str, Dial] | None:
        """The call whose Leg B ``e`` is about, if that channel is the one
        answering a confirm key and has not decided yet."""
        b = self._b_owner(e)
        if b is None:
            return None
        call_id, call, _, channel = b
        dial = call.dial
        if (dial is None or dial.steps is None or dial.steps.key is None
                or dial.winner != channel or dial.decided or dial.bridged or call.a_going):
            return None
        return call_id, dial

    def _decline(self, call_id: str, dial: Dial, reason: str, at: float) -> list[Routed]:
        dial.decided = True
        return [Routed(call_id, AnswerDeclined(at, reason))]

    # ------------------------------------------------------------ media and apps

    def _PLAYBACK_STOP(self, e: Mapping[str, str], at: float) -> list[Routed]:
        confirming = self._confirming(e)
        if confirming is not None:
            call_id, dial = confirming
            if (dial.steps is not None and e.get("Playback-File-Path") == dial.steps.audio
                    and not dial.waiting):
                dial.waiting = True
                return [Routed(call_id, WaitForKey(at, e["Unique-ID"], dial.steps.timeout))]
            return []
        a = self._a_owner(e)
        if a is None:
            return []
        call_id, call = a
        kind = call.playbacks.pop(e.get("Playback-File-Path", ""), None)
        return self._playback_done(call_id, call, kind, e.get("Playback-Status") == "done", at)

    def _CHANNEL_EXECUTE_COMPLETE(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is None:
            return []
        call_id, call = a
        step_end = self._step_execute_complete(call_id, call, e, at)
        if step_end is not None:
            return step_end
        application = e.get("Application", "")
        if application == "playback":
            # Only when PLAYBACK_STOP never came: a file that could not be
            # opened raises no PLAYBACK_START/STOP, only this.
            kind = call.playbacks.pop(e.get("Application-Data", ""), None)
            played = e.get("Application-Response") == "FILE PLAYED"
            return self._playback_done(call_id, call, kind, played, at)
        if application == "bridge":
            return self._bridge_done(call_id, call, e, at)
        return []

    def _bridge_done(self, call_id: str, call: FollowedCall, e: Mapping[str, str],
                     at: float) -> list[Routed]:
        dial = call.dial
        if dial is None or dial.bridged or dial.reported or call.a_going:
            return []  # after a bridge, or A hung up: the hangups tell
        dial.reported = True
        self._close_dial(call)
        routed: list[Routed] = []
        disposition = e.get("variable_originate_disposition", "").upper()
        if disposition in REFUSALS:
            # B refused, but its own CHANNEL_HANGUP has not arrived yet: say
            # so first, or the core would read the dial status alone.
            for channel in dial.legs:
                leg = self._b.get(channel)
                if leg is not None and leg.created and not leg.hung_up and not leg.ended:
                    leg.hung_up = True
                    routed.append(Routed(call_id, LegHungUp(at, Leg.B, HANGUP_CAUSES[disposition],
                                                            channel)))
                    break
        routed.append(Routed(call_id, DialFinished(at, dial_outcome(e))))
        return routed

    def _playback_done(self, call_id: str, call: FollowedCall, kind: PlaybackKind | None,
                       played: bool, at: float) -> list[Routed]:
        if kind is None:
            return []
        if kind is PlaybackKind.MESSAGE:
            return [Routed(call_id, MessageFinished(at))]
        if call.a_going:
            return []  # A hung up during the whisper; its hangup ends the call
        return [Routed(call_id, WhisperFinished(at, played))]

    def _RECORD_START(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is None or self._step_record(a[1], True):
            return []
        return [Routed(a[0], RecordingStarted(at))]

    def _RECORD_STOP(self, e: Mapping[str, str], at: float) -> list[Routed]:
        a = self._a_owner(e)
        if a is not None:
            self._step_record(a[1], False)
        return []

    def _BACKGROUND_JOB(self, e: Mapping[str, str], at: float) -> list[Routed]:
        call_id = self._jobs.get(e.get("Job-UUID", ""))
        if call_id is None or call_id not in self._calls:
            return []
        result = e.get(BODY_KEY, "").strip()
        if result.startswith("+OK"):
            return []
        return [Routed(call_id, OriginateFailed(at, originate_failure(result)))]


def _party_hangup(event: Mapping[str, str]) -> bool:
    """The party hung up or refused. mod_sofia sets ``recv_refuse`` before
    the hangup, but ``recv_bye`` only after it (sofia_handle_sip_i_bye):
    CHANNEL_HANGUP for a received BYE has no disposition yet, only the
    ``sip_term_status`` set from the BYE just before the hangup (a hangup of
    ours has none then)."""
    disposition = event.get("variable_sip_hangup_disposition", "")
    if disposition:
        return disposition.startswith("recv_")
    return "variable_sip_term_status" in event


def _timestamp(event: Mapping[str, str], now: float) -> float:
    """Event-Date-Timestamp is microseconds since the epoch."""
    value = event.get("Event-Date-Timestamp", "")
    if value.isdigit() and value != "0":
        return int(value) / 1_000_000
    return now
