"""The Asterisk backend: an adapter between the call core and AMI (panoramisk).

Wire events go through :class:`AmiEventTranslator` to the call that owns the
channel; core commands go through :func:`encode` to AMI actions. Every action
waits for Asterisk's answer at most ``action_timeout`` seconds.

The connection is the backend's own business: a Ping every ``ping_interval``
seconds must be answered within ``ping_timeout`` (a link that went silent
without a FIN is dropped), and a lost link is reopened with backoff as a new
connection, after which ``on_reconnect`` is told so the live calls can be
looked at again. An action in flight when the link drops fails at once and is
never sent again: a resent Originate would dial someone twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog
from panoramisk import Manager
from panoramisk.message import Message

from controller.backends.base import RECONNECT_DELAYS, EventSink, IncomingCall
from controller.config import AsteriskConfig
from controller.core.commands import Command, DialLegB, HangupLegs, PlayWhisper
from controller.core.events import Event, LegCreated, LegRinging
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed, SwitchUnavailable
from controller.numbers import TargetKind, target_of

from . import reattach
from .actions import claim_actions, dial_string, dial_strings, encode, refuse_actions, trunk_of
from .events import AmiEventTranslator, Routed, leg_a_channel_id
from .forget import FORGET_EVERY, forget_action, forget_batches, is_call_id
from .protocol import AmiManager, AmiProtocol
from .redirects import RedirectGate

log = structlog.get_logger(__name__)

# Only the event classes the backend reads: Asterisk sends nothing else. The
# AMI account's eventfilter (dialplans/asterisk/manager_callconnect.conf) narrows
# them to the events it reads; the Filter action would need the `system` class.
# `dialplan`: the Newexten of a wait, which tells that a Redirect is safe (transit.py).
EVENT_CLASSES = "call,user,dialplan"
# AstDB family where the dialplan keeps each call's outcome (callconnect-outcome).
OUTCOME_FAMILY = "callconnect"
# Asterisk's answer to a Redirect while the channel is still leaving for the
# previous one (a claim's hold, then at once the first step): the async goto
# is carried out within milliseconds, so the Redirect is sent again.
REDIRECT_PENDING = "Redirect failed, channel not up."
REDIRECT_RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2)  # seconds; a hung-up channel still fails
# Asterisk's answer when the context an action names has no such extension:
# for Originate it means the callconnect dialplan is not loaded.
NO_EXTENSION = "Extension does not exist."


class _Connection(AmiManager):
    """One AMI connection. panoramisk's Manager would reconnect by itself at a
    fixed pace, resend the actions that were waiting for an answer, and ping
    without waiting for the pong; the backend does all three its own way."""

    pinger: asyncio.TimerHandle | None

    def connection_made(self, connecting: asyncio.Future[Any]) -> None:
        if connecting.cancelled() or connecting.exception() is not None:
            return  # connect() reports it
        super().connection_made(connecting)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None
        self.awaiting_actions.clear()
        self.loop.call_soon(self.on_disconnect, self, exc)

    def ping(self) -> None:
        """The backend's heartbeat waits for each answer instead."""


