"""An Event Socket peer: FreeSWITCH as the controller sees it, on loopback.

The FreeSWITCH backend runs against a real FreeSWITCH 1.10.12 in the lab
(tests/fslab); this peer is for what a real switch cannot be made to show
(split and malformed frames, -ERR on demand, a silent link) and for the
backend's fast tests, so it follows what the lab's switch showed (see the
notes marked "seen on FreeSWITCH 1.10.12"). It is an asyncio TCP server on
127.0.0.1 (a random port) that speaks mod_event_socket's inbound protocol and
simulates the channels behind it, with the real event names and headers, and
phones chosen by the dialed number (the lab's number plan,
``sip-lab/callconnect.toml``):

========  ==================================================================
``01xx``  180, answers after 0.5 s, stays until hung up
``02xx``  the same
``03xx``  180, never answers (the originate/bridge timeout ends it)
``04xx``  486 Busy Here at once (USER_BUSY, no 180)
``05xx``  180, 603 Decline after 0.3 s (CALL_REJECTED)
``06xx``  180, answers after 0.5 s, hangs up (BYE) 4 s after answering
========  ==================================================================

and for a SIP URI's user part or a directory user's name (``user/NAME``):
``busy``, ``reject``, ``no-answer``, ``answer``, as the lab's SIPp phones do,
or any of ``answer-after-<ms>``, ``hangup-after-<ms>`` and ``press-<key>``
(``0``-``9``, ``star``, ``hash``: the key it sends, once, 0.1 s after a
confirm prompt ends). ``user/NAME`` is a directory user (every name, unless
``directory`` lists them) registered unless named ``offline-*``.

Where each shape comes from (FreeSWITCH 1.10 source and documentation):

* Framing, mod_event_socket.c: ``Content-Type: auth/request`` on connect;
  ``auth`` answered ``+OK accepted`` or ``-ERR invalid`` and then a
  ``text/disconnect-notice`` and close; ``command/reply`` with
  ``Reply-Text``; ``api/response`` with ``Content-Length``; ``bgapi`` answered
  ``Reply-Text: +OK Job-UUID: <id>`` plus a ``Job-UUID`` header (a client's own
  ``Job-UUID`` header is kept, up to 36 characters) and, when the job is done,
  a ``BACKGROUND_JOB`` event whose body is the result; events framed as
  ``Content-Length: N`` then ``Content-Type: text/event-plain`` (or
  ``-json``); ``filter <header> <value>`` lets through only events matching
  any filter (header names and values compared case-insensitively),
  ``filter delete``; ``event plain|json <names>``; ``sendmsg <uuid>`` with
  ``call-command: execute``; unknown commands ``-ERR command not found``;
  ``text/rude-rejection`` for a host the ACL refuses.
* Plain event text, switch_event.c switch_event_serialize(): ``Name: value``
  lines with the value URL-encoded (switch_url_encode: control characters,
  non-ASCII and `` #%&+:;<=>?@[\\]^`{|}"`` as %XX), an empty value written
  ``_undef_``, and an event body as ``Content-Length`` + blank line + body.
* Channel headers, switch_channel.c switch_channel_event_set_basic_data()
  (Channel-State, Channel-Call-State, Unique-ID, Answer-State, Hangup-Cause,
  Caller-*/Other-Leg-* profile fields) and the list of events that carry
  ``variable_*`` headers (CHANNEL_CREATE, _PROGRESS, _ANSWER, _PARK, _BRIDGE,
  _HANGUP, _HANGUP_COMPLETE, _EXECUTE(_COMPLETE), PLAYBACK_*, RECORD_*, ...);
  compared with a CHANNEL_CREATE dump from a real FreeSWITCH
  (github.com/Datchuthanh98/VoIP_CallCenter, esl-event/check.js).
* Hangups, switch_channel_perform_hangup(): CHANNEL_HANGUP carries
  ``Hangup-Cause`` but not yet ``variable_hangup_cause_q850`` (set in the
  hangup state handler, switch_core_state_machine.c, as
  switch_channel_cause_q850(): the cause if <= 127, else 16);
  CHANNEL_HANGUP_COMPLETE carries both. ``sip_hangup_disposition``: mod_sofia
  sets ``recv_refuse`` before hanging up (so CHANNEL_HANGUP has it), but
  ``recv_bye`` only after switch_channel_hangup() returns
  (sofia_handle_sip_i_bye), and ``send_bye``/``send_cancel`` in its on_hangup
  handler: only CHANNEL_HANGUP_COMPLETE has those. On a received BYE,
  CHANNEL_HANGUP has ``sip_term_status`` (200) instead, set before the hangup;
  as seen on FreeSWITCH 1.10.12 in the lab.
* Applications, mod_dptools and switch_ivr: CHANNEL_EXECUTE and
  CHANNEL_EXECUTE_COMPLETE around every application (Application,
  Application-Data, Application-Response); ``park`` raises CHANNEL_PARK and
  honours ``park_timeout=<s>[:<cause>]`` (Channel Variables Catalog);
  ``playback`` raises PLAYBACK_START/PLAYBACK_STOP with Playback-File-Path and
  Playback-Status (done/break), lasting the WAV file's real length, and answers
  FILE PLAYED or FILE NOT FOUND; ``bridge`` dials with the ``{var=value}``
  list (origination_uuid, originate_timeout, execute_on_answer), raises
  CHANNEL_BRIDGE/UNBRIDGE (answering a caller not answered yet first), sets
  originate_disposition and DIALSTATUS when it fails, hangs the caller up
  unless continue_on_fail=true, and hangs it up
  after a bridge when hangup_after_bridge=true; ``sched_hangup +N <cause>``;
  applications sent with ``sendmsg`` while the channel is parked run one after
  the other. An originated channel answers HANDOVER_SECONDS before it runs
  its application, and a ``playback`` sent to it meanwhile fails at once
  (``PLAYBACK ERROR``, no PLAYBACK_START/STOP), as seen on FreeSWITCH
  1.10.12 in the lab.
* Dialing, switch_ivr_originate.c switch_ivr_originate(): ``{vars}`` for
  every leg, then targets, ``|`` one after the other (a timeout stops the
  list unless originate_continue_on_timeout), ``,`` all at once, each with
  ``[vars]`` of its own over the ``{...}`` ones (origination_uuid per leg);
  group_confirm_* are also taken from the caller's variables. The first leg to
  answer wins; the others are hung up with LOSE_RACE (and
  ``group_dial_status=loser``) when there were several, with NO_ANSWER at
  originate_timeout, ORIGINATOR_CANCEL if the caller goes; a leg's
  ``leg_timeout`` hangs it up with ALLOTTED_TIMEOUT (check_per_channel_timeouts)
  unless group_confirm_cancel_timeout stopped those timers. A dial that fails
  takes the first leg's cause (dial order), or the last creation failure if
  no leg was created; on success ``originate_disposition`` is ``call
  accepted``; DIALSTATUS as that function sets it. With group_confirm_key
  (collect_thread_run()), a leg that answers is tagged and must confirm: with
  the key ``exec``, group_confirm_file is ``<app> <args>`` run on the leg,
  which wins if still up after it; otherwise group_confirm_file is played
  (PLAYBACK_START/STOP on the leg) and one key read for
  group_confirm_read_timeout ms (default 5000): the key wins, a wrong key or
  none plays the file and reads again for as long as the leg is up. The DTMF
  event comes when the digit is read (switch_channel_dequeue_dtmf: DTMF-Digit,
  DTMF-Duration; DTMF-Source in newer releases), with no ``variable_*``.
* Incoming calls (``call_in``), as seen on FreeSWITCH 1.10.12 in the lab: an
  inbound channel runs dialplans/freeswitch/callconnect_inbound.xml (``set``,
  ``sched_hangup``, ``ring_ready``, ``event`` raising ``CUSTOM`` with
  ``Event-Subclass`` and the channel's variables, ``park``); a connection
  gets a ``CUSTOM`` event only for a subclass named after ``CUSTOM`` in its
  ``event`` command. Its caller (:class:`Caller`) presses keys once
  answered and may hang up; the SIP statuses it gets are kept (180 from
  ring_ready, 183 from pre_answer, 200 from answer, and for a hangup before
  the answer mod_sofia's hangup_cause_to_sip()). ``read`` (switch_ivr_read:
  a key stops the prompt and counts, terminators, read_terminator_used),
  ``record_session``/``stop_record_session``, ``unset``, ``uuid_getvar``.
  ``park`` takes a key it gets and drops it (its DTMF event). What is sent
  behind a ``playback``, ``read`` or ``sleep`` runs at once, inside it,
  unless that one came with ``event-lock: true`` (uuid_broadcast's do).
* Directory users, mod_dptools user_outgoing_channel(): an unknown user fails
  with SUBSCRIBER_ABSENT, an unregistered one with USER_NOT_REGISTERED (its
  contact is ``error/user_not_registered``), both with no channel; the
  channel carries dialed_user, dialed_domain and ``presence_id`` =
  ``<user>@<domain>`` (the default domain: vars.xml's $${domain}).
* ``execute_on_answer`` and ``execute_on_pre_bridge``,
  switch_channel_execute_on(): every variable whose name starts with it is
  ``<app> <args>`` run at once (CHANNEL_EXECUTE/_COMPLETE as any
  application), on answer, or by each side's bridge thread when media flows
  (switch_ivr_bridge.c); ``api_before_bridge`` (switch_channel_api_on) is an
  API command that bridge thread runs on its own channel.
* Applications sent (``sendmsg``) to a channel whose ``bridge`` rings run at
  once, inside the bridge: switch_ivr_originate.c parses the caller's queued
  messages while it waits (switch_ivr_parse_all_events), so their
  CHANNEL_EXECUTE_COMPLETE comes before the bridge's; seen on FreeSWITCH
  1.10.12 in the lab.
* The scheduler, switch_ivr_async.c and mod_commands: ``sched_hangup``
  (application ``+N [cause]``, API ``+N <uuid> [cause]``, ``-ERR No such
  channel!``) adds a task to the group named after the channel, which keeps
  the channel id in a 37-byte buffer (struct hangup_helper): a longer id is
  cut to 36 characters and the hangup then finds no channel; ``sched_del
  <group>`` answers ``+OK Deleted: <n>``.
* Hold music, mod_commands ``uuid_displace <uuid> start|stop <file> [limit]
  [mux]`` (``+OK Success``, ``-ERR Cannot locate session!``, ``-ERR Cannot
  stop displace session!``) and mod_dptools ``displace_session <file>
  [flags]``: a media bug, no audio is simulated.
* API commands, mod_commands: ``originate <dial string> &app(args)``
  (``+OK <uuid>`` or ``-ERR <CAUSE>``: NO_ANSWER at originate_timeout,
  USER_BUSY, CALL_REJECTED, INVALID_GATEWAY for an unknown gateway, with no
  channel), ``uuid_broadcast <uuid> <path>|<app>[!<cause>]::<args> aleg``
  (the scheduler API page documents ``playback!normal_clearing::<path>``),
  ``uuid_kill`` (``-ERR No such channel!``), ``uuid_record <uuid> start
  <path>`` (RECORD_START/RECORD_STOP, and a real WAV file is written),
  ``uuid_setvar``, ``uuid_setvar_multi``, ``show channels [as json]`` (with
  presence_id).

The peer can also split its writes into random small TCP writes, inject raw
bytes (malformed frames), hold the reply to a command or to an application's
sendmsg (as a FreeSWITCH busy with it would: one command at a time per
connection), refuse a command, refuse the connection by ACL, and drop every
connection at once. It keeps the pieces the controller's bytes came in
(``PeerConnection.received``), and, as a switch reading its socket, still
reads what a controller that died sent before its connection was reset.

``python -m tests.esl.peer record tests/fixtures/esl`` runs every lab scenario
against a peer through the real controller and writes what the controller
received, byte for byte, as the translator's fixtures.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import math
import random
import re
import struct
import sys
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any, SupportsIndex

from tests.scenarios import SCENARIOS, scenario_folders, scenario_spec

if TYPE_CHECKING:
    from controller.app import Controller
    from controller.calls.runner import ActiveCall
    from controller.config import Config
    from controller.core.states import Transition

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
# How long an originated channel stays answered before originate() hands it
# to its application (mod_commands sets CS_EXECUTE once switch_ivr_originate()
# returns). A playback sent to it meanwhile runs in that state and fails with
# PLAYBACK ERROR and no PLAYBACK_START/STOP: 15 of 160 broadcasts sent on
# CHANNEL_ANSWER to FreeSWITCH 1.10.12 in the lab, none of 160 sent on
# CHANNEL_PARK (python -m bench.fs_answer_race). The peer makes the gap wide
# enough to hit every time.
HANDOVER_SECONDS = 0.05
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


# ---------------------------------------------------------------- phones

@dataclass(frozen=True)
class Phone:
    """What the far end does with the INVITE (the lab's SIPp phones)."""

    ring: bool = True  # 180 Ringing first
    answer_after: float | None = 0.5
    hangup_after: float | None = None  # BYE this long after answering
    refuse_after: float | None = None
    refuse_code: int = 0
    refuse_cause: str = ""
    press: str | None = None  # the key it sends (RFC 2833) when asked for one
    press_after: float = 0.1  # after the prompt has ended


_KEYS = {"star": "*", "hash": "#"}


@dataclass(frozen=True)
class Caller:
    """A phone that calls the switch (an inbound call): once answered it
    presses ``keys`` (RFC 2833), each (seconds after the answer, key), and
    hangs up ``hangup_after`` seconds after the answer (None: it waits for
    the switch's BYE)."""

    number: str = "+27115550111"
    keys: tuple[tuple[float, str], ...] = ()
    hangup_after: float | None = None


# mod_sofia hangup_cause_to_sip(): the SIP status an unanswered inbound call
# is refused with, for the causes the peer uses (480 for the rest).
SIP_STATUS = {"UNALLOCATED_NUMBER": 404, "USER_BUSY": 486, "NO_ANSWER": 480,
              "CALL_REJECTED": 603, "NORMAL_CIRCUIT_CONGESTION": 503,
              "RECOVERY_ON_TIMER_EXPIRE": 504, "NORMAL_TEMPORARY_FAILURE": 503}


def phone_for(destination: str, answer_delay: float, reject_delay: float,
              hangup_after: float) -> Phone:
    if destination.startswith(("sip:", "sips:")):
        return phone_named(destination.split(":", 1)[1].split("@", 1)[0], answer_delay,
                           reject_delay)
    block = destination[-4:-2]
    if block == "03":
        return Phone(answer_after=None)
    if block == "04":
        return phone_named("busy", answer_delay, reject_delay)
    if block == "05":
        return phone_named("reject", answer_delay, reject_delay)
    if block == "06":
        return Phone(answer_after=answer_delay, hangup_after=hangup_after)
    return Phone(answer_after=answer_delay)


def phone_named(user: str, answer_delay: float, reject_delay: float) -> Phone:
    """A phone by its name (a SIP URI's user part, a directory user):
    ``busy``, ``reject``, ``no-answer``, ``answer``, or any of
    ``answer-after-<ms>``, ``hangup-after-<ms>``, ``press-<key>`` (0-9,
    ``star``, ``hash``: the key it presses when a confirm prompt asks)."""
    if user == "busy":
        return Phone(ring=False, answer_after=None, refuse_after=0.0, refuse_code=486,
                     refuse_cause="USER_BUSY")
    if user == "reject":
        return Phone(answer_after=None, refuse_after=reject_delay, refuse_code=603,
                     refuse_cause="CALL_REJECTED")
    if user.startswith("no-answer"):
        return Phone(answer_after=None)
    answer = re.search(r"answer-after-([0-9]+)", user)
    hangup = re.search(r"hangup-after-([0-9]+)", user)
    press = re.search(r"press-([0-9]|star|hash)", user)
    return Phone(answer_after=int(answer.group(1)) / 1000 if answer else answer_delay,
                 hangup_after=int(hangup.group(1)) / 1000 if hangup else None,
                 press=_KEYS.get(press.group(1), press.group(1)) if press else None)


# ---------------------------------------------------------------- channels

@dataclass
class Channel:
    uuid: str
    name: str
    destination: str
    variables: dict[str, str]
    caller_number: str
    originator: Channel | None = None
    created: int = field(default_factory=now_us)
    progress: int = 0
    answered_at: int = 0
    hungup_at: int = 0
    bridged_at: int = 0
    state: str = "CS_INIT"
    state_number: int = 2
    call_state: str = "DOWN"
    hangup_cause: str | None = None
    bridged_with: Channel | None = None
    recording: tuple[str, float] | None = None
    destroyed: bool = False
    # (application, argument, event-lock) sent to the channel, in order.
    apps: asyncio.Queue[tuple[str, str, bool]] = field(default_factory=asyncio.Queue)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    phone_task: asyncio.Task[Any] | None = None
    phone: Phone | None = None
    dtmf: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    handing_over: bool = False  # answered, not yet running its originate's application
    winner: bool = False  # group_confirm: it confirmed (CF_WINNER)
    tagged: bool = False  # group_confirm: answered, confirming (CF_TAGGED)
    displacing: set[str] = field(default_factory=set)  # uuid_displace / displace_session files
    direction: str = "outbound"  # "inbound": a call to the switch (call_in)
    caller: Caller | None = None  # inbound: the phone that called
    responses: list[int] = field(default_factory=list)  # inbound: SIP statuses it sent back

    def basic_data(self) -> list[tuple[str, str]]:
        if self.hangup_cause:
            answer_state = "hangup"
        elif self.answered.is_set():
            answer_state = "answered"
        else:
            answer_state = "ringing"
        headers = [
            ("Channel-State", self.state), ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(self.state_number)), ("Channel-Name", self.name),
            ("Unique-ID", self.uuid), ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true" if self.direction == "inbound" else "false"),
            ("Channel-Call-UUID", self.originator.uuid if self.originator else self.uuid),
            ("Answer-State", answer_state),
        ]
        if self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        if self.answered.is_set():
            headers += [("Channel-Read-Codec-Name", "PCMU"), ("Channel-Read-Codec-Rate", "8000"),
                        ("Channel-Read-Codec-Bit-Rate", "64000"),
                        ("Channel-Write-Codec-Name", "PCMU"),
                        ("Channel-Write-Codec-Rate", "8000"),
                        ("Channel-Write-Codec-Bit-Rate", "64000")]
        headers += self._profile("Caller", self)
        if self.originator is not None:
            headers.append(("Other-Type", "originator"))
            headers += self._profile("Other-Leg", self.originator)
        elif self.bridged_with is not None:
            headers.append(("Other-Type", "originatee"))
            headers += self._profile("Other-Leg", self.bridged_with)
        return headers

    @staticmethod
    def _profile(prefix: str, ch: Channel) -> list[tuple[str, str]]:
        number = ch.destination.split("@", 1)[0].removeprefix("sip:")
        return [
            (f"{prefix}-Direction", "outbound"), (f"{prefix}-Logical-Direction", "outbound"),
            (f"{prefix}-Username", ch.caller_number), (f"{prefix}-Dialplan", "XML"),
            (f"{prefix}-Caller-ID-Name", ch.caller_number),
            (f"{prefix}-Caller-ID-Number", ch.caller_number),
            (f"{prefix}-Orig-Caller-ID-Name", ch.caller_number),
            (f"{prefix}-Orig-Caller-ID-Number", ch.caller_number),
            (f"{prefix}-Callee-ID-Name", "Outbound Call"), (f"{prefix}-Callee-ID-Number", number),
            (f"{prefix}-Network-Addr", "127.0.0.1"), (f"{prefix}-ANI", ch.caller_number),
            (f"{prefix}-Destination-Number", number), (f"{prefix}-Unique-ID", ch.uuid),
            (f"{prefix}-Source", "mod_sofia"), (f"{prefix}-Context", "default"),
            (f"{prefix}-Channel-Name", ch.name), (f"{prefix}-Profile-Index", "1"),
            (f"{prefix}-Profile-Created-Time", str(ch.created)),
            (f"{prefix}-Channel-Created-Time", str(ch.created)),
            (f"{prefix}-Channel-Answered-Time", str(ch.answered_at)),
            (f"{prefix}-Channel-Progress-Time", str(ch.progress)),
            (f"{prefix}-Channel-Progress-Media-Time", "0"),
            (f"{prefix}-Channel-Hangup-Time", str(ch.hungup_at)),
            (f"{prefix}-Channel-Transfer-Time", "0"), (f"{prefix}-Channel-Resurrect-Time", "0"),
            (f"{prefix}-Channel-Bridged-Time", str(ch.bridged_at)),
            (f"{prefix}-Channel-Last-Hold", "0"), (f"{prefix}-Channel-Hold-Accum", "0"),
            (f"{prefix}-Screen-Bit", "true"), (f"{prefix}-Privacy-Hide-Name", "false"),
            (f"{prefix}-Privacy-Hide-Number", "false"),
        ]

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_number = STATE_NUMBERS[state]


