"""Core commands to Event Socket commands: pure encoders.

Event Socket commands are lines ended by a blank line, and FreeSWITCH reads
syntax inside their values: ``{a=b,c=d}`` variable lists, ``,`` and ``|`` to
ring several targets, ``'`` quoting, ``${var}`` expansion, ``::`` and ``!`` in
uuid_broadcast, spaces between API arguments. So every value is checked here
against what it may contain before it is put in a command, and the finished
command is checked once more for control characters. Caller text (whispers,
names, metadata) never gets this far; only ids, file paths, numbers, SIP URIs
and names from the config do. The only ``,`` in a command are the ones these
encoders put between the variables they build and between the targets of an
attempt, which ring at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from controller.config import FreeswitchConfig, route_for
from controller.core.commands import (
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed
from controller.numbers import ENDPOINT_NAME, ENDPOINT_PREFIX, SIP_URI

from .ids import leg_uuid, originate_job_uuid
from .steps import AnswerSteps

# Leg A waits in park() between steps. If the controller goes away, FreeSWITCH
# hangs A up this long after it started waiting (A answered, a whisper or
# message started, a bridge failed): sched_hangup, re-armed at every step and
# disarmed when a bridge starts (see _dial()). park_timeout cannot do
# this: park() reads it once, so it would also cut a call that tries several
# targets one after the other.
HOLD_LIMIT = 120
HOLD_TIMEOUT_CAUSE = "RECOVERY_ON_TIMER_EXPIRE"
HANGUP_CAUSE = "NORMAL_CLEARING"
TIME_LIMIT_CAUSE = "ALLOTTED_TIMEOUT"
# Other targets of an attempt, cancelled when one answers and hears the
# whisper or confirm step (FreeSWITCH's own cause for losing legs).
LOST_RACE_CAUSE = "LOSE_RACE"
# Leg A hears this while B rings (FreeSWITCH's us-ring tone, vars.xml) ...
RINGBACK = "%(2000,4000,440,480)"
# ... or this music, and while it waits for the next step (vanilla vars.xml
# hold_music; mod_local_stream's "moh" stream).
HOLD_MUSIC = "local_stream://moh"
# With answer steps the whole dial may last this much longer than the ring
# timeout (the whisper to B and the confirm wait); each leg still rings at
# most the ring timeout (leg_timeout).
ANSWER_STEPS_MARGIN = 120
CALL_ID_VARIABLE = "callconnect_call_id"
TARGET_VARIABLE = "callconnect_target"
# An API command FreeSWITCH runs on a channel when its bridge starts
# (switch_ivr_bridge.c, SWITCH_API_BRIDGE_START_VARIABLE).
BRIDGE_START_API = "api_before_bridge"

# The events the translator reads, and HEARTBEAT: its filter keeps the filter
# list from ever being empty (an empty list lets every event of a busy switch
# through). Each call's events are let through by its own filters.
EVENT_NAMES = (
    "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE", "CHANNEL_PARK", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_EXECUTE_COMPLETE", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START",
    "RECORD_STOP", "DTMF", "BACKGROUND_JOB", "HEARTBEAT",
)
EVENT_FORMATS = ("plain", "json")
BASE_FILTER = "Event-Name HEARTBEAT"
# Raised by the inbound dialplan for every call it parks for the controller
# (dialplans/freeswitch/callconnect_inbound.xml), let through by its own filter.
INCOMING_SUBCLASS = "callconnect::incoming"
INCOMING_FILTER = f"Event-Subclass {INCOMING_SUBCLASS}"

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
CHANNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # gateway and profile names
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_PATH = re.compile(r"/[A-Za-z0-9_./-]{1,1000}")
_CALLER_ID = re.compile(r"\+?[0-9]{1,20}")
_CONFIRM_KEY = re.compile(r"[0-9*#]")


class Verb(StrEnum):
    API = "api"  # blocking API command; the answer is an api/response body
    BGAPI = "bgapi"  # background API command; the result is a BACKGROUND_JOB event
    SENDMSG = "sendmsg"  # run an application on a channel
    FILTER = "filter"


@dataclass(frozen=True)
class EslCommand:
    verb: Verb
    text: str  # everything after the verb (sendmsg: the uuid and header lines)
    job_uuid: str | None = None  # bgapi only
    missing_ok: bool = False  # "-ERR No such channel" is fine (hangups)
    optional: bool = False  # any refusal is fine (stopping music that may not play)

    @property
    def wire(self) -> str:
        """The command as sent, without the blank line that ends it."""
        line = f"{self.verb} {self.text}"
        return line + f"\nJob-UUID: {self.job_uuid}" if self.job_uuid else line

    @property
    def name(self) -> str:
        """What to call it in a log or an error: 'api uuid_kill', 'sendmsg
        playback' (a sendmsg by the application it runs)."""
        if self.verb in (Verb.API, Verb.BGAPI):
            return f"{self.verb} {self.text.split(' ', 1)[0]}"
        app = self.text.partition("\nexecute-app-name: ")[2].split("\n", 1)[0]
        return f"{self.verb} {app}" if app else str(self.verb)


