"""The FreeSWITCH backend: an adapter between the call core and mod_event_socket.

greenswitch is a gevent library and the rest of the controller is asyncio, so
gevent stays in this module: one dedicated thread ("callconnect-esl") runs a
gevent hub and the greenswitch InboundESL connection, and nothing is ever
monkey-patched. The asyncio side hands work to that thread through gevent's
``loop.run_callback_threadsafe`` and gets results and events back through
``loop.call_soon_threadsafe``. Every command waits at most ``action_timeout``;
connecting waits at most ``connect_timeout``.

greenswitch 0.0.19's InboundESL is kept for its connect/login sequence, and its
reader and writer are replaced, because as shipped:

* its parser URL-decodes an event's whole text before splitting it into lines,
  glues an event's body (BACKGROUND_JOB's result) onto its Content-Length
  header, and raises on a frame without Content-Type or whose first line has no
  ``": "``; the exception ends its reader greenlet while ``connected`` stays
  True, so every later command waits forever;
* ``send()`` uses ``socket.send`` (a partial write is lost) and waits for the
  reply without a timeout;
* when an inbound connection drops, commands waiting for a reply are never
  failed, and ``connect()`` waits for ``auth/request`` without a timeout.

Here frames are cut by :class:`EslFramer` (malformed frames are logged and
skipped), replies are matched in order (mod_event_socket answers one command at
a time), a lost connection fails every waiting command at once, ends the calls
it was following with ``SwitchLost``, and is re-established with backoff; the
channels of those calls are hung up as soon as the link is back.

Only this call's events reach the controller: after ``event plain <names>``,
the connection filters on ``Unique-ID`` of each of the call's channels (ids we
set with ``origination_uuid``: Leg A's from the start, each Leg B channel's
just before it is dialed) and on the Job-UUID of its originate, plus
``Event-Name HEARTBEAT`` so that the filter list is never empty (an empty list
lets every event of a busy switch through).

Routing features ride on FreeSWITCH's own: an attempt's targets ring at once
(``,`` in the bridge's dial string) and the first to answer wins; an on-answer
whisper and a confirm key are group_confirm (see ``actions.py``). Three things
the switch does not do the way the core counts them are done here: with a
whisper or confirm key on answer, the other targets are cancelled as soon as
one answers (FreeSWITCH would keep them ringing until one confirms); a wrong
key declines the one that answered (FreeSWITCH would play the prompt again);
and no key within the confirm timeout declines it too (FreeSWITCH would repeat
the prompt until the dial times out). If the controller is gone meanwhile,
FreeSWITCH's own behaviour is the fallback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.lock
import structlog
from greenswitch.esl import InboundESL, NotConnectedError

from controller.backends.base import EventSink
from controller.config import FreeswitchConfig
from controller.core.commands import (
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
)
from controller.core.events import (
    AnswerAccepted,
    AnswerDeclined,
    CommandFailed,
    DialFinished,
    EndedWhileAway,
    Event,
    LegAnswered,
    LegCreated,
    LegEnded,
    SwitchLost,
    WhisperFinished,
)
from controller.core.outcomes import Leg
from controller.core.states import CallState
from controller.errors import SwitchActionFailed, SwitchError, SwitchUnavailable
from controller.numbers import ENDPOINT_PREFIX, TargetKind, target_of

from .actions import (
    AFTER_BRIDGE_HOLD,
    AFTER_BRIDGE_MUSIC,
    HANGUP_CAUSE,
    LOST_RACE_CAUSE,
    EslCommand,
    Verb,
    answer_steps,
    channel_filters,
    dial_legs,
    encode,
    number_gateway,
    unwatch_filters,
    watch_filters,
)
from .events import (
    EslFramer,
    Frame,
    FsEventTranslator,
    PlaybackKind,
    Routed,
    WaitForKey,
    b_leg_index,
    channel_names,
    channel_rows,
    decode_event,
    dial_outcome,
    leg_uuid,
    parse_dump,
    steps_of,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The events the translator reads, and HEARTBEAT (see the module docstring).
EVENT_NAMES = (
    "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE", "CHANNEL_PARK", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_EXECUTE_COMPLETE", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START",
    "RECORD_STOP", "DTMF", "BACKGROUND_JOB", "HEARTBEAT",
)
EVENT_FORMATS = ("plain", "json")
BASE_FILTER = "Event-Name HEARTBEAT"
THREAD_NAME = "callconnect-esl"
RECONNECT_FIRST_DELAY = 0.2
RECONNECT_MAX_DELAY = 10.0
MAX_DEFERRED = 10_000
# The confirm key's time runs from when the prompt's end reaches us; this
# much more is allowed for the digit's way here.
CONFIRM_GRACE = 0.5


# ---------------------------------------------------------------- gevent side

@dataclass(frozen=True)
class Reply:
    """A command/reply (the verdict in Reply-Text) or an api/response (in the body)."""

    headers: dict[str, str]
    body: str

    @property
    def text(self) -> str:
        if self.headers.get("Content-Type") == "api/response":
            return self.body.strip()
        return self.headers.get("Reply-Text", "").strip()

    @property
    def ok(self) -> bool:
        return self.text.startswith("+OK")


class _NoAnswer(Exception):
    """FreeSWITCH did not answer a command in time (raised in the gevent thread)."""


class _ConnectError(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class _Connection(InboundESL):  # type: ignore[misc]  # greenswitch has no type hints
    """One Event Socket connection. Lives in the gevent thread only."""

    # Set by greenswitch's ESLProtocol/InboundESL.
    _commands_sent: list[Any]
    _auth_request_event: Any
    _receive_events_greenlet: Any
    _run: bool
    connected: bool
    sock: Any

    def __init__(self, host: str, port: int, password: str, timeout: float,
                 on_frame: Callable[[Frame], None], on_lost: Callable[[str], None]) -> None:
        super().__init__(host, port, password, timeout=timeout)
        self.reply_timeout = timeout
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._send_lock = gevent.lock.Semaphore()
        self.rejection: str | None = None
        self.lost_reason: str | None = None

    @property
    def tcp_connected(self) -> bool:
        return getattr(self, "sock_file", None) is not None

    def start_event_handlers(self) -> None:
        # Only a reader: events go straight to the asyncio thread, so
        # greenswitch's dispatcher greenlet has nothing to do.
        self._receive_events_greenlet = gevent.spawn(self.receive_events)

    def receive_events(self) -> None:
        framer = EslFramer()
        reason = "FreeSWITCH closed the connection"
        try:
            while self._run:
                data = self.sock.recv(65536)
                if not data:
                    break
                for frame in framer.feed(data):
                    self._dispatch(frame)
        except Exception as exc:  # socket errors, or our own close() in shutdown
            reason = f"connection error: {exc}"
        finally:
            self._lost(reason)

    def _dispatch(self, frame: Frame) -> None:
        kind = frame.content_type
        if kind == "auth/request":
            self._auth_request_event.set()
        elif kind in ("command/reply", "api/response"):
            if not self._commands_sent:
                log.warning("esl.reply.unexpected", content_type=kind, reply=frame.body[:80])
                return
            self._commands_sent.pop(0).set(Reply(dict(frame.headers), frame.body))
        elif kind.startswith("text/event-"):
            self._on_frame(frame)
        elif kind == "text/disconnect-notice":
            log.info("esl.disconnect_notice", text=frame.body.strip()[:200])
        elif kind == "text/rude-rejection":
            self.rejection = frame.body.strip() or "access denied"
            self.connected = False
            self._auth_request_event.set()
        elif kind != "log/data":
            log.warning("esl.frame.unknown", content_type=kind)

    def _lost(self, reason: str) -> None:
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        self._run = False
        self.connected = False
        waiting, self._commands_sent = self._commands_sent, []
        for result in waiting:
            result.set_exception(NotConnectedError(reason))
        self._auth_request_event.set()
        self._on_lost(reason)

    def send(self, data: str, timeout: float | None = None) -> Reply:
        """Send one command and wait for its reply (greenswitch's authenticate()
        calls this too)."""
        if not self.connected:
            raise NotConnectedError(self.lost_reason or "not connected")
        result = gevent.event.AsyncResult()
        with self._send_lock:  # keep the reply queue in the order of the bytes sent
            self._commands_sent.append(result)
            self.sock.sendall((data + "\n\n").encode())
        result.wait(self.reply_timeout if timeout is None else timeout)
        if not result.ready():
            # The entry stays queued: FreeSWITCH answers in order, so a late
            # reply still lands on it and not on the next command.
            raise _NoAnswer(data.split("\n", 1)[0])
        reply: Reply = result.get(block=False)
        return reply

    def expect_ok(self, data: str) -> None:
        reply = self.send(data)
        if not reply.ok:
            raise _ConnectError("refused", f"{data.split(chr(10), 1)[0]!r}: {reply.text}")

    def shutdown(self, timeout: float) -> None:
        """Say goodbye if we can, then close; never waits more than ``timeout``."""
        if self.connected:
            with contextlib.suppress(Exception):
                self.send("exit", timeout=timeout)
        self.abort(timeout)

    def abort(self, timeout: float = 1.0) -> None:
        self._run = False
        self.connected = False
        sock = getattr(self, "sock", None)
        sock_file = getattr(self, "sock_file", None)
        if sock is not None:
            # shutdown() wakes the reader at once; close() alone would not while
            # greenswitch's makefile() still holds the socket open.
            with contextlib.suppress(Exception):
                sock.shutdown(socket.SHUT_RDWR)
        for closable in (sock_file, sock):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        reader = self._receive_events_greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.join(timeout)
            if not reader.dead:
                reader.kill(block=False)


class _GeventThread:
    """A thread that runs a gevent hub and the greenlets we give it.

    Jobs cross over through a deque and a started ``async_`` watcher, whose
    ``send()`` may be called from any thread; the watcher also keeps the hub's
    loop alive while the thread waits for work.
    """

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._main, name=THREAD_NAME, daemon=True)
        self._ready = threading.Event()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._wake: Any = None
        self._stop: Any = None

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SwitchUnavailable("the Event Socket thread did not start")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _main(self) -> None:
        hub = gevent.get_hub()
        self._stop = gevent.event.Event()
        self._wake = hub.loop.async_()
        self._wake.start(self._drain)
        self._ready.set()
        try:
            self._stop.wait()
        finally:
            self._wake.stop()
            self._wake.close()
            with contextlib.suppress(Exception):
                hub.destroy(destroy_loop=True)

    def _drain(self) -> None:
        while self._jobs:
            gevent.spawn(self._jobs.popleft())

    def submit(self, job: Callable[[], None]) -> None:
        if not self.alive or self._wake is None:
            raise SwitchUnavailable("the Event Socket thread is not running")
        self._jobs.append(job)
        self._wake.send()

    def stop(self, timeout: float) -> None:
        if self.alive and self._wake is not None:
            self._jobs.append(self._stop.set)
            self._wake.send()
        self._thread.join(timeout)


# ---------------------------------------------------------------- asyncio side

class FreeswitchBackend:
    name = "freeswitch"

    def __init__(self, config: FreeswitchConfig, event_format: str = "plain") -> None:
        if event_format not in EVENT_FORMATS:
            raise ValueError(f"event_format must be one of {EVENT_FORMATS}")
        self._config = config
        self._format = event_format
        self._translator = FsEventTranslator()
        self._sinks: dict[str, EventSink] = {}
        # Leg B's dial to start when the call's whisper ends (PlayWhisper.then_dial).
        self._then_dial: dict[str, DialLegB] = {}
        # Calls whose Leg A may hear the hold music (OriginateLegA.hold_music).
        self._hold_music: dict[str, bool] = {}
        # Calls waiting for Leg A to finish what follows a failed bridge.
        self._after_bridge: dict[str, asyncio.Event] = {}
        self._confirm_timers: dict[str, asyncio.TimerHandle] = {}
        self._thread: _GeventThread | None = None
        self._conn: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._lost_generation = -1
        self._pending: dict[asyncio.Future[Any], str] = {}
        self._deferred: dict[str, EslCommand] = {}  # hangups to send once the link is back
        self._reconnect: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.connected = False
        self.reconnects = 0
        # Told how late each switch event is handled, in seconds (for metrics).
        self.observe_event_lag: Callable[[float], None] | None = None
        # Never called: calls end when the link is lost (_on_lost), so there
        # is nothing to look at again once it is back.
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None

    @property
    def address(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    # ------------------------------------------------------------ Backend API

    async def connect(self) -> None:
        if self.connected:
            return
        password = self._config.password
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
            raise SwitchUnavailable("[freeswitch] password has a control character; "
                                    "FreeSWITCH reads the password up to the end of the line")
        self._closing = False
        self._loop = asyncio.get_running_loop()
        if self._thread is None or not self._thread.alive:
            thread = _GeventThread()
            thread.start(5.0)
            self._thread = thread
        try:
            await self._open()
        except SwitchUnavailable:
            await self._stop_thread()
            raise

    async def close(self) -> None:
        self._closing = True
        for call_id in list(self._confirm_timers):
            self._cancel_confirm_timer(call_id)
        if self._background:  # filter deletes for calls just forgotten
            await asyncio.wait(list(self._background), timeout=self._config.action_timeout)
        self.connected = False
        self._generation += 1  # whatever the old connection still says is ignored
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
            self._reconnect = None
        self._fail_pending(SwitchUnavailable(f"the connection to FreeSWITCH at {self.address} "
                                             "is closing"))
        conn, self._conn = self._conn, None
        if conn is not None and self._thread is not None:
            timeout = min(self._config.action_timeout, 2.0)
            with contextlib.suppress(SwitchError, OSError):
                await self._in_gevent(lambda: conn.shutdown(timeout), timeout + 1.0, "exit")
        for task in list(self._background):
            task.cancel()
        await self._stop_thread()

    def watch(self, call_id: str, sink: EventSink) -> None:
        self._translator.watch(call_id)
        self._sinks[call_id] = sink

    def forget(self, call_id: str) -> None:
        followed = self._sinks.pop(call_id, None) is not None
        self._then_dial.pop(call_id, None)
        self._hold_music.pop(call_id, None)
        waiter = self._after_bridge.pop(call_id, None)
        if waiter is not None:
            waiter.set()
        self._cancel_confirm_timer(call_id)
        b_channels = [c for c in self._translator.channels(call_id)
                      if c != leg_uuid(call_id, Leg.A)]
        self._translator.forget(call_id)
        if followed and self.connected:
            self._spawn(self._send_quietly(unwatch_filters(call_id, b_channels)))

    async def reattach(self, call_id: str, state: str, sink: EventSink) -> list[Event]:
        """Follow a call again after a restart. FreeSWITCH keeps nothing of a
        channel once it is gone, so a call that ended meanwhile comes back as
        EndedWhileAway with no outcome; a live one is read with uuid_dump, and
        its Leg B channels are found by their ids in ``show channels``."""
        self.watch(call_id, sink)
        for esl in watch_filters(call_id):
            await self._send(esl)
        now = time.time()
        core_state = CallState(state)
        a_channel = leg_uuid(call_id, Leg.A)
        a = await self._dump(a_channel)
        if a is None:
            answered = core_state not in (CallState.NEW, CallState.DIALING_A, CallState.RINGING_A)
            return [EndedWhileAway(now, None, answered, None, None)]
        b_legs: list[tuple[str, dict[str, str]]] = []
        for channel in await self._b_channels_on_switch(call_id):
            dump = await self._dump(channel)
            if dump is not None:
                self._translator.adopt(call_id, Leg.B, channel,
                                       dump.get("variable_callconnect_target", ""),
                                       steps_of(dump))
                await self._send(channel_filters([channel])[0])
                b_legs.append((channel, dump))
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
        self._translator.resume(call_id, bridged or core_state is CallState.BRIDGED,
                                b_answered[0][0] if b_answered else None)
        events: list[Event] = []
        if core_state in (CallState.DIALING_A, CallState.RINGING_A):
            events.append(LegCreated(now, Leg.A, a_channel))
            if a_answered:
                events.append(LegAnswered(now, Leg.A, a_channel))
        elif core_state is CallState.WHISPERING:
            if running == "playback":
                self._translator.expect_playback(call_id, app_data, PlaybackKind.WHISPER)
            else:
                events.append(WhisperFinished(now, True))
        elif core_state in (CallState.DIALING_B, CallState.RINGING_B, CallState.CONFIRMING):
            for channel, _ in b_legs:
                events.append(LegCreated(now, Leg.B, channel))
            for channel, dump in b_answered[:1]:
                events.append(LegAnswered(now, Leg.B, channel,
                                          dump.get("variable_callconnect_target", "")))
                if steps is not None and bridged:
                    events.append(AnswerAccepted(now))
            if not b_legs and running != "bridge":
                events.append(DialFinished(now, dial_outcome(a)))
        elif core_state is CallState.ANNOUNCING and running == "playback":
            self._translator.expect_playback(call_id, app_data, PlaybackKind.MESSAGE)
        return events

    async def _b_channels_on_switch(self, call_id: str) -> list[str]:
        reply = await self._send(EslCommand(Verb.API, "show channels as json"))
        try:
            rows = channel_rows(reply.body)
        except ValueError:
            return []
        found = [row.get("uuid", "") for row in rows]
        return sorted((c for c in found if b_leg_index(call_id, c) is not None),
                      key=lambda c: b_leg_index(call_id, c) or 0)

    async def _dump(self, channel: str) -> dict[str, str] | None:
        reply = await self._send(EslCommand(Verb.API, f"uuid_dump {channel} json"))
        return parse_dump(reply.body)

    async def execute(self, call_id: str, command: Command) -> None:
        if isinstance(command, OriginateLegA):
            self._hold_music[call_id] = command.hold_music
        if isinstance(command, (PlayWhisper, DialLegB, PlayMessageThenHangup)):
            await self._leg_a_waiting(call_id)
        b_index = self._translator.next_b_index(call_id)
        hold_music = self._hold_music.get(call_id, False)
        commands = encode(call_id, command, self._config, b_index=b_index,
                          b_channels=self._translator.b_channels(call_id), hold_music=hold_music)
        if isinstance(command, HangupLegs) and not self.connected and not self._closing:
            self._defer(commands)  # sent as soon as the link is back
            return
        if isinstance(command, PlayWhisper):
            self._translator.expect_playback(call_id, command.audio, PlaybackKind.WHISPER)
            self._then_dial[call_id] = command.then_dial
        elif isinstance(command, PlayMessageThenHangup):
            self._translator.expect_playback(call_id, command.audio, PlaybackKind.MESSAGE)
        elif isinstance(command, DialLegB):
            self._translator.expect_dial(call_id, dial_legs(call_id, command.targets, b_index),
                                         answer_steps(command))
            self._translator.expect_after_bridge(
                call_id, AFTER_BRIDGE_MUSIC if command.hold_music else AFTER_BRIDGE_HOLD)
            self._after_bridge[call_id] = asyncio.Event()
            self._hold_music[call_id] = hold_music or command.hold_music
        for esl in commands:
            reply = await self._send(esl)
            if reply.ok or esl.optional:
                continue
            if esl.missing_ok and "no such channel" in reply.text.lower():
                continue  # it hung up by itself meanwhile: that is what we wanted
            raise SwitchActionFailed(f"FreeSWITCH refused {esl.name}: {reply.text}",
                                     action=esl.name, call_id=call_id)

    async def _leg_a_waiting(self, call_id: str) -> None:
        """Before Leg A's next step: wait until A has run what follows a failed
        bridge (it arms A's hold limit, which the next step disarms)."""
        waiter = self._after_bridge.get(call_id)
        if waiter is None or not self._translator.after_bridge_pending(call_id):
            return
        try:
            await asyncio.wait_for(waiter.wait(), self._config.action_timeout)
        except TimeoutError:
            log.warning("esl.after_bridge_unseen", call_id=call_id)

    def _dial_after_whisper(self, call_id: str, then_dial: DialLegB) -> None:
        """FreeSWITCH has no dialplan step to chain here: the adapter starts
        the bridge itself the moment the whisper's PLAYBACK_STOP arrives."""
        async def dial() -> None:
            try:
                await self.execute(call_id, then_dial)
            except (SwitchActionFailed, SwitchUnavailable) as exc:
                sink = self._sinks.get(call_id)
                if sink is not None:
                    sink(CommandFailed(time.time(), "DialLegB", exc.message))
        self._spawn(dial())

    def trunk_of(self, target: str) -> str | None:
        """The gateway a number is dialed through; SIP URIs (a sofia profile)
        and the switch's own users use no gateway."""
        if target_of(target).kind is not TargetKind.NUMBER:
            return None
        return number_gateway(target, self._config)

    async def busy_targets(self, targets: Sequence[str]) -> set[str]:
        """Endpoints (``endpoint:NAME``, the switch's user NAME) on a call of
        any kind: a channel whose presence_id is NAME@<domain> (FreeSWITCH
        sets it on calls to and from a directory user) in ``show channels``.
        Numbers and URIs it cannot tell about."""
        names = {t: t[len(ENDPOINT_PREFIX):].lower() for t in targets
                 if target_of(t).kind is TargetKind.ENDPOINT}
        if not names:
            return set()
        try:
            reply = await self._send(EslCommand(Verb.API, "show channels as json"))
            rows = channel_rows(reply.body)
        except (SwitchError, ValueError) as exc:
            log.warning("esl.busy_targets_unknown", error=str(exc))
            return set()
        in_use = {row.get("presence_id", "").split("@", 1)[0].lower() for row in rows}
        return {target for target, name in names.items() if name in in_use}

    async def active_channels(self) -> list[str]:
        reply = await self._send(EslCommand(Verb.API, "show channels as json"))
        try:
            return channel_names(reply.body)
        except ValueError as exc:
            raise SwitchActionFailed(f"FreeSWITCH answered show channels with {reply.text[:80]!r}",
                                     action="api show") from exc

    # ------------------------------------------------------------ connection

    async def _open(self) -> None:
        """Connect, log in, subscribe and set the filters, within connect_timeout."""
        config = self._config
        timeout = config.connect_timeout
        self._generation += 1
        generation = self._generation
        setup = [f"event {self._format} {' '.join(EVENT_NAMES)}", f"filter {BASE_FILTER}"]
        for call_id in self._translator.watched():
            b_channels = [c for c in self._translator.channels(call_id)
                          if c != leg_uuid(call_id, Leg.A)]
            setup += [f.wire for f in [*watch_filters(call_id), *channel_filters(b_channels)]]

        def on_frame(frame: Frame) -> None:
            self._post(generation, self._on_frame, frame)

        def on_lost(reason: str) -> None:
            self._post(generation, self._on_lost, reason)

        def job() -> _Connection:
            conn = _Connection(config.host, config.port, config.password, timeout,
                               on_frame, on_lost)
            timer = gevent.Timeout(timeout)
            timer.start()
            try:
                conn.connect()
                for text in setup:
                    conn.expect_ok(text)
                return conn
            except gevent.Timeout as exc:
                conn.abort()
                if exc is not timer:
                    raise
                kind = "silent" if conn.tcp_connected else "unreachable"
                raise _ConnectError(kind, f"no answer within {timeout:g} s") from None
            except ValueError as exc:  # greenswitch authenticate(): 'Invalid password.'
                conn.abort()
                raise _ConnectError("password", str(exc)) from None
            except NotConnectedError as exc:
                conn.abort()
                if conn.rejection:
                    raise _ConnectError("acl", conn.rejection) from None
                kind = "closed" if conn.tcp_connected else "unreachable"
                raise _ConnectError(kind, str(exc)) from None
            except (_NoAnswer, _ConnectError):
                conn.abort()
                raise
            except OSError as exc:
                conn.abort()
                raise _ConnectError("unreachable", exc.strerror or str(exc)) from None
            finally:
                timer.close()

        try:
            conn = await self._in_gevent(job, timeout + 1.0, "connect")
        except _ConnectError as exc:
            raise SwitchUnavailable(self._connect_message(exc), address=self.address,
                                    reason=exc.kind) from None
        except _NoAnswer as exc:
            raise SwitchUnavailable(f"FreeSWITCH at {self.address} did not answer {exc} within "
                                    f"{timeout:g} s", address=self.address) from None
        except SwitchActionFailed as exc:
            raise SwitchUnavailable(f"cannot connect to FreeSWITCH at {self.address}: "
                                    f"{exc.message}", address=self.address) from None
        if self._lost_generation == generation or generation != self._generation:
            self._spawn(self._in_gevent(conn.abort, 2.0, "abort"))
            raise SwitchUnavailable(f"FreeSWITCH at {self.address} closed the connection "
                                    "right after login", address=self.address)
        self._conn = conn
        self.connected = True
        log.info("esl.connected", address=self.address, events=self._format)

    def _connect_message(self, exc: _ConnectError) -> str:
        address = self.address
        if exc.kind == "password":
            return (f"the FreeSWITCH event socket at {address} refused the password; check "
                    "[freeswitch] password (or CALLCONNECT_FREESWITCH_PASSWORD) against "
                    "event_socket.conf.xml")
        if exc.kind == "acl":
            return (f"FreeSWITCH at {address} refused this host ({exc.detail}); allow it in "
                    "event_socket.conf.xml apply-inbound-acl")
        if exc.kind == "silent":
            return (f"connected to {address}, but no Event Socket greeting (auth/request) came "
                    f"({exc.detail}); is that port FreeSWITCH's event socket?")
        if exc.kind == "closed":
            return f"FreeSWITCH at {address} closed the connection before login ({exc.detail})"
        if exc.kind == "refused":
            return f"FreeSWITCH at {address} refused a setup command: {exc.detail}"
        return (f"cannot reach the FreeSWITCH event socket at {address} ({exc.detail}); is "
                "FreeSWITCH running, and mod_event_socket listening on that address "
                "(event_socket.conf.xml listen-ip and listen-port)?")

    async def _reconnect_loop(self) -> None:
        delay = RECONNECT_FIRST_DELAY
        while not self._closing and not self.connected:
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._open()
            except SwitchUnavailable as exc:
                log.warning("esl.reconnect_failed", error=exc.message, retry_in=delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            self.reconnects += 1
            log.info("esl.reconnected", address=self.address, attempt=self.reconnects)
            await self._flush_deferred()

    async def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.stop, 5.0)

    # ------------------------------------------------------------ commands

    async def _send(self, esl: EslCommand) -> Reply:
        conn = self._conn
        if conn is None or not self.connected:
            raise SwitchUnavailable(f"not connected to FreeSWITCH at {self.address}"
                                    + ("; reconnecting" if self._reconnect else ""),
                                    address=self.address)
        timeout = self._config.action_timeout
        try:
            # The gevent side gives up a little later, so the answer to "how
            # long" is always this side's action_timeout.
            return await self._in_gevent(lambda: conn.send(esl.wire, timeout + 0.5),
                                         timeout, esl.name)
        except SwitchError:
            raise
        except _NoAnswer as exc:
            raise SwitchActionFailed(f"FreeSWITCH did not answer {esl.name} within "
                                     f"{timeout:g} s", action=esl.name) from exc
        except (NotConnectedError, OSError) as exc:
            raise SwitchActionFailed(f"lost the connection to FreeSWITCH at {self.address} "
                                     f"while waiting for {esl.name} ({exc})",
                                     action=esl.name) from exc

    async def _in_gevent(self, fn: Callable[[], T], timeout: float, what: str) -> T:
        """Run ``fn`` in a greenlet of the Event Socket thread; wait at most ``timeout``."""
        thread = self._thread
        if thread is None:
            raise SwitchUnavailable(f"not connected to FreeSWITCH at {self.address}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                value = fn()
            except BaseException as exc:  # gevent.Timeout and GreenletExit too
                error = exc if isinstance(exc, Exception) else NotConnectedError(repr(exc))
                _post_outcome(loop, future, None, error)
                if not isinstance(exc, Exception):
                    raise
            else:
                _post_outcome(loop, future, value, None)

        self._pending[future] = what
        try:
            thread.submit(job)
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if not done:
                future.cancel()
                raise SwitchActionFailed(f"FreeSWITCH did not answer {what} within {timeout:g} s",
                                         action=what)
            return future.result()
        finally:
            self._pending.pop(future, None)

    async def _send_quietly(self, commands: list[EslCommand]) -> None:
        for esl in commands:
            try:
                reply = await self._send(esl)
            except SwitchError as exc:
                log.warning("esl.command_failed", command=esl.name, error=exc.message)
                return
            if not reply.ok and not (esl.missing_ok and "no such channel" in reply.text.lower()):
                log.warning("esl.command_refused", command=esl.name, reply=reply.text)

    def _defer(self, commands: list[EslCommand]) -> None:
        for esl in commands:
            if len(self._deferred) < MAX_DEFERRED:
                self._deferred[esl.wire] = esl

    async def _flush_deferred(self) -> None:
        deferred, self._deferred = list(self._deferred.values()), {}
        if deferred:
            log.info("esl.deferred_hangups", count=len(deferred))
            await self._send_quietly(deferred)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            return
        task = loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fail_pending(self, error: SwitchError) -> None:
        for future, what in list(self._pending.items()):
            if not future.done():
                future.set_exception(type(error)(f"{error.message} (while waiting for {what})",
                                                 **error.details))

    # ------------------------------------------------------------ from the gevent thread

    def _post(self, generation: int, handler: Callable[[Any], None], value: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            loop.call_soon_threadsafe(self._deliver, generation, handler, value)

    def _deliver(self, generation: int, handler: Callable[[Any], None], value: Any) -> None:
        if generation == self._generation:
            handler(value)

    def _on_frame(self, frame: Frame) -> None:
        event = decode_event(frame)
        if event is None:
            return
        now = time.time()
        stamp = event.get("Event-Date-Timestamp", "")
        if self.observe_event_lag is not None and stamp.isdigit():
            self.observe_event_lag(now - int(stamp) / 1_000_000)
        self._dispatch(self._translator.translate(event, now))
        call_id = self._translator.call_of(event)
        waiter = self._after_bridge.get(call_id) if call_id is not None else None
        if waiter is not None and call_id is not None and not waiter.is_set() \
                and not self._translator.after_bridge_pending(call_id):
            waiter.set()

    def _dispatch(self, routed_events: list[Routed]) -> None:
        for routed in routed_events:
            call_id, ev = routed.call_id, routed.event
            if isinstance(ev, WaitForKey):
                self._start_confirm_timer(call_id, ev)
                continue
            then_dial = self._then_dial.pop(call_id, None) \
                if isinstance(ev, (WhisperFinished, LegEnded)) else None
            if then_dial is not None and isinstance(ev, WhisperFinished):
                self._dial_after_whisper(call_id, then_dial)
            if isinstance(ev, LegAnswered) and ev.leg is Leg.B:
                self._answered(call_id, ev.channel)
            elif isinstance(ev, AnswerDeclined):
                self._declined(call_id)
            elif isinstance(ev, AnswerAccepted):
                self._cancel_confirm_timer(call_id)
            sink = self._sinks.get(call_id)
            if sink is not None:
                sink(ev)

    def _answered(self, call_id: str, channel: str) -> None:
        """With a whisper or confirm key on answer, the first to answer wins:
        the attempt's other targets stop ringing now (FreeSWITCH would let
        them ring on, and bridge whichever confirms first)."""
        if not self._translator.answer_steps(call_id):
            return
        siblings = self._translator.siblings(call_id, channel)
        if siblings:
            self._spawn(self._send_quietly([
                EslCommand(Verb.API, f"uuid_kill {c} {LOST_RACE_CAUSE}", missing_ok=True)
                for c in siblings]))

    def _declined(self, call_id: str) -> None:
        """Leg B did not confirm: hang it up, so that the dial ends (and
        FreeSWITCH does not play the prompt again)."""
        self._cancel_confirm_timer(call_id)
        channel = self._translator.declined_channel(call_id)
        if channel is not None:
            self._spawn(self._send_quietly([
                EslCommand(Verb.API, f"uuid_kill {channel} {HANGUP_CAUSE}", missing_ok=True)]))

    def _start_confirm_timer(self, call_id: str, ev: WaitForKey) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._cancel_confirm_timer(call_id)
        # Counted from now, not from the event's time: the switch's clock may
        # not be ours.
        self._confirm_timers[call_id] = loop.call_later(ev.seconds + CONFIRM_GRACE,
                                                        self._confirm_expired, call_id, ev.channel)

    def _cancel_confirm_timer(self, call_id: str) -> None:
        timer = self._confirm_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    def _confirm_expired(self, call_id: str, channel: str) -> None:
        self._confirm_timers.pop(call_id, None)
        self._dispatch(self._translator.confirm_expired(call_id, channel, time.time()))

    def _on_lost(self, reason: str) -> None:
        self._lost_generation = self._generation
        was_connected, self.connected = self.connected, False
        self._conn = None
        if self._closing or not was_connected:
            return
        log.warning("esl.disconnected", address=self.address, reason=reason)
        self._fail_pending(SwitchActionFailed(
            f"lost the connection to FreeSWITCH at {self.address} ({reason})"))
        # The calls we follow can no longer be followed: they end now, and
        # their channels are hung up as soon as the link is back.
        now = time.time()
        for call_id in self._translator.watched():
            self._cancel_confirm_timer(call_id)
            self._defer(encode(call_id, HangupLegs((Leg.A, Leg.B)), self._config,
                               b_channels=self._translator.b_channels(call_id)))
            sink = self._sinks.get(call_id)
            if sink is not None:
                sink(SwitchLost(now, f"lost the connection to FreeSWITCH ({reason})"))
        if self._reconnect is None or self._reconnect.done():
            loop = self._loop
            if loop is not None and not loop.is_closed():
                self._reconnect = loop.create_task(self._reconnect_loop(),
                                                   name="freeswitch-reconnect")


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return  # timed out or failed by a lost connection already
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _post_outcome(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any,
                  error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, value, error)