# ---------------------------------------------------------------- connections

class ChunkReader(asyncio.StreamReader):
    """A connection's reader that keeps the last pieces of bytes as the
    socket gave them (``received``: what the controller sent in one write
    comes as one piece on loopback), and reads what came before a reset, as a
    switch reading its socket does (Linux keeps it readable: the reset is
    seen after it)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: collections.deque[bytes] = collections.deque(maxlen=1000)

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:  # bytes, from the socket
        self.received.append(bytes(data))
        super().feed_data(data)

    def set_exception(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionResetError):
            self.feed_eof()
            return
        super().set_exception(exc)


class PeerConnection:
    """One Event Socket client, served as mod_event_socket's listener_run does."""

    def __init__(self, peer: EslPeer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.authed = False
        self.format = "plain"
        self.events: set[str] = set()
        self.subclasses: set[str] = set()  # CUSTOM's, after "CUSTOM" in an event command
        self.filters: list[tuple[str, str]] = []
        self.commands: list[str] = []
        self.received = reader.received if isinstance(reader, ChunkReader) else None
        self.wire = bytearray()  # every byte sent, for recording fixtures
        self.sent: list[tuple[str, str]] = []  # (Event-Name, Unique-ID) of every event sent
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False

    # ------------------------------------------------------------ writing

    def send_raw(self, data: bytes) -> None:
        if not self._closed:
            self._out.put_nowait(data)

    def reply(self, text: str) -> None:
        self.send_raw(f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode())

    def api_response(self, text: str) -> None:
        data = (text or "-ERR no reply\n").encode()
        self.send_raw(f"Content-Type: api/response\nContent-Length: {len(data)}\n\n".encode()
                      + data)

    def offer(self, name: str, headers: list[tuple[str, str]], body: str | None) -> None:
        if not self.authed or not ("ALL" in self.events or name in self.events):
            return
        subclass = dict(headers).get("Event-Subclass")
        if name == "CUSTOM" and "ALL" not in self.events and subclass not in self.subclasses:
            return  # mod_event_socket: a CUSTOM event only for a subscribed subclass
        if self.filters and not self._passes(headers):
            return
        self.sent.append((name, dict(headers).get("Unique-ID", "")))
        self.send_raw(event_frame(headers, body, self.format))

    def _passes(self, headers: list[tuple[str, str]]) -> bool:
        values = {name.lower(): value for name, value in headers}
        return any(values.get(name.lower(), "").lower() == value.lower()
                   for name, value in self.filters)

    async def _write_loop(self) -> None:
        rng = random.Random(len(self.peer.connections))
        while True:
            data = await self._out.get()
            if data is None:
                break
            self.wire += data
            try:
                if self.peer.split_writes:
                    i = 0
                    while i < len(data):
                        size = rng.randint(1, 48)
                        self.writer.write(data[i:i + size])
                        await self.writer.drain()
                        await asyncio.sleep(0)
                        i += size
                else:
                    self.writer.write(data)
                    await self.writer.drain()
            except (ConnectionError, RuntimeError):
                break

    # ------------------------------------------------------------ reading

    async def _read_packet(self) -> tuple[str, dict[str, str], str] | None:
        lines: list[str] = []
        while True:
            raw = await self.reader.readline()
            if not raw:
                return None
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:
                if lines:
                    break
                continue
            lines.append(line)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = ""
        if headers.get("content-length", "").isdigit():
            body = (await self.reader.readexactly(int(headers["content-length"]))).decode()
        return lines[0], headers, body

    async def run(self) -> None:
        writer_task = asyncio.create_task(self._write_loop())
        aborted = False
        try:
            if self.peer.acl_reject:
                message = "Access Denied, go away.\n"
                self.send_raw(f"Content-Type: text/rude-rejection\nContent-Length: "
                              f"{len(message)}\n\n{message}".encode())
                return
            self.send_raw(b"Content-Type: auth/request\n\n")
            while True:
                packet = await self._read_packet()
                if packet is None:
                    aborted = True
                    break
                command, headers, body = packet
                self.commands.append(command)
                if not await self._handle(command, headers, body):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            aborted = True
        finally:
            if not aborted and not self.peer.acl_reject:
                self.send_raw(f"Content-Type: text/disconnect-notice\nContent-Length: "
                              f"{len(DISCONNECT_TEXT)}\n\n{DISCONNECT_TEXT}".encode())
            self._out.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer_task, 2)
            self._closed = True
            with contextlib.suppress(Exception):
                self.writer.close()

    def abort(self) -> None:
        self._closed = True
        self.writer.transport.abort()

    # ------------------------------------------------------------ commands

    async def _handle(self, command: str, headers: dict[str, str], body: str) -> bool:
        lower = command.lower()
        if lower.startswith(("exit", "...")):
            self.reply("+OK bye")
            return False
        if not self.authed:
            if lower.startswith("auth "):
                if command[5:] == self.peer.password:
                    self.authed = True
                    self.reply("+OK accepted")
                    return True
                self.reply("-ERR invalid")
                return False
            self.reply("-ERR command not found")
            return True
        if lower.startswith("filter "):
            self._filter(command[7:].strip())
        elif lower.startswith("sendmsg"):
            self.reply(await self._sendmsg(command[7:].strip() or headers.get("session-id", ""),
                                           headers))
        elif lower.startswith("api "):
            await self._api(command[4:].strip())
        elif lower.startswith("bgapi "):
            self._bgapi(command[6:].strip(), headers.get("job-uuid"))
        elif lower.startswith("nixevent"):
            for name in command.split()[1:]:
                self.events.discard(name.upper())
            self.reply("+OK events nixed")
        elif lower.startswith("noevents"):
            self.events.clear()
            self.reply("+OK no longer listening for events")
        elif lower.startswith("event"):
            self._event(command.split()[1:])
        else:
            self.reply("-ERR command not found")
        return True

    def _event(self, words: list[str]) -> None:
        names = 0
        custom = False
        for i, word in enumerate(words):
            if i == 0 and word.lower() in ("plain", "json", "xml"):
                self.format = word.lower()
                continue
            if custom:  # the words after CUSTOM are its subclasses, as given
                self.subclasses.add(word)
                continue
            self.events.add(word.upper())
            custom = word.upper() == "CUSTOM"
            names += 1
        if not names:
            self.reply("-ERR no keywords supplied")
            return
        self.reply(f"+OK event listener enabled {self.format}")

    def _filter(self, text: str) -> None:
        name, _, value = text.partition(" ")
        if name.lower() == "delete" and value:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                self.filters.clear()
            else:
                self.filters = [(n, v) for n, v in self.filters
                                if not (n.lower() == name.lower() and (not value or v == value))]
            self.reply(f"+OK filter deleted. [{name}][{value}]")
        elif value:
            self.filters.append((name, value))
            self.reply(f"+OK filter added. [{name}]=[{value}]")
        else:
            self.reply("-ERR invalid syntax")

    async def _sendmsg(self, channel_uuid: str, headers: dict[str, str]) -> str:
        hook = self.peer.on_sendmsg.get(headers.get("execute-app-name", ""))
        refusal = await hook(channel_uuid) if hook is not None else None
        return refusal or self.peer.sendmsg(channel_uuid, headers)

    async def _api(self, text: str) -> None:
        name, _, args = text.partition(" ")
        if name in self.peer.stall:
            await asyncio.sleep(self.peer.stall[name])  # the listener is busy with it
        if name in self.peer.refuse:
            self.api_response(self.peer.refuse[name])
            return
        answer = await self.peer.run_api(name, args)
        if name in self.peer.meanwhile:
            await self.peer.meanwhile[name](args)
        self.api_response(answer)

    def _bgapi(self, text: str, job_uuid: str | None) -> None:
        job = (job_uuid or str(uuid.uuid4()))[:36]
        name, _, args = text.partition(" ")
        if f"bgapi {name}" in self.peer.refuse:
            self.reply(self.peer.refuse[f"bgapi {name}"])
            return
        self.send_raw(f"Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\n"
                      f"Job-UUID: {job}\n\n".encode())
        self.peer.spawn(self.peer.background_job(job, name, args))


