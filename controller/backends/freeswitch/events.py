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
  (``origination_uuid``, see :func:`leg_uuid`): one for Leg A and one per
  Leg B channel (each target of each attempt gets its own); Leg A's ``bgapi
  originate`` carries a Job-UUID derived from the call id. Nothing is matched
  by timing or by parsing channel names. Which target a Leg B channel rings is
  the ``callconnect_target`` variable set on it (``[...]`` in the dial
  string), read back from its events. Leg B answered means: without answer
  steps, the channel FreeSWITCH bridges (``CHANNEL_BRIDGE``; two targets may
  answer at once and only one wins); with them, the first ``CHANNEL_ANSWER``,
  whose confirm step is then read from its ``PLAYBACK_*`` and ``DTMF`` events
  and ended by ``CHANNEL_BRIDGE`` (accepted) or a wrong key, the prompt
  starting again, or the backend's timer (declined).

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
from controller.core.outcomes import DialOutcome, Leg

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

# The bridge's originate_disposition in the core's words; anything else means
# nobody was reached (no route, a bad gateway, congestion...).
_DIAL_OUTCOME = {
    "USER_BUSY": DialOutcome.BUSY,
    "NO_ANSWER": DialOutcome.NO_ANSWER,
    "NO_USER_RESPONSE": DialOutcome.NO_ANSWER,
    # A leg_timeout ends each unanswered leg with ALLOTTED_TIMEOUT
    # (switch_ivr_originate.c check_per_channel_timeouts): a ring timeout.
    "ALLOTTED_TIMEOUT": DialOutcome.NO_ANSWER,
    "ORIGINATOR_CANCEL": DialOutcome.CANCELED,
    # switch_ivr_originate() sets this when a leg was accepted.
    "CALL ACCEPTED": DialOutcome.ANSWERED,
    "SUCCESS": DialOutcome.ANSWERED,
}

# What a failed originate's -ERR means, for a person reading the result.
_ORIGINATE_HINTS = {
    "INVALID_GATEWAY": "no such sofia gateway; check [freeswitch] gateway and routes",
    "GATEWAY_DOWN": "the sofia gateway is down (not registered or failing OPTIONS pings)",
    "INVALID_PROFILE": "no such sofia profile; check [freeswitch] uri_profile",
    "INVALID_URL": "FreeSWITCH could not read the dial string",
    "NO_ROUTE_DESTINATION": "the far end found no route to the number",
    "USER_NOT_REGISTERED": "the user is not registered",
    "SUBSCRIBER_ABSENT": "no such user in FreeSWITCH's directory",
    "NORMAL_TEMPORARY_FAILURE": "the far end failed temporarily",
    "DESTINATION_OUT_OF_ORDER": "the far end did not respond",
}

# A far end's refusals (a final 486 or 603), as the bridge reports them.
_REFUSALS = ("USER_BUSY", "CALL_REJECTED")

_JOB_NAMESPACE = uuid.UUID("6f0e7c3a-4b1d-5c2e-9a8f-c411c0dec0de")
_LEG_NAMESPACE = uuid.UUID("0c4a11e9-7f3b-5d21-8e64-2b9c0dec0de5")

# FreeSWITCH keeps a scheduled hangup's channel id in a 37-byte buffer
# (switch_ivr_async.c struct hangup_helper: SWITCH_UUID_FORMATTED_LENGTH + 1):
# sched_hangup on a longer id hangs nothing up. Every id we give a channel
# fits in 36 characters.
MAX_CHANNEL_ID = 36
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_B_LEGS = len(_B36) ** 2  # per call, over all its attempts


def _compact(call_id: str) -> str:
    """32 hex digits standing for the call: the call id itself when it is a
    UUID (as the controller makes them), else a UUID derived from it."""
    try:
        parsed = uuid.UUID(call_id)
    except ValueError:
        return uuid.uuid5(_LEG_NAMESPACE, call_id).hex
    return parsed.hex if str(parsed) == call_id.lower() else uuid.uuid5(_LEG_NAMESPACE, call_id).hex


def leg_uuid(call_id: str, leg: Leg, index: int = 0) -> str:
    """The channel id we give a leg (origination_uuid): ``<32 hex>-a`` for Leg
    A and ``<32 hex>-b<nn>`` for the call's ``index``-th Leg B channel (two
    base-36 digits), so that every id fits FreeSWITCH's 36 characters."""
    base = _compact(call_id)
    if leg is Leg.A:
        return f"{base}-a"
    if not 0 <= index < MAX_B_LEGS:
        raise ValueError(f"leg B channel number {index} out of range")
    return f"{base}-b{_B36[index // 36]}{_B36[index % 36]}"


