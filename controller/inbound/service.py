"""A call that arrives at the switch for the controller (its inbound
dialplan), from the backend's ``on_incoming`` to its first actions.

* A number the controller does not answer is refused as ``[inbound]`` says:
  a short message as early media, or nothing; then turned away unanswered, with
  the configured Q.850 cause, and logged. It is never left ringing.
* A call that arrives while the daemon cannot take one more (draining, or
  over ``api.max_calls_per_second`` / ``api.max_active_calls``) is refused
  unanswered with cause 34 (no circuit available: SIP 503), like any overload.
* Otherwise the call gets an id and is started by the call service (stored,
  claimed on the switch, followed as a LiveCall: ``CallService.start_live``). Then, in the background
  (the backend's event loop is never held up by a URL): with the number's
  ``incoming_url``, ``call.incoming`` is POSTed there within
  ``incoming_timeout``. Its actions are queued; a 204 or empty answer
  leaves the call waiting (ringing) for actions over the API; anything else
  queues ``fallback_actions`` (none: the call is hung up), and the call's
  record says why. Without a URL, the number's ``actions`` are queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from controller.actions.prepare import ActionContext, ActionPreparer
from controller.actions.spec import Action, HangupAction
from controller.backends.base import Backend, EventSink, IncomingCall
from controller.calls.live import DEFAULT_IDLE_TIMEOUT, Inbound
from controller.calls.request import CallRequest
from controller.config import Config
from controller.core.events import ActionsFetchFailed, ActionsQueued, Event
from controller.core.plan import PreparedAction
from controller.errors import CallConnectError, InvalidRequest, SwitchError
from controller.ids import new_call_id
from controller.inbound.numbers import Number, check_actions
from controller.inbound.registry import NumberRegistry
from controller.numbers import normalize_number, parse_target
from controller.store import IdempotencyKey
from controller.tts import WhisperRenderer

log = structlog.get_logger(__name__)

# Q.850 cause 34, no circuit/channel available: SIP 503, "try again later".
OVERLOADED_CAUSE = 34
# Q.850 cause 41, temporary failure (SIP 503): the call could not be started.
NOT_STARTED_CAUSE = 41
ANONYMOUS = "anonymous"
_MAX_CALLER_CHARS = 128
# Most characters of a reason kept as a hangup action's reason.
_MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class InboundCall:
    """A call taken on one of the controller's numbers, before it starts.
    ``caller`` is normalised: an E.164 number, a sip: URI, the digits of an
    extension, or "anonymous"; ``number`` is the number dialed."""

    call_id: str
    incoming: IncomingCall
    caller: str
    number: Number

    def request(self) -> CallRequest:
        """The call as the store keeps it: from the caller, with the
        number's webhook settings and metadata. Its actions come after it
        is claimed (queued by :class:`InboundCalls`), so its list is empty:
        a single-leg call's request, which the store's copy is read back as
        after a restart. It is made by the controller from settings already
        checked, not read from outside."""
        settings = self.number.settings
        return CallRequest.model_construct(
            leg_a=self.caller, leg_b=None, actions=[],
            webhook_url=settings.webhook_url or None,
            webhook_events=list(settings.webhook_events), metadata=dict(settings.metadata))


class StartedCall(Protocol):
    @property
    def events(self) -> asyncio.Queue[Event]:
        """Where the call's events go: the core takes them in turn."""


class LiveCalls(Protocol):
    """The call service's side of an inbound call (CallService)."""

    async def start_live(self, request: CallRequest, *, call_id: str | None = None,
                         idempotency_key: IdempotencyKey | None = None,
                         inbound: Inbound | None = None, idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
                         source: str = "request") -> StartedCall:
        """Inbound: store the call, claim it on the switch and follow it as
        an inbound LiveCall, queueing ``request.actions`` (none here)."""


class ActionSource(Protocol):
    """Asks a URL for a call's actions (the action fetcher)."""

    async def fetch(self, url: str, kind: str, payload: dict[str, Any],
                    timeout: float | None = None) -> list[Action] | None:
        """The actions ``url`` answers, None for none (204 or an empty body);
        a CallConnectError says why there are none to use."""


def caller_of(text: str, region: str) -> str:
    """The caller as the switch gave it (never trusted), normalised: an
    E.164 number, a sip: URI, an extension's digits, or "anonymous"."""
    text = text.strip()[:_MAX_CALLER_CHARS]
    if not text:
        return ANONYMOUS
    try:
        return normalize_number(text, region, "caller")
    except InvalidRequest:
        pass
    if text.startswith(("sip:", "sips:")):
        try:
            return parse_target(text, region, "caller").value
        except InvalidRequest:
            return ANONYMOUS
    digits = text.removeprefix("+")
    return text if digits.isascii() and digits.isdigit() and 3 <= len(digits) <= 20 else ANONYMOUS


def incoming_payload(call: InboundCall) -> dict[str, Any]:
    """The data of ``call.incoming``."""
    return {"call_uuid": call.call_id, "from": call.caller, "to": call.number.number,
            "direction": "inbound", "at": call.incoming.at,
            "metadata": call.number.settings.metadata}


