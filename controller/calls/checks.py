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

from controller.calls.request import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_TARGETS,
    MAX_TIME_LIMIT,
    MIN_TIME_LIMIT,
    CallRequest,
    Strategy,
    check_metadata,
)
from controller.config import Config
from controller.core.plan import CallPlan
from controller.errors import InvalidField, WhisperError
from controller.numbers import parse_target, refuse_same_legs
from controller.outbound import check_url
from controller.routing.spec import Group, RouteSpec, parse_fallbacks, parse_item
from controller.tts import RenderedAudio, WhisperRenderer, check_text

_CALLER_ID = re.compile(r"\+?[0-9]{3,20}")


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
        spec = self.route_spec(request)
        refuse_same_legs(leg_a, [item.to for item in spec.items])
        # The config's default is held to the same bounds as a request's.
        time_limit = request.time_limit if request.time_limit is not None else defaults.time_limit
        if not MIN_TIME_LIMIT <= time_limit <= MAX_TIME_LIMIT:
            raise InvalidField(f"time_limit must be {MIN_TIME_LIMIT}-{MAX_TIME_LIMIT} seconds, "
                               f"got {time_limit}", field="time_limit")
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
        if request.whisper:  # its length in seconds is known only once rendered
            check_text(request.whisper, "whisper")
        record = defaults.record if request.record is None else request.record
        return Checked(leg_a.value, spec, time_limit, caller_id, record)

    def route_spec(self, request: CallRequest) -> RouteSpec:
        region = self.config.calls.default_region
        routing = request.routing()
        targets = routing["leg_b"] if isinstance(routing["leg_b"], list) else [routing["leg_b"]]
        if not 1 <= len(targets) <= MAX_TARGETS:
            raise InvalidField(f"leg_b must name 1-{MAX_TARGETS} targets", field="leg_b")
        items = tuple(parse_item(t, region, "leg_b" if len(targets) == 1 else f"leg_b[{i}]",
                                 self.groups.__contains__, self.config.outbound)
                      for i, t in enumerate(targets))
        fallback_url = request.dial_whom_fallback_url
        if fallback_url:
            check_url(fallback_url, self.config.outbound, "dial_whom_fallback_url")
        ring_timeout = (request.ring_timeout if request.ring_timeout is not None
                        else self.config.calls.ring_timeout)
        max_attempts = (request.max_attempts if request.max_attempts is not None
                        else DEFAULT_MAX_ATTEMPTS)
        return RouteSpec(items, Strategy(request.strategy), ring_timeout, max_attempts,
                         parse_fallbacks(routing["fallbacks"], region, "fallbacks",
                                         self.groups.__contains__, self.config.outbound),
                         fallback_url or None, request.dial_whom_ask_again)

    async def prepare(self, request: CallRequest, checked: Checked, call_id: str) -> Prepared:
        """Render the whisper (refused if it takes too long to say) and name
        the recording: the plan the core runs. WhisperError if the whisper
        cannot be rendered at all (the speech tools are missing or fail)."""
        try:
            whisper = await self.renderer.render(request.whisper) if request.whisper else None
        except WhisperError as exc:
            raise WhisperError(
                f"the whisper could not be rendered, so nothing was dialed ({exc.message}): "
                "retry later, or place the call without a whisper", field="whisper",
                **exc.details) from exc
        recording: Path | None = None
        if checked.record:
            directory = Path(self.config.media.recording_dir)
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            recording = directory / f"{call_id}.wav"
        plan = CallPlan(
            call_id=call_id,
            leg_a=checked.leg_a,
            leg_b=checked.spec.describe(),
            ring_timeout=checked.spec.ring_timeout,
            time_limit=checked.time_limit,
            whisper_audio=self.config.whisper_path_on_switch(whisper.path) if whisper else None,
            recording_file=self.config.recording_path_on_switch(recording) if recording else None,
            caller_id=checked.caller_id or None,
            whisper_on_answer=request.whisper_timing == "on_answer",
            confirm_key=request.confirm_key,
            confirm_timeout=request.confirm_timeout,
            hold_music=request.while_ringing == "music",
        )
        return Prepared(plan, whisper, recording)
