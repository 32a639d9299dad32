"""Core commands to AMI actions: pure encoders.

AMI is line-based (``Key: value\\r\\n``), so a value holding CR or LF would
start a header of its own, and the dialplan reads syntax inside the values it
is given (``,`` between Dial's arguments, ``&`` between its targets, ``(``
and ``^`` in its options, ``${...}`` expansion). So every part is checked
here against what it may contain before it is put in an action, as the
FreeSWITCH encoder does: SIP URIs and endpoint names against the one
definition in :mod:`controller.numbers`, ids, paths and config names against
their own patterns; and every finished value once more for anything but
printable ASCII. Caller text (whispers, names) never gets this far.
"""

from __future__ import annotations

import re

from controller.config import AsteriskConfig, route_for
from controller.core.commands import (
    AnnounceToLegA,
    Command,
    DialLegB,
    GatherDigits,
    HangupLegs,
    OriginateLegA,
    PauseLegA,
    PlayMessageThenHangup,
    PlayToLegA,
    PlayWhisper,
    RecordLegA,
    StartRecording,
    WaitForActions,
)
from controller.core.live import MAX_TRY
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed
from controller.numbers import ENDPOINT_NAME, ENDPOINT_PREFIX, SIP_URI, Target, TargetKind, target_of

from .events import leg_a_channel_id

Action = dict[str, str]

# Every value is printable ASCII: no CR or LF to start a header of its own,
# no other control character, nothing a terminal or parser might read twice.
_UNSAFE = re.compile(r"[^\x20-\x7e]")
# Asterisk reads an AMI line of up to 1024 bytes with its CR LF (manager.c's
# input buffer) and drops a whole action that holds a longer one.
MAX_LINE = 1024
# What Asterisk's argument parser reads in ARRAY()'s value: a backslash
# before each keeps it literal (the parser drops the backslash).
_ARRAY_SYNTAX = re.compile(r'([\\",()\[\]])')
_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # PJSIP endpoint names from the config
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_PATH = re.compile(r"/[A-Za-z0-9_./-]{1,1000}")
_CALLER_ID = re.compile(r"\+?[0-9]{1,20}")
# A channel as Asterisk names it (its name or unique id): never starting with
# "/", which Hangup reads as a regular expression over every channel.
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:;+~*/-]{0,200}")
# An action's id, echoed back by the step's UserEvent (CallAction).
_ACTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEYS = "0123456789*#"

CONTEXT_LEG_A = "callconnect-leg-a"
CONTEXT_HOLD = "callconnect-hold"
CONTEXT_WHISPER = "callconnect-whisper"
CONTEXT_DIAL = "callconnect-dial"
CONTEXT_MESSAGE = "callconnect-message"
CONTEXT_ANSWER = "callconnect-answer"
CONTEXT_BRIDGE = "callconnect-bridge"
CONTEXT_ANNOUNCE = "callconnect-announce"
CONTEXT_REFUSE = "callconnect-refuse"
CONTEXT_PLAY = "callconnect-play"
CONTEXT_GATHER = "callconnect-gather"
CONTEXT_PAUSE = "callconnect-pause"
CONTEXT_RECORD = "callconnect-record"
CONTEXT_IDLE = "callconnect-idle"


def dial_string(target: Target, config: AsteriskConfig) -> str:
    """PJSIP dial string: numbers through the longest matching route (or the
    trunk), SIP URIs through the URI endpoint; SwitchActionFailed if any part
    holds what it may not."""
    if target.kind is TargetKind.SIP_URI:
        endpoint = _checked(config.uri_endpoint, _NAME, "PJSIP endpoint")
        return f"PJSIP/{endpoint}/{_checked(target.value, SIP_URI, 'SIP URI')}"
    if target.kind is TargetKind.ENDPOINT:
        name = target.value[len(ENDPOINT_PREFIX):]
        return f"PJSIP/{_checked(name, ENDPOINT_NAME, 'endpoint name')}"
    trunk = _checked(number_endpoint(target.value, config), _NAME, "PJSIP endpoint")
    return f"PJSIP/{_checked(target.value, _NUMBER, 'number')}@{trunk}"


