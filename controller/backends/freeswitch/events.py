"""Event Socket wire text to core events: a pure translation, tested on wire text.

Three layers, none of them doing I/O:

* :class:`EslFramer` cuts the byte stream from mod_event_socket into frames: a
  header block ended by a blank line, then exactly ``Content-Length`` bytes of
  body. Frames may arrive split across reads or several to a read. A frame that
  cannot be read (a header line without ``:``, a bad ``Content-Length``, no
  ``Content-Type``) is logged and skipped, never fatal.
* :func:`decode_event` turns an event frame into its headers:
  ``text/event-plain`` (one ``Name: value`` line per header, values
  URL-encoded, each line decoded on its own) or ``text/event-json``. An event's
  own body (``BACKGROUND_JOB``'s result) is kept under ``_body``.
* :class:`FsEventTranslator` decides what an event means for our calls. Every
  channel it follows carries an id we chose before originating
  (``origination_uuid``): ``<call_id>-a`` and ``<call_id>-b``; Leg A's
  ``bgapi originate`` carries a Job-UUID derived from the call id. Nothing is
  matched by timing or by parsing channel names.

greenswitch's own parser is not used for the same reasons the backend replaces
its reader (see ``backend.py``): it URL-decodes an event's whole text before
splitting it into lines, glues an event's body onto its ``Content-Length``
header, and raises (killing its reader) on a frame without ``Content-Type``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote

import structlog

from controller.calls.core import (
    DialFinished,
    Event,
    Leg,
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

log = structlog.get_logger(__name__)

# mod_event_socket reads at most this much in one packet (read_packet max_len).
MAX_BODY = 10 * 1024 * 1024
MAX_HEADER_BLOCK = 64 * 1024

BODY_KEY = "_body"

# FreeSWITCH's hangup cause names and their numbers (switch_types.h,
# switch_call_cause_t; the "Hangup Cause Code Table" of the documentation).
# Numbers above 127 are FreeSWITCH's own; switch_channel_cause_q850() reports
# them as 16 (NORMAL_CLEARING) in hangup_cause_q850, and so does q850_cause().
HANGUP_CAUSES: dict[str, int] = {
    "NONE": 0, "UNSPECIFIED": 0, "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3, "CHANNEL_UNACCEPTABLE": 6, "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23, "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30, "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42, "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44, "PRE_EMPTED": 45, "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52, "INCOMING_CALL_BARRED": 54, "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65, "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69, "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81, "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95, "MANDATORY_IE_MISSING": 96, "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98, "IE_NONEXIST": 99, "INVALID_IE_CONTENTS": 100,
    "WRONG_CALL_STATE": 101, "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103, "PROTOCOL_ERROR": 111, "INTERWORKING": 127,
    "SUCCESS": 142, "ORIGINATOR_CANCEL": 487, "CRASH": 500, "SYSTEM_SHUTDOWN": 501,
    "LOSE_RACE": 502, "MANAGER_REQUEST": 503, "BLIND_TRANSFER": 600,
    "ATTENDED_TRANSFER": 601, "ALLOTTED_TIMEOUT": 602, "USER_CHALLENGE": 603,
    "MEDIA_TIMEOUT": 604, "PICKED_OFF": 605, "USER_NOT_REGISTERED": 606,
    "PROGRESS_TIMEOUT": 607, "INVALID_GATEWAY": 608, "GATEWAY_DOWN": 609,
    "INVALID_URL": 610, "INVALID_PROFILE": 611, "NO_PICKUP": 612, "SRTP_READ_ERROR": 613,
}

# The bridge's originate_disposition in the words the core's DialFinished takes
# (Asterisk's DIALSTATUS); anything else is passed on as FreeSWITCH names it.
_DIAL_STATUS = {
    "USER_BUSY": "BUSY",
    "NO_ANSWER": "NOANSWER",
    "NO_USER_RESPONSE": "NOANSWER",
    "ORIGINATOR_CANCEL": "CANCEL",
}

# What a failed originate's -ERR means, for a person reading the result.
_ORIGINATE_HINTS = {
    "INVALID_GATEWAY": "no such sofia gateway; check [freeswitch] gateway and routes",
    "GATEWAY_DOWN": "the sofia gateway is down (not registered or failing OPTIONS pings)",
    "INVALID_PROFILE": "no such sofia profile; check [freeswitch] uri_profile",
    "INVALID_URL": "FreeSWITCH could not read the dial string",
    "NO_ROUTE_DESTINATION": "the far end found no route to the number",
    "USER_NOT_REGISTERED": "the user is not registered",
    "NORMAL_TEMPORARY_FAILURE": "the far end failed temporarily",
    "DESTINATION_OUT_OF_ORDER": "the far end did not respond",
}

# A far end's refusals (a final 486 or 603), as the bridge reports them.
_REFUSALS = ("USER_BUSY", "CALL_REJECTED")

_JOB_NAMESPACE = uuid.UUID("6f0e7c3a-4b1d-5c2e-9a8f-c411c0dec0de")


def leg_uuid(call_id: str, leg: Leg) -> str:
    """The channel id we give each leg (origination_uuid)."""
    return f"{call_id}-{leg.value}"


def originate_job_uuid(call_id: str) -> str:
    """The Job-UUID of Leg A's bgapi originate. mod_event_socket keeps at most
    36 characters of a Job-UUID, so it is derived, not ``<call_id>-job``."""
    return str(uuid.uuid5(_JOB_NAMESPACE, call_id + "/originate-a"))


def q850_cause(event: Mapping[str, str]) -> int:
    """A hangup's Q.850 number: variable_hangup_cause_q850 when FreeSWITCH has
    set it (CHANNEL_HANGUP_COMPLETE), else from the cause's name."""
    value = event.get("variable_hangup_cause_q850", "")
    if value.isdigit():
        return int(value)
    code = HANGUP_CAUSES.get(cause_name(event), 0)
    return code if code <= 127 else HANGUP_CAUSES["NORMAL_CLEARING"]