class InboundCalls:
    def __init__(self, config: Config, numbers: NumberRegistry, backend: Backend,
                 renderer: WhisperRenderer, preparer: ActionPreparer, calls: LiveCalls,
                 fetcher: ActionSource, admit: Callable[[], str | None]) -> None:
        """``admit``: None when one more call may start now, else why not."""
        self.config = config
        self.numbers = numbers
        self.backend = backend
        self.renderer = renderer
        self.preparer = preparer
        self.calls = calls
        self.fetcher = fetcher
        self.admit = admit
        self._first_actions: set[asyncio.Task[None]] = set()

    def attach(self) -> None:
        """Be told of every call that arrives at the switch for the controller."""
        self.backend.on_incoming = self.on_incoming

    async def stop(self) -> None:
        for task in list(self._first_actions):
            task.cancel()
        await asyncio.gather(*self._first_actions, return_exceptions=True)

    async def on_incoming(self, incoming: IncomingCall) -> None:
        number = self.numbers.dialed(incoming.dialed)
        if number is None:
            await self._refuse_unknown(incoming)
            return
        refusal = self.admit()
        if refusal is not None:
            log.warning("inbound.refused_overload", channel=incoming.channel, to=number.number,
                        reason=refusal, cause=OVERLOADED_CAUSE)
            await self._refuse(incoming, None, OVERLOADED_CAUSE)
            return
        call = InboundCall(new_call_id(), incoming,
                           caller_of(incoming.caller, self.config.calls.default_region), number)
        try:
            started = await self.calls.start_live(
                call.request(), call_id=call.call_id,
                inbound=Inbound(incoming, call.caller, number.number),
                idle_timeout=number.settings.idle_timeout, source="number")
        except CallConnectError as exc:  # the store failed: the call cannot be followed
            log.error("inbound.not_started", call_id=call.call_id, to=number.number,
                      error_id=exc.error_id, error=exc.message)
            await self._refuse(incoming, None, NOT_STARTED_CAUSE)
            return
        sink = started.events.put_nowait
        log.info("inbound.taken", call_id=call.call_id, caller=call.caller, to=number.number,
                 incoming_url=bool(number.settings.incoming_url))
        task = asyncio.create_task(self._queue_first_actions(call, sink),
                                   name=f"inbound-{call.call_id}")
        self._first_actions.add(task)
        task.add_done_callback(self._first_actions.discard)

    # ------------------------------------------------------------ refusals

    async def _refuse_unknown(self, incoming: IncomingCall) -> None:
        settings = self.config.inbound
        audio = None
        if settings.unknown_number == "message":
            try:
                rendered = await self.renderer.render(settings.unknown_number_message,
                                                      "inbound.unknown_number_message")
                audio = self.config.whisper_path_on_switch(rendered.path)
            except CallConnectError as exc:  # the speech tools: refused without the message
                log.error("inbound.message_not_rendered", error_id=exc.error_id,
                          error=exc.message)
        log.warning("inbound.unknown_number", channel=incoming.channel,
                    dialed=incoming.dialed[:_MAX_CALLER_CHARS],
                    caller=caller_of(incoming.caller, self.config.calls.default_region),
                    refused_with=settings.unknown_number, cause=settings.unknown_number_cause)
        await self._refuse(incoming, audio, settings.unknown_number_cause)

    async def _refuse(self, incoming: IncomingCall, audio: str | None, cause: int) -> None:
        try:
            await self.backend.refuse(incoming, audio, cause)
        except SwitchError as exc:  # the dialplan hangs it up by itself meanwhile
            log.error("inbound.refuse_failed", channel=incoming.channel, error=exc.message)

    # ------------------------------------------------------------ first actions

    async def _queue_first_actions(self, call: InboundCall, sink: EventSink) -> None:
        settings = call.number.settings
        if not settings.incoming_url:
            await self._queue(call, sink, check_actions(settings.actions, "actions"), "number",
                              "actions")
            return
        try:
            actions = await self.fetcher.fetch(settings.incoming_url, "incoming",
                                               incoming_payload(call), settings.incoming_timeout)
            # Prepared here, so an action that cannot run falls back as a bad answer does.
            prepared = await self._prepare(call, actions or [], "actions")
        except CallConnectError as exc:
            log.warning("inbound.incoming_url_failed", call_id=call.call_id, error=exc.message)
            sink(ActionsFetchFailed(time.time(), "", exc.message))
            fallback = check_actions(settings.fallback_actions, "fallback_actions")
            await self._queue(call, sink, fallback, "fallback", "fallback_actions",
                              why=f"incoming_url failed: {exc.message}")
            return
        # None (204, empty): an empty list still starts the call's wait for actions.
        sink(ActionsQueued(time.time(), prepared, source="incoming_url"))

    async def _queue(self, call: InboundCall, sink: EventSink, actions: Sequence[Action],
                     source: str, field: str, why: str = "") -> None:
        """Queue the number's own actions; if they cannot run (a group was
        deleted since, the speech tools fail), or there are none to fall
        back on, the call is hung up with the reason."""
        try:
            prepared = await self._prepare(call, actions, field)
        except CallConnectError as exc:
            log.error("inbound.actions_cannot_run", call_id=call.call_id, source=source,
                      error=exc.message)
            prepared, why = (), f"the number's {field} cannot run: {exc.message}"
        if not prepared:
            hangup = HangupAction(type="hangup", reason=(why or "no actions")[:_MAX_REASON_CHARS])
            prepared = await self._prepare(call, [hangup], field)
        sink(ActionsQueued(time.time(), prepared, source=source))

    async def _prepare(self, call: InboundCall, actions: Sequence[Action],
                       field: str) -> tuple[PreparedAction, ...]:
        context = ActionContext(call.call_id, leg_a=call.caller, caller=call.caller)
        return tuple(await self.preparer.prepare(actions, context, field))
