"""The rules of a call request that need the config: numbers in the default
region, agent groups that exist, the outbound URL policy, the caller-ID
allow-list and how long a whisper takes to say. A request that passes them
becomes a plan; one that does not raises InvalidRequest naming the field,
before anything is dialed. (The rules that need nothing but the request are
the model's: :mod:`controller.calls.request`.)"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.calls.connect import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_TARGETS,
    MAX_TIME_LIMIT,
    MIN_TIME_LIMIT,
    ConnectOptions,
    Strategy,
)
from controller.calls.request import CallRequest, check_metadata
from controller.config import Config
from controller.core.plan import CallPlan
from controller.errors import InvalidField, WhisperError
from controller.numbers import parse_target, refuse_same_legs
from controller.outbound import check_url
from controller.routing.spec import Group, RouteSpec, parse_fallbacks, parse_item
from controller.tts import RenderedAudio, WhisperRenderer, check_text

CALLER_ID = re.compile(r"\+?[0-9]{3,20}")


@dataclass(frozen=True)
class Checked:
    """A request that passed every rule: its values normalised, the config's
    defaults filled in."""

    leg_a: str
    spec: RouteSpec
    time_limit: int
    caller_id: str
    record: bool

    def first_targets(self) -> list[tuple[str, str]]:
        """(field, number) of leg B's plain targets, which are rung first."""
        items = self.spec.items
        return [("leg_b" if len(items) == 1 else f"leg_b[{i}]", item.to)
                for i, item in enumerate(items) if not (item.is_group or item.is_url)]

    def fallback_targets(self) -> list[tuple[str, str]]:
        return [(f"fallbacks.{outcome}.dial[{i}]", item.to)
                for outcome, fallback in self.spec.fallbacks.items()
                for i, item in enumerate(fallback.to) if not (item.is_group or item.is_url)]


@dataclass(frozen=True)
class Prepared:
    plan: CallPlan
    whisper: RenderedAudio | None
    recording: Path | None


