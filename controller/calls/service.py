"""The call service: place a call (a decision: placed, scheduled, replayed or
refused), follow calls again after a restart or a lost switch link, hang up.

Checking a request is :mod:`controller.calls.checks`; following a call to its
end, :mod:`controller.calls.runner`; the agent groups,
:mod:`controller.calls.groups`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller.actions.fetch import ActionFetcher
from controller.actions.prepare import ActionContext, ActionPreparer
from controller.actions.spec import Action
from controller.backends.base import Backend
from controller.calls.checks import Checked, RequestChecks
from controller.calls.decision import Decision, Placed, Refused, Replayed, Scheduled
from controller.calls.groups import GroupRegistry
from controller.calls.idempotency import replay_of
from controller.calls.live import DEFAULT_IDLE_TIMEOUT, Inbound, LiveCalls
from controller.calls.request import MAX_CUSTOM_FIELD_CHARS, CallRequest
from controller.calls.runner import (
    ActiveCall,
    CallListener,
    CallRunner,
    DuplicateRequest,
    HeldEvents,
)
from controller.compliance.book import ComplianceBook, MemoryComplianceBook
from controller.compliance.guard import Compliance
from controller.config import Config
from controller.core.commands import ChooseTargets
from controller.core.events import (
    ActionsQueued,
    Announcement,
    HangupRequested,
    SwitchLost,
    TargetsChosen,
)
from controller.core.live import LiveCall
from controller.core.machine import CallConnect
from controller.core.outcomes import Leg
from controller.core.plan import PreparedAction
from controller.core.states import CallState
from controller.errors import (
    CallRefused,
    InvalidRequest,
    OutsideCallingHours,
    SwitchError,
    SwitchUnavailable,
    WhisperError,
)
from controller.ids import new_call_id
from controller.outbound_client import OutboundClient
from controller.routing.agents import AgentBook, MemoryAgentBook
from controller.routing.dial_whom import DialWhomClient
from controller.routing.reservations import Reservations
from controller.routing.router import CallContext, CallQueues, Router
from controller.routing.spec import RouteSpec
from controller.store import IdempotencyKey, StoredCall
from controller.tts import WhisperRenderer

log = structlog.get_logger(__name__)


class LegAdmission(Protocol):
    """Limits per trunk and per agent (the daemon's ``LegLimits``)."""

    def admit(self, call_id: str, legs: list[tuple[str, str]]) -> None:
        """(field, target) of leg A, then of leg B's targets known now;
        raises CallRefused when over a limit, else holds a place."""

    def release(self, call_id: str) -> None:
        """The call is live, or was never placed."""


class Scheduling(Protocol):
    """Keeps a call asked for outside its calling window until it opens (the
    daemon's scheduler; the command line has none, and refuses)."""

    async def schedule(self, request: CallRequest, refusal: OutsideCallingHours,
                       idempotency_key: IdempotencyKey | None = None) -> StoredCall:
        """The call stored to be placed at ``refusal``'s next_window_at (or
        the one already stored under the idempotency key)."""


class CallService:
    def __init__(self, config: Config, backend: Backend, renderer: WhisperRenderer,
                 listener: CallListener, agents: AgentBook | None = None,
                 records: ComplianceBook | None = None,
                 groups: GroupRegistry | None = None, *, outbound: OutboundClient) -> None:
        """``outbound``: the client dial-whom and action URLs are asked
        through (controller.outbound_client.live_calls_client); its owner
        closes it."""
        self.config = config
        self.backend = backend
        self.renderer = renderer
        self.agents: AgentBook = agents or MemoryAgentBook()
        self.groups = groups or GroupRegistry(config.calls.default_region, config.agent_groups())
        self.checks = RequestChecks(config, self.groups, renderer)
        self.dial_whom = DialWhomClient(config.calls.default_region, outbound,
                                        config.routing.dial_whom_timeout)
        self.queues = CallQueues()
        # Who each live call holds, so a group offers an agent one call at a time.
        self.reservations = Reservations()
        self.calls: dict[str, ActiveCall] = {}
        self.compliance = Compliance(config.compliance, config.calls.default_region,
                                     records or MemoryComplianceBook(),
                                     destinations=config.destinations)
        self.runner = CallRunner(backend, renderer, listener, self.agents, self.compliance,
                                 self.calls, self.reservations)
        self.runner.recording_dir = Path(config.media.recording_dir)
        self.live = LiveCalls(self.checks, ActionPreparer(config, self.checks, renderer),
                              ActionFetcher(outbound, config.webhook.signing_secret or None,
                                            config.routing.action_url_timeout),
                              backend, self.runner, self.calls, self._router)
        self.runner.live = self.live
        # Limits per trunk and per agent, and scheduling (the daemon's; the
        # command line has neither).
        self.limits: LegAdmission | None = None
        self.scheduling: Scheduling | None = None

    async def place(self, request: CallRequest, idempotency_key: IdempotencyKey | None = None, *,
                    scheduled_id: str | None = None) -> Decision:
        """Check, prepare and start a call, up to leg A's originate.
        ``scheduled_id``: the id of a scheduled call now due, placed under it
        (and never scheduled again here: the scheduler moves it)."""
        try:
            call = await self.start(request, idempotency_key, call_id=scheduled_id)
        except DuplicateRequest as duplicate:
            if idempotency_key is None:
                return Replayed(duplicate.existing)
            return replay_of(duplicate.existing, idempotency_key)
        except OutsideCallingHours as refusal:
            if (request.outside_calling_hours == "schedule" and scheduled_id is None
                    and self.scheduling is not None and "next_window_at" in refusal.details):
                stored = await self.scheduling.schedule(request, refusal, idempotency_key)
                if idempotency_key is not None:
                    # The call stored under the key may be another request's.
                    replay = replay_of(stored, idempotency_key)
                    if isinstance(replay, Refused):
                        return replay
                return Scheduled(stored)
            return Refused(refusal)
        except (InvalidRequest, CallRefused, SwitchError, WhisperError) as refusal:
            return Refused(refusal)
        return Placed(call)

    async def start(self, request: CallRequest, idempotency_key: IdempotencyKey | None = None,
                    call_id: str | None = None, *,
                    idle_timeout: int = DEFAULT_IDLE_TIMEOUT) -> ActiveCall:
        """``place``, raising its refusals: bad input raises InvalidRequest,
        and a compliance rule or limit CallRefused, before anything is dialed."""
        call_id = call_id or new_call_id()
        try:
            return await self._start(request, idempotency_key, call_id, idle_timeout)
        except BaseException:
            self.compliance.release(call_id)
            self.reservations.release(call_id)
            raise
        finally:
            if self.limits is not None:
                self.limits.release(call_id)  # from now on it counts as a live call

    async def start_live(self, request: CallRequest, *, call_id: str | None = None,
                         idempotency_key: IdempotencyKey | None = None,
                         inbound: Inbound | None = None,
                         idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
                         source: str = "request") -> ActiveCall:
        """Start a live call and queue ``request.actions`` on it (as from ``source``).

        Outbound (``inbound`` None): a single-leg call to ``request.leg_a``,
        checked, screened and placed as ``place`` places a call connect.
        Inbound: the call the switch offered, stored and claimed; its leg A
        is ``inbound.caller``, and of the request only its actions, webhook
        settings, metadata and time_limit are used. Raises as ``start``:
        InvalidRequest naming a field, CallRefused, SwitchError, WhisperError."""
        if inbound is None:
            return await self.start(request, idempotency_key, call_id, idle_timeout=idle_timeout)
        call_id = call_id or new_call_id()
        try:
            return await self.live.start_inbound(request, call_id, inbound, idempotency_key,
                                                 idle_timeout, source)
        except BaseException:
            self.compliance.release(call_id)
            self.reservations.release(call_id)
            raise

    async def queue_actions(self, call_id: str, actions: Sequence[Action], replace: bool = False,
                            source: str = "api") -> list[PreparedAction] | None:
        """Check and prepare ``actions``, then queue them on the live call
        (``replace``: drop those still queued first). None if the call is
        not live; InvalidRequest names the field of a refused action (nothing
        is queued then), NotALiveCall for a call connect."""
        return await self.live.queue(call_id, actions, replace, source)

    async def _start(self, request: CallRequest, idempotency_key: IdempotencyKey | None,
                     call_id: str, idle_timeout: int = DEFAULT_IDLE_TIMEOUT) -> ActiveCall:
        checked = self.checks.check(request)
        await self._screen(call_id, checked, request)
        if request.single_leg:
            return await self._start_single_leg(request, checked, idempotency_key, call_id,
                                                idle_timeout)
        router = self._router(self._context(call_id, checked.leg_a, checked.caller_id, request),
                              checked.spec)
        route_state: dict[str, Any] = {}
        first: TargetsChosen | None = None
        if not any(item.is_group or item.is_url for item in checked.spec.items):
            # Plain targets: the first attempt is known now, so B is dialed the
            # moment the whisper ends, with no round trip through the router.
            chosen = await router.next(None, {})
            assert isinstance(chosen, TargetsChosen)  # plain targets always give one
            first, route_state = chosen, chosen.route_state
        if not self.backend.connected:
            # Checked after the request itself, so bad input is named even now.
            raise SwitchUnavailable(f"the switch is not reachable ({self.backend.name}, "
                                    "reconnecting); nothing was dialed: retry later")
        # Rendered only now: a refused call leaves no file behind.
        prepared = await self.checks.prepare(request, checked, call_id)
        plan = prepared.plan if first is None else replace(prepared.plan,
                                                           first_attempt=first.attempt)
        core = CallConnect(plan, created_at=time.time())
        core.route_state = route_state
        call = ActiveCall(core, request, idempotency_key, prepared.whisper, prepared.recording,
                          router=router, link=self.backend.reconnects)
        await self.runner.start(call)
        return call

    async def _start_single_leg(self, request: CallRequest, checked: Checked,
                                idempotency_key: IdempotencyKey | None, call_id: str,
                                idle_timeout: int) -> ActiveCall:
        if not self.backend.connected:
            raise SwitchUnavailable(f"the switch is not reachable ({self.backend.name}, "
                                    "reconnecting); nothing was dialed: retry later")
        actions = await self.live.preparer.prepare(request.actions or [],
                                                   ActionContext(call_id, checked.leg_a))
        # Its recordings are its record actions' and its connects' own.
        plan = (await self.checks.prepare(request, replace(checked, record=False), call_id)).plan
        core = self.live.outbound_core(plan, checked.caller_id, idle_timeout)
        call = ActiveCall(core, request, idempotency_key, None, None, link=self.backend.reconnects)
        await self.runner.start(call)
        if actions:
            call.events.put_nowait(ActionsQueued(time.time(), tuple(actions), source="request"))
        return call

    async def resume(self, core: CallConnect, request: CallRequest,
                     idempotency_key: IdempotencyKey | None = None) -> ActiveCall:
        """Follow a call again after a restart. The backend reconstructs what
        happened while nobody was listening; those events come first."""
        recording = None
        if core.plan.recording_file:
            recording = Path(self.config.media.recording_dir) / Path(core.plan.recording_file).name
        call = ActiveCall(core, request, idempotency_key, None, recording,
                          logged=len(core.timeline), link=self.backend.reconnects)
        if isinstance(core, LiveCall):
            # A connect's router is made from its action when it asks whom to ring.
            call.router = None
        else:
            call.router = self._router(self._context(call.call_id, core.plan.leg_a,
                                                     core.plan.caller_id or "", request),
                                       self.checks.route_spec(request))
        if core.bridged_at is not None:
            call.agent = core.legs[Leg.B].target
        self.calls[call.call_id] = call
        # Held again as its state says, before any call resumed after it routes.
        self.reservations.follow(call.call_id, core)
        arriving = HeldEvents()
        try:
            missed = await self.backend.reattach(call.call_id, str(core.state), arriving,
                                                 core.pending_dial())
        except BaseException:
            self.calls.pop(call.call_id, None)
            self.reservations.release(call.call_id)
            raise
        arriving.release(missed, call.events)
        if core.state is CallState.ROUTING:
            # It was choosing whom to ring when we stopped: choose again.
            call.router = self.live.connect_router(call)
            self.runner.spawn_routing(call, ChooseTargets(
                core.attempts[-1]["outcome"] if core.attempts else None, core.route_state))
        log.info("call.resumed", call_id=call.call_id, state=str(core.state), missed=len(missed))
        self.runner.follow(call)
        return call

    async def reattach_live(self) -> None:
        """The switch link is back after a loss: ask the switch what became of
        each live call meanwhile (events sent while the link was down are gone)."""
        for call in list(self.calls.values()):
            if call.core.finished or call.link >= self.backend.reconnects:
                continue  # ended, or placed on the new link: nothing was missed
            arriving = HeldEvents()
            try:
                missed = await self.backend.reattach(call.call_id, str(call.core.state), arriving,
                                                     call.core.pending_dial())
            except SwitchError as exc:
                log.error("call.reattach_failed", call_id=call.call_id, error=exc.message)
                missed = [SwitchLost(time.time(), f"cannot follow the call again: {exc.message}")]
            arriving.release(missed, call.events)
            log.info("call.reattached", call_id=call.call_id, state=str(call.core.state),
                     missed=len(missed))

    async def hangup(self, call_id: str, reason: str = "requested") -> None:
        call = self.calls[call_id]
        call.events.put_nowait(HangupRequested(time.time(), reason))

    async def _screen(self, call_id: str, checked: Checked, request: CallRequest) -> None:
        """Compliance rules, then limits, on the legs known now. Every number
        named is checked against the do-not-call list; leg A and leg B's plain
        targets, rung first, against the calling window and the daily cap
        too. Every target named is held to the destination policy. Groups and
        dial-whom numbers are screened when they are expanded."""
        windows = self.compliance.windows_for(request.calling_hours, request.calling_days)
        first = [("leg_a", checked.leg_a), *checked.first_targets()]
        await self.compliance.check_request(call_id, named=first + checked.fallback_targets(),
                                            rung_first=first, windows=windows)
        if self.limits is not None:
            self.limits.admit(call_id, first)

    @staticmethod
    def _context(call_id: str, leg_a: str, caller_id: str, request: CallRequest) -> CallContext:
        """What a call connect's dial-whom URL is told. CallTo is the number
        the call is placed from, never leg B's own (a URL)."""
        custom = str(request.metadata.get("custom_field", ""))[:MAX_CUSTOM_FIELD_CHARS]
        return CallContext(call_id, leg_a, caller_id, custom)

    def _router(self, context: CallContext, spec: RouteSpec) -> Router:
        call_id = context.call_id

        async def speak(text: str) -> str:
            audio = await self.renderer.render(text)
            return self.config.whisper_path_on_switch(audio.path)

        async def announce(text: str, hold_for: int) -> None:
            call = self.calls.get(call_id)
            if call is not None:
                call.events.put_nowait(Announcement(time.time(), await speak(text), hold_for))

        async def screen(targets: Sequence[str]) -> dict[str, str]:
            return await self.compliance.screen(targets, call_id)

        return Router(spec, context,
                      groups=self.groups.get, agents=self.agents,
                      busy_targets=self.backend.busy_targets, dial_whom=self.dial_whom,
                      speak=speak, unreached_message=self.config.whisper.b_unreached_message,
                      queues=self.queues, announce=announce, reservations=self.reservations,
                      screen=screen)
