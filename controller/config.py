"""Configuration: typed defaults, then a TOML file, then systemd credentials,
then environment variables (controller.settings has the details).

Every setting ``[section] key`` can be overridden by ``CALLCONNECT_SECTION_KEY``
(for example ``CALLCONNECT_ASTERISK_SECRET``), and a secret one read from a file
named by ``CALLCONNECT_SECTION_KEY_FILE`` or from the systemd credential
``section.key``. Relative paths in a file are read relative to that file's
folder. Every value is checked here, once; ``callconnect.example.toml``
documents them all. One :class:`Section` per table: a new setting is a field
with its bounds.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import ConfigDict, Field, PrivateAttr, Strict, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from controller.calls.request import (
    MAX_RING_TIMEOUT,
    MAX_TIME_LIMIT,
    MIN_RING_TIMEOUT,
    MIN_TIME_LIMIT,
)
from controller.compliance.destinations import DestinationsConfig
from controller.compliance.destinations import check_config as check_destinations
from controller.compliance.windows import window_of
from controller.errors import ConfigError, InvalidRequest
from controller.inbound.numbers import Number, NumberSettings, parse_number
from controller.outbound import OutboundConfig, url_problem
from controller.routing.spec import Group, parse_group
from controller.settings import ENV_PREFIX, Layers, Section, problem
from controller.tts import check_text

__all__ = ["ENV_PREFIX", "Config", "load_config", "route_for"]

Backend = Literal["asterisk", "freeswitch"]
BACKENDS: tuple[Backend, ...] = ("asterisk", "freeswitch")
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]  # a timeout or an interval
AtLeastOne = Annotated[int, Field(ge=1)]
# The most webhook deliveries the daemon's outbox may have in flight ([webhook] concurrency).
MAX_WEBHOOK_CONCURRENCY = 250
Count = Annotated[int, Field(ge=0)]  # 0 = no limit
Rate = Annotated[float, Field(ge=0)]  # per second; 0 = no limit
Hours = Annotated[float, Field(gt=0)]
Days = Annotated[float, Field(ge=0)]  # 0 = kept for good
Name = Annotated[str, Field(min_length=1)]  # a host, account, endpoint or folder
_CALLER_ID = re.compile(r"\+?[0-9]{3,20}")
# espeak-ng's own bounds for -s (words per minute).
MIN_SPEECH_RATE, MAX_SPEECH_RATE = 80, 450
# The lab's config sits beside the lab's script (sip-lab/lab); errors then
# suggest the lab's commands.
LAB_SCRIPT = "lab"
LAB_FOLDER = "sip-lab"


@dataclass(config=ConfigDict(extra="forbid"))  # strict would take only a Route, not a table
class Route:
    """Numbers starting with ``prefix`` are dialed through PJSIP ``endpoint``."""

    prefix: Annotated[Name, Strict()]
    endpoint: Annotated[Name, Strict()]

    @model_validator(mode="before")
    @classmethod
    def _exactly_prefix_and_endpoint(cls, data: Any) -> Any:
        if isinstance(data, ArgsKwargs):  # Route(prefix, endpoint) in code
            return data
        if isinstance(data, dict) and set(data) == {"prefix", "endpoint"}:
            return data
        raise problem("each route is a table of exactly prefix and endpoint")


def route_for(number: str, routes: list[Route], default: str) -> str:
    """The endpoint (Asterisk) or gateway (FreeSWITCH) a number is dialed
    through: the longest matching route's, else ``default``."""
    matching = [route for route in routes if number.startswith(route.prefix)]
    return max(matching, key=lambda route: len(route.prefix)).endpoint if matching else default


class AsteriskConfig(Section):
    host: Name = "127.0.0.1"
    port: Port = 5038
    username: Name = "callconnect"
    secret: str = Field(default="", repr=False)
    connect_timeout: Seconds = 10.0
    action_timeout: Seconds = 5.0
    # A Ping every ping_interval s, unanswered within ping_timeout s, drops the link.
    ping_interval: Seconds = 5.0
    ping_timeout: Seconds = 5.0
    # PJSIP endpoint that numbers are dialed through, unless a route says otherwise.
    trunk_endpoint: Name = "trunk"
    # PJSIP endpoint used to dial sip: URIs (PJSIP/<endpoint>/<uri>).
    uri_endpoint: Name = "callconnect-uri"
    routes: list[Route] = Field(default_factory=list)