def number_endpoint(number: str, config: AsteriskConfig) -> str:
    """The PJSIP endpoint (trunk) a number is dialed through: the longest
    matching route's, else the trunk."""
    return route_for(number, config.routes, config.trunk_endpoint)


def trunk_of(target: Target, config: AsteriskConfig) -> str | None:
    """The endpoint that carries a call to this target off the switch: a
    number's trunk, or the URI endpoint; None for a device on the switch."""
    if target.kind is TargetKind.SIP_URI:
        return config.uri_endpoint
    if target.kind is TargetKind.ENDPOINT:
        return None
    return number_endpoint(target.value, config)


def encode(call_id: str, command: Command, config: AsteriskConfig,
           b_channel: str | None = None, a_channel: str | None = None) -> list[Action]:
    """The AMI actions, in order, that carry out one command on one call;
    SwitchActionFailed if any value would not be printable ASCII.
    ``a_channel``: leg A's channel when it is not the one we originated
    (``<call id>-a``): an incoming call's, once claimed."""
    _checked(call_id, _CALL_ID, "call id")
    a = _checked(a_channel, _CHANNEL, "channel") if a_channel else leg_a_channel_id(call_id)
    return _printable(_encode(call_id, command, config, b_channel, a))


def claim_actions(channel: str, call_id: str) -> list[Action]:
    """Take an incoming call for ``call_id``: its hangup handler keeps the
    outcome under the call id from now on, and it leaves the wait for a
    claim (ringing still) for callconnect-hold, until the first step."""
    return _printable(_steer(_checked(channel, _CHANNEL, "channel"), CONTEXT_HOLD,
                             {"CC_CALL_ID": _checked(call_id, _CALL_ID, "call id")}))


def refuse_actions(channel: str, audio: str | None, cause: int) -> list[Action]:
    """Turn an incoming call away unanswered: ``audio`` (if any) as early
    media, then the Q.850 ``cause``."""
    if not 1 <= cause <= 127:
        raise SwitchActionFailed(f"refusing hangup cause {cause}: Q.850 causes are 1-127")
    return _printable(_steer(_checked(channel, _CHANNEL, "channel"), CONTEXT_REFUSE,
                             {"CC_AUDIO": _audio(audio) if audio else "",
                              "CC_CAUSE": str(cause)}))


def _printable(actions: list[Action]) -> list[Action]:
    for action in actions:
        for key, value in action.items():
            if _UNSAFE.search(value):
                raise SwitchActionFailed(f"refusing to send {key} {value!r} to AMI: "
                                         "it holds a control or non-ASCII character")
            if not fits_a_line(key, value):
                raise SwitchActionFailed(
                    f"refusing to send {key} of {len(value)} characters to AMI: Asterisk drops "
                    f"an action with a line over {MAX_LINE} bytes (fewer targets at once fit)")
    return actions


