"""Live-call steps to Event Socket commands: pure encoders.

A live call's one leg (an inbound call claimed from the park of
``dialplans/freeswitch/callconnect_inbound.xml``, or a single-leg call once
answered) waits in ``park()``; every step is a short queue of applications
sent to it with ``sendmsg``, which FreeSWITCH runs one after the other:

* ``sched_del <a>`` first: the leg's hold limit (below) is disarmed;
* ``answer`` when the leg is not answered yet (audio needs an answered
  channel; a wait for actions does not answer);
* the step's own application (``playback``, ``read``, ``sleep``,
  ``record_session``, ``stop_record_session``);
* ``sched_hangup +120`` last: the hold limit armed again, so a leg whose
  controller went away is hung up by the switch. The step's end is reported
  when this last application completes, so the limit is always armed before
  the controller hears of the end and sends the next step.

Each is sent with ``event-lock: true``: without it, FreeSWITCH runs what is
sent behind a ``playback``, ``read`` or ``sleep`` at once, inside it (seen
on 1.10.12: the hold limit was armed, and the step's end reported, while the
file still played).

The step is kept on the channel (``callconnect_action``, with its try in
``callconnect_try``: a gather's, 1 for every other step), and its action's
id once its application is over (``callconnect_done``, cleared in the same
command that sets the step), so that a restarted controller can tell which
step was set up last, whether it ran, and whether it is over, and which try
of its action an end it finds belongs to (see ``reattach.py``). Values are
checked before they are put in a command, as in ``actions.py``.
"""

from __future__ import annotations

import re

from controller.core.commands import (
    Command,
    GatherDigits,
    PauseLegA,
    PlayToLegA,
    RecordLegA,
    WaitForActions,
)
from controller.core.live import MAX_TRY
from controller.errors import SwitchActionFailed

from .actions import (
    CALL_ID_VARIABLE,
    CHANNEL_ID,
    HOLD_LIMIT,
    HOLD_TIMEOUT_CAUSE,
    EslCommand,
    Verb,
    checked,
    esl_command,
    execute,
    seconds_in_range,
    sound_path,
)
from .tracking import LiveStep, StepKind

LIVE_COMMANDS = (PlayToLegA, GatherDigits, PauseLegA, RecordLegA, WaitForActions)
# The channel variable ``read`` leaves the digits in; for a restarted
# controller, the one naming the last step sent (<kind>/<action id>, a
# gather's /<max digits>/<finish key> after it), the one with its try, and
# the one set to the action id once the step's application is over.
DIGITS_VARIABLE = "callconnect_digits"
STEP_VARIABLE = "callconnect_action"
TRY_VARIABLE = "callconnect_try"
DONE_VARIABLE = "callconnect_done"
# read's terminators when there is no finish key: no key is one of these letters.
NO_TERMINATOR = "none"
# The hangup after an idle wait: the hold limit's cause, read as the idle
# timeout while the leg waits for actions.
IDLE_CAUSE = HOLD_TIMEOUT_CAUSE
# mod_hash's realm of claimed calls: call id -> the incoming channel's uuid.
CLAIMS_REALM = "callconnect"
# Seconds an incoming call being refused may take for its message at most.
REFUSE_LIMIT = 60
TRAILER = f"+{HOLD_LIMIT} {HOLD_TIMEOUT_CAUSE}"

_ACTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_KEY = re.compile(r"[0-9*#]")


def encode_step(a: str, step: Command, *, answered: bool) -> list[EslCommand]:
    """The commands, in order, for one live step on leg A (channel ``a``);
    ``answered`` says whether the leg is answered already."""
    if isinstance(step, WaitForActions):
        return wait_for_actions(a, step, answered)
    if not isinstance(step, (PlayToLegA, GatherDigits, PauseLegA, RecordLegA)):
        raise SwitchActionFailed(f"not a live step: {type(step).__name__}")
    kind, app, data = step_application(step)
    action_id = checked(step.action_id, _ACTION_ID, "action id")
    mark = f"{kind}/{action_id}"
    try_number = 1
    if isinstance(step, GatherDigits):
        mark += f"/{step.max_digits}/{step.finish_on_key}"
        try_number = seconds_in_range(step.try_number, "try", high=MAX_TRY)
    commands = [esl_command(Verb.API, f"sched_del {a}"),
                # At once: the end of an earlier run of the same action (a
                # gather tried again) is never read as this run's, and an end
                # found is always of the try named with it.
                esl_command(Verb.API, f"uuid_setvar_multi {a} {DONE_VARIABLE}=;{STEP_VARIABLE}={mark};"
                                      f"{TRY_VARIABLE}={try_number}")]
    if not answered:
        commands.append(execute(a, "answer", "", lock=True))
    if isinstance(step, GatherDigits):
        # read leaves the last terminator in read_terminator_used: clear it.
        commands.append(execute(a, "unset", "read_terminator_used", lock=True))
    return [*commands, execute(a, app, data, lock=True),
            execute(a, "set", f"{DONE_VARIABLE}={action_id}", lock=True),
            execute(a, "sched_hangup", TRAILER, lock=True)]


def live_step(step: Command) -> LiveStep | None:
    """What the translator waits for when ``step`` runs (None: a wait)."""
    if not isinstance(step, (PlayToLegA, GatherDigits, PauseLegA, RecordLegA)):
        return None
    kind, app, data = step_application(step)
    if isinstance(step, GatherDigits):
        return LiveStep(kind, step.action_id, app, data, max_digits=step.max_digits,
                        finish_key=step.finish_on_key)
    return LiveStep(kind, step.action_id, app, data)