class RequestChecks:
    def __init__(self, config: Config, groups: Mapping[str, Group],
                 renderer: WhisperRenderer) -> None:
        self.config = config
        self.groups = groups
        self.renderer = renderer

    def check(self, request: CallRequest) -> Checked:
        defaults = self.config.calls
        leg_a = parse_target(request.leg_a, defaults.default_region, "leg_a")
        # A single-leg call has no leg B until a connect action names one.
        spec = RouteSpec(()) if request.single_leg else self.route_spec(request)
        refuse_same_legs(leg_a, [item.to for item in spec.items])
        time_limit = self.time_limit(request, "")
        caller_id = self.caller_id(request.caller_id, "caller_id")
        webhook = request.webhook_url or self.config.webhook.url
        if webhook:
            check_url(webhook, self.config.outbound,
                      "webhook_url" if request.webhook_url else "webhook.url")
        check_metadata(request.metadata)
        if request.whisper:  # its length in seconds is known only once rendered
            check_text(request.whisper, "whisper")
        record = self.config.calls.record if request.record is None else request.record
        return Checked(leg_a.value, spec, time_limit, caller_id, record)

    def time_limit(self, options: ConnectOptions, prefix: str) -> int:
        """The options' time limit, or the config's default, held to the same bounds."""
        time_limit = options.time_limit if options.time_limit is not None \
            else self.config.calls.time_limit
        if not MIN_TIME_LIMIT <= time_limit <= MAX_TIME_LIMIT:
            raise InvalidField(f"{prefix}time_limit must be {MIN_TIME_LIMIT}-{MAX_TIME_LIMIT} "
                               f"seconds, got {time_limit}", field=f"{prefix}time_limit")
        return time_limit

    def caller_id(self, asked: str | None, field: str) -> str:
        """The caller ID to present: ``asked`` if it is one this controller
        may present, else the config's default ("" for none)."""
        defaults = self.config.calls
        caller_id = asked if asked is not None else defaults.caller_id
        if caller_id and not CALLER_ID.fullmatch(caller_id):
            raise InvalidField(f"{field} {caller_id!r} must be digits with an optional leading +",
                               field=field)
        if asked and defaults.caller_ids and asked not in defaults.caller_ids:
            raise InvalidField(f"{field} {asked!r} is not one this controller may present: it "
                               "is not in [calls] caller_ids", field=field)
        return caller_id

    def route_spec(self, request: CallRequest) -> RouteSpec:
        """Leg B's route (a single-leg call has none: InvalidField)."""
        routing = request.routing()
        if "leg_b" not in routing:
            raise InvalidField("leg_b: a single-leg call has no route", field="leg_b")
        return self.options_spec(routing["leg_b"], routing["fallbacks"], request, "leg_b", "")

    def options_spec(self, to: Any, fallbacks: Any, options: ConnectOptions, to_field: str,
                     prefix: str) -> RouteSpec:
        """The route of a connect: ``to`` (leg B's targets, as JSON) and
        ``fallbacks`` (as JSON) with the options; errors name the fields
        under ``prefix`` (``actions[2].``), the targets under ``to_field``."""
        region = self.config.calls.default_region
        targets = to if isinstance(to, list) else [to]
        if not 1 <= len(targets) <= MAX_TARGETS:
            raise InvalidField(f"{to_field} must name 1-{MAX_TARGETS} targets", field=to_field)
        items = tuple(parse_item(t, region, to_field if len(targets) == 1 else f"{to_field}[{i}]",
                                 self.groups.__contains__, self.config.outbound)
                      for i, t in enumerate(targets))
        fallback_url = options.dial_whom_fallback_url
        if fallback_url:
            check_url(fallback_url, self.config.outbound, f"{prefix}dial_whom_fallback_url")
        ring_timeout = (options.ring_timeout if options.ring_timeout is not None
                        else self.config.calls.ring_timeout)
        max_attempts = (options.max_attempts if options.max_attempts is not None
                        else DEFAULT_MAX_ATTEMPTS)
        return RouteSpec(items, Strategy(options.strategy), ring_timeout, max_attempts,
                         parse_fallbacks(fallbacks, region, f"{prefix}fallbacks",
                                         self.groups.__contains__, self.config.outbound),
                         fallback_url or None, options.dial_whom_ask_again)

    async def prepare(self, request: CallRequest, checked: Checked, call_id: str) -> Prepared:
        """Render the whisper (refused if it takes too long to say) and name
        the recording: the plan the core runs. WhisperError if the whisper
        cannot be rendered at all (the speech tools are missing or fail)."""
        whisper = await self.render_whisper(request.whisper, "whisper")
        recording = self.recording_path(call_id) if checked.record else None
        plan = self.plan(call_id, checked.leg_a, checked.spec, request, checked.time_limit,
                         checked.caller_id, whisper, recording)
        return Prepared(plan, whisper, recording)

    async def render_whisper(self, text: str | None, field: str) -> RenderedAudio | None:
        try:
            return await self.renderer.render(text, field) if text else None
        except WhisperError as exc:
            raise WhisperError(
                f"the whisper could not be rendered, so nothing was dialed ({exc.message}): "
                "retry later, or place the call without a whisper", field=field,
                **exc.details) from exc

    def recording_path(self, name: str) -> Path:
        """Where a recording called ``name`` lands (the folder made if missing)."""
        directory = Path(self.config.media.recording_dir)
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        return directory / f"{name}.wav"

    def plan(self, call_id: str, leg_a: str, spec: RouteSpec, options: ConnectOptions,
             time_limit: int, caller_id: str, whisper: RenderedAudio | None,
             recording: Path | None) -> CallPlan:
        """The plan of a connect: leg A (the call's), leg B's route and the options."""
        return CallPlan(
            call_id=call_id,
            leg_a=leg_a,
            leg_b=spec.describe(),
            ring_timeout=spec.ring_timeout,
            time_limit=time_limit,
            whisper_audio=self.config.whisper_path_on_switch(whisper.path) if whisper else None,
            recording_file=self.config.recording_path_on_switch(recording) if recording else None,
            caller_id=caller_id or None,
            whisper_on_answer=options.whisper_timing == "on_answer",
            confirm_key=options.confirm_key,
            confirm_timeout=options.confirm_timeout,
            hold_music=options.while_ringing == "music",
        )
