"""Core commands to Event Socket commands: pure encoders.

Event Socket commands are lines ended by a blank line, and FreeSWITCH reads
syntax inside their values: ``{a=b,c=d}`` variable lists, ``,`` and ``|`` to
ring several targets, ``'`` quoting, ``${var}`` expansion, ``::`` and ``!`` in
uuid_broadcast, spaces between API arguments. So every value is checked here
against what it may contain before it is put in a command, and the finished
command is checked once more for control characters. Caller text (whispers,
names, metadata) never gets this far; only ids, file paths, numbers, SIP URIs
and names from the config do. The only ``,`` in a command is the one these
encoders put between the variables they build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from controller.calls.core import (
    Command,
    DialLegB,
    HangupLegs,
    Leg,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.config import FreeswitchConfig
from controller.errors import SwitchActionFailed

from .events import leg_uuid, originate_job_uuid

# Leg A waits in park() between steps. If the controller goes away, FreeSWITCH
# hangs A up this long after A answered (the whisper, B's ring and the message
# to A must fit in it; the bridge itself does not count: park_timeout is read
# when park() starts and checked between the applications it runs).
PARK_MARGIN = 120
PARK_TIMEOUT_CAUSE = "RECOVERY_ON_TIMER_EXPIRE"
HANGUP_CAUSE = "NORMAL_CLEARING"
TIME_LIMIT_CAUSE = "ALLOTTED_TIMEOUT"
# Leg A hears this while B rings (FreeSWITCH's us-ring tone, vars.xml).
RINGBACK = "%(2000,4000,440,480)"
CALL_ID_VARIABLE = "callconnect_call_id"

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # gateway and profile names
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_SIP_URI = re.compile(
    r"sips?:[A-Za-z0-9_.+~*-]{1,64}@"
    r"(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?"
)
_PATH = re.compile(r"/[A-Za-z0-9_./-]{1,1000}")
_CALLER_ID = re.compile(r"\+?[0-9]{1,20}")


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

    @property
    def wire(self) -> str:
        """The command as sent, without the blank line that ends it."""
        line = f"{self.verb} {self.text}"
        return line + f"\nJob-UUID: {self.job_uuid}" if self.job_uuid else line

    @property
    def name(self) -> str:
        """What to call it in a log or an error: 'api uuid_kill', 'sendmsg'."""
        if self.verb in (Verb.API, Verb.BGAPI):
            return f"{self.verb} {self.text.split(' ', 1)[0]}"
        return str(self.verb)


def dial_string(target: str, config: FreeswitchConfig) -> str:
    """Numbers through the longest matching route's gateway (else the default
    gateway), SIP URIs through the URI profile."""
    if target.startswith(("sip:", "sips:")):
        profile = _checked(config.uri_profile, _NAME, "sofia profile")
        return f"sofia/{profile}/{_checked(target, _SIP_URI, 'SIP URI')}"
    gateway = config.gateway
    best = -1
    for route in config.routes:
        if target.startswith(route.prefix) and len(route.prefix) > best:
            gateway, best = route.endpoint, len(route.prefix)
    gateway = _checked(gateway, _NAME, "gateway name")
    return f"sofia/gateway/{gateway}/{_checked(target, _NUMBER, 'number')}"


def watch_filters(call_id: str) -> list[EslCommand]:
    """Event filters that let through only this call's events: its two
    channels and Leg A's originate job."""
    _checked(call_id, _CALL_ID, "call id")
    return [
        EslCommand(Verb.FILTER, f"Unique-ID {leg_uuid(call_id, Leg.A)}"),
        EslCommand(Verb.FILTER, f"Unique-ID {leg_uuid(call_id, Leg.B)}"),
        EslCommand(Verb.FILTER, f"Job-UUID {originate_job_uuid(call_id)}"),
    ]


def unwatch_filters(call_id: str) -> list[EslCommand]:
    return [EslCommand(Verb.FILTER, "delete " + f.text) for f in watch_filters(call_id)]