class FreeswitchConfig(Section):
    host: Name = "127.0.0.1"
    port: Port = 8021
    password: str = Field(default="", repr=False)
    connect_timeout: Seconds = 10.0
    action_timeout: Seconds = 5.0
    # Numbers are dialed as sofia/gateway/<gateway>/<number>, unless a route
    # (prefix -> gateway) says otherwise; sip: URIs as sofia/<uri_profile>/<uri>.
    gateway: Name = "trunk"
    uri_profile: Name = "internal"
    routes: list[Route] = Field(default_factory=list)


class CallDefaults(Section):
    default_region: str = "ZA"
    ring_timeout: Annotated[int, Field(ge=MIN_RING_TIMEOUT, le=MAX_RING_TIMEOUT)] = 30
    time_limit: Annotated[int, Field(ge=MIN_TIME_LIMIT, le=MAX_TIME_LIMIT)] = 3600
    caller_id: str = ""
    # Caller IDs a request may ask for (empty: any); caller_id is always allowed.
    caller_ids: list[str] = Field(default_factory=list)
    record: bool = True

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, region: str) -> str:
        if region in phonenumbers.SUPPORTED_REGIONS:
            return region
        if region.upper() in phonenumbers.SUPPORTED_REGIONS:
            raise problem(f"write the region in capitals: {region.upper()!r}")
        raise problem("not a region phonenumbers knows: use a two-letter ISO 3166 code "
                      "such as \"ZA\", \"GB\" or \"US\"")

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, caller_id: str) -> str:
        if caller_id and not _CALLER_ID.fullmatch(caller_id):
            raise problem("must be 3-20 digits with an optional leading +, or \"\"")
        return caller_id

    @field_validator("caller_ids")
    @classmethod
    def _caller_ids(cls, caller_ids: list[str]) -> list[str]:
        for caller_id in caller_ids:
            if not _CALLER_ID.fullmatch(caller_id):
                raise problem(f"{caller_id!r} is not 3-20 digits with an optional leading +")
        return caller_ids


class RoutingConfig(Section):
    # How long a dial-whom URL may take to answer before its fallback is asked.
    dial_whom_timeout: Seconds = 10.0
    # How long a gather's action_url or a redirect's URL may take to answer
    # (the caller hears silence meanwhile).
    action_url_timeout: Seconds = 5.0


class MediaConfig(Section):
    """Where whisper audio and recordings live, as the controller sees them, and
    the same folders as the switch sees them (they differ when the switch runs
    in a chroot or container; empty means the same path)."""

    whisper_dir: Name = "/var/lib/callconnect/whispers"
    whisper_switch_dir: str = ""
    recording_dir: Name = "/var/spool/callconnect/recordings"
    recording_switch_dir: str = ""
    # The operator's audio files a play action may name (by name only).
    actions_dir: Name = "/var/lib/callconnect/actions"
    actions_switch_dir: str = ""


class WhisperConfig(Section):
    voice: Name = "en"
    # Words per minute.
    rate: Annotated[int, Field(ge=MIN_SPEECH_RATE, le=MAX_SPEECH_RATE)] = 160
    max_seconds: Seconds = 30.0
    # Renders (espeak-ng + sox) running at once; more wait up to render_wait_seconds.
    max_concurrent_renders: AtLeastOne = 2
    render_wait_seconds: Seconds = 10.0
    # The cache of rendered files: unused this long, or over this size (least
    # recently used first), they are deleted; never one used in the last 2 days.
    cache_max_age_days: Seconds = 30.0
    cache_max_mb: Annotated[float, Field(gt=0)] = 500.0
    b_unreached_message: str = (
        "Sorry, the other party could not be reached. Please try again later. Goodbye."
    )