def dial_string(target: str, config: FreeswitchConfig) -> str:
    """Numbers through the longest matching route's gateway (else the default
    gateway), SIP URIs through the URI profile, ``endpoint:NAME`` as the
    switch's own user NAME (``user/NAME``, in the default domain)."""
    if target.startswith(("sip:", "sips:")):
        profile = checked(config.uri_profile, _NAME, "sofia profile")
        return f"sofia/{profile}/{checked(target, SIP_URI, 'SIP URI')}"
    if target.startswith(ENDPOINT_PREFIX):
        return f"user/{checked(target[len(ENDPOINT_PREFIX):], ENDPOINT_NAME, 'endpoint name')}"
    gateway = checked(number_gateway(target, config), _NAME, "gateway name")
    return f"sofia/gateway/{gateway}/{checked(target, _NUMBER, 'number')}"


def number_gateway(number: str, config: FreeswitchConfig) -> str:
    """The gateway a number is dialed through: the longest matching route's,
    else the default gateway."""
    return route_for(number, config.routes, config.gateway)


def dial_legs(call_id: str, targets: Sequence[str], first_index: int) -> list[tuple[str, str]]:
    """The channel id each target of an attempt gets: (id, target), in order."""
    return [(leg_uuid(call_id, Leg.B, first_index + i), target)
            for i, target in enumerate(targets)]


def answer_steps(command: DialLegB) -> AnswerSteps | None:
    """What Leg B does between answering and the bridge, checked."""
    if not command.answer_audio and not command.confirm_key:
        return None
    key = command.confirm_key
    if key is not None and not _CONFIRM_KEY.fullmatch(key):
        raise SwitchActionFailed(f"refusing confirm key {key!r}: one of 0-9, * or #")
    audio = sound_path(command.answer_audio) if command.answer_audio else None
    return AnswerSteps(key, audio, seconds_in_range(command.confirm_timeout, "confirm timeout", high=60))


def watch_filters(call_id: str) -> list[EslCommand]:
    """Event filters that let through this call's Leg A and Leg A's originate
    job; each Leg B channel gets its own just before it is dialed."""
    checked(call_id, CHANNEL_ID, "call id")
    return [
        EslCommand(Verb.FILTER, f"Unique-ID {leg_uuid(call_id, Leg.A)}"),
        EslCommand(Verb.FILTER, f"Job-UUID {originate_job_uuid(call_id)}"),
    ]


def channel_filters(channels: Sequence[str]) -> list[EslCommand]:
    return [esl_command(Verb.FILTER, f"Unique-ID {checked(channel, CHANNEL_ID, 'channel id')}")
            for channel in channels]


def unwatch_filters(call_id: str, b_channels: Sequence[str] = ()) -> list[EslCommand]:
    return [EslCommand(Verb.FILTER, "delete " + f.text)
            for f in [*watch_filters(call_id), *channel_filters(b_channels)]]


