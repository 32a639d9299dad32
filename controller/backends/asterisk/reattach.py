"""What became of a call while the controller was away (a restart, a lost
link): read from the switch's channels, their variables and the outcome the
dialplan kept in AstDB, never guessed from timing.

Leg A is the channel we originated (``<call id>-a``), or for an incoming call
the channel the controller claimed, which carries the call id in CC_CALL_ID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.core.events import (
    DialFinished,
    DigitsGathered,
    EndedWhileAway,
    Event,
    FoundBetweenSteps,
    LegAnswered,
    LegCreated,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
    StepEnd,
    WhisperFinished,
)
from controller.core.live import STEP_STATES, try_on_channel
from controller.core.outcomes import Leg
from controller.core.states import CallState

from .actions import CONTEXT_DIAL, CONTEXT_HOLD, CONTEXT_IDLE
from .events import dial_outcome, leg_a_channel_id

# Contexts where a claimed incoming channel can be: every callconnect step
# but the wait for a claim (callconnect-incoming, no call id yet).
_STEP_CONTEXT_PREFIX = "callconnect-"
_UNCLAIMED_CONTEXT = "callconnect-incoming"
_GATHER_ENDINGS = ("finish-key", "max-digits", "timeout")


class AmiQueries(Protocol):
    async def getvar(self, channel: str, name: str) -> str | None: ...

    async def kept_outcome(self, call_id: str) -> str:
        """The callconnect-outcome handler's AstDB value, "" if none."""


@dataclass
class Found:
    """Leg A and leg B as found on the switch, and the events missed."""

    leg_a: str | None = None
    leg_b: str | None = None
    events: list[Event] = field(default_factory=list)


async def find_claimed(ami: AmiQueries, call_id: str, channels: Sequence[Mapping[str, str]],
                       known: dict[str, str]) -> Mapping[str, str] | None:
    """The incoming channel claimed for ``call_id``: its CC_CALL_ID names it.
    ``known`` (uniqueid -> call id) saves asking the same channel twice; it
    is pruned to the channels that still exist."""
    live = {c.get("Uniqueid", "") for c in channels}
    for uniqueid in [u for u in known if u not in live]:
        del known[uniqueid]
    for channel in channels:
        uniqueid = channel.get("Uniqueid", "")
        context = channel.get("Context", "")
        if uniqueid.endswith("-a") or not context.startswith(_STEP_CONTEXT_PREFIX) \
                or context == _UNCLAIMED_CONTEXT:
            continue
        if uniqueid not in known:
            known[uniqueid] = await ami.getvar(uniqueid, "CC_CALL_ID") or ""
        if known[uniqueid] == call_id:
            return channel
    return None


async def missed(ami: AmiQueries, call_id: str, state: str, now: float,
                 channels: Sequence[Mapping[str, str]], known: dict[str, str]) -> Found:
    a_id = leg_a_channel_id(call_id)
    leg_a = next((c for c in channels if c.get("Uniqueid") == a_id), None) \
        or await find_claimed(ami, call_id, channels, known)
    if leg_a is None:
        return Found(events=await outcome_kept(ami, call_id, now))
    a_id = leg_a["Uniqueid"]
    found = Found(leg_a=a_id)
    core_state = CallState(state)
    leg_b = next((c for c in channels
                  if c.get("Linkedid") == a_id and c.get("Uniqueid") != a_id), None)
    if core_state is CallState.WHISPERING and (
            leg_b is not None or leg_a.get("Context") in (CONTEXT_DIAL, CONTEXT_HOLD)):
        # The whisper ended meanwhile and the switch went on to dial B.
        found.events.append(WhisperFinished(now, True))
        core_state = CallState.DIALING_B
    if leg_b is not None:
        found.leg_b = leg_b["Uniqueid"]
        if core_state is CallState.DIALING_B:
            found.events.append(LegCreated(now, Leg.B, leg_b["Uniqueid"]))
        if leg_b.get("ChannelStateDesc") == "Up" and core_state in (
                CallState.DIALING_B, CallState.RINGING_B):
            found.events.append(LegAnswered(await answered_at(ami, leg_b["Uniqueid"], now),
                                            Leg.B, leg_b["Uniqueid"]))
    if leg_a.get("ChannelStateDesc") == "Up" and not a_id.endswith("-a"):
        # A claimed incoming call is answered: maybe by a step or the bridge
        # while we were away, its Newstate never read. The core keeps the
        # answer it already had.
        found.events.append(LegAnswered(await answered_at(ami, a_id, now), Leg.A, a_id))
    context = leg_a.get("Context")
    # In hold, a step ended while we were away and A now waits for the next.
    if context == CONTEXT_HOLD and core_state in (CallState.DIALING_A, CallState.RINGING_A) \
            and a_id.endswith("-a"):
        found.events.append(LegAnswered(await answered_at(ami, a_id, now), Leg.A))
    elif context == CONTEXT_HOLD and core_state in (CallState.DIALING_B, CallState.RINGING_B) \
            and leg_b is None:
        status = await ami.getvar(a_id, "DIALSTATUS")
        found.events.append(DialFinished(now, dial_outcome(status or "")))
    elif context in (CONTEXT_HOLD, CONTEXT_IDLE):
        # Between steps (idle: waiting for actions) while the core runs one:
        # the step ended while we were away, or it never started.
        step_end = await _live_step_end(ami, a_id, core_state, now)
        if step_end is not None:
            found.events.append(step_end)
    return found


