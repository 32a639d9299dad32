"""Running calls: validation, whisper rendering, the core and the backend,
wired together for one call at a time or many.

Each call has one task that feeds its core one event at a time, logs every
state transition, tells the listener (which persists it, prints it, or sends
webhooks for it), and then carries out the commands the core returned, in order.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller.backends.base import Backend
from controller.calls.core import (
    CallConnect,
    CallEnded,
    CallPlan,
    Command,
    CommandFailed,
    Event,
    HangupRequested,
    SwitchLost,
    Transition,
)
from controller.config import Config
from controller.errors import InvalidField, InvalidTransition, SwitchError
from controller.numbers import parse_legs
from controller.tts import RenderedAudio, WhisperRenderer
from controller.webhooks import check_url

log = structlog.get_logger(__name__)

_CALLER_ID = re.compile(r"\+?[0-9]{3,20}")
# Margin on top of a call's longest possible length before the watchdog acts.
WATCHDOG_MARGIN = 60.0

WEBHOOK_EVENTS = ("initiated", "ringing", "answered", "bridged", "completed")


@dataclass
class CallRequest:
    leg_a: str
    leg_b: str
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


class CallListener(Protocol):
    """Told of every call's life: the daemon persists it and enqueues its
    webhooks; the command line prints it."""

    async def call_created(self, call: ActiveCall) -> None:
        """Before anything is dialed; raising here stops the call."""

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None:
        """After the core changed state, before its commands are carried out."""

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        """Once, with the result; may add local fields (not part of the result)."""


class CallService:
    def __init__(self, config: Config, backend: Backend, renderer: WhisperRenderer,
                 listener: CallListener) -> None:
        self.config = config
        self.backend = backend
        self.renderer = renderer
        self.listener = listener
        self.calls: dict[str, ActiveCall] = {}

    async def place(self, request: CallRequest) -> ActiveCall:
        """Validate, prepare and start a call; returns once Leg A is originated
        (or refused). Bad input raises InvalidRequest before anything is dialed."""
        plan, whisper, recording = await self._prepare(request)
        call = ActiveCall(CallConnect(plan, created_at=time.time()), request, whisper, recording)
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
        call = ActiveCall(core, request, None, recording, logged=len(core.timeline))
        self.calls[call.call_id] = call
        try:
            missed = await self.backend.reattach(call.call_id, str(core.state),
                                                 lambda event: call.events.put_nowait(event))
        except BaseException:
            self.calls.pop(call.call_id, None)
            raise
        live = call.events
        call.events = asyncio.Queue()
        for event in missed:
            call.events.put_nowait(event)
        while not live.empty():
            call.events.put_nowait(live.get_nowait())
        log.info("call.resumed", call_id=call.call_id, state=str(core.state), missed=len(missed))
        call.task = asyncio.create_task(self._follow(call), name=f"call-{call.call_id}")
        return call

    async def hangup(self, call_id: str, reason: str = "requested") -> None:
        call = self.calls[call_id]
        call.events.put_nowait(HangupRequested(time.time(), reason))

    async def _prepare(self, request: CallRequest) -> tuple[CallPlan, RenderedAudio | None, Path | None]:
        defaults = self.config.calls
        leg_a, leg_b = parse_legs(request.leg_a, request.leg_b, defaults.default_region)
        ring_timeout = _bounded("ring_timeout", request.ring_timeout, defaults.ring_timeout, 1, 600)
        time_limit = _bounded("time_limit", request.time_limit, defaults.time_limit, 1, 86400)
        caller_id = request.caller_id if request.caller_id is not None else defaults.caller_id
        if caller_id and not _CALLER_ID.fullmatch(caller_id):
            raise InvalidField(f"caller_id {caller_id!r} must be digits with an optional leading +",
                               field="caller_id")
        webhook = request.webhook_url or self.config.webhook.url
        if webhook:
            check_url(webhook)
        unknown = sorted(set(request.webhook_events) - set(WEBHOOK_EVENTS))
        if unknown:
            raise InvalidField(f"webhook_events {unknown} are not among {list(WEBHOOK_EVENTS)}",
                               field="webhook_events")
        record = defaults.record if request.record is None else request.record

        whisper = await self.renderer.render(request.whisper) if request.whisper else None
        unreached = await self.renderer.render(self.config.whisper.b_unreached_message)
        call_id = str(uuid.uuid4())
        recording: Path | None = None
        if record:
            directory = Path(self.config.media.recording_dir)
            directory.mkdir(parents=True, exist_ok=True)
            recording = directory / f"{call_id}.wav"
        plan = CallPlan(
            call_id=call_id,
            leg_a=leg_a.value,
            leg_b=leg_b.value,
            ring_timeout=ring_timeout,
            time_limit=time_limit,
            whisper_audio=self.config.whisper_path_on_switch(whisper.path) if whisper else None,
            b_unreached_audio=self.config.whisper_path_on_switch(unreached.path),
            recording_file=self.config.recording_path_on_switch(recording) if recording else None,
            caller_id=caller_id or None,
        )
        return plan, whisper, recording

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
                await self._handle(call, event)
        except Exception as exc:  # a bug must not leave the call unreported
            log.exception("call.follow_failed", call_id=call.call_id)
            if not call.done.done():
                call.done.set_exception(exc)
        finally:
            self.backend.forget(call.call_id)
            self.calls.pop(call.call_id, None)

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
            try:
                await self.backend.execute(call.call_id, command)
            except SwitchError as exc:
                log.error("call.command_failed", call_id=call.call_id,
                          command=type(command).__name__, error_id=exc.error_id, error=exc.message)
                await self._handle(call, CommandFailed(time.time(), type(command).__name__,
                                                       exc.message))
                return

    async def _log_transitions(self, call: ActiveCall) -> None:
        new = call.core.timeline[call.logged:]
        if not new:
            return
        for transition in new:
            log.info("call.transition", call_id=call.call_id, from_state=str(transition.from_state),
                     to_state=str(transition.to_state), reason=transition.reason)
        call.logged = len(call.core.timeline)
        await self.listener.call_changed(call, new)

    async def _finish(self, call: ActiveCall, result: dict[str, Any]) -> None:
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


def _bounded(name: str, value: int | None, default: int, low: int, high: int) -> int:
    chosen = default if value is None else value
    if not low <= chosen <= high:
        raise InvalidField(f"{name} must be {low}-{high} seconds, got {chosen}", field=name)
    return chosen
