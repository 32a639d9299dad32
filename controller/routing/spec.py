"""What a call's leg B route is: targets, strategy, fallbacks; agent groups.

Built from API requests and from config, validated here so that a bad route
is refused before anything is dialed. Targets come out normalised: E.164
numbers, ``sip:`` URIs, ``endpoint:NAME``, ``group:NAME`` or an http(s) URL
to ask for numbers (dial whom).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from controller.calls.request import (
    DEFAULT_CALLS_PERIOD_HOURS,
    DEFAULT_MAX_ATTEMPTS,
    MAX_CALLS_PERIOD_HOURS,
    MAX_GROUP_AGENTS,
    MAX_GROUP_NAME_CHARS,
    MAX_RING_TIMEOUT,
    MAX_TARGETS,
    MIN_RING_TIMEOUT,
    QUEUE_ANNOUNCE_EVERY,
    QUEUE_MAX_SIZE,
    QUEUE_MAX_WAIT,
    Outcome,
    Strategy,
)
from controller.errors import InvalidField
from controller.numbers import parse_target
from controller.outbound import OutboundConfig, check_url
from controller.tts import check_text

GROUP_PREFIX = "group:"
# Plain ASCII only: no look-alike or fullwidth letters, no dots (a name is
# echoed in messages and used in URLs and targets).
GROUP_NAME = re.compile(rf"[a-z0-9_-]{{1,{MAX_GROUP_NAME_CHARS}}}")


def check_group_name(name: object, field_name: str) -> str:
    """``name`` if it may name an agent group; else InvalidField naming ``field_name``."""
    if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
        raise InvalidField(f"{field_name}: {name!r} is not a group name: use 1-{MAX_GROUP_NAME_CHARS} "
                           "lower-case letters a-z, digits, '_' or '-'", field=field_name)
    return name


class FallbackAction(StrEnum):
    DIAL = "dial"
    MESSAGE = "message"
    HANGUP = "hangup"
    QUEUE = "queue"


@dataclass(frozen=True)
class QueueSpec:
    """Hold the caller until an agent of ``group`` is free, with music and
    position announcements; past ``max_wait`` (or with ``max_size`` callers
    already waiting) the caller hears ``message`` and is hung up."""

    group: str
    max_wait: int = QUEUE_MAX_WAIT[0]
    max_size: int = QUEUE_MAX_SIZE[0]
    announce_every: int = QUEUE_ANNOUNCE_EVERY[0]
    message: str = ""


@dataclass(frozen=True)
class Fallback:
    action: FallbackAction
    to: tuple[RouteItem, ...] = ()
    message: str = ""
    queue: QueueSpec | None = None


@dataclass(frozen=True)
class RouteItem:
    to: str  # normalised target, group:NAME or URL
    ring_timeout: int | None = None  # None: the route's (or group's) own

    @property
    def is_group(self) -> bool:
        return self.to.startswith(GROUP_PREFIX)

    @property
    def is_url(self) -> bool:
        return self.to.startswith(("http://", "https://"))


@dataclass(frozen=True)
class RouteSpec:
    items: tuple[RouteItem, ...]
    strategy: Strategy = Strategy.SIMULTANEOUS
    ring_timeout: int = 30
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    fallbacks: Mapping[Outcome, Fallback] = field(default_factory=dict)
    # Dial whom: asked when the primary URL fails or is slow; asked again
    # after every failed attempt when ask_again.
    fallback_url: str | None = None
    ask_again: bool = True

    def describe(self) -> str:
        return ", ".join(item.to for item in self.items)


@dataclass(frozen=True)
class Group:
    name: str
    strategy: Strategy
    agents: tuple[str, ...]
    ring_timeout: int | None = None
    # least-calls counts an agent's calls over this many hours.
    calls_period_hours: float = DEFAULT_CALLS_PERIOD_HOURS
    fallbacks: Mapping[Outcome, Fallback] = field(default_factory=dict)
    source: str = "api"  # "config" groups cannot be changed over the API

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategy": str(self.strategy),
            "agents": list(self.agents),
            "ring_timeout": self.ring_timeout,
            "calls_period_hours": self.calls_period_hours,
            "fallbacks": {str(k): fallback_as_dict(v) for k, v in self.fallbacks.items()},
            "source": self.source,
        }


def fallback_as_dict(fallback: Fallback) -> dict[str, Any]:
    if fallback.action is FallbackAction.DIAL:
        return {"dial": [item.to for item in fallback.to]}
    if fallback.action is FallbackAction.MESSAGE:
        return {"message": fallback.message}
    if fallback.queue is not None:
        return {"queue": asdict(fallback.queue)}
    return {"hangup": True}


# ------------------------------------------------------------------ parsing

GroupExists = Callable[[str], bool]


def parse_item(value: Any, region: str, field_name: str, group_exists: GroupExists,
               outbound: OutboundConfig | None = None) -> RouteItem:
    """One target: a string, or {"to": ..., "ring_timeout": n}. A dial-whom
    URL must fit ``outbound`` (without it, only its form is checked)."""
    ring_timeout = None
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"to", "ring_timeout"})
        if unknown:
            raise InvalidField(f"{field_name} has unknown keys {unknown}: use to, ring_timeout",
                               field=field_name)
        ring_timeout = ring_timeout_of(value.get("ring_timeout"), f"{field_name}.ring_timeout")
        value = value.get("to")
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(f"{field_name} must be a number, sip: URI, endpoint:NAME, "
                           "group:NAME or http(s) URL", field=field_name)
    text = value.strip()
    if text.startswith(GROUP_PREFIX):
        name = check_group_name(text[len(GROUP_PREFIX):], field_name)
        if not group_exists(name):
            raise InvalidField(f"{field_name}: there is no agent group {name!r}", field=field_name)
        return RouteItem(text, ring_timeout)
    if text.startswith(("http://", "https://")):
        return RouteItem(check_url(text, outbound, field_name), ring_timeout)
    return RouteItem(parse_target(text, region, field_name).value, ring_timeout)


def ring_timeout_of(value: Any, field_name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (
            MIN_RING_TIMEOUT <= value <= MAX_RING_TIMEOUT):
        raise InvalidField(f"{field_name} must be {MIN_RING_TIMEOUT}-{MAX_RING_TIMEOUT} seconds, "
                           f"got {value!r}", field=field_name)
    return value


def parse_fallbacks(value: Any, region: str, field_name: str, group_exists: GroupExists,
                    outbound: OutboundConfig | None = None) -> dict[Outcome, Fallback]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidField(f"{field_name} must be an object keyed by "
                           f"{[str(o) for o in Outcome]}", field=field_name)
    fallbacks: dict[Outcome, Fallback] = {}
    for key, spec in value.items():
        try:
            outcome = Outcome(key)
        except ValueError:
            raise InvalidField(f"{field_name}.{key} is not one of {[str(o) for o in Outcome]}",
                               field=f"{field_name}.{key}") from None
        fallbacks[outcome] = _parse_fallback(spec, region, f"{field_name}.{key}", group_exists,
                                             outbound)
    return fallbacks


def _parse_fallback(spec: Any, region: str, field_name: str, group_exists: GroupExists,
                    outbound: OutboundConfig | None) -> Fallback:
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise InvalidField(f"{field_name} must be one of {{\"dial\": [targets]}}, "
                           "{\"message\": text}, {\"queue\": {...}} or {\"hangup\": true}",
                           field=field_name)
    ((action, arg),) = spec.items()
    if action == "dial":
        targets = [arg] if isinstance(arg, (str, Mapping)) else arg
        if not isinstance(targets, list) or not 1 <= len(targets) <= MAX_TARGETS:
            raise InvalidField(f"{field_name}.dial must name 1-{MAX_TARGETS} targets",
                               field=field_name)
        return Fallback(FallbackAction.DIAL, tuple(
            parse_item(t, region, f"{field_name}.dial[{i}]", group_exists, outbound)
            for i, t in enumerate(targets)))
    if action == "message":
        if not isinstance(arg, str) or not arg.strip():
            raise InvalidField(f"{field_name}.message must be text to speak", field=field_name)
        check_text(arg, f"{field_name}.message")
        return Fallback(FallbackAction.MESSAGE, message=arg)
    if action == "hangup" and arg is True:
        return Fallback(FallbackAction.HANGUP)
    if action == "queue":
        return Fallback(FallbackAction.QUEUE, queue=_parse_queue(arg, f"{field_name}.queue",
                                                                 group_exists))
    raise InvalidField(f"{field_name}: unknown fallback {action!r}", field=field_name)


_QUEUE_LIMITS = {"max_wait": QUEUE_MAX_WAIT[1:], "max_size": QUEUE_MAX_SIZE[1:],
                 "announce_every": QUEUE_ANNOUNCE_EVERY[1:]}


def _parse_queue(spec: Any, field_name: str, group_exists: GroupExists) -> QueueSpec:
    if not isinstance(spec, Mapping):
        raise InvalidField(f"{field_name} must be an object with group, max_wait, max_size, "
                           "announce_every, message", field=field_name)
    unknown = sorted(set(spec) - {"group", *_QUEUE_LIMITS, "message"})
    if unknown:
        raise InvalidField(f"{field_name} has unknown keys {unknown}", field=field_name)
    group = check_group_name(spec.get("group"), f"{field_name}.group")
    if not group_exists(group):
        raise InvalidField(f"{field_name}.group: there is no agent group {group!r}",
                           field=f"{field_name}.group")
    limits: dict[str, int] = {}
    for key, (low, high) in _QUEUE_LIMITS.items():
        value = spec.get(key, getattr(QueueSpec, key))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidField(f"{field_name}.{key} must be {low}-{high}, got {value!r}",
                               field=f"{field_name}.{key}")
        limits[key] = value
    message = spec.get("message", "")
    if not isinstance(message, str):
        raise InvalidField(f"{field_name}.message must be text", field=f"{field_name}.message")
    if message:
        check_text(message, f"{field_name}.message")
    return QueueSpec(group, message=message, **limits)


def parse_group(name: str, data: Mapping[str, Any], region: str, group_exists: GroupExists,
                source: str = "api") -> Group:
    check_group_name(name, "name")
    unknown = sorted(set(data) - {"name", "strategy", "agents", "ring_timeout",
                                  "calls_period_hours", "fallbacks"})
    if unknown:
        raise InvalidField(f"group {name} has unknown keys {unknown}", field=unknown[0])
    try:
        strategy = Strategy(data.get("strategy", Strategy.ROUND_ROBIN))
    except ValueError:
        raise InvalidField(f"strategy must be one of {[str(s) for s in Strategy]}",
                           field="strategy") from None
    agents = data.get("agents")
    if not isinstance(agents, list) or not 1 <= len(agents) <= MAX_GROUP_AGENTS:
        raise InvalidField(f"agents must list 1-{MAX_GROUP_AGENTS} numbers, sip: URIs or endpoint:NAMEs",
                           field="agents")
    parsed = tuple(parse_target(str(a), region, f"agents[{i}]").value
                   for i, a in enumerate(agents))
    if len(set(parsed)) != len(parsed):
        raise InvalidField("agents lists the same agent twice", field="agents")
    if strategy is Strategy.SIMULTANEOUS and len(parsed) > MAX_TARGETS:
        raise InvalidField(f"a simultaneous group rings at most {MAX_TARGETS} agents",
                           field="agents")
    period = data.get("calls_period_hours", DEFAULT_CALLS_PERIOD_HOURS)
    if not isinstance(period, (int, float)) or isinstance(period, bool) \
            or not 0 < period <= MAX_CALLS_PERIOD_HOURS:
        raise InvalidField(f"calls_period_hours must be 0-{MAX_CALLS_PERIOD_HOURS:g}",
                           field="calls_period_hours")
    return Group(name, strategy, parsed,
                 ring_timeout_of(data.get("ring_timeout"), "ring_timeout"), float(period),
                 parse_fallbacks(data.get("fallbacks"), region, "fallbacks", group_exists), source)
