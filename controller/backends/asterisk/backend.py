"""The Asterisk backend: an adapter between the call core and AMI (panoramisk).

Wire events go through :class:`AmiEventTranslator` to the call that owns the
channel; core commands go through :func:`encode` to AMI actions. Every action
waits for Asterisk's answer at most ``action_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog
from panoramisk import Manager
from panoramisk.message import Message

from controller.backends.base import EventSink
from controller.calls.core import (
    CallState,
    Command,
    DialFinished,
    DialLegB,
    EndedWhileAway,
    Event,
    HangupLegs,
    Leg,
    LegAnswered,
    LegCreated,
    PlayWhisper,
    WhisperFinished,
)
from controller.config import AsteriskConfig
from controller.errors import SwitchActionFailed, SwitchUnavailable
from controller.numbers import TargetKind, target_of

from .actions import CONTEXT_DIAL, CONTEXT_HOLD, dial_string, dial_strings, encode
from .events import AmiEventTranslator, leg_a_channel_id

log = structlog.get_logger(__name__)

# Only the event classes the translator reads: Asterisk sends nothing else.
EVENT_CLASSES = "call,user,system"
# And of those, only the events it reads: Asterisk formats and sends no others
# (AMI event filter, a regex over the event text; re-applied on every login).
EVENT_FILTER = ("Event: (Newchannel|Newstate|DialBegin|DialState|DialEnd|UserEvent|"
                "OriginateResponse|HangupRequest|Hangup|MixMonitorStart|FullyBooted|Shutdown)"
                "[[:space:]]")
# AstDB family where the dialplan keeps each call's outcome (callconnect-outcome).
OUTCOME_FAMILY = "callconnect"


class AsteriskBackend:
    name = "asterisk"

    def __init__(self, config: AsteriskConfig) -> None:
        self._config = config
        self._translator = AmiEventTranslator()
        self._sinks: dict[str, EventSink] = {}
        self._manager: Manager | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.connected = False
        self.observe_event_lag: Callable[[float], None] | None = None

    @property
    def address(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    async def connect(self) -> None:
        manager = Manager(
            loop=asyncio.get_running_loop(),
            host=self._config.host,
            port=self._config.port,
            username=self._config.username,
            secret=self._config.secret,
            events=EVENT_CLASSES,
            ping_delay=10,
            ping_interval=10,
            reconnect_timeout=2,
            on_disconnect=self._on_disconnect,
            on_login=self._on_login,
            log=logging.getLogger("callconnect.ami.panoramisk"),
        )
        manager.register_event("*", self._on_event)
        self._manager = manager
        timeout = self._config.connect_timeout
        try:
            await asyncio.wait_for(manager.connect(), timeout)
            login = manager.authenticated_future
            response = await asyncio.wait_for(login, timeout) if login is not None else None
        except (TimeoutError, OSError) as exc:
            manager.close()
            raise SwitchUnavailable(
                f"cannot reach Asterisk AMI at {self.address} ({exc or 'timed out'}); "
                "is Asterisk running and is manager.conf enabled on that address? "
                "(lab: sudo make lab-up)",
                address=self.address,
            ) from exc
        if response is None or not response.success:
            manager.close()
            raise SwitchUnavailable(
                f"Asterisk AMI at {self.address} refused login for user "
                f"{self._config.username!r}; check [asterisk] username and secret "
                "(or CALLCONNECT_ASTERISK_SECRET) against manager.conf",
                address=self.address,
            )
        self.connected = True
        log.info("ami.connected", address=self.address, username=self._config.username)

    async def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
        self.connected = False

    def watch(self, call_id: str, sink: EventSink) -> None:
        self._translator.watch(call_id)
        self._sinks[call_id] = sink

    def forget(self, call_id: str) -> None:
        self._translator.forget(call_id)
        self._sinks.pop(call_id, None)
        if self.connected:
            self._spawn(self._forget_outcome(call_id))

    async def _forget_outcome(self, call_id: str) -> None:
        try:
            await self._send({"Action": "DBDel", "Family": OUTCOME_FAMILY, "Key": call_id})
        except (SwitchActionFailed, SwitchUnavailable) as exc:
            log.warning("ami.outcome_not_deleted", call_id=call_id, error=exc.message)

    async def reattach(self, call_id: str, state: str, sink: EventSink) -> list[Event]:
        self.watch(call_id, sink)
        now = time.time()
        channels = await self._channels()
        a_id = leg_a_channel_id(call_id)
        leg_a = next((c for c in channels if c.get("Uniqueid") == a_id), None)
        if leg_a is None:
            return [await self._outcome_kept(call_id, now)]
        events: list[Event] = []
        core_state = CallState(state)
        leg_b = next((c for c in channels
                      if c.get("Linkedid") == a_id and c.get("Uniqueid") != a_id), None)
        if core_state is CallState.WHISPERING and (
                leg_b is not None or leg_a.get("Context") in (CONTEXT_DIAL, CONTEXT_HOLD)):
            # The whisper ended meanwhile and the switch went on to dial B.
            events.append(WhisperFinished(now, True))
            core_state = CallState.DIALING_B
        if leg_b is not None:
            self._translator.adopt(call_id, Leg.B, leg_b["Uniqueid"])
            if core_state is CallState.DIALING_B:
                events.append(LegCreated(now, Leg.B, leg_b["Uniqueid"]))
            if leg_b.get("ChannelStateDesc") == "Up" and core_state in (
                    CallState.DIALING_B, CallState.RINGING_B):
                events.append(LegAnswered(now, Leg.B, leg_b["Uniqueid"]))
        if leg_a.get("Context") == CONTEXT_HOLD:
            # A step ended while we were away and A now waits for the next.
            if core_state in (CallState.DIALING_A, CallState.RINGING_A):
                events.append(LegAnswered(now, Leg.A))
            elif core_state in (CallState.DIALING_B, CallState.RINGING_B) and leg_b is None:
                status = await self._getvar(a_id, "DIALSTATUS")
                events.append(DialFinished(now, status or "UNKNOWN"))
        return events

    async def _outcome_kept(self, call_id: str, now: float) -> EndedWhileAway:
        """What the callconnect-outcome hangup handler kept in AstDB."""
        responses = await self._send_list({"Action": "DBGet", "Family": OUTCOME_FAMILY,
                                           "Key": call_id})
        value = next((m.get("Val", "") for m in responses if m.get("Event") == "DBGetResponse"), "")
        parts = value.split(":") if value else []
        if len(parts) != 4:
            return EndedWhileAway(now, None, False, None, None)
        ended, cause, dial_status, talked = parts
        return EndedWhileAway(
            at=float(ended) if ended.isdigit() else now,
            a_cause=int(cause) if cause.isdigit() else None,
            a_answered=True,  # the handler is set only once A answered
            dial_status=dial_status or None,
            talk_seconds=float(talked) if talked.isdigit() else None,
        )

    async def _getvar(self, channel: str, name: str) -> str | None:
        response = await self._send({"Action": "Getvar", "Channel": channel, "Variable": name})
        value = response.get("Value", "") if response.success else ""
        return str(value) or None

    async def _channels(self) -> list[Message]:
        responses = await self._send_list({"Action": "CoreShowChannels"})
        return [m for m in responses if m.get("Event") == "CoreShowChannel"]

    async def _send_list(self, action: dict[str, str]) -> list[Message]:
        """An action answered by an event list (panoramisk gives a lone
        message when Asterisk answers with an error instead)."""
        responses = await self._send(action, as_list=True)
        return [responses] if isinstance(responses, Message) else list(responses)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run in the background, holding a reference so it is not collected."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def busy_targets(self, targets: Sequence[str]) -> set[str]:
        """Endpoints the switch reports in use, ringing or unavailable (calls
        placed by other means count); numbers and URIs it cannot tell."""
        busy = set()
        for target in targets:
            if target_of(target).kind is not TargetKind.ENDPOINT:
                continue
            device = dial_string(target_of(target), self._config)
            response = await self._send({"Action": "Getvar",
                                         "Variable": f"DEVICE_STATE({device})"})
            state = str(response.get("Value", "")) if response.success else ""
            if state not in ("NOT_INUSE", "UNKNOWN", ""):
                busy.add(target)
        return busy

    async def execute(self, call_id: str, command: Command) -> None:
        dial = command.then_dial if isinstance(command, PlayWhisper) else command
        if isinstance(dial, DialLegB):
            self._translator.expect_dial(call_id, dial_strings(dial.targets, self._config))
        b_channel = self._translator.channel_of(call_id, Leg.B)
        for action in encode(call_id, command, self._config, b_channel):
            response = await self._send(action)
            if response.success:
                continue
            message = response.get("Message", "") or "no reason given"
            if isinstance(command, HangupLegs) and "No such channel" in message:
                continue  # it hung up by itself meanwhile: that is what we wanted
            raise SwitchActionFailed(
                f"Asterisk refused {action['Action']}: {message}",
                action=action["Action"], call_id=call_id,
            )

    async def active_channels(self) -> list[str]:
        return [m["Channel"] for m in await self._channels()]

    async def _send(self, action: dict[str, str], as_list: bool = False) -> Any:
        manager = self._manager
        if manager is None or not self.connected:
            raise SwitchUnavailable(f"not connected to Asterisk AMI at {self.address}",
                                    address=self.address)
        try:
            return await asyncio.wait_for(manager.send_action(action, as_list=as_list),
                                          self._config.action_timeout)
        except TimeoutError as exc:
            raise SwitchActionFailed(
                f"Asterisk did not answer {action['Action']} within "
                f"{self._config.action_timeout:g} s", action=action["Action"],
            ) from exc

    def _on_event(self, manager: Manager, message: Message) -> None:
        now = time.time()
        if self.observe_event_lag is not None and "Timestamp" in message:
            with contextlib.suppress(ValueError):  # the translator logs malformed events
                self.observe_event_lag(now - float(message["Timestamp"]))
        for routed in self._translator.translate(message, now):
            sink = self._sinks.get(routed.call_id)
            if sink is not None:
                sink(routed.event)

    def _on_login(self, manager: Manager) -> None:
        self.connected = True
        self._spawn(self._filter_events())

    async def _filter_events(self) -> None:
        try:
            await self._send({"Action": "Filter", "Operation": "Add", "Filter": EVENT_FILTER})
        except (SwitchActionFailed, SwitchUnavailable) as exc:
            log.warning("ami.filter_not_set", error=exc.message)

    def _on_disconnect(self, manager: Manager, exc: Exception | None) -> None:
        self.connected = False
        log.warning("ami.disconnected", address=self.address, error=str(exc) if exc else None)
