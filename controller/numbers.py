"""Call targets: phone numbers (E.164 or local formats) and SIP URIs.

Numbers are normalised to E.164 with phonenumbers against a default region.
Anything phonenumbers would quietly reinterpret (letters as on a keypad,
non-ASCII digits, a "+" in the middle) is refused first, so what gets dialed
is exactly what the user typed, minus the formatting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from controller.errors import InvalidNumber, SameLegs

_NUMBER_CHARS = re.compile(r"\+?[0-9 ()./-]+")

# The one definition of what a SIP URI and an endpoint name may hold: the API
# refuses anything else before anyone is called, and the switch encoders
# (controller.backends.*.actions) check what they send against the same
# patterns. sip:user@host[:port], on purpose without ;parameters or ?headers
# (they would let a caller add SIP headers to the INVITE); the user part
# without ' or ! (FreeSWITCH quoting and uuid_broadcast syntax), and brackets
# only around an IPv6 host.
_SIP_USER = r"[A-Za-z0-9_.+~*-]{1,64}"
_SIP_HOST = r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]{2,45}\]"
_SIP_URI = re.compile(
    rf"[Ss][Ii][Pp][Ss]?:(?P<user>{_SIP_USER})@(?P<host>{_SIP_HOST})(?::(?P<port>[0-9]{{1,5}}))?")
# A SIP URI as parse_target gives it out: scheme and host in lower case.
_PORT = r"[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
SIP_URI = re.compile(rf"sips?:{_SIP_USER}@(?:[a-z0-9-]{{1,63}}(?:\.[a-z0-9-]{{1,63}})*"
                     rf"|\[[0-9a-f:.]{{2,45}}\])(?::(?:{_PORT}))?")
# endpoint:NAME, a device on the switch (a PJSIP endpoint, a FreeSWITCH user).
ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_POSSIBLE_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
}


class TargetKind(StrEnum):
    NUMBER = "number"
    SIP_URI = "sip-uri"
    ENDPOINT = "endpoint"  # a device on the switch itself: endpoint:NAME


ENDPOINT_PREFIX = "endpoint:"


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    value: str  # E.164 for numbers, the URI for SIP URIs

    def __str__(self) -> str:
        return self.value


def parse_target(text: str, default_region: str, field: str = "target") -> Target:
    """A phone number, SIP URI or switch endpoint, normalised; InvalidNumber
    says what is wrong."""
    stripped = text.strip()
    if stripped.lower().startswith(("sip:", "sips:")):
        return _parse_sip_uri(stripped, field)
    if stripped.startswith(ENDPOINT_PREFIX):
        name = stripped[len(ENDPOINT_PREFIX):]
        if not ENDPOINT_NAME.fullmatch(name):
            raise InvalidNumber(f"{field} {text!r} is not an endpoint name: use endpoint:NAME "
                                "with letters, digits, '.', '_' or '-' (at most 64)", field=field)
        return Target(TargetKind.ENDPOINT, stripped)
    return Target(TargetKind.NUMBER, normalize_number(stripped, default_region, field))


def target_of(value: str) -> Target:
    """The kind of a target the controller already normalised."""
    if value.startswith(("sip:", "sips:")):
        return Target(TargetKind.SIP_URI, value)
    if value.startswith(ENDPOINT_PREFIX):
        return Target(TargetKind.ENDPOINT, value)
    return Target(TargetKind.NUMBER, value)


def normalize_number(text: str, default_region: str, field: str = "number") -> str:
    if not text:
        raise InvalidNumber(f"{field} is empty", field=field)
    e164, problem = _normalized(text, default_region)
    if problem is not None:
        raise InvalidNumber(f"{field} {text!r} {problem}", field=field)
    return e164


# Parsed once per text: the same agents and customers are called again and
# again, and parsing is most of a request's checks.
@lru_cache(maxsize=4096)
def _normalized(text: str, default_region: str) -> tuple[str, str | None]:
    """(E.164, None), or ("", what is wrong with the text)."""
    if not _NUMBER_CHARS.fullmatch(text):
        return "", ("is not a phone number: use digits, an optional leading +, and spaces, "
                    "dashes, dots or brackets only (or a sip: URI)")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        return "", f"is not a phone number: {exc}"
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if possible in _POSSIBLE_REASONS:
        return "", _POSSIBLE_REASONS[possible]
    if not phonenumbers.is_valid_number(parsed):
        region = phonenumbers.region_code_for_number(parsed) or default_region
        return "", (f"is not a valid number in {region} (local numbers are read as "
                    f"{default_region}; give +country code otherwise)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), None


def _parse_sip_uri(text: str, field: str) -> Target:
    match = _SIP_URI.fullmatch(text)
    if not match:
        raise InvalidNumber(
            f"{field} {text!r} is not a SIP URI this controller dials: "
            "use sip:user@host or sip:user@host:port, without ;parameters or ?headers; the user "
            "part may hold letters, digits and . _ + ~ * - only (at most 64)",
            field=field,
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidNumber(f"{field} {text!r} has port {port}, outside 1-65535", field=field)
    # Scheme and host are case-insensitive (RFC 3261 19.1.4); the user part is not.
    scheme = text.split(":", 1)[0].lower()
    host_port = match.group("host").lower() + (f":{int(port)}" if port else "")
    return Target(TargetKind.SIP_URI, f"{scheme}:{match.group('user')}@{host_port}")


def refuse_same_legs(leg_a: Target, leg_b: list[str]) -> None:
    """SameLegs if leg A is among leg B's (normalised) targets."""
    if leg_a.value in leg_b:
        raise SameLegs(
            f"leg A and leg B are the same ({leg_a.value}): a call connect joins two different "
            "parties", leg_a=leg_a.value, leg_b=leg_a.value)