class AsteriskBackend:
    name = "asterisk"

    def __init__(self, config: AsteriskConfig, lab: bool = False) -> None:
        """``lab``: the config is the lab's, so errors may suggest its commands."""
        self._config = config
        self._lab = lab
        self._translator = AmiEventTranslator()
        self._redirects = RedirectGate(config.action_timeout)
        self._sinks: dict[str, EventSink] = {}
        self._manager: Manager | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._reconnecting: asyncio.Future[None] | None = None
        self._deferred_hangups: list[str] = []
        # Ended calls whose kept outcome is still to be deleted (see forget.py).
        self._outcomes_to_forget: list[str] = []
        self._forgetting: asyncio.Task[None] | None = None
        # Incoming channels seen after a restart: uniqueid -> its CC_CALL_ID.
        self._claimed_channels: dict[str, str] = {}
        self._closing = False
        self.connected = False
        self.reconnects = 0
        self.on_incoming: Callable[[IncomingCall], Awaitable[None]] | None = None
        self.observe_event_lag: Callable[[float], None] | None = None
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None

    @property
    def address(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    async def connect(self) -> None:
        """Open the first connection; SwitchUnavailable says why it failed."""
        self._closing = False
        await self._open()

    async def _open(self) -> None:
        manager = _Connection(
            loop=asyncio.get_running_loop(),
            host=self._config.host,
            port=self._config.port,
            username=self._config.username,
            secret=self._config.secret,
            events=EVENT_CLASSES,
            protocol_factory=AmiProtocol,
            on_disconnect=self._on_disconnect,
            log=logging.getLogger("callconnect.ami.panoramisk"),
        )
        manager.register_event("*", self._on_event)
        timeout = self._config.connect_timeout
        try:
            await asyncio.wait_for(manager.connect(), timeout)
            login = manager.authenticated_future
            response = await asyncio.wait_for(login, timeout) if login is not None else None
        except (TimeoutError, OSError) as exc:
            manager.close()
            raise SwitchUnavailable(
                f"cannot reach Asterisk AMI at {self.address} ({exc or 'timed out'}); "
                "is Asterisk running and is manager.conf enabled on that address?"
                + (" (lab: sudo make lab-up)" if self._lab else ""),
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
        self._manager = manager
        self.connected = True
        log.info("ami.connected", address=self.address, username=self._config.username)
        self._spawn(self._heartbeat(manager))

    async def close(self) -> None:
        if self.connected and self._outcomes_to_forget:
            await self._forget_outcomes(after=0)
        if self._forgetting is not None:
            self._forgetting.cancel()
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._manager is not None:
            self._manager.close()
        self.connected = False

    async def _heartbeat(self, manager: Manager) -> None:
        """Ping; an unanswered ping means the link is dead even without a FIN."""
        while manager is self._manager and self.connected:
            await asyncio.sleep(self._config.ping_interval)
            if manager is not self._manager or not self.connected:
                return
            try:
                await self._send({"Action": "Ping"}, timeout=self._config.ping_timeout)
            except SwitchActionFailed:
                log.warning("ami.ping_unanswered", address=self.address,
                            timeout=self._config.ping_timeout)
                if manager.protocol is not None and manager.protocol.transport is not None:
                    manager.protocol.transport.abort()  # connection_lost follows
                return
            except SwitchUnavailable:
                return

    def _on_disconnect(self, manager: Manager, exc: Exception | None) -> None:
        if manager is not self._manager or not self.connected:
            return
        self.connected = False
        for pending in list(self._in_flight):
            if not pending.done():
                pending.set_exception(ConnectionResetError("the AMI connection was lost"))
        self._redirects.reset()
        log.warning("ami.disconnected", address=self.address, error=str(exc) if exc else None)
        if not self._closing and (self._reconnecting is None or self._reconnecting.done()):
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            attempt += 1
            await asyncio.sleep(delay)
            try:
                await self._open()
            except SwitchUnavailable as exc:
                log.warning("ami.reconnect_failed", error=exc.message, attempt=attempt,
                            retry_in=RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
                continue
            self.reconnects += 1
            log.info("ami.reconnected", address=self.address, attempts=attempt)
            await self._hang_up_deferred()
            if self._outcomes_to_forget:
                self._forgetting = asyncio.ensure_future(self._forget_outcomes(after=0))
            if self.on_reconnect is not None:
                await self.on_reconnect()
            return

    async def _hang_up_deferred(self) -> None:
        """Channels of calls that ended while the link was down."""
        channels, self._deferred_hangups = self._deferred_hangups, []
        for channel in channels:
            try:
                await self._send({"Action": "Hangup", "Channel": channel, "Cause": "16"})
            except (SwitchActionFailed, SwitchUnavailable) as exc:
                log.warning("ami.deferred_hangup_failed", channel=channel, error=exc.message)

    def watch(self, call_id: str, sink: EventSink) -> None:
        self._translator.watch(call_id)
        self._sinks[call_id] = sink

    def forget(self, call_id: str) -> None:
        self._translator.forget(call_id)
        self._sinks.pop(call_id, None)
        if not is_call_id(call_id):
            log.warning("ami.outcome_not_deleted", call_id=call_id[:70], error="not a call id")
            return
        self._outcomes_to_forget.append(call_id)
        if self.connected and (self._forgetting is None or self._forgetting.done()):
            self._forgetting = asyncio.ensure_future(self._forget_outcomes(FORGET_EVERY))

    async def _forget_outcomes(self, after: float) -> None:
        """Delete the gathered outcomes, ``after`` seconds from the first. Those
        not sent (the link is down) wait for the next connection."""
        await asyncio.sleep(after)
        call_ids, self._outcomes_to_forget = self._outcomes_to_forget, []
        for batch in forget_batches(call_ids):
            try:
                await self._send(forget_action(batch))
            except SwitchUnavailable:
                self._outcomes_to_forget += batch
            except SwitchActionFailed as exc:
                log.warning("ami.outcome_not_deleted", calls=len(batch), error=exc.message)

    async def reattach(self, call_id: str, state: str, sink: EventSink,
                       then_dial: DialLegB | None = None) -> list[Event]:
        # then_dial is not needed: the dialplan dials leg B after the whisper itself.
        # Events that come while the switch is read wait until the translator
        # knows the call's channels (see held.py).
        self.watch(call_id, sink)
        self._translator.hold()
        try:
            found = await reattach.missed(self, call_id, state, time.time(),
                                          await self._channels(), self._claimed_channels)
            if found.leg_a is not None and found.leg_a != leg_a_channel_id(call_id):
                self._translator.claim(call_id, found.leg_a)
            if found.leg_b is not None:
                self._translator.adopt(call_id, Leg.B, found.leg_b)
        finally:
            self._deliver(self._translator.release())
        return found.events

    async def kept_outcome(self, call_id: str) -> str:
        """The outcome callconnect-outcome kept in AstDB for the call, "" if none."""
        responses = await self._send_list({"Action": "DBGet", "Family": OUTCOME_FAMILY,
                                           "Key": call_id})
        return next((str(m.get("Val", "")) for m in responses
                     if m.get("Event") == "DBGetResponse"), "")

    async def getvar(self, channel: str, name: str) -> str | None:
        return await self._getvar(channel, name)

    async def _getvar(self, channel: str, name: str) -> str | None:
        response = await self._send({"Action": "Getvar", "Channel": channel, "Variable": name})
        value = response.get("Value", "") if response.success else ""
        return str(value) or None

    async def _channels(self) -> list[Message]:
        responses = await self._send_list({"Action": "CoreShowChannels"})
        return [m for m in responses if m.get("Event") == "CoreShowChannel"]

    async def _send_list(self, action: dict[str, str]) -> list[Message]:
        """An action answered by an event list, or by a lone error. panoramisk
        tells the two apart by the answer (as_list=True would wait forever on
        an error, such as DBGet's "Database entry not found")."""
        responses = await self._send(action, as_list=None)
        return [responses] if isinstance(responses, Message) else list(responses)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run in the background, holding a reference so it is not collected."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def trunk_of(self, target: str) -> str | None:
        """The PJSIP endpoint a call to this target leaves through."""
        return trunk_of(target_of(target), self._config)

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

    async def claim(self, incoming: IncomingCall, call_id: str, sink: EventSink) -> None:
        # Routed to the call before the first action, so no event is missed;
        # the channel was created and rang before anyone knew its call.
        self._translator.claim(call_id, incoming.channel)
        self._sinks[call_id] = sink
        await self._run(claim_actions(incoming.channel, call_id), call_id)
        sink(LegCreated(incoming.at, Leg.A, incoming.channel))
        sink(LegRinging(incoming.at, Leg.A))

    async def refuse(self, incoming: IncomingCall, audio: str | None, cause: int) -> None:
        await self._run(refuse_actions(incoming.channel, audio, cause), "")

    async def execute(self, call_id: str, command: Command) -> None:
        dial = command.then_dial if isinstance(command, PlayWhisper) else command
        if isinstance(dial, DialLegB):
            self._translator.expect_dial(call_id, dial_strings(dial.targets, self._config))
        b_channel = self._translator.channel_of(call_id, Leg.B)
        actions = encode(call_id, command, self._config, b_channel,
                         self._translator.channel_of(call_id, Leg.A))
        if isinstance(command, HangupLegs) and not self.connected and not self._closing:
            # Hung up as soon as the link is back, in case the channels outlived it.
            self._deferred_hangups += [a["Channel"] for a in actions if a["Action"] == "Hangup"]
            return
        await self._run(actions, call_id, hangup=isinstance(command, HangupLegs))

    async def _run(self, actions: list[dict[str, str]], call_id: str,
                   hangup: bool = False) -> None:
        """Send the actions in order; SwitchActionFailed at the first refused."""
        for action in actions:
            if action["Action"] == "Redirect":
                response = await self._redirect(action)
            else:
                response = await self._send(action)
            if response.success:
                continue
            message = response.get("Message", "") or "no reason given"
            if hangup and "No such channel" in message:
                continue  # it hung up by itself meanwhile: that is what we wanted
            if action["Action"] == "Originate" and message == NO_EXTENSION:
                message += (f" ({action['Context']} is missing: load "
                            "dialplans/asterisk/extensions_callconnect.conf and reload the dialplan)")
            raise SwitchActionFailed(
                f"Asterisk refused {action['Action']}: {message}",
                action=action["Action"], call_id=call_id,
            )

    async def _redirect(self, action: dict[str, str]) -> Any:
        """A Redirect once its channel is in a wait (see redirects.py)."""
        return await self._redirects.send(action["Channel"], lambda: self._send_redirect(action))

    async def _send_redirect(self, action: dict[str, str]) -> Any:
        """Sent again while Asterisk is still carrying out the channel's last one."""
        response = await self._send(action)
        for delay in REDIRECT_RETRY_DELAYS:
            if response.success or response.get("Message") != REDIRECT_PENDING:
                break
            await asyncio.sleep(delay)
            response = await self._send(action)
        return response

    async def active_channels(self) -> list[str]:
        return [m["Channel"] for m in await self._channels()]

    async def _send(self, action: dict[str, str], as_list: bool | None = False,
                    timeout: float | None = None) -> Any:
        manager = self._manager
        if manager is None or not self.connected:
            raise SwitchUnavailable(f"not connected to Asterisk AMI at {self.address}"
                                    + ("; reconnecting" if not self._closing else ""),
                                    address=self.address)
        timeout = self._config.action_timeout if timeout is None else timeout
        answer = manager.send_action(action, as_list=as_list)
        self._in_flight.add(answer)
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError as exc:
            # Under load Asterisk answers late: the setting is the user's lever.
            raise SwitchActionFailed(
                f"Asterisk did not answer {action['Action']} within {timeout:g} s "
                "([asterisk] action_timeout)",
                action=action["Action"],
            ) from exc
        except ConnectionResetError as exc:
            raise SwitchUnavailable(
                f"lost the connection to Asterisk AMI at {self.address} while waiting for the "
                f"answer to {action['Action']}; it is not sent again", address=self.address,
                action=action["Action"],
            ) from exc
        finally:
            self._in_flight.discard(answer)

    def _on_event(self, manager: Manager, message: Message) -> None:
        try:
            self._route_event(message)
        except Exception:  # one bad event must not take the connection down
            log.exception("ami.event_failed", ami_event=str(message.get("Event", ""))[:64])

    def _route_event(self, message: Message) -> None:
        now = time.time()
        self._redirects.observe(message)
        if self.observe_event_lag is not None and "Timestamp" in message:
            # A list (the header twice) or a non-number: the translator uses its own clock.
            with contextlib.suppress(ValueError, TypeError):
                self.observe_event_lag(now - float(message["Timestamp"]))
        incoming = self._translator.incoming(message, now)
        if incoming is not None:
            self._spawn(self._tell_incoming(incoming))
            return
        self._deliver(self._translator.translate(message, now))

    def _deliver(self, routed_events: list[Routed]) -> None:
        for routed in routed_events:
            sink = self._sinks.get(routed.call_id)
            if sink is not None:
                sink(routed.event)

    async def _tell_incoming(self, incoming: IncomingCall) -> None:
        # Unclaimed, the dialplan hangs the call up by itself after a few seconds.
        if self.on_incoming is None:
            log.warning("ami.incoming.nobody_listening", channel=incoming.channel)
            return
        try:
            await self.on_incoming(incoming)
        except Exception:  # one call's failure must not reach the event loop
            log.exception("ami.incoming.failed", channel=incoming.channel)