async def answered_at(ami: AmiQueries, channel: str, now: float) -> float:
    """When the channel was answered, as the dialplan kept it (CC_ANSWERED_AT);
    ``now`` for one answered by a dialplan that did not keep it."""
    return _unix_time(await ami.getvar(channel, "CC_ANSWERED_AT")) or now


def _unix_time(text: str | None) -> float | None:
    """A time the dialplan wrote (``${STRFTIME(,,%s.%3q)}``), if it reads as one."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if 0 < value < 1e11 else None


async def _live_step_end(ami: AmiQueries, channel: str, state: CallState,
                         now: float) -> Event | None:
    """Leg A waits between steps while the core runs one: the end of the
    last step the switch ran on it, from the variables the step's context
    left (its action: CC_ACTION, its try: CC_TRY, marked ended: CC_DONE), or
    none if the step set up last never started (the core sends it again; it
    does so too for an end of an earlier try than the one it runs)."""
    if state not in STEP_STATES.values():
        return None
    action_id = await ami.getvar(channel, "CC_ACTION")
    if not action_id or await ami.getvar(channel, "CC_DONE") != action_id:
        return FoundBetweenSteps(now, None)
    return FoundBetweenSteps(now, await _step_end(ami, channel, state, action_id, now),
                             try_on_channel(await ami.getvar(channel, "CC_TRY")))


async def _step_end(ami: AmiQueries, channel: str, state: CallState, action_id: str,
                    now: float) -> StepEnd:
    """How the step of ``action_id`` ended, as its context left it on the channel."""
    if state is CallState.PLAYING:
        return PlayFinished(now, action_id, await ami.getvar(channel, "PLAYBACKSTATUS") == "SUCCESS")
    if state is CallState.GATHERING:
        ended_by = await ami.getvar(channel, "CC_ENDED_BY") or "timeout"
        digits = await ami.getvar(channel, "CC_DIGITS") or ""
        return DigitsGathered(now, action_id, digits,
                              ended_by if ended_by in _GATHER_ENDINGS else "timeout")
    if state is CallState.PAUSING:
        return PauseFinished(now, action_id)
    started = await ami.getvar(channel, "CC_RECORD") == "start" \
        and await ami.getvar(channel, "TRYSTATUS") == "SUCCESS"
    return RecordingChanged(now, action_id, started)


async def outcome_kept(ami: AmiQueries, call_id: str, now: float) -> list[Event]:
    """What the callconnect-outcome hangup handler kept in AstDB: end time,
    cause, leg B's dial status, seconds B talked, and for an incoming call
    whether it was answered and when (an originated leg A has the handler
    only once answered). An incoming caller's answer comes first, with its
    time; the core keeps the answer it already had."""
    value = await ami.kept_outcome(call_id)
    parts = value.split(":") if value else []
    if len(parts) not in (4, 5, 6):
        return [EndedWhileAway(now, None, False, None, None)]
    ended, cause, dial_status, talked = parts[:4]
    answered = len(parts) == 4 or parts[4] == "1"
    away = EndedWhileAway(
        at=float(ended) if ended.isdigit() else now,
        a_cause=int(cause) if cause.isdigit() else None,
        a_answered=answered,
        b_outcome=dial_outcome(dial_status) if dial_status else None,
        talk_seconds=float(talked) if talked.isdigit() else None,
    )
    answered_at = _unix_time(parts[5]) if answered and len(parts) == 6 else None
    return [away] if answered_at is None else [LegAnswered(answered_at, Leg.A), away]
