"""Live calls in the call service: starting one (a single-leg call placed by
the API, or an inbound call the switch offered), actions sent to a running
one, the URLs its actions ask for more (FetchActions), and the router of a
running connect (built from that action's own spec).

The flow itself is the core's (:class:`controller.core.live.LiveCall`); the
actions' rules and preparation are :mod:`controller.actions`'."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from controller.actions.fetch import ActionFetcher, FetchFailed
from controller.actions.prepare import ActionContext, ActionPreparer
from controller.actions.spec import MAX_ACTIONS_PER_CALL, Action, ConnectAction
from controller.backends.base import Backend, IncomingCall
from controller.calls.checks import RequestChecks
from controller.calls.request import MAX_CUSTOM_FIELD_CHARS, CallRequest
from controller.calls.runner import ActiveCall, CallRunner
from controller.core.commands import FetchActions
from controller.core.events import ActionsFetchFailed, ActionsQueued, CommandFailed, Event
from controller.core.live import LiveCall
from controller.core.plan import CallPlan, PreparedAction
from controller.errors import (
    InvalidRequest,
    NotALiveCall,
    SwitchError,
    TooManyActions,
    WhisperBusy,
    WhisperError,
)
from controller.outbound import redact
from controller.routing.router import CallContext, Router
from controller.routing.spec import RouteSpec
from controller.store import IdempotencyKey

log = structlog.get_logger(__name__)

DEFAULT_IDLE_TIMEOUT = 30
# The source of the actions a URL answers, by what asked it.
_ANSWER_SOURCES = {"gather": "action_url", "redirect": "redirect", "incoming": "incoming_url"}

MakeRouter = Callable[[CallContext, RouteSpec], Router]


@dataclass(frozen=True)
class Inbound:
    """An inbound call as the service takes it: the switch's offer, the
    caller's number (normalised, or the switch's text when it is none) and
    the number dialed (normalised)."""

    incoming: IncomingCall
    caller: str
    dialed: str


class LiveCalls:
    def __init__(self, checks: RequestChecks, preparer: ActionPreparer, fetcher: ActionFetcher,
                 backend: Backend, runner: CallRunner, calls: dict[str, ActiveCall],
                 make_router: MakeRouter) -> None:
        self.checks = checks
        self.preparer = preparer
        self.fetcher = fetcher
        self.backend = backend
        self.runner = runner
        self.calls = calls
        self.make_router = make_router

    def outbound_core(self, plan: CallPlan, caller_id: str, idle_timeout: int) -> LiveCall:
        return LiveCall.outbound(plan, caller_id, idle_timeout, time.time())

    async def start_inbound(self, request: CallRequest, call_id: str, inbound: Inbound,
                            idempotency_key: IdempotencyKey | None, idle_timeout: int,
                            source: str) -> ActiveCall:
        """Store the call, claim the caller's channel for it, then queue the
        request's actions (none: it waits, with ringback, for actions)."""
        checks = self.checks
        plan = CallPlan(call_id=call_id, leg_a=inbound.caller, leg_b="",
                        ring_timeout=checks.config.calls.ring_timeout,
                        time_limit=checks.time_limit(request, ""))
        core = LiveCall.inbound(plan, inbound.caller, inbound.dialed, idle_timeout,
                                inbound.incoming.at)
        call = ActiveCall(core, request, idempotency_key, None, None, link=self.backend.reconnects)
        prepared = await self.preparer.prepare(request.actions or [], self.context_of(core))
        await self.runner.start(call)
        try:
            await self.backend.claim(inbound.incoming, call_id, call.events.put_nowait)
        except SwitchError as exc:
            log.error("call.claim_failed", call_id=call_id, error=exc.message)
            call.events.put_nowait(CommandFailed(time.time(), "claim", exc.message))
            return call
        if prepared:
            call.events.put_nowait(ActionsQueued(time.time(), tuple(prepared), source=source))
        return call

    async def queue(self, call_id: str, actions: Sequence[Action], replace: bool,
                    source: str) -> list[PreparedAction] | None:
        """The actions checked, prepared and queued on the live call; None if
        it is not live (ended, or never was). InvalidRequest names the field
        of a refused action, and nothing is queued; NotALiveCall for a call
        connect."""
        call = self.calls.get(call_id)
        if call is None or call.core.finished:
            return None
        if not isinstance(call.core, LiveCall):
            raise NotALiveCall(f"call {call_id} is a call connect (leg_a and leg_b): actions run "
                               "on single-leg calls (leg_a and actions) and inbound calls",
                               call_id=call_id)
        over = self._over_limit(call, len(actions))
        if over:
            raise TooManyActions(over, call_id=call_id)
        prepared = await self.preparer.prepare(actions, self.context_of(call.core))
        call.actions_given += len(prepared)
        call.events.put_nowait(ActionsQueued(time.time(), tuple(prepared), replace, source))
        return prepared

    @staticmethod
    def _over_limit(call: ActiveCall, count: int) -> str | None:
        """Why ``count`` more actions may not join the call (None: they may).
        A restored call counts the records it kept."""
        assert isinstance(call.core, LiveCall)
        given = max(call.actions_given, len(call.core.actions))
        if given + count <= MAX_ACTIONS_PER_CALL:
            return None
        return (f"the call has been given {given} actions; one call takes at most "
                f"{MAX_ACTIONS_PER_CALL}, so these {count} were refused (end the call, or place a "
                "new one)")

    @staticmethod
    def context_of(core: LiveCall) -> ActionContext:
        return ActionContext(core.plan.call_id, core.plan.leg_a,
                             core.from_ if core.direction == "inbound" else None)

    def spawn_fetch(self, call: ActiveCall, command: FetchActions) -> None:
        """Ask the URL in the background (it may take seconds, and A may hang up meanwhile)."""
        async def fetch() -> None:
            event = await self._fetched(call, command)
            call.events.put_nowait(event)

        call.fetching = asyncio.create_task(fetch(), name=f"fetch-{call.call_id}")

    async def _fetched(self, call: ActiveCall, command: FetchActions) -> Event:
        where = redact(command.url)
        assert isinstance(call.core, LiveCall)  # only a live call asks
        try:
            actions = await self.fetcher.fetch(command.url, command.kind, command.payload)
            if actions is None and command.kind != "incoming":
                raise FetchFailed(f"{where} answered no actions (HTTP 204 or an empty body); it "
                                  "must answer 200 with {\"actions\": [...]}")
            over = self._over_limit(call, len(actions or []))
            if over:
                raise FetchFailed(f"{where} answered more actions than the call may take: {over}")
            prepared = await self.preparer.prepare(actions or [], self.context_of(call.core))
            call.actions_given += len(prepared)
        except FetchFailed as exc:
            reason = exc.message
        except (InvalidRequest, WhisperError, WhisperBusy) as exc:
            reason = f"{where} answered actions that cannot run: {exc.message}"
        except Exception as exc:  # a bug must not leave the caller in silence
            log.exception("actions.fetch_failed", call_id=call.call_id)
            reason = f"asking {where} failed: {type(exc).__name__}"
        else:
            log.info("actions.fetched", call_id=call.call_id, url=where, actions=len(prepared))
            return ActionsQueued(time.time(), tuple(prepared), replace=True,
                                 source=_ANSWER_SOURCES.get(command.kind, command.kind))
        log.warning("actions.fetch_refused", call_id=call.call_id, url=where, reason=reason)
        return ActionsFetchFailed(time.time(), command.action_id, reason)

    def connect_router(self, call: ActiveCall) -> Router | None:
        """The router of the connect the call runs now, built from its spec
        once (None when no connect runs)."""
        core = call.core
        if not isinstance(core, LiveCall):
            return call.router
        running = core.running_action
        if running is None or running.type != "connect":
            return None
        if call.router is not None and call.router_action == running.id:
            return call.router
        options = ConnectAction.model_validate(running.spec)
        routing = options.model_dump(mode="json", include={"to", "fallbacks"}, exclude_none=True)
        spec = self.checks.options_spec(routing["to"], routing.get("fallbacks"), options, "to", "")
        custom = str(call.request.metadata.get("custom_field", ""))[:MAX_CUSTOM_FIELD_CHARS]
        digits = core.digits or ""
        if core.direction == "inbound":
            context = CallContext.inbound(core.plan.call_id, core.from_, core.to, digits, custom)
        else:
            context = CallContext(core.plan.call_id, core.plan.leg_a, core.from_, custom,
                                  digits=digits)
        call.router, call.router_action = self.make_router(context, spec), running.id
        return call.router