def cause_name(event: Mapping[str, str]) -> str:
    return (event.get("Hangup-Cause") or event.get("variable_hangup_cause") or "").upper()


# ---------------------------------------------------------------- framing

@dataclass(frozen=True)
class Frame:
    headers: Mapping[str, str]
    body: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class EslFramer:
    """Bytes in, frames out. Keeps what it has not understood yet."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiting: tuple[dict[str, str], int] | None = None  # headers, body length
        self.skipped = 0  # malformed frames seen (for tests and logs)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            if self._waiting is not None:
                headers, length = self._waiting
                if len(self._buffer) < length:
                    break
                body = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._waiting = None
                self._emit(frames, headers, body)
                continue
            # Stray line ends between frames are skipped, as FreeSWITCH does.
            start = 0
            while start < len(self._buffer) and self._buffer[start] in b"\r\n":
                start += 1
            if start:
                del self._buffer[:start]
            end = _blank_line(self._buffer)
            if end is None:
                if len(self._buffer) > MAX_HEADER_BLOCK:
                    self._skip("header block too long", bytes(self._buffer[:80]))
                    self._buffer.clear()
                break
            block, body_start = end
            text = bytes(self._buffer[:block]).decode("utf-8", errors="replace")
            del self._buffer[:body_start]
            parsed = self._parse_block(text)
            if parsed is None:
                continue
            headers, length = parsed
            if length:
                self._waiting = (headers, length)
            else:
                self._emit(frames, headers, b"")
        return frames

    def _parse_block(self, text: str) -> tuple[dict[str, str], int] | None:
        headers: dict[str, str] = {}
        for line in text.split("\n"):
            line = line.rstrip("\r")
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                self._skip("header line without a name", line)
                return None
            headers[name.strip()] = value.lstrip(" ")
        raw_length = headers.get("Content-Length", "0")
        try:
            length = int(raw_length)
        except ValueError:
            self._skip("Content-Length is not a number", raw_length)
            return None
        if not 0 <= length <= MAX_BODY:
            self._skip("Content-Length out of range", raw_length)
            return None
        return headers, length

    def _emit(self, frames: list[Frame], headers: dict[str, str], body: bytes) -> None:
        if "Content-Type" not in headers:
            self._skip("frame without Content-Type", repr(headers)[:200])
            return
        frames.append(Frame(headers, body.decode("utf-8", errors="replace")))

    def _skip(self, why: str, sample: str | bytes) -> None:
        self.skipped += 1
        log.warning("esl.frame.malformed", reason=why, sample=str(sample)[:120])


def _blank_line(buffer: bytearray) -> tuple[int, int] | None:
    """(end of the header text, start of the body) at the first empty line."""
    pos = 0
    while True:
        newline = buffer.find(b"\n", pos)
        if newline < 0:
            return None
        if newline == pos or (newline == pos + 1 and buffer[pos] == 0x0D):
            return max(pos - 1, 0), newline + 1
        pos = newline + 1


# ---------------------------------------------------------------- event decoding

def decode_event(frame: Frame) -> dict[str, str] | None:
    """An event frame's headers (values decoded); None for anything else."""
    if frame.content_type == "text/event-plain":
        event = parse_plain_event(frame.body)
    elif frame.content_type == "text/event-json":
        event = parse_json_event(frame.body)
    else:
        return None
    if event is None or not event.get("Event-Name"):
        log.warning("esl.event.malformed", content_type=frame.content_type,
                    sample=frame.body[:120])
        return None
    return event