def _encode(call_id: str, command: Command, config: AsteriskConfig,
            b_channel: str | None, a_channel: str) -> list[Action]:
    live = _live_step(a_channel, command)
    if live is not None:
        return live
    if isinstance(command, OriginateLegA):
        action: Action = {
            "Action": "Originate",
            "ActionID": f"originate-{call_id}",
            "Channel": dial_string(target_of(command.target), config),
            "Context": CONTEXT_LEG_A,
            "Exten": "s",
            "Priority": "1",
            "Timeout": str(command.ring_timeout * 1000),
            "ChannelId": a_channel,
            "Async": "true",
            "Variable": f"CC_CALL_ID={call_id}"
                        + (",CC_HOLD_MUSIC=1" if command.hold_music else ""),
        }
        if command.caller_id:
            action["CallerID"] = f"<{_checked(command.caller_id, _CALLER_ID, 'caller ID')}>"
        return [action]
    if isinstance(command, PlayWhisper):
        return _steer(a_channel, CONTEXT_WHISPER, {"CC_AUDIO": _audio(command.audio),
                                                   **_dial_variables(command.then_dial, config)})
    if isinstance(command, PlayMessageThenHangup):
        return _steer(a_channel, CONTEXT_MESSAGE, {"CC_AUDIO": _audio(command.audio)})
    if isinstance(command, DialLegB):
        return _steer(a_channel, CONTEXT_DIAL, _dial_variables(command, config))
    if isinstance(command, AnnounceToLegA):
        return _steer(a_channel, CONTEXT_ANNOUNCE, {"CC_AUDIO": _audio(command.audio),
                                                    "CC_WAIT": str(int(command.hold_for)),
                                                    "CC_HOLD_MUSIC": "1"})
    if isinstance(command, StartRecording):
        # Nothing to send: the dialplan started MixMonitor on leg B as it was
        # accepted (callconnect-answer, from DialLegB's record_file) and reports
        # it with a UserEvent. The AMI MixMonitor action needs the `system`
        # class, which would also let the account run shell commands.
        return []
    if isinstance(command, HangupLegs):
        actions = []
        for leg in command.legs:
            channel = a_channel if leg is Leg.A else (
                _checked(b_channel, _CHANNEL, "channel") if b_channel else None)
            if channel:
                actions.append({"Action": "Hangup", "Channel": channel, "Cause": "16"})
        return actions
    raise SwitchActionFailed(f"the Asterisk backend cannot run {type(command).__name__}")


def _live_step(channel: str, command: Command) -> list[Action] | None:
    """A live call's step on leg A, or None for any other command."""
    if isinstance(command, PlayToLegA):
        if not command.audio:
            raise SwitchActionFailed("refusing a play with no audio")
        return _steer(channel, CONTEXT_PLAY, {
            **_step_of(command.action_id),
            # Playback plays files joined by & in turn.
            "CC_AUDIO": "&".join(_audio(path) for path in command.audio),
            "CC_LOOP": _bounded(command.loop, 1, 10, "loop")})
    if isinstance(command, GatherDigits):
        key = command.finish_on_key
        if key and not (len(key) == 1 and key in _KEYS):
            raise SwitchActionFailed(f"refusing finish key {key!r}: one of 0-9, * or #")
        return _steer(channel, CONTEXT_GATHER, {
            **_step_of(command.action_id, command.try_number),
            "CC_PROMPT": _audio(command.prompt_audio) if command.prompt_audio else "",
            "CC_MAX_DIGITS": _bounded(command.max_digits, 1, 32, "max digits"),
            "CC_FINISH_KEY": key,
            "CC_TIMEOUT": _bounded(command.timeout, 1, 60, "timeout"),
            "CC_INTER_DIGIT": _bounded(command.inter_digit_timeout, 1, 30, "inter-digit timeout")})
    if isinstance(command, PauseLegA):
        return _steer(channel, CONTEXT_PAUSE, {
            **_step_of(command.action_id),
            "CC_SECONDS": _bounded(command.seconds, 1, 600, "pause")})
    if isinstance(command, RecordLegA):
        variables = {**_step_of(command.action_id),
                     "CC_RECORD": "start" if command.file else "stop"}
        if command.file:
            variables["CC_RECORD_FILE"] = _checked(command.file, _PATH, "recording path")
        return _steer(channel, CONTEXT_RECORD, variables)
    if isinstance(command, WaitForActions):
        return _steer(channel, CONTEXT_IDLE, {
            "CC_WAIT": _bounded(command.seconds, 1, 3600, "idle timeout"),
            "CC_RINGBACK": "1" if command.ringback else ""})
    return None


def _step_of(action_id: str, try_number: int = 1) -> dict[str, str]:
    """The step's action and its try (a gather's; 1 for every other step),
    and its end mark cleared (the dialplan sets CC_DONE to the action as the
    step ends): set in the step's first Setvar, so a restarted controller
    that finds the channel waiting with no mark of the action knows its step
    never started, and one that finds the end of an earlier try of the
    action (a gather tried again) knows this try never started."""
    return {"CC_ACTION": _action_id(action_id), "CC_TRY": _bounded(try_number, 1, MAX_TRY, "try"),
            "CC_DONE": ""}


