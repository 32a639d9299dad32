"""Configuration: typed defaults, then a TOML file, then environment variables.

Every setting ``[section] key`` can be overridden by ``CALLCONNECT_SECTION_KEY``
(for example ``CALLCONNECT_ASTERISK_SECRET``). Relative paths in a file are read
relative to that file's folder. ``callconnect.example.toml`` documents them all.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from controller.calls.request import MAX_RING_TIMEOUT, MIN_RING_TIMEOUT
from controller.compliance.destinations import DestinationsConfig
from controller.compliance.destinations import check_config as check_destinations
from controller.compliance.windows import window_of
from controller.errors import ConfigError, InvalidRequest
from controller.outbound import OutboundConfig
from controller.routing.spec import Group, parse_group

ENV_PREFIX = "CALLCONNECT_"
BACKENDS = ("asterisk", "freeswitch")


@dataclass
class Route:
    """Numbers starting with ``prefix`` are dialed through PJSIP ``endpoint``."""

    prefix: str
    endpoint: str


def route_for(number: str, routes: list[Route], default: str) -> str:
    """The endpoint (Asterisk) or gateway (FreeSWITCH) a number is dialed
    through: the longest matching route's, else ``default``."""
    matching = [route for route in routes if number.startswith(route.prefix)]
    return max(matching, key=lambda route: len(route.prefix)).endpoint if matching else default


@dataclass
class AsteriskConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callconnect"
    secret: str = field(default="", repr=False)
    connect_timeout: float = 10.0
    action_timeout: float = 5.0
    # A Ping every ping_interval s, unanswered within ping_timeout s, drops the link.
    ping_interval: float = 5.0
    ping_timeout: float = 5.0
    # PJSIP endpoint that numbers are dialed through, unless a route says otherwise.
    trunk_endpoint: str = "trunk"
    # PJSIP endpoint used to dial sip: URIs (PJSIP/<endpoint>/<uri>).
    uri_endpoint: str = "callconnect-uri"
    routes: list[Route] = field(default_factory=list)


@dataclass
class FreeswitchConfig:
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = field(default="", repr=False)
    connect_timeout: float = 10.0
    action_timeout: float = 5.0
    # Numbers are dialed as sofia/gateway/<gateway>/<number>, unless a route
    # (prefix -> gateway) says otherwise; sip: URIs as sofia/<uri_profile>/<uri>.
    gateway: str = "trunk"
    uri_profile: str = "internal"
    routes: list[Route] = field(default_factory=list)


@dataclass
class CallDefaults:
    default_region: str = "ZA"
    ring_timeout: int = 30
    time_limit: int = 3600
    caller_id: str = ""
    # Caller IDs a request may ask for (empty: any); caller_id is always allowed.
    caller_ids: list[str] = field(default_factory=list)
    record: bool = True


@dataclass
class RoutingConfig:
    # How long a dial-whom URL may take to answer before its fallback is asked.
    dial_whom_timeout: float = 10.0


@dataclass
class MediaConfig:
    """Where whisper audio and recordings live, as the controller sees them, and
    the same folders as the switch sees them (they differ when the switch runs
    in a chroot or container; empty means the same path)."""

    whisper_dir: str = "/var/lib/callconnect/whispers"
    whisper_switch_dir: str = ""
    recording_dir: str = "/var/spool/callconnect/recordings"
    recording_switch_dir: str = ""


@dataclass
class WhisperConfig:
    voice: str = "en"
    rate: int = 160  # words per minute
    max_seconds: float = 30.0
    # Renders (espeak-ng + sox) running at once; more wait up to render_wait_seconds.
    max_concurrent_renders: int = 2
    render_wait_seconds: float = 10.0
    # The cache of rendered files: unused this long, or over this size (least
    # recently used first), they are deleted; never one used in the last 2 days.
    cache_max_age_days: float = 30.0
    cache_max_mb: float = 500.0
    b_unreached_message: str = (
        "Sorry, the other party could not be reached. Please try again later. Goodbye."
    )


@dataclass
class WebhookConfig:
    url: str = ""
    timeout: float = 10.0
    attempts: int = 3  # the command line's direct attempts
    # Standard Webhooks signing secret ("whsec_" + base64 of 24 bytes or more).
    # The daemon refuses to start without one unless unsigned = true.
    signing_secret: str = field(default="", repr=False)
    unsigned: bool = False
    max_age_hours: float = 24.0  # how long the daemon keeps retrying a delivery
    retry_base_seconds: float = 5.0  # first retry delay; doubles, with jitter
    # The daemon's outbox: deliveries in flight at once, and at most so many to one host
    # (name and port), so a slow or dead receiver cannot hold up the others.
    concurrency: int = 16
    per_host_concurrency: int = 4

    def daemon_signing_secret(self) -> str | None:
        """The secret the daemon signs with; None (unsigned) only when asked
        for, as any request may name a webhook_url."""
        if self.signing_secret:
            return self.signing_secret
        if self.unsigned:
            return None
        raise ConfigError(
            "webhook.signing_secret is empty, so receivers could not tell the daemon's webhooks "
            "from forged ones: set it (or CALLCONNECT_WEBHOOK_SIGNING_SECRET) to 'whsec_' + "
            "base64 of 24 bytes or more, or set webhook.unsigned = true to send them unsigned",
            setting="webhook.signing_secret")


