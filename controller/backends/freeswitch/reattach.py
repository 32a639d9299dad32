"""Picking a call up again after a restart, from what the switch still has.

FreeSWITCH keeps nothing of a channel once it is gone, so a call that ended
meanwhile comes back as EndedWhileAway with no outcome; a live one is read
from its channels' ``uuid_dump``, its Leg B channels found by their ids in
``show channels``. Only :func:`read_back` does I/O, through ``send``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from controller.core.events import (
    AnswerAccepted,
    DialFinished,
    EndedWhileAway,
    Event,
    FoundBetweenSteps,
    LegAnswered,
    LegCreated,
    WhisperFinished,
)
from controller.core.live import STEP_STATES, try_on_channel
from controller.core.outcomes import Leg
from controller.core.states import CallState

from .actions import EslCommand, Verb, channel_filters, watch_filters
from .causes import dial_outcome
from .ids import b_leg_index, leg_uuid
from .inbound import find_claimed
from .live import DONE_VARIABLE, STEP_APPLICATIONS, STEP_VARIABLE, TRY_VARIABLE
from .live_events import gathered, step_end
from .steps import steps_of
from .tracking import LiveStep, PlaybackKind, StepKind
from .translator import FsEventTranslator
from .wire import Reply, channel_rows, parse_dump

Send = Callable[[EslCommand], Awaitable[Reply]]


async def read_back(send: Send, translator: FsEventTranslator, call_id: str,
                    state: CallState) -> list[Event]:
    """Filter the watched call's events in again, read its channels, and say
    what the core missed."""
    for esl in watch_filters(call_id):
        await send(esl)
    now = time.time()
    a = await _dump(send, leg_uuid(call_id, Leg.A))
    if a is None and (claimed := await find_claimed(send, call_id)) is not None:
        translator.claim(call_id, claimed)  # an incoming call's leg A
        await send(channel_filters([claimed])[0])
        a = await _dump(send, claimed)
    if a is None:
        return [ended_while_away(state, now)]
    b_legs: list[tuple[str, dict[str, str]]] = []
    for channel in await _b_channels_on_switch(send, call_id):
        dump = await _dump(send, channel)
        if dump is not None:
            translator.adopt(call_id, Leg.B, channel, dump.get("variable_callconnect_target", ""),
                             steps_of(dump))
            await send(channel_filters([channel])[0])
            b_legs.append((channel, dump))
    return missed_events(translator, call_id, state, a, b_legs, now)


async def _b_channels_on_switch(send: Send, call_id: str) -> list[str]:
    reply = await send(EslCommand(Verb.API, "show channels as json"))
    try:
        rows = channel_rows(reply.body)
    except ValueError:
        return []
    found = [row.get("uuid", "") for row in rows]
    return sorted((c for c in found if b_leg_index(call_id, c) is not None),
                  key=lambda c: b_leg_index(call_id, c) or 0)


async def _dump(send: Send, channel: str) -> dict[str, str] | None:
    reply = await send(EslCommand(Verb.API, f"uuid_dump {channel} json"))
    return parse_dump(reply.body)


def ended_while_away(state: CallState, now: float) -> EndedWhileAway:
    """Leg A is gone: the call ended while we were away, with no outcome."""
    answered = state not in (CallState.NEW, CallState.DIALING_A, CallState.RINGING_A)
    return EndedWhileAway(now, None, answered, None, None)


def answered_at(dump: Mapping[str, str], now: float) -> float:
    """When the channel was answered, as the switch keeps it (its caller
    profile's answered time, in microseconds); ``now`` if it has none."""
    micros = dump.get("Caller-Channel-Answered-Time", "")
    return int(micros) / 1e6 if micros.isdigit() and int(micros) > 0 else now


def missed_events(translator: FsEventTranslator, call_id: str, state: CallState,
                  a: Mapping[str, str], b_legs: Sequence[tuple[str, Mapping[str, str]]],
                  now: float) -> list[Event]:
    """What the core missed of a live call in ``state``, from Leg A's dump and
    its Leg B channels' (``b_legs``, adopted by the translator already), in
    dial order; the translator is told what it still has to wait for."""
    a_channel = translator.a_channel(call_id) or leg_uuid(call_id, Leg.A)
    steps = steps_of(b_legs[0][1]) if b_legs else None
    a_answered = a.get("Answer-State") == "answered"
    b_answered = [(c, d) for c, d in b_legs if d.get("Answer-State") == "answered"]
    # With answer steps, the leg that confirmed is "winner" (collect_thread_run).
    bridged = bool(b_answered) and (
        steps is None or b_answered[0][1].get("variable_group_dial_status") == "winner")
    # The application A runs now: FreeSWITCH leaves current_application
    # set when it returns, with its current_application_response.
    running = "" if "variable_current_application_response" in a \
        else a.get("variable_current_application", "")
    app_data = a.get("variable_current_application_data", "")
    translator.resume(call_id, bridged or state is CallState.BRIDGED,
                      b_answered[0][0] if b_answered else None)
    events: list[Event] = []
    ringing_a = state in (CallState.DIALING_A, CallState.RINGING_A)
    if ringing_a:
        events.append(LegCreated(now, Leg.A, a_channel))
    if a_answered and ringing_a and translator.a_channel(call_id) is None and running != "park":
        # Answered, and originate has not handed it to park() yet: its next
        # step waits for CHANNEL_PARK, as it does without a restart.
        translator.answered_before_park(call_id, answered_at(a, now))
    elif a_answered and (ringing_a or translator.a_channel(call_id) is not None):
        # Also a claimed incoming call answered by a step or the bridge, maybe
        # while we were away: the core keeps the answer it already had.
        events.append(LegAnswered(answered_at(a, now), Leg.A, a_channel))
    if state is CallState.WHISPERING:
        if running == "playback":
            translator.expect_playback(call_id, app_data, PlaybackKind.WHISPER)
        else:
            events.append(WhisperFinished(now, True))
    elif state in (CallState.DIALING_B, CallState.RINGING_B, CallState.CONFIRMING):
        for channel, _ in b_legs:
            events.append(LegCreated(now, Leg.B, channel))
        for channel, dump in b_answered[:1]:
            events.append(LegAnswered(answered_at(dump, now), Leg.B, channel,
                                      dump.get("variable_callconnect_target", "")))
            if steps is not None and bridged:
                events.append(AnswerAccepted(now))
        if not b_legs and running != "bridge":
            events.append(DialFinished(now, dial_outcome(a)))
    elif state is CallState.ANNOUNCING and running == "playback":
        translator.expect_playback(call_id, app_data, PlaybackKind.MESSAGE)
    elif state in STEP_STATES.values() or state is CallState.IDLE:
        translator.resume_live(call_id, a_answered, state is CallState.IDLE)
        if state is not CallState.IDLE:
            events += resume_step(translator, call_id, a, now)
    return events


def resume_step(translator: FsEventTranslator, call_id: str, a: Mapping[str, str],
                now: float) -> list[Event]:
    """Leg A of a live call whose step the core runs, as the controller
    finds it after a restart. The last step set up on it (``live.STEP_VARIABLE``)
    either still runs (leg A runs its application: its end, still to come,
    is waited for) or leg A waits between steps: then FoundBetweenSteps
    with that step's end if it is over (``live.DONE_VARIABLE`` names its
    action; a gather with the digits ``read`` left, a play as played: the
    switch keeps no more) and its try (``live.TRY_VARIABLE``), else with
    none (its application never ran). The core takes the end as its running
    step's only if it is the end of that action's current try; otherwise
    that step (or try) never reached the switch, and it sends it again."""
    mark = a.get(f"variable_{STEP_VARIABLE}", "").split("/")
    if len(mark) < 2 or mark[0] not in set(StepKind) or not mark[1]:
        return [FoundBetweenSteps(now, None)]  # no step was ever set up on leg A
    kind, action_id = StepKind(mark[0]), mark[1]
    step = LiveStep(kind, action_id, STEP_APPLICATIONS[kind], None)
    if kind is StepKind.GATHER and len(mark) == 4 and mark[2].isdigit():
        step.max_digits, step.finish_key = int(mark[2]), mark[3]
    if a.get(f"variable_{DONE_VARIABLE}") == action_id:
        step.done = step.played = step.recording = True
        if kind is StepKind.GATHER:
            step.digits, step.ended_by = gathered(step, a)
        tried = try_on_channel(a.get(f"variable_{TRY_VARIABLE}"))
        return [FoundBetweenSteps(now, step_end(step, now), tried)]
    if a.get("variable_current_application") == step.app:
        # It runs: its end comes as events. (Were the controller stopped
        # between this application and the mark behind it, the step would
        # have ended unmarked: the switch shows no difference.)
        translator.expect_step(call_id, step)
        return []
    return [FoundBetweenSteps(now, None)]  # set up, but its application never sent
