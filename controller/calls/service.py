"""Running calls: validation, whisper rendering, the core and the backend,
wired together for one call at a time or many.

Each call has one task that feeds its core one event at a time, logs every
state transition, tells the listener (which persists it, prints it, or sends
webhooks for it), and then carries out the commands the core returned, in order.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller.backends.base import Backend
from controller.compliance.book import ComplianceBook, MemoryComplianceBook
from controller.compliance.guard import Compliance
from controller.config import Config
from controller.core.commands import CallEnded, ChooseTargets, Command
from controller.core.events import (
    Announcement,
    CommandFailed,
    Event,
    HangupRequested,
    SwitchLost,
    TargetsChosen,
)
from controller.core.machine import CallConnect
from controller.core.outcomes import Leg
from controller.core.plan import CallPlan
from controller.core.states import CallState, Transition
from controller.errors import InvalidField, InvalidTransition, SwitchError, SwitchUnavailable
from controller.numbers import parse_target, refuse_same_legs
from controller.outbound import check_url
from controller.routing.agents import AgentBook, MemoryAgentBook
from controller.routing.dial_whom import DialWhomClient
from controller.routing.router import CallContext, CallQueues, Router
from controller.routing.spec import (
    MAX_RING_TIMEOUT,
    MAX_SIMULTANEOUS,
    MIN_RING_TIMEOUT,
    ROUTE_STRATEGIES,
    Group,
    RouteSpec,
    Strategy,
    parse_fallbacks,
    parse_item,
)
from controller.store import StoreError
from controller.tts import RenderedAudio, WhisperRenderer, control_character

log = structlog.get_logger(__name__)

_CALLER_ID = re.compile(r"\+?[0-9]{3,20}")
_CONFIRM_KEY = re.compile(r"[0-9*#]")
WHISPER_TIMINGS = ("before_dial", "on_answer")
OUTSIDE_CALLING_HOURS = ("refuse", "schedule")
WHILE_RINGING = ("ringback", "music")
# Margin on top of a call's longest possible length before the watchdog acts.
WATCHDOG_MARGIN = 60.0

WEBHOOK_EVENTS = ("initiated", "ringing", "answered", "bridged", "completed")
# Metadata is stored with the call and echoed in every webhook: kept small.
MAX_METADATA_BYTES = 16 * 1024  # as compact JSON
MAX_METADATA_KEYS = 50  # at the top level
MAX_METADATA_DEPTH = 5  # objects and arrays, the metadata object itself included
MAX_METADATA_KEY_CHARS = 64
MAX_CUSTOM_FIELD_CHARS = 256


@dataclass
class CallRequest:
    leg_a: str
    # Whom leg B is: one target, or a list (each a string or {"to", "ring_timeout"});
    # a target is a number, sip: URI, endpoint:NAME, group:NAME or dial-whom URL.
    leg_b: str | list[Any]
    whisper: str | None = None
    record: bool | None = None
    ring_timeout: int | None = None
    time_limit: int | None = None
    caller_id: str | None = None
    webhook_url: str | None = None
    # Which status callbacks the webhook gets; "completed" is the result.
    webhook_events: tuple[str, ...] = ("completed",)
    metadata: dict[str, Any] = field(default_factory=dict)
    # A retried request with the same key gets the first call, not a second one.
    idempotency_key: str | None = None
    # Routing of leg B.
    strategy: str = "simultaneous"  # or "sequential"
    max_attempts: int | None = None
    fallbacks: dict[str, Any] | None = None  # {"no_answer": {"dial": [...]}, ...}
    dial_whom_fallback_url: str | None = None
    dial_whom_ask_again: bool = True
    # Leg options.
    whisper_timing: str = "before_dial"  # or "on_answer" (leg B hears it)
    confirm_key: str | None = None
    confirm_timeout: int = 5
    while_ringing: str = "ringback"  # or "music"
    # Calling window of the numbers rung first (None: the config's), and what
    # to do outside it: "refuse", or "schedule" (the daemon places it later).
    calling_hours: str | None = None
    calling_days: list[str] | None = None
    outside_calling_hours: str = "refuse"


@dataclass
class ActiveCall:
    core: CallConnect
    request: CallRequest
    whisper: RenderedAudio | None
    recording_path: Path | None
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    done: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[None] | None = None
    logged: int = 0  # how many timeline entries the listener has been told of
    router: Router | None = None
    routing: asyncio.Task[None] | None = None
    agent: str | None = None  # the leg B target on this call, once it answered
    link: int = 0  # the switch link it started on (the backend's reconnect count)

    @property
    def call_id(self) -> str:
        return self.core.plan.call_id

    def initial_response(self) -> dict[str, Any]:
        response = self.core.initial_response()
        if self.core.finished:
            response["success"] = False
            response["error"] = self.core.reason
        return response

    async def wait(self) -> dict[str, Any]:
        return await asyncio.shield(self.done)


class _HeldEvents:
    """The sink a reattach is given: events that arrive while the switch is
    asked what was missed are held, so the missed ones can go first."""

    def __init__(self) -> None:
        self.held: list[Event] = []
        self.queue: asyncio.Queue[Event] | None = None

    def __call__(self, event: Event) -> None:
        if self.queue is None:
            self.held.append(event)
        else:
            self.queue.put_nowait(event)

    def release(self, missed: list[Event], queue: asyncio.Queue[Event]) -> None:
        """Queue what was missed, then what was held; later events go straight on."""
        for event in [*missed, *self.held]:
            queue.put_nowait(event)
        self.held.clear()
        self.queue = queue


class CallListener(Protocol):
    """Told of every call's life: the daemon persists it and enqueues its
    webhooks; the command line prints it."""

    async def call_created(self, call: ActiveCall) -> None:
        """Before anything is dialed; raising here stops the call."""

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None:
        """After the core changed state, before its commands are carried out."""

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        """Once, with the result; may add local fields (not part of the result)."""


class LegAdmission(Protocol):
    """Limits per trunk and per agent (the daemon's ``LegLimits``)."""

    def admit(self, call_id: str, legs: list[tuple[str, str]]) -> None:
        """(field, target) of leg A, then of leg B's targets known now;
        raises CallRefused when over a limit, else holds a place."""

    def release(self, call_id: str) -> None:
        """The call is live, or was never placed."""


class CallService:
    def __init__(self, config: Config, backend: Backend, renderer: WhisperRenderer,
                 listener: CallListener, agents: AgentBook | None = None,
                 records: ComplianceBook | None = None) -> None:
        self.config = config
        self.backend = backend
        self.renderer = renderer
        self.listener = listener
        self.agents: AgentBook = agents or MemoryAgentBook()
        # Agent groups by name: the config's, then the API's (the daemon's store).
        self.groups: dict[str, Group] = dict(config.agent_groups())
        self.dial_whom = DialWhomClient(config.calls.default_region, config.outbound,
                                        config.routing.dial_whom_timeout)
        self.queues = CallQueues()
        self.calls: dict[str, ActiveCall] = {}
        self.compliance = Compliance(config.compliance, config.calls.default_region,
                                     records or MemoryComplianceBook())
        # Limits per trunk and per agent (the daemon's; the command line has none).
        self.limits: LegAdmission | None = None

    async def place(self, request: CallRequest, call_id: str | None = None) -> ActiveCall:
        """Validate, prepare and start a call; returns once Leg A is originated
        (or refused). Bad input raises InvalidRequest, and a compliance rule or
        limit CallRefused, before anything is dialed. ``call_id``: the id a
        scheduled call was given (else a new one)."""
        call_id = call_id or str(uuid.uuid4())
        try:
            return await self._place(request, call_id)
        except BaseException:
            self.compliance.release(call_id)
            raise
        finally:
            if self.limits is not None:
                self.limits.release(call_id)  # from now on it counts as a live call

    async def _place(self, request: CallRequest, call_id: str) -> ActiveCall:
        plan, whisper, recording, spec = await self._prepare(request, call_id)
        router = self._router(plan.call_id, plan.leg_a, request, spec)
        route_state: dict[str, Any] = {}
        if not any(item.is_group or item.is_url for item in spec.items):
            # Plain targets: the first attempt is known now, so B is dialed the
            # moment the whisper ends, with no round trip through the router.
            first = await router.next(None, {})
            assert isinstance(first, TargetsChosen)  # plain targets always give one
            plan = replace(plan, first_attempt=first.attempt)
            route_state = first.route_state
        if not self.backend.connected:
            # Checked after the request itself, so bad input is named even now.
            raise SwitchUnavailable(f"the switch is not reachable ({self.backend.name}, "
                                    "reconnecting); nothing was dialed: retry later")
        core = CallConnect(plan, created_at=time.time())
        core.route_state = route_state
        call = ActiveCall(core, request, whisper, recording, router=router,
                          link=self.backend.reconnects)
        await self.listener.call_created(call)
        self.calls[plan.call_id] = call
        self.backend.watch(plan.call_id, call.events.put_nowait)
        log.info("call.placing", call_id=plan.call_id, leg_a=plan.leg_a, leg_b=plan.leg_b,
                 whisper_seconds=whisper and round(whisper.seconds, 2))
        await self._run_commands(call, call.core.start())
        call.task = asyncio.create_task(self._follow(call), name=f"call-{plan.call_id}")
        return call

    async def resume(self, core: CallConnect, request: CallRequest) -> ActiveCall:
        """Follow a call again after a restart. The backend reconstructs what
        happened while nobody was listening; those events come first."""
        recording = None
        if core.plan.recording_file:
            recording = Path(self.config.media.recording_dir) / Path(core.plan.recording_file).name
        call = ActiveCall(core, request, None, recording, logged=len(core.timeline),
                          link=self.backend.reconnects)
        call.router = self._router(call.call_id, core.plan.leg_a, request,
                                   self._route_spec(request))
        if core.bridged_at is not None:
            call.agent = core.legs[Leg.B].target
        self.calls[call.call_id] = call
        arriving = _HeldEvents()
        try:
            missed = await self.backend.reattach(call.call_id, str(core.state), arriving)
        except BaseException:
            self.calls.pop(call.call_id, None)
            raise
        arriving.release(missed, call.events)
        if core.state is CallState.ROUTING:
            # It was choosing whom to ring when we stopped: choose again.
            self._spawn_routing(call, ChooseTargets(
                core.attempts[-1]["outcome"] if core.attempts else None, core.route_state))
        log.info("call.resumed", call_id=call.call_id, state=str(core.state), missed=len(missed))
        call.task = asyncio.create_task(self._follow(call), name=f"call-{call.call_id}")
        return call

    async def reattach_live(self) -> None:
        """The switch link is back after a loss: ask the switch what became of
        each live call meanwhile (events sent while the link was down are gone)."""
        for call in list(self.calls.values()):
            if call.core.finished or call.link >= self.backend.reconnects:
                continue  # ended, or placed on the new link: nothing was missed
            arriving = _HeldEvents()
            try:
                missed = await self.backend.reattach(call.call_id, str(call.core.state), arriving)
            except SwitchError as exc:
                log.error("call.reattach_failed", call_id=call.call_id, error=exc.message)
                missed = [SwitchLost(time.time(), f"cannot follow the call again: {exc.message}")]
            arriving.release(missed, call.events)
            log.info("call.reattached", call_id=call.call_id, state=str(call.core.state),
                     missed=len(missed))

    async def hangup(self, call_id: str, reason: str = "requested") -> None:
        call = self.calls[call_id]
        call.events.put_nowait(HangupRequested(time.time(), reason))

    async def _prepare(self, request: CallRequest, call_id: str
                       ) -> tuple[CallPlan, RenderedAudio | None, Path | None, RouteSpec]:
        defaults = self.config.calls
        leg_a = parse_target(request.leg_a, defaults.default_region, "leg_a")
        spec = self._route_spec(request)
        refuse_same_legs(leg_a, [item.to for item in spec.items])
        time_limit = _bounded("time_limit", request.time_limit, defaults.time_limit, 1, 86400)
        caller_id = request.caller_id if request.caller_id is not None else defaults.caller_id
        if caller_id and not _CALLER_ID.fullmatch(caller_id):
            raise InvalidField(f"caller_id {caller_id!r} must be digits with an optional leading +",
                               field="caller_id")
        if request.caller_id and defaults.caller_ids and request.caller_id not in defaults.caller_ids:
            raise InvalidField(f"caller_id {request.caller_id!r} is not one this controller may "
                               "present: it is not in [calls] caller_ids", field="caller_id")
        webhook = request.webhook_url or self.config.webhook.url
        if webhook:
            check_url(webhook, self.config.outbound,
                      "webhook_url" if request.webhook_url else "webhook.url")
        check_metadata(request.metadata)
        unknown = sorted(set(request.webhook_events) - set(WEBHOOK_EVENTS))
        if unknown:
            raise InvalidField(f"webhook_events {unknown} are not among {list(WEBHOOK_EVENTS)}",
                               field="webhook_events")
        _one_of("whisper_timing", request.whisper_timing, WHISPER_TIMINGS)
        _one_of("while_ringing", request.while_ringing, WHILE_RINGING)
        if request.confirm_key is not None and not _CONFIRM_KEY.fullmatch(request.confirm_key):
            raise InvalidField("confirm_key must be one key: 0-9, * or #", field="confirm_key")
        confirm_timeout = _bounded("confirm_timeout", request.confirm_timeout, 5, 1, 60)
        record = defaults.record if request.record is None else request.record

        await self._screen_request(call_id, leg_a.value, spec, request)
        whisper = await self.renderer.render(request.whisper) if request.whisper else None
        recording: Path | None = None
        if record:
            directory = Path(self.config.media.recording_dir)
            directory.mkdir(parents=True, exist_ok=True)
            recording = directory / f"{call_id}.wav"
        plan = CallPlan(
            call_id=call_id,
            leg_a=leg_a.value,
            leg_b=spec.describe(),
            ring_timeout=spec.ring_timeout,
            time_limit=time_limit,
            whisper_audio=self.config.whisper_path_on_switch(whisper.path) if whisper else None,
            recording_file=self.config.recording_path_on_switch(recording) if recording else None,
            caller_id=caller_id or None,
            whisper_on_answer=request.whisper_timing == "on_answer",
            confirm_key=request.confirm_key,
            confirm_timeout=confirm_timeout,
            hold_music=request.while_ringing == "music",
        )
        return plan, whisper, recording, spec

    async def _screen_request(self, call_id: str, leg_a: str, spec: RouteSpec,
                              request: CallRequest) -> None:
        """Compliance rules, then limits, on the legs known now. Every number
        named is checked against the do-not-call list; leg A and leg B's plain
        targets, rung first, against the calling window and the daily cap
        too. Groups and dial-whom numbers are screened when they are expanded."""
        _one_of("outside_calling_hours", request.outside_calling_hours, OUTSIDE_CALLING_HOURS)
        windows = self.compliance.windows_for(request.calling_hours, request.calling_days)
        first = [("leg_a", leg_a)] + [
            ("leg_b" if len(spec.items) == 1 else f"leg_b[{i}]", item.to)
            for i, item in enumerate(spec.items) if not (item.is_group or item.is_url)]
        fallback_targets = [(f"fallbacks.{outcome}.dial[{i}]", item.to)
                            for outcome, fallback in spec.fallbacks.items()
                            for i, item in enumerate(fallback.to)
                            if not (item.is_group or item.is_url)]
        await self.compliance.check_request(call_id, named=first + fallback_targets,
                                            rung_first=first, windows=windows)
        if self.limits is not None:
            self.limits.admit(call_id, first)

    def _route_spec(self, request: CallRequest) -> RouteSpec:
        region = self.config.calls.default_region
        targets = request.leg_b if isinstance(request.leg_b, list) else [request.leg_b]
        if not 1 <= len(targets) <= MAX_SIMULTANEOUS:
            raise InvalidField(f"leg_b must name 1-{MAX_SIMULTANEOUS} targets", field="leg_b")
        items = tuple(parse_item(t, region, "leg_b" if len(targets) == 1 else f"leg_b[{i}]",
                                 self.groups.__contains__, self.config.outbound)
                      for i, t in enumerate(targets))
        strategy = _one_of("strategy", request.strategy, ROUTE_STRATEGIES)
        max_attempts = request.max_attempts if request.max_attempts is not None else 10
        if not 1 <= max_attempts <= 50:
            raise InvalidField("max_attempts must be 1-50", field="max_attempts")
        fallback_url = request.dial_whom_fallback_url
        if fallback_url:
            check_url(fallback_url, self.config.outbound, "dial_whom_fallback_url")
        ring_timeout = _bounded("ring_timeout", request.ring_timeout, self.config.calls.ring_timeout,
                                MIN_RING_TIMEOUT, MAX_RING_TIMEOUT)
        return RouteSpec(items, Strategy(strategy),
                         ring_timeout, max_attempts,
                         parse_fallbacks(request.fallbacks, region, "fallbacks",
                                         self.groups.__contains__, self.config.outbound),
                         fallback_url or None, request.dial_whom_ask_again)

    def _router(self, call_id: str, leg_a: str, request: CallRequest, spec: RouteSpec) -> Router:
        async def speak(text: str) -> str:
            audio = await self.renderer.render(text)
            return self.config.whisper_path_on_switch(audio.path)

        async def announce(text: str, hold_for: int) -> None:
            call = self.calls.get(call_id)
            if call is not None:
                call.events.put_nowait(Announcement(time.time(), await speak(text), hold_for))

        async def screen(targets: Sequence[str]) -> dict[str, str]:
            return await self.compliance.screen(targets, call_id)

        custom = request.metadata.get("custom_field", "")
        return Router(spec, CallContext(call_id, leg_a, spec.describe(), str(custom)[:256]),
                      groups=self.groups.get, agents=self.agents,
                      busy_targets=self.backend.busy_targets, dial_whom=self.dial_whom,
                      speak=speak, unreached_message=self.config.whisper.b_unreached_message,
                      queues=self.queues, announce=announce, screen=screen)

    def _spawn_routing(self, call: ActiveCall, command: ChooseTargets) -> None:
        """Ask the router in the background: a dial-whom URL may take seconds,
        and the call's other events (A hanging up) must still be handled."""
        async def choose() -> None:
            assert call.router is not None
            try:
                event: Event = await call.router.next(command.previous, command.route_state)
            except Exception as exc:  # a router bug must not leave A on hold
                log.exception("route.failed", call_id=call.call_id)
                event = CommandFailed(time.time(), "ChooseTargets", str(exc))
            call.events.put_nowait(event)

        task = asyncio.create_task(choose(), name=f"route-{call.call_id}")
        call.routing = task

    async def _follow(self, call: ActiveCall) -> None:
        # Every log line of this task, in any module, carries the call's id.
        structlog.contextvars.bind_contextvars(call_id=call.call_id)
        plan = call.core.plan
        whisper_seconds = call.whisper.seconds if call.whisper else 0.0
        deadline = 2 * plan.ring_timeout + whisper_seconds + plan.time_limit + WATCHDOG_MARGIN
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + deadline
        try:
            while not call.core.finished:
                try:
                    event = await asyncio.wait_for(call.events.get(), give_up_at - loop.time())
                except TimeoutError:
                    log.error("call.watchdog", call_id=call.call_id, after_seconds=round(deadline))
                    event = SwitchLost(time.time(), f"no end after {deadline:.0f} s")
                if isinstance(event, TargetsChosen):
                    # Each attempt at leg B gets the whole budget again.
                    deadline = (event.attempt.ring_timeout + whisper_seconds + plan.time_limit
                                + WATCHDOG_MARGIN)
                    give_up_at = max(give_up_at, loop.time() + deadline)
                elif isinstance(event, Announcement):  # waiting in a queue
                    give_up_at = max(give_up_at, loop.time() + event.hold_for + deadline)
                await self._handle(call, event)
        except Exception as exc:  # a bug must not leave the call unreported
            log.exception("call.follow_failed", call_id=call.call_id)
            if not call.done.done():
                call.done.set_exception(exc)
        finally:
            if call.routing is not None:
                call.routing.cancel()
            self.backend.forget(call.call_id)
            self.calls.pop(call.call_id, None)
            self.compliance.release(call.call_id)

    async def _handle(self, call: ActiveCall, event: Event) -> None:
        try:
            commands = call.core.handle(event)
        except InvalidTransition as exc:
            log.error("call.invalid_transition", call_id=call.call_id, error_id=exc.error_id,
                      error=exc.message)
            commands = call.core.handle(CommandFailed(event.at, "core", exc.message))
        await self._run_commands(call, commands)

    async def _run_commands(self, call: ActiveCall, commands: list[Command]) -> None:
        await self._log_transitions(call)
        for command in commands:
            if isinstance(command, CallEnded):
                await self._finish(call, command.result)
                continue
            if isinstance(command, ChooseTargets):
                self._spawn_routing(call, command)
                continue
            try:
                await self.backend.execute(call.call_id, command)
            except SwitchError as exc:
                log.error("call.command_failed", call_id=call.call_id,
                          command=type(command).__name__, error_id=exc.error_id, error=exc.message)
                await self._handle(call, CommandFailed(time.time(), type(command).__name__,
                                                       exc.message))
                return

    async def _log_transitions(self, call: ActiveCall) -> None:
        b = call.core.legs[Leg.B]
        if call.agent is None and call.core.bridged_at is not None:
            # The target that took the call (one that answered and declined did not).
            call.agent = b.target
            await _keep_books(call, self.agents.agent_call_started(
                b.target, call.call_id, b.answered_at or call.core.bridged_at))
        new = call.core.timeline[call.logged:]
        if not new:
            return
        await self._count_calls(call, new)
        for transition in new:
            log.info("call.transition", call_id=call.call_id, from_state=str(transition.from_state),
                     to_state=str(transition.to_state), reason=transition.reason)
        call.logged = len(call.core.timeline)
        await self.listener.call_changed(call, new)

    async def _count_calls(self, call: ActiveCall, transitions: list[Transition]) -> None:
        """Numbers dialed by these transitions count against the daily cap:
        leg A when it is originated, leg B's targets when they are dialed."""
        for transition in transitions:
            if transition.to_state is CallState.DIALING_A:
                await _keep_books(call, self.compliance.record(
                    call.call_id, [call.core.plan.leg_a], transition.at))
            elif transition.to_state is CallState.DIALING_B and call.core.attempts:
                await _keep_books(call, self.compliance.record(
                    call.call_id, call.core.attempts[-1]["targets"], transition.at))

    async def _finish(self, call: ActiveCall, result: dict[str, Any]) -> None:
        if call.agent is not None:
            await _keep_books(call, self.agents.agent_call_ended(
                call.agent, call.call_id, call.core.ended_at or time.time()))
        result = dict(result)
        result["whisper"] = None
        if call.request.whisper:
            result["whisper"] = {"text": self.renderer.clean(call.request.whisper),
                                 "seconds": round(call.whisper.seconds, 3) if call.whisper else None,
                                 "played": call.core.whisper_played,
                                 # Rendered before leg A was dialed: ready by the call's start.
                                 "ready_at": call.core.created_at if call.whisper else None}
        recording = call.recording_path
        result["recording"] = None
        if recording is not None and call.core.recording_started:
            result["recording"] = {"path": str(recording), "url": None}
        result["metadata"] = call.request.metadata
        log.info("call.ended", call_id=call.call_id, status=result["status"],
                 reason=result["reason"], hangup_by=result["hangup_by"],
                 talk_seconds=result["talk_seconds"])
        await self.listener.call_ended(call, result)
        if not call.done.done():
            call.done.set_result(result)


def check_metadata(metadata: Any) -> None:
    """InvalidField unless ``metadata`` is a JSON object the controller can
    store, echo in every webhook and send on (custom_field, to dial-whom URLs)."""
    if not isinstance(metadata, dict):
        raise InvalidField("metadata must be a JSON object", field="metadata")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidField(f"metadata has {len(metadata)} keys; the limit is {MAX_METADATA_KEYS}",
                           field="metadata")
    _check_metadata_value(metadata, "metadata", 1)
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode())
    except UnicodeEncodeError:  # a lone surrogate: no JSON body or store could carry it
        raise InvalidField("metadata must be valid Unicode text", field="metadata") from None
    except ValueError:
        raise InvalidField("metadata must hold only JSON values (not NaN or Infinity)",
                           field="metadata") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidField(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}",
                           field="metadata")
    custom = metadata.get("custom_field")
    if custom is not None and (not isinstance(custom, str) or len(custom) > MAX_CUSTOM_FIELD_CHARS
                               or control_character(custom) is not None):
        raise InvalidField(f"metadata.custom_field must be text of at most {MAX_CUSTOM_FIELD_CHARS} "
                           "characters without control characters (it is sent to dial-whom URLs)",
                           field="metadata.custom_field")


