"""Running one call: its task feeds the core one event at a time, logs every
state transition, tells the listener (which persists it, prints it, or sends
webhooks for it), and then carries out the commands the core returned, in
order; at the end it completes the result and tells the listener once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller.backends.base import Backend
from controller.calls.request import CallRequest
from controller.compliance.guard import Compliance
from controller.core.commands import CallEnded, ChooseTargets, Command, FetchActions, Report
from controller.core.events import (
    Announcement,
    CommandFailed,
    Event,
    LegAnswered,
    SwitchLost,
    TargetsChosen,
)
from controller.core.live import LiveCall
from controller.core.machine import CallConnect
from controller.core.outcomes import Leg
from controller.core.states import CallState, Transition
from controller.errors import InvalidTransition, SwitchError
from controller.routing.agents import AgentBook
from controller.routing.reservations import Reservations
from controller.routing.router import Router
from controller.store import IdempotencyKey, StoredCall, StoreError
from controller.tts import RenderedAudio, WhisperRenderer

log = structlog.get_logger(__name__)

# Margin on top of a call's longest possible length before the watchdog acts.
WATCHDOG_MARGIN = 60.0


@dataclass
class ActiveCall:
    core: CallConnect
    request: CallRequest
    # A retried request with the same key gets this call, not a second one.
    idempotency_key: IdempotencyKey | None
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
    # The request as the store keeps it: made once, saved with every change.
    stored_request: dict[str, Any] | None = None
    # A live call: the connect action ``router`` was built for, and the URL being asked.
    router_action: str | None = None
    fetching: asyncio.Task[None] | None = None
    actions_given: int = 0  # every action handed to a live call (queued ones not yet recorded too)

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


class HeldEvents:
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



class DuplicateRequest(Exception):
    """The Idempotency-Key was seen before: here is the call it placed."""

    def __init__(self, existing: StoredCall) -> None:
        super().__init__(existing.call_id)
        self.existing = existing


class CallListener(Protocol):
    """Told of every call's life: the daemon persists it and enqueues its
    webhooks; the command line prints it."""

    async def call_created(self, call: ActiveCall) -> None:
        """Before anything is dialed; raising here stops the call
        (DuplicateRequest: the idempotency key was seen before)."""

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None:
        """After the core changed state, before its commands are carried out."""

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        """Once, with the result; may add local fields (not part of the result)."""

    async def call_reported(self, call: ActiveCall, event: str, data: dict[str, Any]) -> None:
        """A live call's status callback (call.gathered, call.action.completed)."""


class LiveSteps(Protocol):
    """What only a live call's commands need of the service
    (:class:`controller.calls.live.LiveCalls`)."""

    def spawn_fetch(self, call: ActiveCall, command: FetchActions) -> None:
        """Ask the command's URL in the background; its answer comes as an event."""

    def connect_router(self, call: ActiveCall) -> Router | None:
        """The router of the connect the call runs now (None: none runs)."""



