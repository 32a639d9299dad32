"""What the peer writes and reads: FreeSWITCH's names, numbers and text formats."""

from __future__ import annotations

import contextlib
import json
import math
import struct
import time
import wave
from collections.abc import Iterable

CORE_UUID = "8a3f1c52-6d0e-4b7a-9c21-f5e6d7c8b9a0"
HOSTNAME = "esl-peer"
VERSION = "1.10.12-release (esl-peer)"

# Q.850 numbers of the causes the peer uses (switch_types.h).
CAUSES = {
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "CALL_REJECTED": 21, "UNALLOCATED_NUMBER": 1, "NORMAL_TEMPORARY_FAILURE": 41,
    "RECOVERY_ON_TIMER_EXPIRE": 102, "ORIGINATOR_CANCEL": 487, "ALLOTTED_TIMEOUT": 602,
    "INVALID_GATEWAY": 608, "INVALID_PROFILE": 611, "CHAN_NOT_IMPLEMENTED": 66,
    "MANAGER_REQUEST": 503, "NORMAL_CIRCUIT_CONGESTION": 34, "NO_ROUTE_DESTINATION": 3,
}
# switch_channel_str2cause(): a cause may also be given by its number.
CAUSE_NAMES = {number: name for name, number in CAUSES.items()}
# switch_ivr_originate(): DIALSTATUS for the cause of a dial that failed.
DIALSTATUS = {"USER_BUSY": "BUSY", "NO_ANSWER": "NOANSWER", "ORIGINATOR_CANCEL": "CANCEL",
              "CALL_REJECTED": "DONTCALL", "DESTINATION_OUT_OF_ORDER": "INVALIDARGS",
              "INVALID_PROFILE": "INVALIDARGS"}

# Events that carry the channel's variables (switch_channel_event_set_extended_data).
VARIABLE_EVENTS = {
    "CHANNEL_CREATE", "CHANNEL_ORIGINATE", "CHANNEL_ANSWER", "CHANNEL_PARK",
    "CHANNEL_UNPARK", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_DESTROY", "RECORD_START",
    "RECORD_STOP", "PLAYBACK_START", "PLAYBACK_STOP", "CUSTOM",
}
# Where FreeSWITCH raises each event (Event-Calling-File / -Function).
CALLING = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3881),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 4213),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3513),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c",
                                "switch_core_session_reporting_state", 951),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1713),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2928),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2968),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1020),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1657),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1834),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1517),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2063),
    "RECORD_START": ("switch_ivr_async.c", "record_callback", 1258),
    "RECORD_STOP": ("switch_ivr_async.c", "record_callback", 1385),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1572),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", 92),
}
STATE_NUMBERS = {"CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3,
                 "CS_EXECUTE": 4, "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7,
                 "CS_HIBERNATE": 8, "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11,
                 "CS_DESTROY": 12}
DISCONNECT_TEXT = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
_URL_UNSAFE = set('\r\n #%&+:;<=>?@[\\]^`{|}"')


def now_us() -> int:
    return int(time.time() * 1_000_000)


def url_encode(value: str) -> str:
    """switch_url_encode(): what an event-plain value looks like on the wire."""
    out = []
    for ch in value:
        if ch in _URL_UNSAFE or not " " <= ch <= "~":
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


def serialize_plain(headers: Iterable[tuple[str, str]], body: str | None) -> str:
    text = "".join(f"{name}: {url_encode(value) or '_undef_'}\n" for name, value in headers)
    if body:
        return text + f"Content-Length: {len(body.encode())}\n\n{body}"
    return text + "\n"


def serialize_json(headers: Iterable[tuple[str, str]], body: str | None) -> str:
    data: dict[str, str] = dict(headers)
    if body:
        data["_body"] = body
    return json.dumps(data, indent="\t")


def event_frame(headers: list[tuple[str, str]], body: str | None, fmt: str) -> bytes:
    text = serialize_json(headers, body) if fmt == "json" else serialize_plain(headers, body)
    data = text.encode()
    return f"Content-Length: {len(data)}\nContent-Type: text/event-{fmt}\n\n".encode() + data


def split_args(text: str) -> list[str]:
    """switch_separate_string(' '): spaces split, '...' quotes do not (and go)."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif ch == " " and not quoted:
            if current:
                args.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        args.append("".join(current))
    return args


def parse_variables(text: str) -> dict[str, str]:
    """``a=b,c='d, e'`` from a ``{...}`` or ``[...]`` list."""
    variables: dict[str, str] = {}
    current: list[str] = []
    quoted = False
    parts: list[str] = []
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    for part in parts:
        name, eq, value = part.partition("=")
        if eq and name:
            variables[name.strip()] = value
    return variables


def parse_dial_string(text: str) -> tuple[dict[str, str], str]:
    """Leading ``{...}`` (or ``[...]``) lists and what follows them."""
    variables: dict[str, str] = {}
    rest = text.strip()
    while rest[:1] in ("{", "[", "<"):
        close = {"{": "}", "[": "]", "<": ">"}[rest[0]]
        end = find_end(rest, rest[0], close)
        if end < 0:
            break
        variables.update(parse_variables(rest[1:end]))
        rest = rest[end + 1:].lstrip(" ")
    return variables, rest


def find_end(text: str, open_: str, close: str) -> int:
    """switch_find_end_paren(): the bracket closing the one at text[0]."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i
    return -1


def split_top(text: str, separator: str) -> list[str]:
    """``,`` (ring at once) or ``|`` (one after the other) outside ``[...]``
    lists and ``'...'`` quotes, as switch_ivr_originate() splits the targets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == separator and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def wav_seconds(path: str) -> float | None:
    try:
        with wave.open(path, "rb") as audio:
            return audio.getnframes() / audio.getframerate()
    except (OSError, wave.Error, EOFError):
        return None


def write_recording(path: str, seconds: float) -> None:
    """What uuid_record leaves behind: 8 kHz mono 16-bit WAV, a quiet 400 Hz tone."""
    period = b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * i / 20)))
                      for i in range(20))
    frames = max(int(seconds * 8000), 1)
    data = (period * (frames // 20 + 1))[:frames * 2]
    with contextlib.suppress(OSError), wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(data)