def parse_plain_event(text: str) -> dict[str, str] | None:
    """switch_event_serialize(): ``Name: url-encoded value`` lines; if the event
    has a body, a ``Content-Length`` line, a blank line, then the body."""
    head, _, rest = text.partition("\n\n")
    event: dict[str, str] = {}
    bad = 0
    for line in head.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        name, colon, value = line.partition(": ")
        if not colon:
            bad += 1
            continue
        event[name] = unquote(value)
    if bad:
        log.warning("esl.event.bad_lines", count=bad, event_name=event.get("Event-Name"))
    if not event:
        return None
    if "Content-Length" in event:
        try:
            length = int(event.pop("Content-Length"))
        except ValueError:
            length = len(rest)
        event[BODY_KEY] = rest.encode()[:length].decode("utf-8", errors="replace")
    return event


def parse_json_event(text: str) -> dict[str, str] | None:
    """switch_event_serialize_json(): one object; multi-valued headers are
    arrays; the body is ``_body``."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    event: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, list):
            event[str(key)] = ",".join(str(v) for v in value)
        elif isinstance(value, str):
            event[str(key)] = value
        else:
            event[str(key)] = json.dumps(value)
    return event


def parse_dump(text: str) -> dict[str, str] | None:
    """``uuid_dump <uuid> json``: the channel's headers and variables, or None
    if FreeSWITCH has no such channel (``-ERR No such channel!``)."""
    if not text.lstrip().startswith("{"):
        return None
    return parse_json_event(text)


def channel_names(text: str) -> list[str]:
    """Channel names from ``show channels as json``: ``{"row_count": N, "rows":
    [{"uuid": ..., "name": ...}, ...]}`` (no ``rows`` when there are none)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    rows = data.get("rows") or []
    return [str(row.get("name", "")) for row in rows if isinstance(row, dict)]


# ---------------------------------------------------------------- translation

class PlaybackKind(StrEnum):
    WHISPER = "whisper"
    MESSAGE = "message"


@dataclass(frozen=True)
class Routed:
    call_id: str
    event: Event


