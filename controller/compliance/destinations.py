"""Where calls may go: the ``[destinations]`` policy, applied to every target
a call would ring (leg A, leg B's targets, fallbacks, group agents and
dial-whom numbers) before it is dialed.

* Numbers: the longest of ``allowed_prefixes`` and ``blocked_prefixes`` the
  number starts with decides (a tie is blocked), so ``+27`` allowed with
  ``+2786`` blocked allows South Africa but its 086 numbers. A number that
  starts with no allowed prefix is refused when that list is set. With
  ``block_premium_rate`` (the default) numbers phonenumbers knows as premium
  rate are refused too: they cost the caller per minute and are the classic
  toll-fraud target.
* SIP URIs: the host must be on ``sip_hosts`` when that list is set.
* Switch endpoints: the name must match ``endpoints`` (``desk-*`` patterns)
  when that list is set.

Empty lists allow everything, so only premium-rate numbers are refused
unless the policy is set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache

import phonenumbers
from pydantic import Field

from controller.errors import ConfigError, DestinationRefused
from controller.numbers import ENDPOINT_PREFIX, TargetKind, target_of
from controller.outbound import host_allowed
from controller.settings import Section

SECTION = "destinations"
ALLOWED_PREFIXES = "destinations.allowed_prefixes"
BLOCKED_PREFIXES = "destinations.blocked_prefixes"
PREMIUM_RATE = "destinations.block_premium_rate"
SIP_HOSTS = "destinations.sip_hosts"
ENDPOINTS = "destinations.endpoints"
_PREFIX = re.compile(r"\+[0-9]{1,15}")


class DestinationsConfig(Section):
    """The config's [destinations] table; empty lists allow any target."""

    # E.164 prefixes ("+27", "+2786"); the longest match of the two lists decides.
    allowed_prefixes: list[str] = Field(default_factory=list)
    blocked_prefixes: list[str] = Field(default_factory=list)
    # Refuse numbers phonenumbers knows as premium rate.
    block_premium_rate: bool = True
    # Hosts sip: URIs may name ("pbx.example.com", "*.example.com"; IPv6 as "[2001:db8::1]").
    sip_hosts: list[str] = Field(default_factory=list)
    # Switch endpoint names endpoint: targets may name ("desk-12", "desk-*").
    endpoints: list[str] = Field(default_factory=list)


def check_config(config: DestinationsConfig) -> None:
    """ConfigError for a prefix that is not + and digits (it would never match)."""
    for setting, prefixes in ((ALLOWED_PREFIXES, config.allowed_prefixes),
                              (BLOCKED_PREFIXES, config.blocked_prefixes)):
        for prefix in prefixes:
            if not _PREFIX.fullmatch(prefix):
                raise ConfigError(f"{setting}: {prefix!r} is not an E.164 prefix: write + and "
                                  "the country code and digits, e.g. \"+27\" or \"+2786\"",
                                  setting=setting)


@dataclass(frozen=True)
class Refusal:
    rule: str  # the setting that refuses the target
    reason: str


class DestinationPolicy:
    def __init__(self, config: DestinationsConfig) -> None:
        self.config = config

    def check(self, legs: Sequence[tuple[str, str]]) -> None:
        """DestinationRefused for the first (field, normalised target) the policy refuses."""
        for field_name, target in legs:
            refusal = self.refusal(target)
            if refusal is not None:
                raise DestinationRefused(
                    f"{field_name} {target} is refused by {refusal.rule}: {refusal.reason}; "
                    "nothing was dialed", field=field_name, rule=refusal.rule, target=target)

    def refusal(self, target: str) -> Refusal | None:
        """Why the policy refuses a normalised target; None if it may be dialed."""
        kind = target_of(target).kind
        if kind is TargetKind.SIP_URI:
            return self._sip_uri(target)
        if kind is TargetKind.ENDPOINT:
            return self._endpoint(target[len(ENDPOINT_PREFIX):])
        return self._number(target)

    def _number(self, number: str) -> Refusal | None:
        allowed = _longest(number, self.config.allowed_prefixes)
        blocked = _longest(number, self.config.blocked_prefixes)
        if blocked is not None and (allowed is None or len(blocked) >= len(allowed)):
            return Refusal(BLOCKED_PREFIXES, f"it starts with the blocked prefix {blocked}")
        if self.config.allowed_prefixes and allowed is None:
            return Refusal(ALLOWED_PREFIXES, "it starts with none of the allowed prefixes "
                           f"({', '.join(self.config.allowed_prefixes)})")
        if self.config.block_premium_rate and _premium_rate(number):
            return Refusal(PREMIUM_RATE, "it is a premium-rate number")
        return None

    def _sip_uri(self, uri: str) -> Refusal | None:
        if not self.config.sip_hosts:
            return None
        host_port = uri.split("@", 1)[1]
        host = (host_port[:host_port.index("]") + 1] if host_port.startswith("[")
                else host_port.split(":", 1)[0])
        if host_allowed(host, self.config.sip_hosts):
            return None
        return Refusal(SIP_HOSTS, f"its host {host} is not one of the allowed SIP hosts")

    def _endpoint(self, name: str) -> Refusal | None:
        if not self.config.endpoints or any(fnmatchcase(name, pattern)
                                            for pattern in self.config.endpoints):
            return None
        return Refusal(ENDPOINTS, f"endpoint {name} is not one of the allowed endpoints")


def _longest(number: str, prefixes: Sequence[str]) -> str | None:
    matching = [p for p in prefixes if number.startswith(p)]
    return max(matching, key=len) if matching else None


@lru_cache(maxsize=4096)  # the same numbers are called again and again
def _premium_rate(number: str) -> bool:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False  # not a number the controller normalised; its form was checked before
    return phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.PREMIUM_RATE