def dial_strings(targets: tuple[str, ...], config: AsteriskConfig) -> dict[str, str]:
    """Each target's PJSIP dial string, checked; the key is the dial string."""
    return {dial_string(target_of(t), config): t for t in targets}


def _dial_variables(command: DialLegB, config: AsteriskConfig) -> dict[str, str]:
    # r: ringback to leg A while B rings (m: music); S(n): the switch ends the
    # call n seconds after B answers, even if we are gone; U(): what B does
    # between answering and the bridge (whisper, confirm key), and at least
    # the note of when an incoming caller is answered by the bridge.
    options = ("m" if command.hold_music else "r") + f"S({int(command.time_limit)})"
    if not (command.answer_audio or command.confirm_key or command.record_file):
        options += f"U({CONTEXT_BRIDGE})"
    else:
        key = command.confirm_key or ""
        if key and not (len(key) == 1 and key in "0123456789*#"):
            raise SwitchActionFailed(f"refusing confirm key {key!r}: one of 0-9, * or #")
        audio = _audio(command.answer_audio) if command.answer_audio else ""
        # The recording starts on B once it accepted, just before the bridge.
        record = _checked(command.record_file, _PATH, "recording path") if command.record_file else ""
        options += f"U({CONTEXT_ANSWER}^{audio}^{key}^{int(command.confirm_timeout)}^{record})"
    variables = {
        # Every target rings at once; the first to answer wins, the others are
        # cancelled by Dial itself.
        "CC_DIAL": "&".join(dial_strings(command.targets, config)),
        "CC_RING_TIMEOUT": str(int(command.ring_timeout)),
        "CC_DIAL_OPTIONS": options,
    }
    if command.caller_id:
        variables["CALLERID(num)"] = _checked(command.caller_id, _CALLER_ID, "caller ID")
    return variables


def _steer(channel: str, context: str, variables: dict[str, str]) -> list[Action]:
    """Set the step's inputs, then send the channel to the step's context.
    One AMI session runs its actions in order, so the Setvars land first."""
    return [*_setvars(channel, variables),
            {"Action": "Redirect", "Channel": channel, "Context": context,
             "Exten": "s", "Priority": "1"}]


def _setvars(channel: str, variables: dict[str, str]) -> list[Action]:
    """The variables in as few Setvars as fit in AMI's lines: several at once
    through ``ARRAY(name,...)``, whose value is theirs joined by commas, each
    escaped for Asterisk's argument parser. Each action costs the switch a
    parse, a response and a lock of the channel."""
    groups: list[list[tuple[str, str]]] = []
    for name, value in variables.items():
        group = [*groups[-1], (name, value)] if groups else []
        if group and _fits(group):
            groups[-1] = group
        else:
            groups.append([(name, value)])
    return [_setvar(channel, group) for group in groups]


def _setvar(channel: str, group: list[tuple[str, str]]) -> Action:
    if len(group) == 1:
        [(name, value)] = group
        return {"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value}
    return {"Action": "Setvar", "Channel": channel,
            "Variable": f"ARRAY({','.join(name for name, _ in group)})",
            "Value": ",".join(_ARRAY_SYNTAX.sub(r"\\\1", value) for _, value in group)}


def _fits(group: list[tuple[str, str]]) -> bool:
    action = _setvar("", group)
    return fits_a_line("Variable", action["Variable"]) and fits_a_line("Value", action["Value"])


def fits_a_line(key: str, value: str) -> bool:
    return len(f"{key}: {value}\r\n") <= MAX_LINE


def _audio(path: str) -> str:
    # Playback wants the path without its extension; it picks the format.
    checked = _checked(path, _PATH, "audio path")
    return checked.rsplit(".", 1)[0] if checked.endswith(".wav") else checked


def _action_id(value: str) -> str:
    return _checked(value, _ACTION_ID, "action id")


def _bounded(value: int, low: int, high: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SwitchActionFailed(f"refusing {what} {value!r}: a whole number from {low} to {high}")
    return str(value)


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise SwitchActionFailed(f"refusing to send {what} {value!r} to AMI: unexpected characters")
    return value