# ---------------------------------------------------------------- the switch

class EslPeer:
    def __init__(self, password: str = "ClueCon", *, gateways: Iterable[str] | None = ("lab",),
                 profiles: Iterable[str] = ("internal", "external"),
                 answer_delay: float = 0.5, reject_delay: float = 0.3,
                 hangup_after: float = 4.0) -> None:
        self.password = password
        self.gateways = set(gateways) if gateways is not None else None
        self.profiles = set(profiles)
        self.answer_delay = answer_delay
        self.reject_delay = reject_delay
        self.hangup_after = hangup_after
        self.acl_reject = False
        self.handover_seconds = HANDOVER_SECONDS
        self.split_writes = False
        self.stall: dict[str, float] = {}  # api command -> seconds before it answers
        self.refuse: dict[str, str] = {}  # api command (or "bgapi <cmd>") -> reply
        # api command -> what the switch does, given the command's arguments,
        # after taking its answer and before sending it: the events of that
        # reach the listener first.
        self.meanwhile: dict[str, Callable[[str], Awaitable[None]]] = {}
        # Application name -> what the switch does, given the channel id, before
        # it answers a sendmsg that runs it (the listener is busy meanwhile):
        # a text returned is the reply, the application refused.
        self.on_sendmsg: dict[str, Callable[[str], Awaitable[str | None]]] = {}
        # The directory's users for user/NAME (None: any name is a user);
        # a user named offline-* is not registered.
        self.directory: set[str] | None = None
        # The inbound dialplan's hangup of a call nobody claims (its sched_hangup +10).
        self.unclaimed_after = 10
        self.hashes: dict[str, str] = {}  # mod_hash's entries, "<realm>_<key>"
        self.domain = "127.0.0.1"  # vanilla vars.xml: $${domain} = $${local_ip_v4}
        # The scheduler's tasks by group (sched_hangup: the channel id).
        self.scheduled: dict[str, list[asyncio.TimerHandle]] = {}
        self.hangups: list[tuple[str, str]] = []  # (channel, cause) of every hangup
        self.dial_strings: list[str] = []  # every originate's and bridge's, as given
        # (what, channel) for hold limits and music: "schedule", "unschedule",
        # "music on", "music off".
        self.log: list[tuple[str, str]] = []
        self.connections: list[PeerConnection] = []
        self.channels: dict[str, Channel] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._sequence = itertools.count(1000)
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ control

    async def start(self) -> None:
        def protocol() -> asyncio.StreamReaderProtocol:  # asyncio.start_server's, our reader
            return asyncio.StreamReaderProtocol(ChunkReader(), self._accept)

        self._server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        for channel in self.channels.values():
            for task in channel.tasks:
                task.cancel()
        for tasks in self.scheduled.values():
            for handle in tasks:
                handle.cancel()
        self.scheduled.clear()
        await asyncio.sleep(0)

    def spawn(self, coroutine: Any, channel: Channel | None = None) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coroutine)
        holder = channel.tasks if channel is not None else self._tasks
        holder.add(task)
        task.add_done_callback(holder.discard)
        return task

    def live_connections(self) -> list[PeerConnection]:
        return [c for c in self.connections if c.authed and not c._closed]

    def drop_connections(self) -> None:
        """The network between controller and switch fails: no goodbye."""
        for conn in self.connections:
            conn.abort()

    def inject(self, data: bytes) -> None:
        """Raw bytes into every logged-in connection, in order with the events."""
        for conn in self.live_connections():
            conn.send_raw(data)

    def channel_ids(self) -> list[str]:
        return sorted(self.channels)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = PeerConnection(self, reader, writer)
        self.connections.append(conn)
        await conn.run()

    # ------------------------------------------------------------ events

    def emit(self, name: str, channel: Channel | None = None, *,
             before: Iterable[tuple[str, str]] = (), after: Iterable[tuple[str, str]] = (),
             body: str | None = None) -> None:
        stamp = now_us()
        seconds = stamp / 1_000_000
        file, function, line = CALLING.get(name, ("switch_event.c", "switch_event_fire", 1))
        headers = [
            ("Event-Name", name), ("Core-UUID", CORE_UUID), ("FreeSWITCH-Hostname", HOSTNAME),
            ("FreeSWITCH-Switchname", HOSTNAME), ("FreeSWITCH-IPv4", "127.0.0.1"),
            ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))),
            ("Event-Date-GMT", formatdate(seconds, usegmt=True)),
            ("Event-Date-Timestamp", str(stamp)), ("Event-Calling-File", file),
            ("Event-Calling-Function", function), ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(next(self._sequence))),
        ]
        headers += before
        if channel is not None:
            headers += channel.basic_data()
            if name in VARIABLE_EVENTS:
                headers += [(f"variable_{k}", v) for k, v in channel.variables.items()]
        headers += after
        for conn in list(self.connections):
            conn.offer(name, headers, body)

    def heartbeat(self) -> None:
        self.emit("HEARTBEAT", after=[
            ("Event-Info", "System Ready"), ("FreeSWITCH-Version", VERSION),
            ("Up-Time", "0 years, 0 days, 0 hours, 1 minute, 0 seconds, 0 milliseconds, "
                        "0 microseconds"),
            ("Session-Count", str(len(self.channels))), ("Max-Sessions", "1000")])

    def _execute_event(self, name: str, ch: Channel, app: str, data: str,
                       response: str | None = None) -> None:
        after = [("Application", app), ("Application-Data", data),
                 ("Application-UUID", str(uuid.uuid4()))]
        if response is not None:
            after.insert(2, ("Application-Response", response))
        self.emit(name, ch, after=after)

    # ------------------------------------------------------------ API commands

    async def run_api(self, name: str, args: str) -> str:
        handler = getattr(self, "_api_" + name, None)
        if handler is None:
            return f"-ERR {name} Command not found!\n"
        result: str = await handler(args)
        return result

    async def background_job(self, job: str, name: str, args: str) -> None:
        result = await self.run_api(name, args)
        headers = [("Job-UUID", job), ("Job-Command", name)]
        if args:
            headers.append(("Job-Command-Arg", args))
        self.emit("BACKGROUND_JOB", after=headers, body=result)

    async def _api_originate(self, args: str) -> str:
        argv = split_args(args)
        if len(argv) < 2:
            return ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] "
                    "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")
        channel, outcome = await self.dial(argv[0])
        if channel is None or outcome != "SUCCESS":
            return f"-ERR {outcome}\n"
        match = re.fullmatch(r"&([a-z_]+)\((.*)\)", argv[1])
        app, data = (match.group(1), match.group(2)) if match else ("park", "")
        channel.handing_over = True
        await asyncio.sleep(self.handover_seconds)
        channel.handing_over = False
        self.spawn(self._run_app_then_hangup(channel, app, data), channel)
        return f"+OK {channel.uuid}\n"

    async def _api_uuid_broadcast(self, args: str) -> str:
        argv = split_args(args)
        if len(argv) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        channel = self._live(argv[0])
        if channel is None:
            return "-ERR No such channel!\n"
        path = argv[1]
        cause: str | None = None
        if "::" in path:
            app, data = path.split("::", 1)
            if "!" in app:
                app, cause = app.split("!", 1)
                cause = (cause or "normal_clearing").upper()
        else:
            app, data = "playback", path
        if not self._send_app(channel, app, data, True):  # switch_ivr_broadcast: event-lock
            return "+OK Message sent\n"
        if cause:
            self._send_app(channel, "hangup", cause, True)
        return "+OK Message sent\n"

    async def _api_uuid_kill(self, args: str) -> str:
        argv = split_args(args)
        channel = self._live(argv[0]) if argv else None
        if channel is None:
            return "-ERR No such channel!\n"
        self.hangup(channel, (argv[1] if len(argv) > 1 else "NORMAL_CLEARING").upper())
        return "+OK\n"

    async def _api_uuid_record(self, args: str) -> str:
        argv = split_args(args)
        if len(argv) < 3:
            return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
        channel = self._live(argv[0])
        if channel is None:
            return "-ERR Cannot locate session!\n"
        if argv[1] == "start":
            channel.recording = (argv[2], time.monotonic())
            self.emit("RECORD_START", channel, after=[("Record-File-Path", argv[2])])
        elif argv[1] == "stop":
            self._stop_recording(channel)
        return "+OK Success\n"

    async def _api_uuid_setvar(self, args: str) -> str:
        argv = args.split(" ", 2)
        channel = self._live(argv[0]) if argv else None
        if channel is None or len(argv) < 2:
            return "-ERR No such channel!\n"
        if len(argv) == 3:
            channel.variables[argv[1]] = argv[2]
        else:
            channel.variables.pop(argv[1], None)
        return "+OK\n"

    async def _api_uuid_setvar_multi(self, args: str) -> str:
        """mod_commands uuid_setvar_multi: ``<uuid> <var>=<value>;...``; an
        empty value (or none) unsets the variable."""
        channel_uuid, _, pairs = args.partition(" ")
        channel = self._live(channel_uuid)
        if channel is None:
            return "-ERR No such channel!\n"
        names = 0
        for pair in pairs.split(";"):
            name, _, value = pair.partition("=")
            if not name:
                continue
            names += 1
            if value:
                channel.variables[name] = value
            else:
                channel.variables.pop(name, None)
        return "+OK\n" if names else "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"

    async def _api_hash(self, args: str) -> str:
        """mod_hash: ``insert/<realm>/<key>/<value>``, ``select/<realm>/<key>``
        (the value, or nothing), ``delete/<realm>/<key>``."""
        argv = args.strip().split("/", 3)
        if len(argv) < 3:
            return "-ERR Usage: hash [insert|delete|select]/<realm>/<key>/<value>\n"
        key = f"{argv[1]}_{argv[2]}"
        if argv[0] == "insert" and len(argv) == 4:
            self.hashes[key] = argv[3]
            return "+OK\n"
        if argv[0] == "delete":
            return "+OK\n" if self.hashes.pop(key, None) is not None else "-ERR Not found\n"
        if argv[0] == "select":
            return self.hashes.get(key, "")
        return "-ERR Usage: hash [insert|delete|select]/<realm>/<key>/<value>\n"

    async def _api_uuid_getvar(self, args: str) -> str:
        argv = split_args(args)
        channel = self._live(argv[0]) if argv else None
        if channel is None or len(argv) < 2:
            return "-ERR No such channel!\n"
        return channel.variables.get(argv[1]) or "_undef_"

    async def _api_sched_hangup(self, args: str) -> str:
        """mod_commands sched_hangup: ``[+]<time> <uuid> [<cause>]``."""
        argv = split_args(args)
        if len(argv) < 2 or not argv[0].lstrip("+").isdigit():
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        if self._live(argv[1]) is None:
            return "-ERR No such channel!\n"
        cause = argv[2].upper() if len(argv) > 2 else "ALLOTTED_TIMEOUT"
        self.schedule_hangup(int(argv[0].lstrip("+")), argv[1], cause)
        return "+OK\n"

    async def _api_sched_del(self, args: str) -> str:
        """mod_commands sched_del: a task id or a group; always ``+OK Deleted: N``."""
        tasks = self.scheduled.pop(args.strip(), [])
        for handle in tasks:
            handle.cancel()
        if tasks:
            self.log.append(("unschedule", args.strip()))
        return f"+OK Deleted: {len(tasks)}\n"

    async def _api_uuid_displace(self, args: str) -> str:
        """mod_commands uuid_displace: ``<uuid> [start|stop] <path> [<limit>] [mux]``."""
        argv = split_args(args)
        if len(argv) < 3:
            return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
        channel = self._live(argv[0])
        if channel is None:
            return "-ERR Cannot locate session!\n"
        if argv[1] == "start":
            channel.displacing.add(argv[2])
            self.log.append(("music on", channel.uuid))
        elif argv[1] == "stop":
            if argv[2] not in channel.displacing:
                return "-ERR Cannot stop displace session!\n"
            channel.displacing.discard(argv[2])
            self.log.append(("music off", channel.uuid))
        else:
            return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
        return "+OK Success\n"

    def schedule_hangup(self, seconds: int, channel_uuid: str, cause: str) -> None:
        """switch_ivr_schedule_hangup(): a scheduler task in the group named
        after the channel, that keeps the channel id in a 37-byte buffer
        (struct hangup_helper): a longer id is cut, and then names no channel."""
        kept = channel_uuid[:36]

        def fire() -> None:
            tasks = self.scheduled.get(channel_uuid, [])
            if handle in tasks:
                tasks.remove(handle)
            channel = self._live(kept)
            if channel is not None:
                self.hangup(channel, cause)

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        self.scheduled.setdefault(channel_uuid, []).append(handle)
        self.log.append(("schedule", channel_uuid))

    async def _api_uuid_dump(self, args: str) -> str:
        argv = split_args(args)
        channel = self._live(argv[0]) if argv else None
        if channel is None:
            return "-ERR No such channel!\n"
        headers = channel.basic_data() + [(f"variable_{k}", v)
                                          for k, v in channel.variables.items()]
        if len(argv) > 1 and argv[1] == "json":
            return json.dumps(dict(headers))
        return "".join(f"{name}: {url_encode(value)}\n" for name, value in headers)

    async def _api_show(self, args: str) -> str:
        if not args.startswith("channels"):
            return "-USAGE: show channels [as json]\n"
        rows = [{"uuid": ch.uuid, "direction": ch.direction, "created": "",
                 "created_epoch": str(ch.created // 1_000_000), "name": ch.name,
                 "state": ch.state, "cid_name": ch.caller_number, "cid_num": ch.caller_number,
                 "ip_addr": "", "dest": ch.destination,
                 "application": ch.variables.get("current_application", ""),
                 "application_data": ch.variables.get("current_application_data", ""),
                 "presence_id": ch.variables.get("presence_id", ""), "presence_data": "",
                 "callstate": ch.call_state,
                 "call_uuid": ch.originator.uuid if ch.originator else ch.uuid}
                for ch in self.channels.values() if not ch.destroyed]
        if args.endswith("as json"):
            data: dict[str, Any] = {"row_count": len(rows)}
            if rows:
                data["rows"] = rows
            return json.dumps(data) + "\n"
        lines = ["uuid,direction,created,created_epoch,name,state,cid_name,cid_num,dest,"
                 "callstate,call_uuid"]
        lines += [",".join(row.values()) for row in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    async def _api_status(self, args: str) -> str:
        return (f"UP 0 years, 0 days, 0 hours, 1 minute, 0 seconds\nFreeSWITCH ({VERSION}) is "
                f"ready\n{len(self.channels)} session(s) - peak 0, last 5min 0\n")

    def _live(self, channel_uuid: str) -> Channel | None:
        channel = self.channels.get(channel_uuid)
        if channel is None or channel.hangup_cause:
            return None
        return channel

    def sendmsg(self, channel_uuid: str, headers: dict[str, str]) -> str:
        channel = self._live(channel_uuid)
        if channel is None:
            return f"-ERR invalid session id [{channel_uuid}]"
        command = headers.get("call-command", "")
        if command == "execute":
            self._send_app(channel, headers.get("execute-app-name", ""),
                           headers.get("execute-app-arg", ""),
                           headers.get("event-lock", "") == "true")
        elif command == "hangup":
            self.hangup(channel, headers.get("hangup-cause", "NORMAL_CLEARING").upper())
        return "+OK"

    # ------------------------------------------------------------ calls

    async def dial(self, dial_string: str,
                   originator: Channel | None = None) -> tuple[Channel | None, str]:
        """switch_ivr_originate(): ``{global vars}`` then targets, ``|`` one
        after the other, ``,`` all at once, each with its own ``[vars]``.
        (channel, SUCCESS) once one wins, else the cause (and the channel that
        gave it, if one was created)."""
        self.dial_strings.append(dial_string)
        variables, rest = parse_dial_string(dial_string)
        if originator is not None:
            # Copied from the caller when the dial string does not set them.
            for name in ("group_confirm_key", "group_confirm_file", "group_confirm_read_timeout",
                         "group_confirm_cancel_timeout", "originate_continue_on_timeout"):
                if name in originator.variables and name not in variables:
                    variables[name] = originator.variables[name]
        channel: Channel | None = None
        outcome = "DESTINATION_OUT_OF_ORDER"
        for group in split_top(rest, "|"):
            channel, outcome, timed_out = await self._dial_group(variables, group, originator)
            if outcome == "SUCCESS" or (originator is not None and originator.gone.is_set()):
                break
            if timed_out and variables.get("originate_continue_on_timeout") != "true":
                break
        return channel, outcome

    async def _dial_group(self, variables: dict[str, str], group: str, originator: Channel | None
                          ) -> tuple[Channel | None, str, bool]:
        """One ``,`` list: every leg at once; the first to answer (or, with
        group_confirm_key, to confirm) wins and the others are hung up with
        LOSE_RACE; NO_ANSWER for all at originate_timeout; ORIGINATOR_CANCEL
        if the caller goes. (channel, outcome, timed out)."""
        legs: list[Channel] = []
        failure = "DESTINATION_OUT_OF_ORDER"
        for spec in split_top(group, ","):
            local, target = parse_dial_string(spec)
            channel, cause = self._create_channel({**variables, **local}, target, originator)
            if channel is None:
                failure = cause
            else:
                legs.append(channel)
        if not legs:
            return None, failure, False
        loop = asyncio.get_running_loop()
        timeout = float(variables.get("originate_timeout") or 60)
        key = variables.get("group_confirm_key", "")
        # group_confirm_cancel_timeout: once a leg confirms, leg_timeout stops counting.
        cancel_timeout = -1 if variables.get("group_confirm_cancel_timeout") in ("true", "1") else 0
        start = loop.time()
        while True:
            winner = next((ch for ch in legs if ch.winner and not ch.hangup_cause), None)
            if winner is None:
                for ch in legs:
                    if not ch.answered.is_set() or ch.hangup_cause or ch.tagged:
                        continue
                    if not key:
                        winner = ch
                        break
                    ch.tagged = True
                    cancel_timeout = 1 if cancel_timeout < 0 else cancel_timeout
                    self.spawn(self._confirm(ch, key, variables), ch)
            if winner is not None:
                for ch in legs:
                    if ch is not winner and not ch.hangup_cause:
                        if len(legs) > 1:
                            ch.variables["group_dial_status"] = "loser"
                        self.hangup(ch, "LOSE_RACE" if len(legs) > 1 else "NO_ANSWER")
                return winner, "SUCCESS", False
            elapsed = loop.time() - start
            ended: str | None = None
            if originator is not None and originator.gone.is_set():
                ended = "ORIGINATOR_CANCEL"
            elif elapsed >= timeout:
                ended = "NO_ANSWER"
            elif all(ch.hangup_cause for ch in legs):
                first = legs[0]
                return first, first.hangup_cause or "NORMAL_CLEARING", False
            if ended is not None:
                for ch in legs:
                    self.hangup(ch, ended)
                return legs[0], ended, ended == "NO_ANSWER"
            if cancel_timeout <= 0:
                for ch in legs:
                    limit = ch.variables.get("leg_timeout", "")
                    if limit.isdigit() and int(limit) > 0 and elapsed > int(limit) \
                            and not ch.hangup_cause:
                        self.hangup(ch, "ALLOTTED_TIMEOUT")  # check_per_channel_timeouts
            await asyncio.sleep(0.01)

    def _create_channel(self, variables: dict[str, str], target: str,
                        originator: Channel | None) -> tuple[Channel | None, str]:
        """switch_core_session_outgoing_channel(): the channel, ringing its
        phone, or the cause of not creating one."""
        variables = dict(variables)
        extra: dict[str, str] = {}
        gateway = re.fullmatch(r"sofia/gateway/([^/]+)/(.+)", target)
        profile = re.fullmatch(r"sofia/([^/]+)/(.+)", target)
        user = re.fullmatch(r"user/([^@/]+)(?:@(.+))?", target)
        if any(c in target for c in "{}[]|,") and not profile:
            return None, "CHAN_NOT_IMPLEMENTED"
        if gateway:
            if self.gateways is not None and gateway.group(1) not in self.gateways:
                return None, "INVALID_GATEWAY"
            destination = gateway.group(2)
            name = f"sofia/external/{destination}"
            extra = {"sip_gateway_name": gateway.group(1), "sip_profile_name": "external"}
            phone = phone_for(destination, self.answer_delay, self.reject_delay, self.hangup_after)
        elif user:
            # mod_dptools user_outgoing_channel: the directory user's contact.
            username, domain = user.group(1), user.group(2) or self.domain
            if self.directory is not None and username not in self.directory:
                return None, "SUBSCRIBER_ABSENT"
            if username.startswith("offline"):
                return None, "USER_NOT_REGISTERED"  # sofia_contact: error/user_not_registered
            destination = f"sip:{username}@127.0.0.1:5070"
            name = f"sofia/internal/{username}@127.0.0.1:5070"
            extra = {"dialed_user": username, "dialed_domain": domain,
                     "presence_id": f"{username}@{domain}", "sip_profile_name": "internal"}
            phone = phone_named(username, self.answer_delay, self.reject_delay)
        elif profile:
            if profile.group(1) not in self.profiles:
                return None, "INVALID_PROFILE"
            destination = profile.group(2)
            name = f"sofia/{profile.group(1)}/{destination.removeprefix('sip:')}"
            phone = phone_for(destination, self.answer_delay, self.reject_delay, self.hangup_after)
        else:
            return None, "CHAN_NOT_IMPLEMENTED"
        channel_uuid = variables.pop("origination_uuid", "") or str(uuid.uuid4())
        if channel_uuid in self.channels:
            return None, "INVALID_CALL_REFERENCE"
        caller = variables.get("origination_caller_id_number", "0000000000")
        channel = Channel(channel_uuid, name, destination, {}, caller, originator=originator)
        channel.variables.update({
            "direction": "outbound", "is_outbound": "true", "uuid": channel_uuid,
            "session_id": str(next(self._sequence)), "channel_name": name,
            "sip_destination_url": destination if destination.startswith("sip")
            else f"sip:{destination}@127.0.0.1", **extra,
        })
        if originator is not None:
            channel.variables.update({"originator": originator.uuid,
                                      "originating_leg_uuid": originator.uuid,
                                      "call_uuid": originator.uuid})
        channel.variables.update(variables)
        channel.phone = phone
        self.channels[channel_uuid] = channel
        self.emit("CHANNEL_CREATE", channel)
        channel.phone_task = self.spawn(self._phone(channel, phone), channel)
        return channel, "SUCCESS"

    async def _confirm(self, ch: Channel, key: str, variables: dict[str, str]) -> None:
        """switch_ivr_originate.c collect_thread_run() on a leg that answered:
        with the key ``exec``, run group_confirm_file as ``<app> <args>`` and
        win if still up after it; else play group_confirm_file and read the
        key (group_confirm_read_timeout ms, default 5000): the key wins, a
        wrong key or none plays the file and reads again, for as long as the
        leg is up."""
        file = variables.get("group_confirm_file", "")
        if key == "exec":
            app, _, data = file.partition(" ")
            await self._execute(ch, app, data)
            if not ch.hangup_cause:
                ch.winner = True
                ch.variables["group_dial_status"] = "winner"
            return
        read_timeout = variables.get("group_confirm_read_timeout", "")
        seconds = int(read_timeout) / 1000 if read_timeout.isdigit() else 5.0
        pressed = False
        while not ch.hangup_cause:
            if file:
                await self._app_playback(ch, file)
            if ch.hangup_cause:
                return
            phone = ch.phone
            if phone is not None and phone.press is not None and not pressed:
                pressed = True  # a person presses once; the prompt again gets nothing
                self.spawn(self._press(ch, phone.press, phone.press_after), ch)
            digit = await self._read_digit(ch, seconds)
            if digit is None:
                continue
            if digit == key:
                ch.winner = True
                ch.variables["group_dial_status"] = "winner"
                return

    async def _press(self, ch: Channel, key: str, after: float) -> None:
        await asyncio.sleep(after)
        if not ch.hangup_cause:
            ch.dtmf.put_nowait(key)

    async def _read_digit(self, ch: Channel, seconds: float) -> str | None:
        """switch_ivr_read() for one digit; the DTMF event is fired when the
        digit is taken (switch_channel_dequeue_dtmf)."""
        getter = asyncio.ensure_future(ch.dtmf.get())
        gone = asyncio.ensure_future(ch.gone.wait())
        done, _ = await asyncio.wait({getter, gone}, timeout=seconds,
                                     return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if getter not in done:
            getter.cancel()
            return None
        digit: str = getter.result()
        self._dtmf_event(ch, digit)
        return digit

    async def _phone(self, ch: Channel, phone: Phone) -> None:
        await asyncio.sleep(0.01)  # the INVITE's way there
        if phone.ring and not ch.hangup_cause:
            ch.progress = now_us()
            ch.call_state = "RINGING"
            ch.set_state("CS_CONSUME_MEDIA")
            self.emit("CHANNEL_PROGRESS", ch)
        if phone.refuse_after is not None:
            await asyncio.sleep(phone.refuse_after)
            ch.variables["sip_term_status"] = str(phone.refuse_code)
            self.hangup(ch, phone.refuse_cause, "recv_refuse")
            return
        if phone.answer_after is None:
            return  # rings until the originate gives up
        await asyncio.sleep(phone.answer_after)
        if ch.hangup_cause:
            return
        self._answer(ch)
        if phone.hangup_after is not None:
            await asyncio.sleep(phone.hangup_after)
            if not ch.hangup_cause:
                self.hangup(ch, "NORMAL_CLEARING", "recv_bye")

    def _answer(self, ch: Channel) -> None:
        ch.answered_at = now_us()
        ch.call_state = "ACTIVE"
        ch.set_state("CS_CONSUME_MEDIA")
        ch.answered.set()
        self.emit("CHANNEL_ANSWER", ch)
        self._execute_on(ch, "execute_on_answer")

    def _execute_on(self, ch: Channel, prefix: str) -> None:
        """switch_channel_execute_on(): every variable whose name starts with
        ``prefix`` names an application and its arguments, run at once (only
        the ones that return at once are simulated)."""
        for name, value in list(ch.variables.items()):
            if not name.startswith(prefix):
                continue
            app, _, data = value.strip().partition(" ")
            # switch_core_session_exec(): the same events as any application.
            self._execute_event("CHANNEL_EXECUTE", ch, app, data)
            if app == "sched_hangup":
                self._sched_hangup_app(ch, data)
            elif app == "displace_session":
                self._displace_app(ch, data)
            self._execute_event("CHANNEL_EXECUTE_COMPLETE", ch, app, data, "_none_")

    def hangup(self, ch: Channel, cause: str, disposition: str | None = None) -> None:
        """switch_channel_perform_hangup(), then the hangup state handlers."""
        if ch.hangup_cause:
            return
        if cause.isdigit():
            cause = CAUSE_NAMES.get(int(cause), "NORMAL_CLEARING")
        if ch.direction == "inbound" and not disposition and not ch.answered.is_set():
            ch.responses.append(SIP_STATUS.get(cause, 480))  # the INVITE's final answer
        if disposition == "recv_bye":  # sofia_handle_sip_i_bye, before the hangup
            ch.variables["sip_term_status"] = "200"
            ch.variables["proto_specific_hangup_cause"] = "sip:200"
        elif disposition:  # recv_refuse: mod_sofia sets it before hanging up
            ch.variables["sip_hangup_disposition"] = disposition
        ch.hangup_cause = cause
        self.hangups.append((ch.uuid, cause))
        ch.hungup_at = now_us()
        ch.state_number = STATE_NUMBERS["CS_HANGUP"]
        self.emit("CHANNEL_HANGUP", ch, before=[("Hangup-Cause", cause)])
        ch.variables["hangup_cause"] = cause
        code = CAUSES.get(cause, 16)
        ch.variables["hangup_cause_q850"] = str(code if code <= 127 else 16)
        if disposition == "recv_bye":  # after switch_channel_hangup() returned
            ch.variables["sip_hangup_disposition"] = disposition
        elif not disposition:  # ours: mod_sofia's on_hangup handler
            ch.variables["sip_hangup_disposition"] = (
                "send_bye" if ch.answered.is_set()
                else "send_refuse" if ch.direction == "inbound" else "send_cancel")
        ch.call_state = "HANGUP"
        self._stop_recording(ch)
        ch.gone.set()
        phone = ch.phone_task
        if phone is not None and phone is not asyncio.current_task():
            phone.cancel()
        asyncio.get_running_loop().call_later(0.02, self._complete, ch)

    def _complete(self, ch: Channel) -> None:
        ch.set_state("CS_REPORTING")
        if ch.answered_at:
            billsec = max((ch.hungup_at - ch.answered_at) // 1_000_000, 0)
            ch.variables["billsec"] = str(billsec)
        self.emit("CHANNEL_HANGUP_COMPLETE", ch)
        ch.set_state("CS_DESTROY")
        self.emit("CHANNEL_DESTROY", ch)
        ch.destroyed = True
        self.channels.pop(ch.uuid, None)
        for task in list(ch.tasks):
            task.cancel()

    def _stop_recording(self, ch: Channel) -> None:
        if ch.recording is None:
            return
        path, started = ch.recording
        ch.recording = None
        write_recording(path, time.monotonic() - started)
        self.emit("RECORD_STOP", ch, after=[("Record-File-Path", path),
                                            ("Record-Completion-Cause", "success")])

    # ------------------------------------------------------------ applications

    def _send_app(self, ch: Channel, app: str, data: str, locked: bool) -> bool:
        """An application sent to the channel, queued to run in order; False
        if it ran at once instead: a playback that reached the channel before
        its originate handed it over fails there (see HANDOVER_SECONDS)."""
        if ch.handing_over and app == "playback":
            self._execute_event("CHANNEL_EXECUTE", ch, app, data)
            self._execute_event("CHANNEL_EXECUTE_COMPLETE", ch, app, data, "PLAYBACK ERROR")
            return False
        ch.apps.put_nowait((app, data, locked))
        return True

    async def _run_app_then_hangup(self, ch: Channel, app: str, data: str) -> None:
        await self._execute(ch, app, data)
        if not ch.hangup_cause:
            self.hangup(ch, "NORMAL_CLEARING")

    async def _execute(self, ch: Channel, app: str, data: str, locked: bool = True) -> None:
        """switch_core_session_exec(). An application that plays or waits
        (playback, read, sleep) parses the channel's messages as it goes
        (switch_ivr_parse_all_events): what was sent behind it runs at once,
        inside it, unless it was sent with ``event-lock: true``; seen on
        FreeSWITCH 1.10.12 in the lab."""
        ch.variables["current_application"] = app
        ch.variables["current_application_data"] = data
        ch.variables.pop("current_application_response", None)
        ch.set_state("CS_EXECUTE")
        self._execute_event("CHANNEL_EXECUTE", ch, app, data)
        handler = getattr(self, "_app_" + app, None)
        response = "_none_"
        if handler is not None and not locked and app in ("playback", "read", "sleep"):
            behind = asyncio.ensure_future(self._run_queued(ch))
            try:
                response = await handler(ch, data)
            finally:
                behind.cancel()
        elif handler is not None:
            response = await handler(ch, data)
        ch.variables["current_application_response"] = response
        self._execute_event("CHANNEL_EXECUTE_COMPLETE", ch, app, data, response)

    async def _until(self, ch: Channel, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: for ever) unless the channel hangs up first;
        True if the time ran out with the channel still up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ch.gone.wait(), seconds)
        return not ch.hangup_cause

    async def _app_park(self, ch: Channel, data: str) -> str:
        self.emit("CHANNEL_PARK", ch)
        timeout = ch.variables.pop("park_timeout", "")
        seconds, _, cause = timeout.partition(":")
        loop = asyncio.get_running_loop()
        expires = loop.time() + int(seconds) if seconds.isdigit() and int(seconds) > 0 else None
        while not ch.hangup_cause:
            if expires is not None and loop.time() >= expires:
                self.hangup(ch, (cause or "NORMAL_CLEARING").upper())
                break
            getter = asyncio.ensure_future(ch.apps.get())
            gone = asyncio.ensure_future(ch.gone.wait())
            key = asyncio.ensure_future(ch.dtmf.get())
            wait = None if expires is None else max(expires - loop.time(), 0)
            done, _ = await asyncio.wait({getter, gone, key}, timeout=wait,
                                         return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if key in done:  # switch_ivr_park dequeues a key (its DTMF event) and drops it
                self._dtmf_event(ch, key.result())
            else:
                key.cancel()
            if getter in done:
                app, app_data, locked = getter.result()
                await self._execute(ch, app, app_data, locked)
            else:
                getter.cancel()
        return "_none_"

    def _dtmf_event(self, ch: Channel, digit: str) -> None:
        """switch_channel_dequeue_dtmf(): a key taken from the channel."""
        self.emit("DTMF", ch, after=[("DTMF-Digit", digit), ("DTMF-Duration", "2000"),
                                     ("DTMF-Source", "RTP")])

    # ------------------------------------------------------------ inbound calls

    async def call_in(self, number: str, caller: Caller | None = None,
                      context: str = "callconnect-inbound") -> Channel:
        """A phone calls ``number`` on the switch: mod_sofia creates the
        channel and runs the dialplan (dialplans/freeswitch/
        callconnect_inbound.xml, the only context the peer knows: any other
        is refused with NO_ROUTE_DESTINATION, and so is a number it does not
        match)."""
        caller = caller or Caller()
        name = f"sofia/lab/{caller.number}@127.0.0.1:5190"
        ch = Channel(str(uuid.uuid4()), name, number, {}, caller.number, direction="inbound",
                     caller=caller)
        ch.variables.update({"direction": "inbound", "uuid": ch.uuid, "channel_name": name,
                             "session_id": str(next(self._sequence)),
                             "sip_profile_name": "lab", "destination_number": number})
        self.channels[ch.uuid] = ch
        self.emit("CHANNEL_CREATE", ch)
        ch.phone_task = self.spawn(self._dialplan(ch, context), ch)
        await asyncio.sleep(0)
        return ch

    async def _dialplan(self, ch: Channel, context: str) -> None:
        if context != "callconnect-inbound" or not re.fullmatch(r"\+?[0-9]{1,20}", ch.destination):
            self.hangup(ch, "NO_ROUTE_DESTINATION")
            return
        for app, data in (("set", f"callconnect_dialed={ch.destination}"),
                          ("sched_hangup", f"+{self.unclaimed_after} NORMAL_CIRCUIT_CONGESTION"),
                          ("ring_ready", ""),
                          ("event", "Event-Name=CUSTOM,Event-Subclass=callconnect::incoming")):
            await self._execute(ch, app, data)
        await self._run_app_then_hangup(ch, "park", "")

    def _caller_answered(self, ch: Channel) -> None:
        """The caller got the 200: it presses its keys and may hang up."""
        caller = ch.caller
        if caller is None:
            return

        async def act() -> None:
            started = asyncio.get_running_loop().time()
            for at, key in caller.keys:
                await asyncio.sleep(max(at - (asyncio.get_running_loop().time() - started), 0))
                if ch.hangup_cause:
                    return
                ch.dtmf.put_nowait(key)
            if caller.hangup_after is not None:
                left = caller.hangup_after - (asyncio.get_running_loop().time() - started)
                if await self._until(ch, max(left, 0)):
                    self.hangup(ch, "NORMAL_CLEARING", "recv_bye")

        self.spawn(act(), ch)

    async def _app_answer(self, ch: Channel, data: str) -> str:
        if not ch.answered.is_set():
            ch.responses.append(200)
            self._answer(ch)
            self._caller_answered(ch)
        return "_none_"

    async def _app_pre_answer(self, ch: Channel, data: str) -> str:
        if not ch.answered.is_set() and 183 not in ch.responses:
            ch.responses.append(183)
            self.emit("CHANNEL_PROGRESS_MEDIA", ch)
        return "_none_"

    async def _app_ring_ready(self, ch: Channel, data: str) -> str:
        if not ch.progress and not ch.answered.is_set():
            ch.progress = now_us()
            ch.call_state = "RINGING"
            ch.responses.append(180)
            self.emit("CHANNEL_PROGRESS", ch)
        return "_none_"

    async def _app_unset(self, ch: Channel, data: str) -> str:
        ch.variables.pop(data, None)
        return "_none_"

    async def _app_event(self, ch: Channel, data: str) -> str:
        """mod_dptools event: ``Name=value,...``; Event-Name and
        Event-Subclass name the event, the channel's data comes with it."""
        fields = dict(part.split("=", 1) for part in data.split(",") if "=" in part)
        name = fields.pop("Event-Name", "CHANNEL_APPLICATION")
        self.emit(name, ch, before=[("Event-Subclass", fields.pop("Event-Subclass", ""))],
                  after=list(fields.items()))
        return "_none_"

    async def _app_record_session(self, ch: Channel, path: str) -> str:
        ch.recording = (path, time.monotonic())
        self.emit("RECORD_START", ch, after=[("Record-File-Path", path)])
        return "_none_"

    async def _app_stop_record_session(self, ch: Channel, data: str) -> str:
        self._stop_recording(ch)
        return "_none_"

    async def _app_read(self, ch: Channel, data: str) -> str:
        """mod_dptools read, switch_ivr_read(): ``<min> <max> <prompt|silence>
        <variable> <timeout ms> <terminators> <digit timeout ms>``. A key
        during the prompt stops it and counts; a terminator in what was read
        ends it (read_terminator_used); the digits go in the variable."""
        argv = data.split(" ")
        least, most = max(int(argv[0]), 1), int(argv[1])
        prompt, variable = argv[2], argv[3]
        first, terminators, between = int(argv[4]) / 1000, argv[5], int(argv[6]) / 1000
        ch.variables.pop("read_result", None)
        ch.variables.pop(variable, None)
        digits = ""
        if prompt != "silence":
            digits = await self._play_until_key(ch, prompt)
        terminator = ""
        if len(digits) < most:
            while not ch.hangup_cause:
                if digits and digits[-1] in terminators:
                    terminator, digits = digits[-1], digits[:-1]
                    break
                if len(digits) >= most:
                    break
                digit = await self._read_digit(ch, between if digits else first)
                if digit is None:
                    break
                digits += digit
        if terminator:
            ch.variables["read_terminator_used"] = terminator
        if digits:
            ch.variables[variable] = digits
        ch.variables["read_result"] = "success" if len(digits) >= least else "failure"
        return "_none_"

    async def _play_until_key(self, ch: Channel, path: str) -> str:
        """switch_ivr_play_file() with a digit buffer: the first key stops the
        file and is the buffer."""
        seconds = wav_seconds(path.removeprefix("file_string://").split("!")[0])
        if seconds is None:
            return ""
        self.emit("PLAYBACK_START", ch, after=[("Playback-File-Path", path)])
        digit = await self._read_digit(ch, seconds)
        self.emit("PLAYBACK_STOP", ch, after=[("Playback-File-Path", path),
                                              ("Playback-Status", "break" if digit else "done")])
        return digit or ""

    async def _app_playback(self, ch: Channel, path: str) -> str:
        """A file, or ``file_string://a!b`` (mod_dptools: one after the other)."""
        lengths = [wav_seconds(p) for p in path.removeprefix("file_string://").split("!")]
        if any(length is None for length in lengths):
            return "FILE NOT FOUND"
        seconds = sum(length or 0.0 for length in lengths)
        self.emit("PLAYBACK_START", ch, after=[("Playback-File-Path", path)])
        finished = await self._until(ch, seconds)
        self.emit("PLAYBACK_STOP", ch, after=[("Playback-File-Path", path),
                                              ("Playback-Status", "done" if finished else "break")])
        return "FILE PLAYED"

    async def _app_hangup(self, ch: Channel, cause: str) -> str:
        self.hangup(ch, (cause or "NORMAL_CLEARING").upper())
        return "_none_"

    async def _app_set(self, ch: Channel, data: str) -> str:
        name, _, value = data.partition("=")
        ch.variables[name] = value
        return "_none_"

    async def _app_sleep(self, ch: Channel, data: str) -> str:
        await self._until(ch, int(data or "0") / 1000)
        return "_none_"

    async def _app_sched_hangup(self, ch: Channel, data: str) -> str:
        self._sched_hangup_app(ch, data)
        return "_none_"

    def _sched_hangup_app(self, ch: Channel, data: str) -> None:
        """mod_dptools sched_hangup: ``[+]<time> [<cause>]``."""
        argv = split_args(data)
        if argv and argv[0].lstrip("+").isdigit():
            cause = argv[1].upper() if len(argv) > 1 else "ALLOTTED_TIMEOUT"
            self.schedule_hangup(int(argv[0].lstrip("+")), ch.uuid, cause)

    async def _app_displace_session(self, ch: Channel, data: str) -> str:
        self._displace_app(ch, data)
        return "_none_"

    def _displace_app(self, ch: Channel, data: str) -> None:
        """mod_dptools displace_session: ``<path> [<flags>] [+time_limit_ms]``,
        a media bug that plays the file to the channel (no audio here)."""
        argv = split_args(data)
        if argv:
            ch.displacing.add(argv[0])
            self.log.append(("music on", ch.uuid))

    async def _app_bridge(self, a: Channel, data: str) -> str:
        queued = asyncio.ensure_future(self._run_queued(a))
        try:
            b, outcome = await self.dial(data, originator=a)
        finally:
            queued.cancel()
        if b is None or outcome != "SUCCESS" or a.hangup_cause:
            if a.hangup_cause:
                outcome = "ORIGINATOR_CANCEL"
            a.variables["originate_disposition"] = outcome
            a.variables["DIALSTATUS"] = DIALSTATUS.get(outcome, outcome)
            if b is not None and outcome == "SUCCESS":
                self.hangup(b, "NORMAL_CLEARING")  # A went while B answered
            if not a.hangup_cause and a.variables.get("continue_on_fail") != "true":
                self.hangup(a, outcome if outcome in CAUSES else "NORMAL_TEMPORARY_FAILURE")
            return "_none_"
        if not a.answered.is_set():
            # switch_ivr_multi_threaded_bridge(): a caller not answered yet
            # (an incoming call) is answered once the peer is.
            self._answer(a)
        a.bridged_with, b.bridged_with = b, a
        a.bridged_at = b.bridged_at = now_us()
        a.variables["bridge_uuid"] = b.uuid
        a.variables["originate_disposition"] = "call accepted"
        a.set_state("CS_EXCHANGE_MEDIA")
        self.emit("CHANNEL_BRIDGE", a, after=[("Bridge-A-Unique-ID", a.uuid),
                                              ("Bridge-B-Unique-ID", b.uuid)])
        for side in (a, b):  # each side's bridge thread, once media flows
            self._execute_on(side, "execute_on_pre_bridge")
            await self._api_on(side, "api_before_bridge")
        waits = [asyncio.ensure_future(a.gone.wait()), asyncio.ensure_future(b.gone.wait())]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        self.emit("CHANNEL_UNBRIDGE", a, after=[("Bridge-A-Unique-ID", a.uuid),
                                                ("Bridge-B-Unique-ID", b.uuid)])
        if b.hangup_cause:
            a.variables["bridge_hangup_cause"] = b.hangup_cause
        else:
            self.hangup(b, "NORMAL_CLEARING")
        if not a.hangup_cause and a.variables.get("hangup_after_bridge") == "true":
            self.hangup(a, "NORMAL_CLEARING")
        return "_none_"

    async def _run_queued(self, ch: Channel) -> None:
        """What is sent to a channel while its bridge rings runs at once."""
        while True:
            app, data, locked = await ch.apps.get()
            await self._execute(ch, app, data, locked)

    async def _api_on(self, ch: Channel, prefix: str) -> None:
        """switch_channel_api_on(): every variable whose name starts with
        ``prefix`` is ``<command> <args>``, run as an API command."""
        for name, value in list(ch.variables.items()):
            if name.startswith(prefix):
                command, _, args = value.strip().partition(" ")
                await self.run_api(command, args)

    async def foreign_call(self, destination: str = "+27115550199", *, dial_string: str = "",
                           hold: float = 0.1) -> str:
        """Another application's call on the same switch: its events must not
        reach a controller that filters on its own calls. It stays up ``hold``
        seconds once answered (a directory user's call makes the user busy)."""
        gateway = next(iter(self.gateways or {"lab"}))
        channel, outcome = await self.dial(dial_string or f"sofia/gateway/{gateway}/{destination}")
        if channel is not None and outcome == "SUCCESS":
            await asyncio.sleep(hold)
            self.hangup(channel, "NORMAL_CLEARING", "recv_bye")
        await asyncio.sleep(0.05)
        return channel.uuid if channel is not None else ""


# ---------------------------------------------------------------- lab scenarios

_PHONE_USERS = {"answer.xml": "answer", "busy.xml": "busy", "no-answer.xml": "no-answer",
                "reject.xml": "reject"}


def scenario_call(folder: Path) -> dict[str, Any]:
    """The scenario's [call], with a [phone] of its own (a SIPp phone in the
    lab) mapped to the peer's phone of the same behaviour, named by the SIP
    URI's user part."""
    spec = scenario_spec(folder)
    call = dict(spec["call"])
    phone = spec.get("phone")
    if phone is not None:
        script = Path(phone["scenario"]).name
        args = phone.get("args", [])
        user = _PHONE_USERS.get(script)
        if script == "hangup-after.xml":
            values = dict(zip(args[1::3], args[2::3], strict=False))
            user = f"hangup-after-{values.get('hangup_after', '4000')}"
        if user is None:
            raise ValueError(f"{folder.name}: no peer phone for {script}")
        for leg in ("leg_a", "leg_b"):
            target = str(call[leg])
            if target.startswith("sip:") and f":{phone['port']}" in target:
                call[leg] = re.sub(r"^sip:[^@]+@", f"sip:{user}@", target)
    return call


class Listener:
    """A CallListener that only keeps what it is told (no store, no webhooks)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.transitions: dict[str, list[str]] = {}
        self.results: dict[str, dict[str, Any]] = {}

    async def call_created(self, call: ActiveCall) -> None:
        self.created.append(call.call_id)

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None:
        self.transitions.setdefault(call.call_id, []).extend(str(t.to_state) for t in transitions)

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        self.results[call.call_id] = result

    async def call_reported(self, call: ActiveCall, event: str, data: dict[str, Any]) -> None: ...


def freeswitch_controller(config: Config, listener: Listener | None = None,
                          event_format: str = "plain") -> Controller:
    """The real Controller with ``backend = "freeswitch"`` (controller.app's
    make_backend builds the FreeSWITCH backend). For ``event_format="json"``,
    which no setting chooses, it is built around a backend asked for JSON."""
    import controller.app as app_module
    from controller.app import Controller
    from controller.backends.base import Backend
    from controller.backends.freeswitch.backend import FreeswitchBackend

    assert config.backend == "freeswitch"
    listener = listener or Listener()
    if event_format == "plain":
        controller = Controller(config, listener)
        assert isinstance(controller.backend, FreeswitchBackend)
        return controller

    def make_backend(config: Config) -> Backend:
        return FreeswitchBackend(config.freeswitch, event_format=event_format)

    original = app_module.make_backend
    app_module.make_backend = make_backend
    try:
        return Controller(config, listener)
    finally:
        app_module.make_backend = original


async def _record(out_dir: Path) -> None:
    """Run each scenario on its own peer and controller; keep the wire."""
    import tempfile

    from controller.calls.request import CallRequest
    from controller.config import Config, FreeswitchConfig, MediaConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[str, dict[str, Any], str]] = [
        (folder.name, scenario_call(folder), "plain") for folder in scenario_folders()]
    runs.append(("a-bad-gateway", {"leg_a": "+27115550101", "leg_b": "+27115550202",
                                   "whisper": "You will not hear this"}, "plain"))
    runs.append(("happy-path.json", scenario_call(SCENARIOS / "happy-path"), "json"))
    with tempfile.TemporaryDirectory() as tmp:
        for name, call, fmt in runs:
            peer = EslPeer(password="fixture")
            await peer.start()
            config = Config(backend="freeswitch")
            gateway = "no-such-gateway" if name == "a-bad-gateway" else "lab"
            config.freeswitch = FreeswitchConfig(port=peer.port, password="fixture",
                                                 gateway=gateway)
            config.media = MediaConfig(whisper_dir=f"{tmp}/media",
                                       recording_dir=f"{tmp}/recordings")
            async with freeswitch_controller(config, event_format=fmt) as controller:
                active = await controller.calls.start(CallRequest(**call))
                result = await asyncio.wait_for(active.wait(), 60)
                await asyncio.sleep(0.2)
            await peer.stop()
            wire = bytes(peer.connections[0].wire)
            (out_dir / f"{name}.esl").write_bytes(wire)
            print(f"{name}: {result['status']} ({len(wire)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "record":
        sys.exit("usage: python -m tests.esl.peer record <fixture folder>")
    asyncio.run(_record(Path(sys.argv[2])))