class WebhookConfig(Section):
    url: str = ""
    timeout: Seconds = 10.0
    attempts: AtLeastOne = 3  # the command line's direct attempts
    # Standard Webhooks signing secret ("whsec_" + base64 of 24 bytes or more).
    # The daemon refuses to start without one unless unsigned = true.
    signing_secret: str = Field(default="", repr=False)
    unsigned: bool = False
    max_age_hours: Seconds = 24.0  # how long the daemon keeps retrying a delivery
    retry_base_seconds: Seconds = 5.0  # first retry delay; doubles, with jitter
    # The daemon's outbox: deliveries in flight at once, and at most so many to one host
    # (name and port), so a slow or dead receiver cannot hold up the others.
    concurrency: Annotated[int, Field(ge=1, le=MAX_WEBHOOK_CONCURRENCY)] = 16
    per_host_concurrency: AtLeastOne = 4

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _checked_url(url)

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


class ApiConfig(Section):
    host: Name = "127.0.0.1"
    port: Port = 8080
    # Bearer tokens that may use the API (CALLCONNECT_API_TOKENS: comma-separated).
    tokens: list[str] = Field(default_factory=list, repr=False)
    # Public base URL of this API, for recording links in results ("" = the
    # bind address: http://<host>:<port>, a wildcard host as this machine's name).
    public_url: str = ""
    # How long a signed recording link (in the completion webhook) works.
    recording_link_hours: Hours = 168.0
    # Over these, POST /v1/calls answers 429 with Retry-After (0 = no limit).
    max_calls_per_second: Rate = 0.0
    max_active_calls: Count = 0
    # A request's head must arrive whole within header_timeout s (from the
    # connection, or the previous answer), its body within body_timeout s after.
    header_timeout: Seconds = 10.0
    body_timeout: Seconds = 10.0
    # Open HTTP connections; at the cap the longest-idle one is closed for a new one.
    max_connections: AtLeastOne = 1000
    max_body_bytes: AtLeastOne = 65536  # larger bodies get 413 body-too-large
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

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, tokens: list[str]) -> list[str]:
        if any(not token.strip() or token != token.strip() for token in tokens):
            raise problem("a token must not be empty or start or end with a space")
        return tokens

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str) -> str:
        return _checked_url(url)


class ComplianceConfig(Section):
    # A do-not-call list: one number per line (# comments); the API adds more.
    dnc_file: str = ""
    # Calls to a number are placed only within these hours of its own time
    # zone ("08:00-21:00"; "" = any time), on these days (empty = every day).
    calling_hours: str = ""
    calling_days: list[str] = Field(default_factory=list)
    # Most calls placed to one number in any 24 hours (0 = no cap).
    max_attempts_per_number_per_day: Count = 0


class LimitsConfig(Section):
    """Per trunk and per agent (leg A, and the agent leg B reaches); over a
    limit POST /v1/calls answers 429 with Retry-After (0 = no limit)."""

    trunk_calls_per_second: Rate = 0.0
    trunk_max_active: Count = 0
    agent_calls_per_second: Rate = 0.0
    agent_max_active: Count = 0


class RetentionConfig(Section):
    """What the daemon deletes once older than so many days (0 = kept for
    good), once an hour. Never a call still in progress or scheduled, nor a
    delivery still pending; whisper files follow whisper.cache_max_age_days."""

    calls_days: Days = 0.0  # ended calls, with their timelines and deliveries
    deliveries_days: Days = 30.0  # webhook deliveries no longer pending
    recordings_days: Days = 90.0  # recording files, by their last change


class InboundConfig(Section):
    """Calls to a number that is not in [numbers] nor added over the API,
    never answered: "message" lets the caller hear unknown_number_message as
    early media first; "reject" turns the call away at once. Either way with
    the Q.850 cause unknown_number_cause (1, unallocated number: SIP 404)."""

    unknown_number: Literal["message", "reject"] = "message"
    unknown_number_message: Name = "Sorry, this number is not in service. Goodbye."
    unknown_number_cause: Annotated[int, Field(ge=1, le=127)] = 1

    @field_validator("unknown_number_message")
    @classmethod
    def _message(cls, text: str) -> str:
        try:
            check_text(text, "inbound.unknown_number_message")
        except InvalidRequest as exc:
            raise problem(exc.message) from None
        return text


class StoreConfig(Section):
    path: Name = "/var/lib/callconnect/callconnect.sqlite3"