# The application that does each kind of step.
STEP_APPLICATIONS = {StepKind.PLAY: "playback", StepKind.GATHER: "read", StepKind.PAUSE: "sleep",
                     StepKind.RECORD_START: "record_session",
                     StepKind.RECORD_STOP: "stop_record_session"}


def step_application(step: PlayToLegA | GatherDigits | PauseLegA | RecordLegA
                     ) -> tuple[StepKind, str, str]:
    """The step's kind and the application (name, argument) that does it."""
    if isinstance(step, PlayToLegA):
        kind, data = StepKind.PLAY, play_argument(step.audio, step.loop)
    elif isinstance(step, GatherDigits):
        kind, data = StepKind.GATHER, read_argument(step)
    elif isinstance(step, PauseLegA):
        kind, data = StepKind.PAUSE, str(seconds_in_range(step.seconds, "pause") * 1000)
    elif step.file is None:
        kind, data = StepKind.RECORD_STOP, "all"
    else:
        kind, data = StepKind.RECORD_START, sound_path(step.file)
    return kind, STEP_APPLICATIONS[kind], data


def play_argument(audio: tuple[str, ...], loop: int) -> str:
    """One file as is; several (or a loop) as one ``file_string://a!b``."""
    if not audio:
        raise SwitchActionFailed("refusing to play nothing")
    files = [sound_path(path) for path in audio] * seconds_in_range(loop, "loop", high=10)
    return files[0] if len(files) == 1 else "file_string://" + "!".join(files)


def read_argument(step: GatherDigits) -> str:
    """mod_dptools read: ``<min> <max> <prompt|silence> <variable> <timeout ms>
    <terminators> <inter-digit ms>``; a key during the prompt stops it and
    counts (switch_ivr_read)."""
    most = seconds_in_range(step.max_digits, "max digits", high=32)
    prompt = sound_path(step.prompt_audio) if step.prompt_audio else "silence"
    finish = step.finish_on_key
    if finish and not _KEY.fullmatch(finish):
        raise SwitchActionFailed(f"refusing finish key {finish!r}: one of 0-9, * or #")
    first = seconds_in_range(step.timeout, "gather timeout", high=60) * 1000
    between = seconds_in_range(step.inter_digit_timeout, "inter-digit timeout", high=30) * 1000
    return f"1 {most} {prompt} {DIGITS_VARIABLE} {first} {finish or NO_TERMINATOR} {between}"


def wait_for_actions(a: str, step: WaitForActions, answered: bool) -> list[EslCommand]:
    """Hold the leg for ``seconds`` (an unanswered one rings: ring_ready sends
    180 if the dialplan has not), then the switch hangs it up by itself:
    the hold limit is replaced by this one."""
    seconds = seconds_in_range(step.seconds, "idle timeout", high=3600)
    commands = [esl_command(Verb.API, f"sched_del {a}")]
    if step.ringback and not answered:
        commands.append(execute(a, "ring_ready", ""))
    commands.append(esl_command(Verb.API, f"sched_hangup +{seconds} {a} {IDLE_CAUSE}"))
    return commands


def claim_commands(channel: str, call_id: str) -> list[EslCommand]:
    """Take a parked incoming channel: its events let through, the dialplan's
    unclaimed hangup disarmed (the scheduler group named after the channel),
    the call id on the channel for a restart (set first: if the caller is
    gone, its "no such channel" says so) and the channel under the call id in
    mod_hash (optional: without mod_hash a restart looks through the
    channels), the hold limit armed, and what an
    originated leg A gets for a connect: a failed bridge returns to park, an
    ended one hangs the caller up."""
    checked(channel, CHANNEL_ID, "channel id")
    checked(call_id, CHANNEL_ID, "call id")
    setvar = f"uuid_setvar {channel}"
    return [esl_command(Verb.FILTER, f"Unique-ID {channel}"),
            esl_command(Verb.API, f"{setvar} {CALL_ID_VARIABLE} {call_id}"),
            esl_command(Verb.API, f"sched_del {channel}"),
            # Found at once after a restart (show channels lags the channels).
            esl_command(Verb.API, f"hash insert/{CLAIMS_REALM}/{call_id}/{channel}",
                        optional=True),
            esl_command(Verb.API, f"sched_hangup +{HOLD_LIMIT} {channel} {HOLD_TIMEOUT_CAUSE}"),
            esl_command(Verb.API, f"{setvar} continue_on_fail true"),
            esl_command(Verb.API, f"{setvar} hangup_after_bridge true")]


def unclaim_command(call_id: str) -> EslCommand:
    """The call's entry in mod_hash, dropped once its end is recorded."""
    return esl_command(Verb.API, f"hash delete/{CLAIMS_REALM}/"
                                 f"{checked(call_id, CHANNEL_ID, 'call id')}", optional=True)


def refuse_commands(channel: str, audio: str | None, cause: int) -> list[EslCommand]:
    """Turn an incoming channel away with the Q.850 ``cause`` (mod_sofia
    sends its SIP status, e.g. 1 -> 404): at once, or after ``audio`` played
    as early media (183; the call is never answered)."""
    checked(channel, CHANNEL_ID, "channel id")
    if isinstance(cause, bool) or not isinstance(cause, int) or not 1 <= cause <= 127:
        raise SwitchActionFailed(f"refusing hangup cause {cause!r}: a Q.850 number, 1-127")
    if audio is None:
        return [esl_command(Verb.API, f"uuid_kill {channel} {cause}", missing_ok=True)]
    return [esl_command(Verb.API, f"sched_del {channel}"),
            esl_command(Verb.API, f"sched_hangup +{REFUSE_LIMIT} {channel} {cause}"),
            execute(channel, "pre_answer", "", lock=True),
            execute(channel, "playback", sound_path(audio), lock=True),
            execute(channel, "hangup", str(cause), lock=True)]