def subscription(event_format: str, calls: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """What a new connection sends first: the events it reads, in
    ``event_format``, and the filters of the calls followed already, each
    given as (call id, its channels but Leg A)."""
    # CUSTOM comes last: the words after it are its subclasses.
    commands = [f"event {event_format} {' '.join(EVENT_NAMES)} CUSTOM {INCOMING_SUBCLASS}",
                f"filter {BASE_FILTER}", f"filter {INCOMING_FILTER}"]
    for call_id, channels in calls:
        commands += [f.wire for f in [*watch_filters(call_id), *channel_filters(channels)]]
    return commands


def encode(call_id: str, command: Command, config: FreeswitchConfig, *, b_index: int = 0,
           b_channels: Sequence[str] = (), hold_music: bool = False,
           a_channel: str | None = None) -> list[EslCommand]:
    """The Event Socket commands, in order, that carry out one core command.

    ``b_index`` numbers the first channel of a DialLegB's attempt;
    ``b_channels`` are the Leg B channels a HangupLegs hangs up; ``hold_music``
    says Leg A may be hearing the hold music now (it is stopped first);
    ``a_channel`` is Leg A's channel when it is not ours by id (a claimed
    incoming call).
    """
    checked(call_id, CHANNEL_ID, "call id")
    a = checked(a_channel, CHANNEL_ID, "channel id") if a_channel else leg_uuid(call_id, Leg.A)
    if isinstance(command, OriginateLegA):
        ring = seconds_in_range(command.ring_timeout, "ring timeout")
        variables = [
            ("origination_uuid", a),
            (CALL_ID_VARIABLE, call_id),
            ("originate_timeout", str(ring)),
            # A bridge that fails returns to park (the default hangs A up).
            ("continue_on_fail", "true"),
            ("hangup_after_bridge", "true"),
            # Run when A answers (switch_channel_execute_on: every variable
            # whose name starts with execute_on_answer).
            ("execute_on_answer", f"'sched_hangup +{HOLD_LIMIT} {HOLD_TIMEOUT_CAUSE}'"),
        ]
        if command.hold_music:
            variables.append(("execute_on_answer_music", f"'displace_session {HOLD_MUSIC} mux'"))
        variables += _caller_id(command.caller_id)
        text = f"originate {_variables(variables)}{dial_string(command.target, config)} &park()"
        return [*watch_filters(call_id),
                esl_command(Verb.BGAPI, text, job_uuid=originate_job_uuid(call_id))]
    if isinstance(command, PlayWhisper):
        return [*_next_step(a, hold_music), _hold_limit(a),
                esl_command(Verb.API, f"uuid_broadcast {a} {sound_path(command.audio)} aleg")]
    if isinstance(command, PlayMessageThenHangup):
        # app!cause::args: play, then hang up with cause (switch_ivr_broadcast).
        audio = sound_path(command.audio)
        return [*_next_step(a, hold_music), _hold_limit(a),
                esl_command(Verb.API, f"uuid_broadcast {a} playback!{HANGUP_CAUSE}::{audio} aleg")]
    if isinstance(command, DialLegB):
        return _dial(call_id, a, command, config, b_index, hold_music)
    if isinstance(command, StartRecording):
        return [esl_command(Verb.API, f"uuid_record {a} start {sound_path(command.file)}")]
    if isinstance(command, HangupLegs):
        channels: list[str] = []
        for leg in command.legs:
            channels += [a] if leg is Leg.A else [checked(channel, CHANNEL_ID, "channel id")
                                                  for channel in b_channels]
        return [esl_command(Verb.API, f"uuid_kill {channel} {HANGUP_CAUSE}", missing_ok=True)
                for channel in channels]
    raise SwitchActionFailed(f"the FreeSWITCH backend cannot run {type(command).__name__}")


def _dial(call_id: str, a: str, command: DialLegB, config: FreeswitchConfig, b_index: int,
          hold_music: bool) -> list[EslCommand]:
    """Leg B: every target at once (``,``), each with its own channel id and
    its target in ``callconnect_target``; the first to answer wins and
    FreeSWITCH cancels the others (LOSE_RACE). With answer steps the one that
    answers hears the whisper and must press the key (group_confirm_*) before
    FreeSWITCH bridges it."""
    ring = seconds_in_range(command.ring_timeout, "ring timeout")
    limit = seconds_in_range(command.time_limit, "time limit", high=86400)
    if not command.targets:
        raise SwitchActionFailed("refusing to dial leg B with no target")
    steps = answer_steps(command)
    variables = [
        (CALL_ID_VARIABLE, call_id),
        ("originate_timeout", str(ring + ANSWER_STEPS_MARGIN if steps else ring)),
        # The switch itself ends the call when the time is up, even if the
        # controller is gone: counted from B's answer, or with answer steps
        # from the bridge (run by each side's bridge thread,
        # switch_ivr_bridge.c), as Asterisk's Dial S() counts after U().
        ("execute_on_pre_bridge" if steps else "execute_on_answer",
         f"'sched_hangup +{limit} {TIME_LIMIT_CAUSE}'"),
        *_caller_id(command.caller_id),
    ]
    if steps is not None:
        variables += _confirm_variables(steps)
    legs = []
    for channel, target in dial_legs(call_id, command.targets, b_index):
        endpoint = dial_string(target, config)
        leg_variables = [("origination_uuid", channel), (TARGET_VARIABLE, target)]
        if steps is not None:
            leg_variables.append(("leg_timeout", str(ring)))
        legs.append("[" + ",".join(f"{n}={v}" for n, v in leg_variables) + "]" + endpoint)
    bridge = _variables(variables) + ",".join(legs)
    ringback = HOLD_MUSIC if command.hold_music else RINGBACK
    dial_seconds = ring + ANSWER_STEPS_MARGIN if steps else ring
    return [
        *_next_step(a, hold_music or command.hold_music),
        *channel_filters([channel for channel, _ in dial_legs(call_id, command.targets, b_index)]),
        # A is answered, so the originate plays transfer_ringback, not ringback.
        esl_command(Verb.API, f"uuid_setvar {a} transfer_ringback {ringback}"),
        # A's hold limit covers the dial and the wait for the next step after
        # one that did not connect; the bridge's start disarms it. (Nothing can
        # be queued behind the bridge for a failure only: FreeSWITCH runs
        # applications sent to A while the bridge rings, switch_ivr_originate.c
        # switch_ivr_parse_all_events.)
        _hold_limit(a, dial_seconds + HOLD_LIMIT),
        esl_command(Verb.API, f"uuid_setvar {a} {BRIDGE_START_API} sched_del {a}"),
        execute(a, "bridge", bridge),
    ]


def restart_music(call_id: str, a_channel: str | None = None) -> EslCommand:
    """Hold music for Leg A again after a bridge that did not connect
    (``a_channel``: a claimed incoming call's channel, as for encode)."""
    a = checked(a_channel, CHANNEL_ID, "channel id") if a_channel else leg_uuid(call_id, Leg.A)
    return esl_command(Verb.API, f"uuid_displace {a} start {HOLD_MUSIC} 0 mux", optional=True)


def _confirm_variables(steps: AnswerSteps) -> list[tuple[str, str]]:
    """group_confirm_* (switch_ivr_originate.c): the answering leg plays the
    file and must send the key, read for group_confirm_read_timeout ms; with
    the key ``exec`` the file is an application to run instead (here:
    playback of the whisper), and the leg wins if still up after it.
    group_confirm_cancel_timeout stops each leg's leg_timeout once a leg
    answers, so the confirm is not cut by the ring timeout."""
    if steps.key is None:
        return [("group_confirm_key", "exec"),
                ("group_confirm_file", f"'playback {steps.audio}'"),
                ("group_confirm_cancel_timeout", "true")]
    variables = [("group_confirm_key", steps.key),
                 ("group_confirm_read_timeout", str(steps.timeout * 1000))]
    if steps.audio:
        variables.append(("group_confirm_file", steps.audio))
    variables.append(("group_confirm_cancel_timeout", "true"))
    return variables


def _next_step(a: str, hold_music: bool) -> list[EslCommand]:
    """Leg A stops waiting: disarm its hold limit (sched_del of its channel id,
    the scheduler group of sched_hangup) and stop the hold music."""
    commands = [esl_command(Verb.API, f"sched_del {a}")]
    if hold_music:
        commands.append(esl_command(Verb.API, f"uuid_displace {a} stop {HOLD_MUSIC}", optional=True))
    return commands


def _hold_limit(a: str, seconds: int = HOLD_LIMIT) -> EslCommand:
    return esl_command(Verb.API, f"sched_hangup +{seconds} {a} {HOLD_TIMEOUT_CAUSE}")


def execute(channel: str, app: str, arg: str, lock: bool = False) -> EslCommand:
    """``sendmsg``: run ``app`` on the channel. What is sent behind an
    application that plays or waits runs at once, inside it, unless that
    one was sent with ``lock`` (``event-lock: true``: the channel takes its
    next message only once this application is done)."""
    text = f"{channel}\ncall-command: execute\nexecute-app-name: {app}"
    text += f"\nexecute-app-arg: {arg}" if arg else ""
    return esl_command(Verb.SENDMSG, text + ("\nevent-lock: true" if lock else ""))


def _variables(pairs: list[tuple[str, str]]) -> str:
    """``{a=b,c=d}``: the encoder's own syntax around values checked already."""
    return "{" + ",".join(f"{name}={value}" for name, value in pairs) + "}"


def _caller_id(caller_id: str | None) -> list[tuple[str, str]]:
    if not caller_id:
        return []
    number = checked(caller_id, _CALLER_ID, "caller ID")
    return [("origination_caller_id_number", number)]


def sound_path(path: str) -> str:
    # FreeSWITCH plays a path with its extension (it picks the format by it).
    return checked(path, _PATH, "audio path")


def seconds_in_range(value: int, what: str, high: int = 600) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise SwitchActionFailed(f"refusing to send {what} {value!r} to FreeSWITCH")
    return value


def esl_command(verb: Verb, text: str, job_uuid: str | None = None,
             missing_ok: bool = False, optional: bool = False) -> EslCommand:
    command = EslCommand(verb, text, job_uuid, missing_ok, optional)
    lines = command.wire.split("\n")
    # sendmsg carries its own header lines; nothing else may have a line end.
    allowed_lines = 5 if verb is Verb.SENDMSG else (2 if job_uuid else 1)
    if len(lines) > allowed_lines or any(_UNSAFE.search(line) for line in lines):
        raise SwitchActionFailed(f"refusing to send {command.name} with control characters")
    return command


def checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise SwitchActionFailed(
            f"refusing to send {what} {value!r} to FreeSWITCH: unexpected characters")
    return value