def b_leg_prefix(call_id: str) -> str:
    """What every Leg B channel id of the call starts with."""
    return f"{_compact(call_id)}-b"


def b_leg_index(call_id: str, channel: str) -> int | None:
    """The number in one of our Leg B channel ids, or None."""
    prefix = b_leg_prefix(call_id)
    digits = channel[len(prefix):]
    if not channel.startswith(prefix) or len(digits) != 2 or any(c not in _B36 for c in digits):
        return None
    return _B36.index(digits[0]) * 36 + _B36.index(digits[1])


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


def channel_rows(text: str) -> list[dict[str, str]]:
    """``show channels as json``: ``{"row_count": N, "rows": [{"uuid": ...,
    "name": ..., "presence_id": ..., ...}, ...]}`` (no ``rows`` when there
    are none); values as strings."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    rows = data.get("rows") or []
    return [{str(k): "" if v is None else str(v) for k, v in row.items()}
            for row in rows if isinstance(row, dict)]


def channel_names(text: str) -> list[str]:
    """Channel names from ``show channels as json``."""
    return [row.get("name", "") for row in channel_rows(text)]


# ---------------------------------------------------------------- translation

class PlaybackKind(StrEnum):
    WHISPER = "whisper"
    MESSAGE = "message"


@dataclass(frozen=True)
class Routed:
    call_id: str
    event: Event


@dataclass(frozen=True)
class WaitForKey(Event):
    """Not a core event: Leg B ``channel`` now has ``seconds`` to press the
    confirm key (the backend declines it if the switch says nothing by then)."""

    channel: str
    seconds: float


@dataclass(frozen=True)
class AnswerSteps:
    """What a dial asks of the Leg B channel that answers, before the bridge
    (FreeSWITCH's group_confirm): ``key`` to press (``None``: only hear
    ``audio``), ``audio`` played first, ``timeout`` seconds to press it."""

    key: str | None
    audio: str | None
    timeout: int


@dataclass
class _BLeg:
    call_id: str
    target: str
    created: bool = False
    answered_at: float | None = None
    hung_up: bool = False  # LegHungUp reported
    ended: bool = False


@dataclass
class _Dial:
    """One attempt at Leg B: its channels in dial order and what it asks."""

    legs: list[str]
    steps: AnswerSteps | None = None
    winner: str | None = None  # the channel that answered first (steps) or was bridged
    bridged: bool = False
    reported: bool = False  # DialFinished sent
    decided: bool = False  # accepted (right key) or declined
    prompts: int = 0  # times the confirm file started on the winner
    waiting: bool = False  # a WaitForKey was sent


@dataclass
class _Call:
    playbacks: dict[str, PlaybackKind] = field(default_factory=dict)  # path -> kind
    a_going: bool = False  # leg A's CHANNEL_HANGUP was seen
    a_hung_up: bool = False
    a_ended: bool = False
    dial: _Dial | None = None
    b_legs: list[str] = field(default_factory=list)  # every Leg B channel, every attempt
    after_bridge: str | None = None  # application Leg A runs last after a failed bridge


class FsEventTranslator:
    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self._a: dict[str, str] = {}  # leg A channel -> call id
        self._b: dict[str, _BLeg] = {}  # leg B channel -> its leg
        self._jobs: dict[str, str] = {}

    def watch(self, call_id: str) -> None:
        self._calls[call_id] = _Call()
        self._a[leg_uuid(call_id, Leg.A)] = call_id
        self._jobs[originate_job_uuid(call_id)] = call_id

    def forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        for channel in [c for c, owner in self._a.items() if owner == call_id]:
            del self._a[channel]
        if call is not None:
            for channel in call.b_legs:
                self._b.pop(channel, None)
        self._jobs.pop(originate_job_uuid(call_id), None)

    def watched(self) -> list[str]:
        return list(self._calls)

    def adopt(self, call_id: str, leg: Leg, channel: str, target: str = "",
              steps: AnswerSteps | None = None) -> None:
        """A channel of ours known by other means than a dial we sent (after a
        restart, or replaying older wire text)."""
        call = self._calls.get(call_id)
        if call is None:
            return
        if leg is Leg.A:
            self._a[channel] = call_id
            return
        if channel not in self._b:
            self._b[channel] = _BLeg(call_id, target, created=True)
            call.b_legs.append(channel)
        if call.dial is None:
            call.dial = _Dial([], steps)
        if channel not in call.dial.legs:
            call.dial.legs.append(channel)

    def expect_dial(self, call_id: str, legs: list[tuple[str, str]],
                    steps: AnswerSteps | None) -> None:
        """Leg B is about to be dialed: these channels (id, target), in dial
        order, all at once; the first to answer wins."""
        call = self._calls.get(call_id)
        if call is None:
            return
        self._close_dial(call)
        call.dial = _Dial([channel for channel, _ in legs], steps)
        for channel, target in legs:
            self._b[channel] = _BLeg(call_id, target)
            call.b_legs.append(channel)

    def expect_after_bridge(self, call_id: str, application: str) -> None:
        """Leg A runs ``application`` last when the bridge fails."""
        call = self._calls.get(call_id)
        if call is not None:
            call.after_bridge = application

    def after_bridge_pending(self, call_id: str) -> bool:
        """Leg A may still be running what follows a failed bridge."""
        call = self._calls.get(call_id)
        return call is not None and call.after_bridge is not None and not call.a_going

    def channels(self, call_id: str) -> list[str]:
        """Every channel id of ours in the call (for event filters)."""
        call = self._calls.get(call_id)
        if call is None:
            return []
        return [c for c, owner in self._a.items() if owner == call_id] + list(call.b_legs)

    def b_channels(self, call_id: str) -> list[str]:
        """Leg B channels that may be up: created or still to be created."""
        call = self._calls.get(call_id)
        if call is None:
            return []
        return [c for c in call.b_legs if c in self._b and not self._b[c].ended]

    def next_b_index(self, call_id: str) -> int:
        call = self._calls.get(call_id)
        indexes = [b_leg_index(call_id, c) for c in (call.b_legs if call else [])]
        return max((i for i in indexes if i is not None), default=-1) + 1

    def siblings(self, call_id: str, channel: str) -> list[str]:
        """The other channels of the current attempt that are still ringing."""
        call = self._calls.get(call_id)
        if call is None or call.dial is None:
            return []
        return [c for c in call.dial.legs
                if c != channel and c in self._b and not self._b[c].ended]

    def answer_steps(self, call_id: str) -> AnswerSteps | None:
        """What the current attempt asks of the Leg B that answers."""
        call = self._calls.get(call_id)
        return call.dial.steps if call is not None and call.dial is not None else None

    def declined_channel(self, call_id: str) -> str | None:
        """The Leg B channel that answered and was just declined."""
        call = self._calls.get(call_id)
        if call is None or call.dial is None or call.dial.bridged:
            return None
        return call.dial.winner

    def resume(self, call_id: str, bridged: bool, winner: str | None = None) -> None:
        """After a restart: what is known of the call already (Leg B bridged;
        the Leg B channel that answered)."""
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.dial is None:
            call.dial = _Dial([])
        if winner is not None:
            call.dial.winner = winner
        if bridged:
            call.dial.bridged = call.dial.reported = call.dial.decided = True

    def expect_playback(self, call_id: str, path: str, kind: PlaybackKind) -> None:
        """Leg A is about to play ``path``: its end means ``kind`` finished."""
        call = self._calls.get(call_id)
        if call is not None:
            call.playbacks[path] = kind

    def call_of(self, event: Mapping[str, str]) -> str | None:
        """Which of our calls a channel event is about, if any."""
        channel = event.get("Unique-ID", "")
        b = self._b.get(channel)
        return b.call_id if b is not None else self._a.get(channel)

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

    def confirm_expired(self, call_id: str, channel: str, at: float) -> list[Routed]:
        """The time to press the confirm key is up (the backend's timer)."""
        call = self._calls.get(call_id)
        if call is None or call.dial is None:
            return []
        dial = call.dial
        if dial.winner != channel or dial.decided or dial.bridged or call.a_going:
            return []
        return self._decline(call_id, dial, "pressed no key in time", at)

    # ------------------------------------------------------------ routing

    def _a_owner(self, event: Mapping[str, str]) -> tuple[str, _Call] | None:
        call_id = self._a.get(event.get("Unique-ID", ""))
        call = self._calls.get(call_id) if call_id is not None else None
        if call_id is None or call is None:
            return None
        return call_id, call

    def _b_owner(self, event: Mapping[str, str]) -> tuple[str, _Call, _BLeg, str] | None:
        channel = event.get("Unique-ID", "")
        b = self._b.get(channel)
        call = self._calls.get(b.call_id) if b is not None else None
        if b is None or call is None:
            return None
        return b.call_id, call, b, channel

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
        call.after_bridge = None  # A is hung up after this bridge, not parked
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
            a[1].a_going = True
            return self._a_hung_up(a[0], a[1], e, at)
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
            call.a_going = True
            routed = self._a_hung_up(call_id, call, e, at)
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

    def _a_hung_up(self, call_id: str, call: _Call, e: Mapping[str, str],
                   at: float) -> list[Routed]:
        """LegHungUp when the party hung up or refused (sip_hangup_disposition
        recv_bye, recv_cancel, recv_refuse), once per channel."""
        if call.a_hung_up or not _party_hangup(e):
            return []
        call.a_hung_up = True
        return [Routed(call_id, LegHungUp(at, Leg.A, q850_cause(e), e["Unique-ID"]))]

    def _b_hung_up(self, call_id: str, leg: _BLeg, channel: str, e: Mapping[str, str],
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

    def _confirming(self, e: Mapping[str, str]) -> tuple[str, _Dial] | None:
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

    def _close_dial(self, call: _Call) -> None:
        """The dial is over: a leg FreeSWITCH never created (no such user, no
        gateway) never will be."""
        if call.dial is None:
            return
        for channel in call.dial.legs:
            leg = self._b.get(channel)
            if leg is not None and not leg.created:
                leg.ended = True

    def _decline(self, call_id: str, dial: _Dial, reason: str, at: float) -> list[Routed]:
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
        application = e.get("Application", "")
        if application == "playback":
            # Only when PLAYBACK_STOP never came: a file that could not be
            # opened raises no PLAYBACK_START/STOP, only this.
            kind = call.playbacks.pop(e.get("Application-Data", ""), None)
            played = e.get("Application-Response") == "FILE PLAYED"
            return self._playback_done(call_id, call, kind, played, at)
        if application == call.after_bridge:
            call.after_bridge = None
            return []
        if application == "bridge":
            return self._bridge_done(call_id, call, e, at)
        return []

    def _bridge_done(self, call_id: str, call: _Call, e: Mapping[str, str],
                     at: float) -> list[Routed]:
        dial = call.dial
        if dial is None or dial.bridged or dial.reported or call.a_going:
            return []  # after a bridge, or A hung up: the hangups tell
        dial.reported = True
        self._close_dial(call)
        routed: list[Routed] = []
        disposition = e.get("variable_originate_disposition", "").upper()
        if disposition in _REFUSALS:
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
        a = self._a_owner(e)
        if a is None:
            return []
        return [Routed(a[0], RecordingStarted(at))]

    def _BACKGROUND_JOB(self, e: Mapping[str, str], at: float) -> list[Routed]:
        call_id = self._jobs.get(e.get("Job-UUID", ""))
        if call_id is None or call_id not in self._calls:
            return []
        result = e.get(BODY_KEY, "").strip()
        if result.startswith("+OK"):
            return []
        return [Routed(call_id, OriginateFailed(at, originate_failure(result)))]


def steps_of(channel: Mapping[str, str]) -> AnswerSteps | None:
    """A Leg B channel's answer steps, from the group_confirm_* variables it
    got from the dial string (``uuid_dump``)."""
    key = channel.get("variable_group_confirm_key")
    if not key:
        return None
    file = channel.get("variable_group_confirm_file") or None
    timeout = channel.get("variable_group_confirm_read_timeout", "")
    seconds = int(timeout) // 1000 if timeout.isdigit() else 5
    if key == "exec":
        return AnswerSteps(None, file.removeprefix("playback ") if file else None, seconds)
    return AnswerSteps(key, file, seconds)


def _party_hangup(event: Mapping[str, str]) -> bool:
    return event.get("variable_sip_hangup_disposition", "").startswith("recv_")


def originate_failure(result: str) -> str:
    """A failed originate's reply, in words: ``-ERR USER_BUSY`` and the like."""
    text = result.strip() or "no reply"
    cause = text.removeprefix("-ERR").strip().split(" ")[0].upper()
    hint = _ORIGINATE_HINTS.get(cause)
    return f"FreeSWITCH originate: {text}" + (f" ({hint})" if hint else "")


def dial_outcome(e: Mapping[str, str]) -> DialOutcome:
    """How leg A's bridge ended, from its variables. switch_ivr_originate()
    sets originate_disposition wherever it sets its Asterisk-style dial status."""
    cause = (e.get("variable_originate_disposition") or e.get("Application-Response")
             or "FAILED").upper()
    return _DIAL_OUTCOME.get(cause, DialOutcome.FAILED)


def _timestamp(event: Mapping[str, str], now: float) -> float:
    """Event-Date-Timestamp is microseconds since the epoch."""
    value = event.get("Event-Date-Timestamp", "")
    if value.isdigit() and value != "0":
        return int(value) / 1_000_000
    return now