class CallRunner:
    """Follows every live call (``calls``, by id) to its end."""

    def __init__(self, backend: Backend, renderer: WhisperRenderer, listener: CallListener,
                 agents: AgentBook, compliance: Compliance, calls: dict[str, ActiveCall],
                 reservations: Reservations) -> None:
        self.backend = backend
        self.renderer = renderer
        self.listener = listener
        self.agents = agents
        self.compliance = compliance
        self.calls = calls
        self.reservations = reservations
        self.live: LiveSteps | None = None
        # Where recordings land as the controller sees them (a live call's are named by the switch's path).
        self.recording_dir: Path | None = None

    async def start(self, call: ActiveCall) -> None:
        """Tell the listener, then carry out the core's first commands
        (originate leg A) and follow the call from there."""
        await self.listener.call_created(call)
        self.calls[call.call_id] = call
        self.backend.watch(call.call_id, call.events.put_nowait)
        plan = call.core.plan
        log.info("call.placing", call_id=plan.call_id, leg_a=plan.leg_a, leg_b=plan.leg_b,
                 whisper_seconds=call.whisper and round(call.whisper.seconds, 2))
        await self._run_commands(call, call.core.start())
        self.follow(call)

    def follow(self, call: ActiveCall) -> None:
        call.task = asyncio.create_task(self._follow(call), name=f"call-{call.call_id}")
        # A callback, not a finally: it also runs for a task canceled before it ever ran.
        call.task.add_done_callback(lambda _: self._let_go(call))

    def _let_go(self, call: ActiveCall) -> None:
        """The call is over for the controller: what it held is released."""
        for task in (call.routing, call.fetching):
            if task is not None:
                task.cancel()
        self.backend.forget(call.call_id)
        self.calls.pop(call.call_id, None)
        self.compliance.release(call.call_id)
        self.reservations.release(call.call_id)

    def spawn_routing(self, call: ActiveCall, command: ChooseTargets) -> None:
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

    async def _handle(self, call: ActiveCall, event: Event) -> None:
        answered = _answered_at(call, event)
        try:
            commands = call.core.handle(event)
        except InvalidTransition as exc:
            log.error("call.invalid_transition", call_id=call.call_id, error_id=exc.error_id,
                      error=exc.message)
            commands = call.core.handle(CommandFailed(event.at, "core", exc.message))
        if len(call.core.timeline) == call.logged and _answered_at(call, event) != answered:
            # An answer that moves the call nowhere (an inbound caller answered
            # by a step or the bridge) is stored too: a restart must not lose it.
            await self.listener.call_changed(call, [])
        await self._run_commands(call, commands)

    async def _run_commands(self, call: ActiveCall, commands: list[Command]) -> None:
        # Before anything is awaited: an attempt that just ended lets its
        # targets go, one that just started (or answered) holds them.
        self.reservations.follow(call.call_id, call.core)
        await self._log_transitions(call)
        for command in commands:
            if isinstance(command, CallEnded):
                await self._finish(call, command.result)
                continue
            if isinstance(command, Report):
                await self.listener.call_reported(call, command.event, command.data)
                continue
            if isinstance(command, FetchActions) and self.live is not None:
                self.live.spawn_fetch(call, command)
                continue
            if isinstance(command, ChooseTargets):
                if self.live is not None:
                    call.router = self.live.connect_router(call)
                if call.router is None:  # a bug: the call must not wait for a route forever
                    await self._handle(call, CommandFailed(time.time(), "ChooseTargets",
                                                           "no route to choose from"))
                    return
                self.spawn_routing(call, command)
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
        # The call's change and its bookkeeping start together, so that they
        # share one transaction and one sync (the store's group commit); each
        # is still written before the call goes on. The change goes first:
        # its save is queued to run after this turn, where the others join it.
        writes: list[Awaitable[None]] = []
        new = call.core.timeline[call.logged:]
        if new:
            for transition in new:
                log.info("call.transition", call_id=call.call_id,
                         from_state=str(transition.from_state), to_state=str(transition.to_state),
                         reason=transition.reason)
            call.logged = len(call.core.timeline)
            writes.append(self.listener.call_changed(call, new))
            writes += self._count_calls(call, new)
        b = call.core.legs[Leg.B]
        if call.agent is None and call.core.bridged_at is not None:
            # The target that took the call (one that answered and declined did not).
            call.agent = b.target
            writes.append(_keep_books(call, self.agents.agent_call_started(
                b.target, call.call_id, b.answered_at or call.core.bridged_at)))
        await asyncio.gather(*writes)

    def _count_calls(self, call: ActiveCall, transitions: list[Transition]) -> list[Awaitable[None]]:
        """Numbers dialed by these transitions count against the daily cap:
        leg A when it is originated, leg B's targets when they are dialed."""
        counts: list[Awaitable[None]] = []
        for transition in transitions:
            if transition.to_state is CallState.DIALING_A:
                counts.append(_keep_books(call, self.compliance.record(
                    call.call_id, [call.core.plan.leg_a], transition.at)))
            elif transition.to_state is CallState.DIALING_B and call.core.attempts:
                counts.append(_keep_books(call, self.compliance.record(
                    call.call_id, call.core.attempts[-1]["targets"], transition.at)))
        return counts

    async def _finish(self, call: ActiveCall, result: dict[str, Any]) -> None:
        result = dict(result)
        result["whisper"] = None
        if call.request.whisper:
            result["whisper"] = {"text": self.renderer.clean(call.request.whisper),
                                 "seconds": round(call.whisper.seconds, 3) if call.whisper else None,
                                 "played": call.core.whisper_played,
                                 # Rendered before leg A was dialed: ready by the call's start.
                                 "ready_at": call.core.created_at if call.whisper else None}
        recording = call.recording_path or self._live_recording(call)
        result["recording"] = None
        if recording is not None and call.core.recording_started:
            # The links are the daemon's to give (it serves them); none from the command line.
            result["recording"] = {"path": str(recording), "url": None, "signed_url": None,
                                   "signed_url_expires_at": None}
        result["metadata"] = call.request.metadata
        log.info("call.ended", call_id=call.call_id, status=result["status"],
                 reason=result["reason"], hangup_by=result["hangup_by"],
                 talk_seconds=result["talk_seconds"])
        # One transaction for both, as in _log_transitions (the call's first).
        writes = [self.listener.call_ended(call, result)]
        if call.agent is not None:
            writes.append(_keep_books(call, self.agents.agent_call_ended(
                call.agent, call.call_id, call.core.ended_at or time.time())))
        await asyncio.gather(*writes)
        if not call.done.done():
            call.done.set_result(result)


    def _live_recording(self, call: ActiveCall) -> Path | None:
        """A live call's recording: its last record action's, else its connect's."""
        core = call.core
        if not isinstance(core, LiveCall) or self.recording_dir is None:
            return None
        files = [action["file"] for action in core.actions
                 if action.get("file") and action["status"] == "completed"]
        on_switch = files[-1] if files else core.plan.recording_file
        return None if on_switch is None else self.recording_dir / Path(on_switch).name


def _answered_at(call: ActiveCall, event: Event) -> float | None:
    """When the leg an answer names was answered, as the core has it."""
    return call.core.legs[event.leg].answered_at if isinstance(event, LegAnswered) else None


async def _keep_books(call: ActiveCall, note: Awaitable[None]) -> None:
    """Agent state and counts are bookkeeping: a store that cannot take them
    (a full disk) must not stop the call they describe."""
    try:
        await note
    except StoreError as exc:
        log.error("call.bookkeeping_not_saved", call_id=call.call_id, error=exc.message)
