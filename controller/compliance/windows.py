"""Calling windows: the hours (and days) of a number's own local time within
which it may be called.

A window is ``HH:MM-HH:MM`` (seconds allowed: ``HH:MM:SS``), start included,
end excluded; ``24:00`` ends at midnight. An end before the start wraps past
midnight (``20:00-02:00``), and such a window belongs to the day it starts on:
with only Friday allowed, Saturday 01:00 is still inside Friday's window.

A number's zones come from phonenumbers. A number whose country spans several
zones (a US toll-free number, a Russian mobile) gets all of them, and the window
must hold in every one of them at once: it is better not to call than to wake
someone. A number with no known zone ("Etc/Unknown") is taken to be in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import structlog
from phonenumbers import timezone as number_zones

from controller.errors import InvalidField, OutsideCallingHours

log = structlog.get_logger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
UNKNOWN_ZONE = "Etc/Unknown"
FALLBACK_ZONE = "UTC"
DAY_SECONDS = 86400
# How far ahead the next opening is looked for: a week, plus a day for the
# zone offsets, covers every window that opens at all.
LOOK_AHEAD_DAYS = 9
_CLOCK = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
# The whole text, nothing around it (no space, no trailing newline).
_HOURS = re.compile(r"([0-9]{2}:[0-9]{2}(?::[0-9]{2})?)-([0-9]{2}:[0-9]{2}(?::[0-9]{2})?)")
_DAY = re.compile(r"[A-Za-z]{3,9}")


@dataclass(frozen=True)
class CallingWindow:
    start: int  # seconds after local midnight
    end: int  # 1-86400; at or before start: the window wraps past midnight
    days: frozenset[int] = frozenset()  # weekdays (0 = Monday) it may start on; empty: every day
    hours: str = ""  # as given, for messages

    def allows(self, weekday: int) -> bool:
        return not self.days or weekday in self.days

    def open_at(self, local: datetime) -> bool:
        """Whether this local wall-clock time is inside the window."""
        second = local.hour * 3600 + local.minute * 60 + local.second
        day = local.weekday()
        if self.start < self.end:
            return self.start <= second < self.end and self.allows(day)
        return ((second >= self.start and self.allows(day))
                or (second < self.end and self.allows((day - 1) % 7)))

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days)) if self.days else "every day"
        return f"{self.hours or '00:00-24:00'} ({days})"


def _clock(text: str, field: str, *, end: bool) -> int:
    match = _CLOCK.fullmatch(text)
    assert match is not None  # _HOURS matched it
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if end and (hour, minute, second) == (24, 0, 0):
        return DAY_SECONDS
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidField(f"{field}: {text!r} is not a time of day", field=field)
    return hour * 3600 + minute * 60 + second


def parse_hours(text: str, field: str) -> tuple[int, int]:
    """``HH:MM-HH:MM`` (the whole text) -> (start, end) in seconds after midnight."""
    match = _HOURS.fullmatch(text)
    if match is None:
        raise InvalidField(f"{field} must look like 08:00-21:00 (HH:MM-HH:MM or HH:MM:SS, local "
                           f"time, nothing around it), got {text!r}", field=field)
    start = _clock(match[1], field, end=False)
    end = _clock(match[2], field, end=True)
    if start == end:
        raise InvalidField(f"{field}: {text!r} starts and ends at the same time; leave it "
                           "empty to allow any time", field=field)
    return start, end


def parse_days(values: Iterable[str], field: str) -> frozenset[int]:
    """Day names (``mon``, ``tues``, ``friday``: three letters or more, any
    case) -> weekday numbers."""
    days: set[int] = set()
    for value in values:
        name = value.lower() if isinstance(value, str) and _DAY.fullmatch(value) else ""
        matches = [i for i, full in enumerate(_FULL_DAYS) if name and full.startswith(name)]
        if not matches:
            raise InvalidField(f"{field}: {value!r} is not a day: use {', '.join(DAYS)}",
                               field=field)
        days.add(matches[0])
    return frozenset(days)


def window_of(hours: str, days: Sequence[str], hours_field: str,
              days_field: str) -> CallingWindow | None:
    """The window these settings describe; None when they allow any time."""
    if not hours and not days:
        return None
    start, end = parse_hours(hours, hours_field) if hours else (0, DAY_SECONDS)
    return CallingWindow(start, end, parse_days(days, days_field), hours)


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("windows.unknown_zone", zone=name, using=FALLBACK_ZONE)
        return ZoneInfo(FALLBACK_ZONE)


def zones_for(number: str) -> tuple[str, ...]:
    """The time zones an E.164 number may be in (UTC when none is known)."""
    try:
        zones = number_zones.time_zones_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        zones = ()
    known = tuple(z for z in zones if z != UNKNOWN_ZONE)
    return known or (FALLBACK_ZONE,)


def open_in(window: CallingWindow, zone: str, at: float) -> bool:
    return window.open_at(datetime.fromtimestamp(at, _zone(zone)))


def next_open(window: CallingWindow, zones: Iterable[str], now: float) -> float | None:
    """The first moment from ``now`` at which the window is open in every zone
    (``now`` itself if it is open now); None if that never happens.

    Where several windows overlap, their overlap opens when the last of them
    opens, so only ``now`` and each zone's own openings need trying.
    """
    names = sorted(set(zones))
    clock = time(window.start // 3600, window.start % 3600 // 60, window.start % 60)
    candidates = {now}
    for name in names:
        zone = _zone(name)
        today = datetime.fromtimestamp(now, zone).date()
        for offset in range(-1, LOOK_AHEAD_DAYS):
            day = today + timedelta(days=offset)
            if not window.allows(day.weekday()):
                continue
            # Wall-clock time: 08:00 stays 08:00 on a DST day; a time the
            # clocks skip maps to just after the jump.
            opening = datetime.combine(day, clock, tzinfo=zone).timestamp()
            if opening > now:
                candidates.add(opening)
    for at in sorted(candidates):
        if all(open_in(window, name, at) for name in names):
            return at
    return None


def refuse_outside(window: CallingWindow, legs: Sequence[tuple[str, str]], now: float,
                   rule: str) -> None:
    """OutsideCallingHours unless every (field, E.164 number) is inside the
    window now; it names the first leg that is not, with its zone, local
    time and when the window next opens for all of them."""
    closed = [(field, number, zone) for field, number in legs for zone in zones_for(number)
              if not open_in(window, zone, now)]
    if not closed:
        return
    field, number, zone = closed[0]
    local = datetime.fromtimestamp(now, _zone(zone))
    opens = next_open(window, [z for _, n in legs for z in zones_for(n)], now)
    where = f"{field} {number} is in {zone}, where it is {local:%a %H:%M:%S}"
    details = {"field": field, "rule": rule, "number": number, "zone": zone,
               "local_time": local.isoformat(timespec="seconds"),
               "calling_window": window.describe()}
    if opens is None:
        raise OutsideCallingHours(
            f"{where}: outside the calling window {window.describe()}, which is never open in "
            f"all of its zones at once within a week; nothing was dialed", **details)
    opens_local = datetime.fromtimestamp(opens, _zone(zone))
    raise OutsideCallingHours(
        f"{where}: outside the calling window {window.describe()} ({rule}); it opens at "
        f"{opens_local:%a %H:%M:%S} there. Nothing was dialed", **details,
        next_window_at=opens, retry_after=round(opens - now, 3))