def encode(call_id: str, command: Command, config: FreeswitchConfig) -> list[EslCommand]:
    """The Event Socket commands, in order, that carry out one core command."""
    _checked(call_id, _CALL_ID, "call id")
    a = leg_uuid(call_id, Leg.A)
    if isinstance(command, OriginateLegA):
        ring = _seconds(command.ring_timeout, "ring timeout")
        variables = [
            ("origination_uuid", a),
            (CALL_ID_VARIABLE, call_id),
            ("originate_timeout", str(ring)),
            # A bridge that fails returns to park (the default hangs A up).
            ("continue_on_fail", "true"),
            ("hangup_after_bridge", "true"),
            ("park_timeout", f"{ring + PARK_MARGIN}:{PARK_TIMEOUT_CAUSE}"),
        ]
        variables += _caller_id(command.caller_id)
        text = f"originate {_variables(variables)}{dial_string(command.target, config)} &park()"
        return [*watch_filters(call_id),
                _command(Verb.BGAPI, text, job_uuid=originate_job_uuid(call_id))]
    if isinstance(command, PlayWhisper):
        return [_command(Verb.API, f"uuid_broadcast {a} {_path(command.audio)} aleg")]
    if isinstance(command, PlayMessageThenHangup):
        # app!cause::args: play, then hang up with cause (switch_ivr_broadcast).
        audio = _path(command.audio)
        return [_command(Verb.API, f"uuid_broadcast {a} playback!{HANGUP_CAUSE}::{audio} aleg")]
    if isinstance(command, DialLegB):
        ring = _seconds(command.ring_timeout, "ring timeout")
        limit = _seconds(command.time_limit, "time limit", high=86400)
        variables = [
            ("origination_uuid", leg_uuid(call_id, Leg.B)),
            (CALL_ID_VARIABLE, call_id),
            ("originate_timeout", str(ring)),
            # The switch itself ends the call when the time is up, even if the
            # controller is gone.
            ("execute_on_answer", f"'sched_hangup +{limit} {TIME_LIMIT_CAUSE}'"),
            *_caller_id(command.caller_id),
        ]
        bridge = _variables(variables) + dial_string(command.target, config)
        return [
            _command(Verb.API, f"uuid_setvar {a} ringback {RINGBACK}"),
            _command(Verb.SENDMSG, f"{a}\ncall-command: execute\nexecute-app-name: bridge\n"
                                   f"execute-app-arg: {bridge}"),
        ]
    if isinstance(command, StartRecording):
        return [_command(Verb.API, f"uuid_record {a} start {_path(command.file)}")]
    if isinstance(command, HangupLegs):
        return [_command(Verb.API, f"uuid_kill {leg_uuid(call_id, leg)} {HANGUP_CAUSE}",
                         missing_ok=True)
                for leg in command.legs]
    raise SwitchActionFailed(f"the FreeSWITCH backend cannot run {type(command).__name__}")


def _variables(pairs: list[tuple[str, str]]) -> str:
    """``{a=b,c=d}``: the encoder's own syntax around values checked already."""
    return "{" + ",".join(f"{name}={value}" for name, value in pairs) + "}"


def _caller_id(caller_id: str | None) -> list[tuple[str, str]]:
    if not caller_id:
        return []
    number = _checked(caller_id, _CALLER_ID, "caller ID")
    return [("origination_caller_id_number", number)]


def _path(path: str) -> str:
    # FreeSWITCH plays a path with its extension (it picks the format by it).
    return _checked(path, _PATH, "audio path")


def _seconds(value: int, what: str, high: int = 600) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise SwitchActionFailed(f"refusing to send {what} {value!r} to FreeSWITCH")
    return value


def _command(verb: Verb, text: str, job_uuid: str | None = None,
             missing_ok: bool = False) -> EslCommand:
    command = EslCommand(verb, text, job_uuid, missing_ok)
    lines = command.wire.split("\n")
    # sendmsg carries its own header lines; nothing else may have a line end.
    allowed_lines = 4 if verb is Verb.SENDMSG else (2 if job_uuid else 1)
    if len(lines) > allowed_lines or any(_UNSAFE.search(line) for line in lines):
        raise SwitchActionFailed(f"refusing to send {command.name} with control characters")
    return command


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise SwitchActionFailed(
            f"refusing to send {what} {value!r} to FreeSWITCH: unexpected characters")
    return value