@dataclass
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Bearer tokens that may use the API (CALLCONNECT_API_TOKENS: comma-separated).
    tokens: list[str] = field(default_factory=list, repr=False)
    # Public base URL of this API, for recording links in results ("" = the
    # bind address: http://<host>:<port>, a wildcard host as this machine's name).
    public_url: str = ""
    # How long a signed recording link (in the completion webhook) works.
    recording_link_hours: float = 168.0
    # Over these, POST /v1/calls answers 429 with Retry-After (0 = no limit).
    max_calls_per_second: float = 0.0
    max_active_calls: int = 0
    # A request's head must arrive whole within header_timeout s (from the
    # connection, or the previous answer), its body within body_timeout s after.
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    # Open HTTP connections; at the cap the longest-idle one is closed for a new one.
    max_connections: int = 1000
    max_body_bytes: int = 65536  # larger bodies get 413 body-too-large
    metrics_auth: bool = False  # true: /metrics needs a token too
    docs: bool = False  # true: /docs and /redoc, served without any CDN
    docs_auth: bool = False  # true: /docs, /redoc and /openapi.json need a token

    def base_url(self) -> str:
        """The URL links to this API start with: public_url, else the bind address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("", "0.0.0.0", "::"):  # every address: none names this machine better
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@dataclass
class RetentionConfig:
    """What the daemon deletes once older than so many days (0 = kept for
    good), once an hour. Never a call still in progress or scheduled, nor a
    delivery still pending; whisper files follow whisper.cache_max_age_days."""

    calls_days: float = 0.0  # ended calls, with their timelines and deliveries
    deliveries_days: float = 30.0  # webhook deliveries no longer pending
    recordings_days: float = 90.0  # recording files, by their last change


@dataclass
class ComplianceConfig:
    # A do-not-call list: one number per line (# comments); the API adds more.
    dnc_file: str = ""
    # Calls to a number are placed only within these hours of its own time
    # zone ("08:00-21:00"; "" = any time), on these days (empty = every day).
    calling_hours: str = ""
    calling_days: list[str] = field(default_factory=list)
    # Most calls placed to one number in any 24 hours (0 = no cap).
    max_attempts_per_number_per_day: int = 0


@dataclass
class LimitsConfig:
    """Per trunk and per agent (leg A, and the agent leg B reaches); over a
    limit POST /v1/calls answers 429 with Retry-After (0 = no limit)."""

    trunk_calls_per_second: float = 0.0
    trunk_max_active: int = 0
    agent_calls_per_second: float = 0.0
    agent_max_active: int = 0


@dataclass
class StoreConfig:
    path: str = "/var/lib/callconnect/callconnect.sqlite3"


@dataclass
class Config:
    backend: str = "asterisk"
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    freeswitch: FreeswitchConfig = field(default_factory=FreeswitchConfig)
    calls: CallDefaults = field(default_factory=CallDefaults)
    media: MediaConfig = field(default_factory=MediaConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    destinations: DestinationsConfig = field(default_factory=DestinationsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    # Agent groups: [groups.NAME] strategy, agents, ring_timeout, fallbacks ...
    groups: dict[str, Any] = field(default_factory=dict)

    def agent_groups(self) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for name, table in self.groups.items():
            if not isinstance(table, dict):
                raise ConfigError(f"groups.{name} must be a table", setting=f"groups.{name}")
            try:
                groups[name] = parse_group(name, table, self.calls.default_region,
                                           lambda other: other in self.groups, source="config")
            except InvalidRequest as exc:
                raise ConfigError(f"groups.{name}: {exc.message}",
                                  setting=f"groups.{name}") from exc
        return groups

    def whisper_path_on_switch(self, host_path: Path) -> str:
        return _switch_path(host_path, self.media.whisper_dir, self.media.whisper_switch_dir)

    def recording_path_on_switch(self, host_path: Path) -> str:
        return _switch_path(host_path, self.media.recording_dir, self.media.recording_switch_dir)


def _switch_path(host_path: Path, host_dir: str, switch_dir: str) -> str:
    if not switch_dir:
        return str(host_path)
    return str(Path(switch_dir) / host_path.relative_to(host_dir))


def load_config(path: str | os.PathLike[str] | None = None,
                environ: dict[str, str] | None = None) -> Config:
    config = Config()
    if path is not None:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {file} does not exist", path=str(file)) from exc
        except OSError as exc:
            raise ConfigError(f"config file {file} cannot be read: {exc.strerror}",
                              path=str(file)) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}", path=str(file)) from exc
        _apply(config, data, "", file.resolve().parent)
    _apply_env(config, os.environ if environ is None else environ)
    _check(config)
    return config


def _apply(target: Any, data: dict[str, Any], where: str, base: Path) -> None:
    hints = get_type_hints(type(target))
    known = {f.name for f in fields(target)}
    for key, value in data.items():
        name = f"{where}{key}"
        if key not in known:
            raise ConfigError(f"unknown setting {name!r}", setting=name)
        current = getattr(target, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a table", setting=name)
            _apply(current, value, name + ".", base)
        elif key == "routes":
            setattr(target, key, [_route(item, name) for item in value])
        elif key == "groups":
            if not isinstance(value, dict):
                raise ConfigError("groups must be a table of groups", setting=name)
            setattr(target, key, value)
        else:
            converted = _convert(value, hints[key], name)
            if (key.endswith(("_dir", "_file")) or key == "path") and converted \
                    and not Path(converted).is_absolute():
                converted = str((base / converted).resolve())
            setattr(target, key, converted)


def _route(item: Any, name: str) -> Route:
    if not isinstance(item, dict) or set(item) != {"prefix", "endpoint"}:
        raise ConfigError(f"each of {name} needs exactly prefix and endpoint", setting=name)
    return Route(str(item["prefix"]), str(item["endpoint"]))


def _apply_env(config: Config, environ: Any) -> None:
    for section in fields(config):
        value = getattr(config, section.name)
        if is_dataclass(value):
            hints = get_type_hints(type(value))
            for item in fields(value):
                env = f"{ENV_PREFIX}{section.name}_{item.name}".upper()
                if env in environ and item.name != "routes":
                    setattr(value, item.name, _convert(environ[env], hints[item.name], env))
        elif section.name != "groups":  # groups are tables: from the file only
            env = f"{ENV_PREFIX}{section.name}".upper()
            if env in environ:
                setattr(config, section.name, environ[env])


def _convert(value: Any, kind: Any, name: str) -> Any:
    if kind == list[str]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{name} must be a list of strings", setting=name)
        return [i.strip() for i in items if i.strip()]
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind in (int, float):
            if isinstance(value, bool) or (kind is int and isinstance(value, float)):
                raise ValueError(value)
            return kind(value)
        if kind is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {kind.__name__}, got {value!r}", setting=name) from exc
    raise ConfigError(f"{name} cannot be set here", setting=name)


def _check(config: Config) -> None:
    if config.backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}",
                          setting="backend")
    if not MIN_RING_TIMEOUT <= config.calls.ring_timeout <= MAX_RING_TIMEOUT:
        raise ConfigError(f"calls.ring_timeout must be {MIN_RING_TIMEOUT}-{MAX_RING_TIMEOUT} seconds",
                          setting="calls.ring_timeout")
    config.agent_groups()  # a bad group fails at start, not on the first call
    if config.calls.time_limit < 1:
        raise ConfigError("calls.time_limit must be at least 1 second", setting="calls.time_limit")
    _check_compliance(config)
    check_destinations(config.destinations)
    _check_api(config)
    _check_whisper(config.whisper)
    for name in ("concurrency", "per_host_concurrency"):
        if getattr(config.webhook, name) < 1:
            raise ConfigError(f"webhook.{name} must be at least 1", setting=f"webhook.{name}")


def _check_whisper(whisper: WhisperConfig) -> None:
    if whisper.max_concurrent_renders < 1:
        raise ConfigError("whisper.max_concurrent_renders must be at least 1",
                          setting="whisper.max_concurrent_renders")
    for name in ("render_wait_seconds", "cache_max_age_days", "cache_max_mb"):
        if not getattr(whisper, name) > 0:
            raise ConfigError(f"whisper.{name} must be more than 0", setting=f"whisper.{name}")


def _check_compliance(config: Config) -> None:
    compliance = config.compliance
    try:
        window_of(compliance.calling_hours, compliance.calling_days,
                  "compliance.calling_hours", "compliance.calling_days")
    except InvalidRequest as exc:
        raise ConfigError(exc.message, setting=exc.details.get("field", "compliance")) from exc
    if compliance.max_attempts_per_number_per_day < 0:
        raise ConfigError("compliance.max_attempts_per_number_per_day must be 0 (no cap) or more",
                          setting="compliance.max_attempts_per_number_per_day")
    for name in ("trunk_calls_per_second", "trunk_max_active", "agent_calls_per_second",
                 "agent_max_active"):
        if getattr(config.limits, name) < 0:
            raise ConfigError(f"limits.{name} must be 0 (no limit) or more",
                              setting=f"limits.{name}")


def _check_api(config: Config) -> None:
    api = config.api
    for name in ("header_timeout", "body_timeout", "max_connections", "max_body_bytes",
                 "recording_link_hours"):
        if getattr(api, name) <= 0:
            raise ConfigError(f"api.{name} must be more than 0", setting=f"api.{name}")
    if api.public_url and not api.public_url.startswith(("http://", "https://")):
        raise ConfigError(f"api.public_url must start with http:// or https://, got "
                          f"{api.public_url!r}", setting="api.public_url")
    for name in ("calls_days", "deliveries_days", "recordings_days"):
        if getattr(config.retention, name) < 0:
            raise ConfigError(f"retention.{name} must be 0 (keep for good) or more",
                              setting=f"retention.{name}")