class Config(Section):
    backend: Backend = "asterisk"
    asterisk: AsteriskConfig = Field(default_factory=AsteriskConfig)
    freeswitch: FreeswitchConfig = Field(default_factory=FreeswitchConfig)
    calls: CallDefaults = Field(default_factory=CallDefaults)
    media: MediaConfig = Field(default_factory=MediaConfig)
    whisper: WhisperConfig = Field(default_factory=WhisperConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    compliance: ComplianceConfig = Field(default_factory=ComplianceConfig)
    destinations: DestinationsConfig = Field(default_factory=DestinationsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    inbound: InboundConfig = Field(default_factory=InboundConfig)
    # Numbers the controller answers: [numbers."+27115550900"] incoming_url, actions ...
    numbers: dict[str, NumberSettings] = Field(default_factory=dict)
    # Agent groups: [groups.NAME] strategy, agents, ring_timeout, fallbacks ...
    groups: dict[str, Any] = Field(default_factory=dict)
    # The file this config was read from, if any (not a setting).
    _file: Path | None = PrivateAttr(default=None)

    @property
    def file(self) -> Path | None:
        return self._file

    @property
    def is_lab(self) -> bool:
        """Read from the lab's own config (sip-lab/callconnect.toml, beside the
        lab's script): errors may then suggest the lab's commands."""
        folder = self._file.resolve().parent if self._file is not None else None
        return folder is not None and folder.name == LAB_FOLDER \
            and (folder / LAB_SCRIPT).is_file()

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

    def inbound_numbers(self) -> dict[str, Number]:
        """The [numbers] tables by their number in E.164."""
        numbers: dict[str, Number] = {}
        for key, settings in self.numbers.items():
            try:
                number = parse_number(key, settings, self.calls.default_region, self.outbound,
                                      source="config")
            except InvalidRequest as exc:
                field = exc.details.get("field", "")
                setting = f"numbers.{key}" + (f".{field}" if field and field != "number" else "")
                raise ConfigError(f"numbers.{key}: {exc.message}", setting=setting) from exc
            if number.number in numbers:
                raise ConfigError(f"numbers.{key} is {number.number} again: each number once",
                                  setting=f"numbers.{key}")
            numbers[number.number] = number
        return numbers

    def whisper_path_on_switch(self, host_path: Path) -> str:
        return _switch_path(host_path, self.media.whisper_dir, self.media.whisper_switch_dir)

    def recording_path_on_switch(self, host_path: Path) -> str:
        return _switch_path(host_path, self.media.recording_dir, self.media.recording_switch_dir)

    def action_file_on_switch(self, host_path: Path) -> str:
        return _switch_path(host_path, self.media.actions_dir, self.media.actions_switch_dir)


def _switch_path(host_path: Path, host_dir: str, switch_dir: str) -> str:
    if not switch_dir:
        return str(host_path)
    return str(Path(switch_dir) / host_path.relative_to(host_dir))


def _checked_url(url: str) -> str:
    """"" or the form of an http(s) URL (the [outbound] policy is checked too,
    after the whole config is read)."""
    if url:
        wrong = url_problem(url, None)
        if wrong is not None:
            raise problem(wrong)
    return url


def load_config(path: str | os.PathLike[str] | None = None,
                environ: dict[str, str] | None = None) -> Config:
    """The config from its defaults, the TOML file at ``path`` (if any) and the
    environment (``os.environ`` unless given); ConfigError names the first
    wrong setting and where it came from."""
    env = os.environ if environ is None else environ
    layers = Layers(Config)
    file = Path(path) if path is not None else None
    if file is not None:
        layers.add_file(file)
    layers.add_credentials(env)
    layers.add_env(env)
    config = layers.build(Config)
    config._file = file
    try:
        _check(config)
    except ConfigError as exc:
        raise layers.recheck(exc) from exc
    return config


def _check(config: Config) -> None:
    """What one field's bounds cannot say: settings read together."""
    config.agent_groups()  # a bad group fails at start, not on the first call
    config.inbound_numbers()  # so does a bad number
    compliance = config.compliance
    try:
        window_of(compliance.calling_hours, compliance.calling_days,
                  "compliance.calling_hours", "compliance.calling_days")
    except InvalidRequest as exc:
        raise ConfigError(exc.message, setting=exc.details.get("field", "compliance")) from exc
    check_destinations(config.destinations)
    if config.webhook.url:
        wrong = url_problem(config.webhook.url, config.outbound)
        if wrong is not None:
            raise ConfigError(f"webhook.url is refused: {wrong}", setting="webhook.url")
