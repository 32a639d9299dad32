"""The FreeSWITCH backend: an adapter between the call core and mod_event_socket.

The Event Socket connection lives in a gevent thread (``link.py``); frames are
read by ``wire.py``, events turned into core events by ``translator.py`` and
core commands into Event Socket commands by ``actions.py``. This module ties
them together, keeps what it needs of each call (``calls.py``), and
re-establishes a lost connection with backoff: a lost connection ends the calls
it was following with ``SwitchLost``, and their channels are hung up as soon as
the link is back.

Only our calls' events reach the controller: the connection filters on the
``Unique-ID`` of each call's channels (set with ``origination_uuid``: Leg A's
from the start, each Leg B's just before its dial; a claimed incoming
channel's own), its originate's Job-UUID, the inbound dialplan's ``CUSTOM
callconnect::incoming`` (``inbound.py``; live steps: ``live.py``), and
``HEARTBEAT`` so that the filter list is never empty.

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
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog

from controller.backends.base import EventSink, IncomingCall
from controller.config import FreeswitchConfig
from controller.core.commands import (
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    WaitForActions,
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
    LegRinging,
    SwitchLost,
    WhisperFinished,
)
from controller.core.outcomes import Leg
from controller.core.states import CallState
from controller.errors import SwitchActionFailed, SwitchUnavailable
from controller.numbers import TargetKind, target_of

from . import queries
from .actions import (
    EVENT_FORMATS,
    HANGUP_CAUSE,
    LOST_RACE_CAUSE,
    EslCommand,
    Verb,
    answer_steps,
    dial_legs,
    encode,
    number_gateway,
    restart_music,
    subscription,
    unwatch_filters,
)
from .calls import FsCall
from .ids import leg_uuid
from .inbound import claim_channel, incoming_call
from .link import Connection, EslLink
from .live import LIVE_COMMANDS, encode_step, live_step, refuse_commands, unclaim_command
from .live_events import Routed
from .queries import send_all, send_quietly
from .reattach import read_back
from .tracking import PlaybackKind
from .translator import FsEventTranslator, WaitForKey
from .wire import Frame, Reply, decode_event

log = structlog.get_logger(__name__)

RECONNECT_FIRST_DELAY = 0.2
RECONNECT_MAX_DELAY = 10.0
MAX_DEFERRED = 10_000
# The confirm key's time runs from when the prompt's end reaches us; this
# much more is allowed for the digit's way here.
CONFIRM_GRACE = 0.5


class FreeswitchBackend:
    name = "freeswitch"

    def __init__(self, config: FreeswitchConfig, event_format: str = "plain") -> None:
        if event_format not in EVENT_FORMATS:
            raise ValueError(f"event_format must be one of {EVENT_FORMATS}")
        self._config = config
        self._format = event_format
        self._translator = FsEventTranslator()
        self._calls: dict[str, FsCall] = {}
        self._link = EslLink(self.address)
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._lost_generation = -1
        self._deferred: dict[str, EslCommand] = {}  # hangups to send once the link is back
        self._reconnect: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.connected = False
        self.reconnects = 0
        self.on_incoming: Callable[[IncomingCall], Awaitable[None]] | None = None
        self.observe_event_lag: Callable[[float], None] | None = None  # seconds late, for metrics
        # Never called: calls end with a lost link (_on_lost); nothing to look at again.
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
        self._link.start()
        try:
            await self._open()
        except SwitchUnavailable:
            await self._link.stop()
            raise

    async def close(self) -> None:
        self._closing = True
        for call in self._calls.values():
            call.cancel_confirm_timer()
        if self._background:  # filter deletes for calls just forgotten
            await asyncio.wait(list(self._background), timeout=self._config.action_timeout)
        self.connected = False
        self._generation += 1  # whatever the old connection still says is ignored
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
            self._reconnect = None
        self._link.fail_pending(SwitchUnavailable(f"the connection to FreeSWITCH at {self.address} "
                                                  "is closing"))
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._link.shutdown(conn, min(self._config.action_timeout, 2.0))
        for task in list(self._background):
            task.cancel()
        await self._link.stop()

    def watch(self, call_id: str, sink: EventSink) -> None:
        self._translator.watch(call_id)
        self._call(call_id).sink = sink

    def _call(self, call_id: str) -> FsCall:
        return self._calls.setdefault(call_id, FsCall())

    def forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        followed = call is not None and call.sink is not None
        if call is not None:
            call.cancel_confirm_timer()
        b_channels = self._filtered_channels(call_id)
        claimed = self._translator.a_channel(call_id) is not None
        self._translator.forget(call_id)
        if followed and self.connected:
            self._spawn(send_quietly(self._send, unwatch_filters(call_id, b_channels)
                                           + ([unclaim_command(call_id)] if claimed else [])))

    def _filtered_channels(self, call_id: str) -> list[str]:
        """The call's channels with a filter of their own (Leg A's comes with
        the call's, see watch_filters)."""
        return [c for c in self._translator.channels(call_id) if c != leg_uuid(call_id, Leg.A)]

    async def reattach(self, call_id: str, state: str, sink: EventSink,
                       then_dial: DialLegB | None = None) -> list[Event]:
        """Follow a call again after a restart (see ``reattach.py``). The dial
        that follows a whisper is the adapter's, not the switch's: it starts
        now if the whisper ended meanwhile, else when it ends. Events that
        come while the switch is read wait until the translator knows what
        to expect (see FsEventTranslator.hold)."""
        self.watch(call_id, sink)
        self._translator.hold()
        try:
            missed = await read_back(self._send, self._translator, call_id, CallState(state))
            if then_dial is not None and CallState(state) is CallState.WHISPERING:
                if any(isinstance(ev, WhisperFinished) for ev in missed):
                    self._dial_after_whisper(call_id, then_dial)
                elif not any(isinstance(ev, EndedWhileAway) for ev in missed):
                    self._call(call_id).then_dial = then_dial
        finally:
            self._dispatch(self._translator.release())
        return missed

    async def claim(self, incoming: IncomingCall, call_id: str, sink: EventSink) -> None:
        """The parked incoming channel becomes leg A (see ``live.py``)."""
        self.watch(call_id, sink)
        self._translator.claim(call_id, incoming.channel)
        await claim_channel(self._send_together, incoming.channel, call_id)
        now = time.time()
        sink(LegCreated(now, Leg.A, incoming.channel))
        sink(LegRinging(now, Leg.A))

    async def refuse(self, incoming: IncomingCall, audio: str | None, cause: int) -> None:
        await send_all(self._send_together, refuse_commands(incoming.channel, audio, cause))

    async def execute(self, call_id: str, command: Command) -> None:
        a_channel = self._translator.a_channel(call_id)
        if isinstance(command, LIVE_COMMANDS):
            a = a_channel or leg_uuid(call_id, Leg.A)
            steps = encode_step(a, command, answered=self._translator.a_answered(call_id))
            self._translator.expect_step(call_id, live_step(command),
                                         idle=isinstance(command, WaitForActions))
            await send_all(self._send_together, steps, call_id)
            return
        if isinstance(command, OriginateLegA):
            self._call(call_id).hold_music = command.hold_music
        if isinstance(command, (PlayWhisper, DialLegB, PlayMessageThenHangup)):
            await self._leg_a_waiting(call_id)
        b_index = self._translator.next_b_index(call_id)
        known = self._calls.get(call_id)
        hold_music = known is not None and known.hold_music
        commands = encode(call_id, command, self._config, b_index=b_index,
                          b_channels=self._translator.b_channels(call_id), hold_music=hold_music,
                          a_channel=a_channel)
        if isinstance(command, HangupLegs) and not self.connected and not self._closing:
            self._defer(commands)  # sent as soon as the link is back
            return
        if isinstance(command, PlayWhisper):
            self._translator.expect_playback(call_id, command.audio, PlaybackKind.WHISPER)
            self._call(call_id).then_dial = command.then_dial
        elif isinstance(command, PlayMessageThenHangup):
            self._translator.expect_playback(call_id, command.audio, PlaybackKind.MESSAGE)
        elif isinstance(command, DialLegB):
            self._translator.expect_dial(call_id, dial_legs(call_id, command.targets, b_index),
                                         answer_steps(command))
            self._call(call_id).hold_music = hold_music or command.hold_music
        if not isinstance(command, HangupLegs):
            self._translator.expect_step(call_id, None)  # a two-leg step on a live call
        await send_all(self._send_together, commands, call_id)

    async def _leg_a_waiting(self, call_id: str) -> None:
        """Before Leg A's next step: the hold music restarted after a failed
        bridge is on (the next step stops it), so it cannot come after it."""
        call = self._calls.get(call_id)
        if call is None or call.music_restart is None:
            return
        restart, call.music_restart = call.music_restart, None
        try:
            await asyncio.wait_for(asyncio.shield(restart), self._config.action_timeout)
        except TimeoutError:
            log.warning("esl.music_restart_unanswered", call_id=call_id)

    def _dial_after_whisper(self, call_id: str, then_dial: DialLegB) -> None:
        """FreeSWITCH has no dialplan step to chain here: the adapter starts
        the bridge itself the moment the whisper's PLAYBACK_STOP arrives."""
        async def dial() -> None:
            try:
                await self.execute(call_id, then_dial)
            except (SwitchActionFailed, SwitchUnavailable) as exc:
                call = self._calls.get(call_id)
                if call is not None and call.sink is not None:
                    call.sink(CommandFailed(time.time(), "DialLegB", exc.message))
        self._spawn(dial())

    def trunk_of(self, target: str) -> str | None:
        """The gateway a number is dialed through; SIP URIs (a sofia profile)
        and the switch's own users use no gateway."""
        if target_of(target).kind is not TargetKind.NUMBER:
            return None
        return number_gateway(target, self._config)

    async def busy_targets(self, targets: Sequence[str]) -> set[str]:
        return await queries.busy_targets(self._send, targets)

    async def active_channels(self) -> list[str]:
        return await queries.active_channels(self._send)

    # ------------------------------------------------------------ connection

    async def _open(self) -> None:
        """Connect, log in, subscribe and set the filters, within connect_timeout."""
        config = self._config
        timeout = config.connect_timeout
        self._generation += 1
        generation = self._generation
        setup = subscription(self._format, [(call_id, self._filtered_channels(call_id))
                                            for call_id in self._translator.watched()])
        conn = await self._link.open(config.host, config.port, config.password, timeout, setup,
                                     functools.partial(self._deliver, generation, self._on_frame),
                                     functools.partial(self._deliver, generation, self._on_lost))
        if self._lost_generation == generation or generation != self._generation:
            self._spawn(self._link.abort(conn))
            raise SwitchUnavailable(f"FreeSWITCH at {self.address} closed the connection "
                                    "right after login", address=self.address)
        self._conn = conn
        self.connected = True
        log.info("esl.connected", address=self.address, events=self._format)

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

    # ------------------------------------------------------------ commands

    async def _send(self, esl: EslCommand) -> Reply:
        return (await self._send_together([esl]))[0]

    async def _send_together(self, commands: list[EslCommand]) -> list[Reply]:
        """``commands`` in one write (see ``queries.send_all``)."""
        conn = self._conn
        if conn is None or not self.connected:
            raise SwitchUnavailable(f"not connected to FreeSWITCH at {self.address}"
                                    + ("; reconnecting" if self._reconnect else ""),
                                    address=self.address)
        return await self._link.send_together(conn, commands, self._config.action_timeout)

    def _defer(self, commands: list[EslCommand]) -> None:
        for esl in commands:
            if len(self._deferred) < MAX_DEFERRED:
                self._deferred[esl.wire] = esl

    async def _flush_deferred(self) -> None:
        deferred, self._deferred = list(self._deferred.values()), {}
        if deferred:
            log.info("esl.deferred_hangups", count=len(deferred))
            await send_quietly(self._send, deferred)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            return None
        task = loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------ from the switch

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
        incoming = incoming_call(event, now)
        if incoming is None:
            self._dispatch(self._translator.translate(event, now))
        else:
            self._spawn(self._announce(incoming))

    async def _announce(self, incoming: IncomingCall) -> None:
        """To on_incoming; unclaimed, the dialplan's own hangup ends it."""
        if self.on_incoming is None:
            log.warning("esl.incoming_unhandled", channel=incoming.channel)
            return
        try:
            await self.on_incoming(incoming)
        except Exception:
            log.exception("esl.incoming_failed", channel=incoming.channel)

    def _dispatch(self, routed_events: list[Routed]) -> None:
        for routed in routed_events:
            call_id, ev = routed.call_id, routed.event
            if isinstance(ev, WaitForKey):
                self._start_confirm_timer(call_id, ev)
                continue
            call = self._calls.get(call_id)
            then_dial = None
            if call is not None and isinstance(ev, (WhisperFinished, LegEnded)):
                then_dial, call.then_dial = call.then_dial, None
            if then_dial is not None and isinstance(ev, WhisperFinished):
                self._dial_after_whisper(call_id, then_dial)
            if isinstance(ev, LegAnswered) and ev.leg is Leg.B:
                self._answered(call_id, ev.channel)
            elif isinstance(ev, AnswerDeclined):
                self._declined(call_id)
            elif isinstance(ev, AnswerAccepted) and call is not None:
                call.cancel_confirm_timer()
            elif isinstance(ev, DialFinished) and call is not None and call.hold_music:
                call.music_restart = self._spawn(send_quietly(
                    self._send, [restart_music(call_id, self._translator.a_channel(call_id))]))
            if call is not None and call.sink is not None:
                call.sink(ev)

    def _answered(self, call_id: str, channel: str) -> None:
        """With a whisper or confirm key on answer, the first to answer wins:
        the attempt's other targets stop ringing now (FreeSWITCH would let
        them ring on, and bridge whichever confirms first)."""
        if not self._translator.answer_steps(call_id):
            return
        siblings = self._translator.siblings(call_id, channel)
        if siblings:
            self._spawn(send_quietly(self._send, [
                EslCommand(Verb.API, f"uuid_kill {c} {LOST_RACE_CAUSE}", missing_ok=True)
                for c in siblings]))

    def _declined(self, call_id: str) -> None:
        """Leg B did not confirm: hang it up, so that the dial ends (and
        FreeSWITCH does not play the prompt again)."""
        call = self._calls.get(call_id)
        if call is not None:
            call.cancel_confirm_timer()
        channel = self._translator.declined_channel(call_id)
        if channel is not None:
            self._spawn(send_quietly(self._send, [
                EslCommand(Verb.API, f"uuid_kill {channel} {HANGUP_CAUSE}", missing_ok=True)]))

    def _start_confirm_timer(self, call_id: str, ev: WaitForKey) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._call(call_id).start_confirm_timer(
            loop, ev.seconds + CONFIRM_GRACE,
            functools.partial(self._confirm_expired, call_id, ev.channel))

    def _confirm_expired(self, call_id: str, channel: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.confirm_timer = None
        self._dispatch(self._translator.confirm_expired(call_id, channel, time.time()))

    def _on_lost(self, reason: str) -> None:
        self._lost_generation = self._generation
        was_connected, self.connected = self.connected, False
        self._conn = None
        if self._closing or not was_connected:
            return
        log.warning("esl.disconnected", address=self.address, reason=reason)
        self._link.fail_pending(SwitchActionFailed(
            f"lost the connection to FreeSWITCH at {self.address} ({reason})"))
        # The calls we follow can no longer be followed: they end now, and
        # their channels are hung up as soon as the link is back.
        now = time.time()
        for call_id in self._translator.watched():
            call = self._calls.get(call_id)
            if call is not None:
                call.cancel_confirm_timer()
            self._defer(encode(call_id, HangupLegs((Leg.A, Leg.B)), self._config,
                               b_channels=self._translator.b_channels(call_id),
                               a_channel=self._translator.a_channel(call_id)))
            if call is not None and call.sink is not None:
                call.sink(SwitchLost(now, f"lost the connection to FreeSWITCH ({reason})"))
        if self._reconnect is None or self._reconnect.done():
            loop = self._loop
            if loop is not None and not loop.is_closed():
                self._reconnect = loop.create_task(self._reconnect_loop(),
                                                   name="freeswitch-reconnect")