def _check_metadata_value(value: Any, path: str, depth: int) -> None:
    if not isinstance(value, dict | list):
        return
    if depth > MAX_METADATA_DEPTH:
        raise InvalidField(f"{path} nests objects and arrays deeper than {MAX_METADATA_DEPTH} levels",
                           field="metadata")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_metadata_value(item, f"{path}[{i}]", depth + 1)
        return
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > MAX_METADATA_KEY_CHARS \
                or control_character(key) is not None:
            raise InvalidField(f"{path} has a key {str(key)[:MAX_METADATA_KEY_CHARS]!r}...: keys must "
                               f"be at most {MAX_METADATA_KEY_CHARS} characters, without control "
                               "characters", field="metadata")
        _check_metadata_value(item, f"{path}.{key}", depth + 1)


async def _keep_books(call: ActiveCall, note: Awaitable[None]) -> None:
    """Agent state and counts are bookkeeping: a store that cannot take them
    (a full disk) must not stop the call they describe."""
    try:
        await note
    except StoreError as exc:
        log.error("call.bookkeeping_not_saved", call_id=call.call_id, error=exc.message)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidField(f"{name} must be one of {list(allowed)}, got {value!r}", field=name)
    return value


def _bounded(name: str, value: int | None, default: int, low: int, high: int) -> int:
    chosen = default if value is None else value
    if not low <= chosen <= high:
        raise InvalidField(f"{name} must be {low}-{high} seconds, got {chosen}", field=name)
    return chosen