@dataclass
class _Call:
    playbacks: dict[str, PlaybackKind] = field(default_factory=dict)  # path -> kind
    a_going: bool = False  # leg A's CHANNEL_HANGUP was seen
    b_created: bool = False
    b_answered: bool = False
    dial_reported: bool = False
    hung_up: set[Leg] = field(default_factory=set)
    ended: set[Leg] = field(default_factory=set)


class FsEventTranslator:
    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self._legs: dict[str, tuple[str, Leg]] = {}
        self._jobs: dict[str, str] = {}

    def watch(self, call_id: str) -> None:
        self._calls[call_id] = _Call()
        for leg in Leg:
            self._legs[leg_uuid(call_id, leg)] = (call_id, leg)
        self._jobs[originate_job_uuid(call_id)] = call_id

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
        for leg in Leg:
            self._legs.pop(leg_uuid(call_id, leg), None)
        self._jobs.pop(originate_job_uuid(call_id), None)

    def watched(self) -> list[str]:
        return list(self._calls)

    def resume(self, call_id: str, b_answered: bool) -> None:
        """After a restart: what is known of the call already."""
        call = self._calls.get(call_id)
        if call is not None:
            call.b_answered = b_answered
            call.dial_reported = b_answered

    def expect_playback(self, call_id: str, path: str, kind: PlaybackKind) -> None:
        """Leg A is about to play ``path``: its end means ``kind`` finished."""
        call = self._calls.get(call_id)
        if call is not None:
            call.playbacks[path] = kind

    def translate(self, event: Mapping[str, str], now: float) -> list[Routed]:
        """The core events one FreeSWITCH event means; [] for anything not ours.
        ``now`` stands in for the event's time if it has no timestamp."""
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

    # ------------------------------------------------------------ routing

    def _owner(self, event: Mapping[str, str]) -> tuple[str, Leg, _Call] | None:
        owner = self._legs.get(event.get("Unique-ID", ""))
        if owner is None:
            return None
        call = self._calls.get(owner[0])
        if call is None:
            return None
        return owner[0], owner[1], call

    # ------------------------------------------------------------ channel events

    def _CHANNEL_CREATE(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None:
            return []
        if owner[1] is Leg.B:
            owner[2].b_created = True
        return [Routed(owner[0], LegCreated(at, owner[1]))]

    def _CHANNEL_PROGRESS(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None:
            return []
        return [Routed(owner[0], LegRinging(at, owner[1]))]

    _CHANNEL_PROGRESS_MEDIA = _CHANNEL_PROGRESS

    def _CHANNEL_ANSWER(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None:
            return []
        call_id, leg, call = owner
        if leg is Leg.B:
            call.b_answered = True
        return [Routed(call_id, LegAnswered(at, leg))]

    def _CHANNEL_HANGUP(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None:
            return []
        call_id, leg, call = owner
        if leg is Leg.A:
            call.a_going = True
        return self._hung_up(call_id, leg, call, e, at)

    def _CHANNEL_HANGUP_COMPLETE(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None:
            return []
        call_id, leg, call = owner
        if leg in call.ended:
            return []
        if leg is Leg.A:
            call.a_going = True
        # The disposition of a switch-side hangup (send_bye, send_cancel) is
        # only set after CHANNEL_HANGUP; a party's (recv_*) before it. Either
        # way it is here now.
        routed = self._hung_up(call_id, leg, call, e, at)
        call.ended.add(leg)
        routed.append(Routed(call_id, LegEnded(at, leg, q850_cause(e), cause_name(e))))
        return routed

    def _hung_up(self, call_id: str, leg: Leg, call: _Call, e: Mapping[str, str],
                 at: float) -> list[Routed]:
        """LegHungUp when the party hung up or refused (sip_hangup_disposition
        recv_bye, recv_cancel, recv_refuse), once per leg."""
        disposition = e.get("variable_sip_hangup_disposition", "")
        if not disposition.startswith("recv_") or leg in call.hung_up:
            return []
        call.hung_up.add(leg)
        return [Routed(call_id, LegHungUp(at, leg, q850_cause(e)))]

    # ------------------------------------------------------------ media and apps

    def _PLAYBACK_STOP(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None or owner[1] is not Leg.A:
            return []
        call_id, _, call = owner
        kind = call.playbacks.pop(e.get("Playback-File-Path", ""), None)
        return self._playback_done(call_id, call, kind, e.get("Playback-Status") == "done", at)

    def _CHANNEL_EXECUTE_COMPLETE(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None or owner[1] is not Leg.A:
            return []
        call_id, _, call = owner
        application = e.get("Application", "")
        if application == "playback":
            # Only when PLAYBACK_STOP never came: a file that could not be
            # opened raises no PLAYBACK_START/STOP, only this.
            kind = call.playbacks.pop(e.get("Application-Data", ""), None)
            played = e.get("Application-Response") == "FILE PLAYED"
            return self._playback_done(call_id, call, kind, played, at)
        if application == "bridge":
            if call.b_answered or call.dial_reported or call.a_going:
                return []  # after a bridge, or A hung up: the hangups tell
            call.dial_reported = True
            routed: list[Routed] = []
            disposition = e.get("variable_originate_disposition", "").upper()
            if call.b_created and Leg.B not in call.hung_up and disposition in _REFUSALS:
                # B refused, but its own CHANNEL_HANGUP has not arrived yet:
                # say so first, or the core would read the dial status alone.
                call.hung_up.add(Leg.B)
                routed.append(Routed(call_id, LegHungUp(at, Leg.B, HANGUP_CAUSES[disposition])))
            routed.append(Routed(call_id, DialFinished(at, dial_status(e))))
            return routed
        return []

    def _playback_done(self, call_id: str, call: _Call, kind: PlaybackKind | None,
                       played: bool, at: float) -> list[Routed]:
        if kind is None:
            return []
        if kind is PlaybackKind.MESSAGE:
            return [Routed(call_id, MessageFinished(at))]
        if call.a_going:
            return []  # A hung up during the whisper; its hangup ends the call
        return [Routed(call_id, WhisperFinished(at, played))]

    def _RECORD_START(self, e: Mapping[str, str], at: float) -> list[Routed]:
        owner = self._owner(e)
        if owner is None or owner[1] is not Leg.A:
            return []
        return [Routed(owner[0], RecordingStarted(at))]

    def _BACKGROUND_JOB(self, e: Mapping[str, str], at: float) -> list[Routed]:
        call_id = self._jobs.get(e.get("Job-UUID", ""))
        if call_id is None or call_id not in self._calls:
            return []
        result = e.get(BODY_KEY, "").strip()
        if result.startswith("+OK"):
            return []
        return [Routed(call_id, OriginateFailed(at, originate_failure(result)))]


def originate_failure(result: str) -> str:
    """A failed originate's reply, in words: ``-ERR USER_BUSY`` and the like."""
    text = result.strip() or "no reply"
    cause = text.removeprefix("-ERR").strip().split(" ")[0].upper()
    hint = _ORIGINATE_HINTS.get(cause)
    return f"FreeSWITCH originate: {text}" + (f" ({hint})" if hint else "")


def dial_status(e: Mapping[str, str]) -> str:
    """How leg A's bridge ended, from its variables (originate_disposition)."""
    cause = (e.get("variable_originate_disposition") or e.get("variable_DIALSTATUS")
             or e.get("Application-Response") or "FAILED").upper()
    return _DIAL_STATUS.get(cause, cause)


def _timestamp(event: Mapping[str, str], now: float) -> float:
    """Event-Date-Timestamp is microseconds since the epoch."""
    value = event.get("Event-Date-Timestamp", "")
    if value.isdigit() and value != "0":
        return int(value) / 1_000_000
    return now
