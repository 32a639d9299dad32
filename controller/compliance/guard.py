"""The compliance guards as the call service applies them.

At request time (:meth:`Compliance.check_request`), before anything is dialed:
every target the request names (leg A, leg B's plain targets, fallback
``dial`` targets) is checked against the destination policy
(:mod:`.destinations`) and every number it names (leg A, leg B's plain targets, fallback
``dial`` targets) is checked against the do-not-call list; the numbers rung
first (leg A and leg B's plain targets) against the calling window and the
daily cap. When the router expands a group or a dial-whom answer it screens
those targets (:meth:`Compliance.screen`) and skips the ones the destination
policy refuses and the numbers listed or capped.

The cap counts calls placed to a number over the last 24 hours (a rolling
window, not a calendar day): leg A when it is originated, a leg B number when
it is dialed. The counts are in the store, so a restart does not reset them.
A request that passes holds its numbers until its call dials them or ends, so
two requests at once cannot both take the last call a number has left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from controller.compliance.book import ATTEMPT_WINDOW_SECONDS, ComplianceBook
from controller.compliance.destinations import DestinationPolicy, DestinationsConfig
from controller.compliance.dnc import DncEntry, DncFile, check_reason, printable
from controller.compliance.windows import CallingWindow, refuse_outside, window_of
from controller.config import ComplianceConfig
from controller.errors import AttemptCapReached, DncFromFile, DoNotCall
from controller.numbers import normalize_number

log = structlog.get_logger(__name__)

DNC_RULE = "do-not-call"
CAP_RULE = "attempt-cap"
CAP_SETTING = "compliance.max_attempts_per_number_per_day"
Legs = Sequence[tuple[str, str]]  # (field, normalised target)


def numbers_of(legs: Legs) -> list[tuple[str, str]]:
    """The E.164 numbers among the legs: SIP URIs, endpoints, groups and URLs
    are not numbers and are not checked."""
    return [(field, t) for field, t in legs if t.startswith("+")]


class Compliance:
    def __init__(self, config: ComplianceConfig, region: str, book: ComplianceBook,
                 clock: Callable[[], float] = time.time,
                 destinations: DestinationsConfig | None = None) -> None:
        self.config = config
        self.destinations = DestinationPolicy(destinations or DestinationsConfig())
        self.region = region
        self.book = book
        self.clock = clock
        self.dnc_file = DncFile(Path(config.dnc_file), region) if config.dnc_file else None
        self.cap = config.max_attempts_per_number_per_day
        # Numbers a call passed the cap with and has not dialed yet, by call id.
        self._held: dict[str, set[str]] = {}

    def windows_for(self, hours: str | None, days: Sequence[str] | None
                    ) -> list[tuple[CallingWindow, str]]:
        """The windows a call must keep to, each with the setting it comes
        from: the config's, then the request's. A request narrows the config's
        window; it cannot widen it."""
        windows = []
        configured = window_of(self.config.calling_hours, self.config.calling_days,
                               "compliance.calling_hours", "compliance.calling_days")
        if configured is not None:
            windows.append((configured, "compliance.calling_hours"))
        if hours is not None or days is not None:
            requested = window_of(hours or "", days or (), "calling_hours", "calling_days")
            if requested is not None:
                windows.append((requested, "calling_hours"))
        return windows

    async def dnc_entries(self, numbers: Sequence[str]) -> dict[str, DncEntry]:
        """Those of the numbers on the list; the file's entry wins over the API's."""
        listed = await self.book.dnc_entries(numbers)
        if self.dnc_file is not None:
            from_file = self.dnc_file.entries()
            listed.update({n: from_file[n] for n in numbers if n in from_file})
        return listed

    # ------------------------------------------------------------ the list, for the API

    def number(self, text: str) -> str:
        """A number as the API names it, in E.164; InvalidNumber if it is not one."""
        return normalize_number(text.strip(), self.region, "number")

    async def dnc_entry(self, number: str) -> DncEntry | None:
        return (await self.dnc_entries([number])).get(number)

    async def add_dnc(self, number: str, reason: str) -> DncEntry:
        """Put a number on the list (the file's entry, if it has one, stays the
        one shown); InvalidField if the reason may not be kept (check_reason)."""
        await self.book.put_dnc(number, check_reason(reason), self.clock())
        log.info("dnc.added", number=number)
        entry = await self.dnc_entry(number)
        assert entry is not None  # just added
        return entry

    async def remove_dnc(self, number: str) -> bool:
        """False if it was not on the list; DncFromFile if the file has it."""
        if self.dnc_file is not None and number in self.dnc_file.entries():
            raise DncFromFile(f"{number} is in the do-not-call file {self.dnc_file.path}; "
                              "remove it there", field="number", number=number)
        removed = await self.book.delete_dnc(number)
        if removed:
            log.info("dnc.removed", number=number)
        return removed

    async def list_dnc(self, after: str | None, limit: int) -> tuple[list[DncEntry], str | None]:
        """The file's and the API's numbers in order, after ``after``; and
        the cursor for the next page (None on the last)."""
        merged = {e.number: e for e in await self.book.list_dnc(after, limit + 1)}
        if self.dnc_file is not None:
            from_file = sorted(n for n in self.dnc_file.entries() if after is None or n > after)
            merged.update({n: self.dnc_file.entries()[n] for n in from_file[:limit + 1]})
        numbers = sorted(merged)
        page = [merged[n] for n in numbers[:limit]]
        return page, (page[-1].number if len(numbers) > limit else None)

    # ------------------------------------------------------------ calls

    async def check_request(self, call_id: str, *, named: Legs, rung_first: Legs,
                            windows: Sequence[tuple[CallingWindow, str]]) -> None:
        """DestinationRefused, DoNotCall, OutsideCallingHours or
        AttemptCapReached for the first leg that breaks a rule; else hold the
        first-rung numbers for this call."""
        self.destinations.check(named)
        named = numbers_of(named)
        rung_first = numbers_of(rung_first)
        listed = await self.dnc_entries([n for _, n in named])
        for field, number in named:
            if number in listed:
                raise DoNotCall(self._dnc_message(field, listed[number]), field=field,
                                rule=DNC_RULE, number=number, source=listed[number].source)
        for window, rule in windows:
            # A scheduled call is checked again when it is due, so the next
            # window it waits for ends up inside all of them.
            refuse_outside(window, rung_first, self.clock(), rule)
        if not self.cap or not rung_first:
            return
        now = self.clock()
        called = await self.book.attempts_since([n for _, n in rung_first],
                                                now - ATTEMPT_WINDOW_SECONDS)
        for field, number in rung_first:
            times = called.get(number, [])
            held = self._held_elsewhere(number, call_id)
            if len(times) + held >= self.cap:
                # Retry once enough of the oldest calls have left the 24 hours.
                excess = len(times) + held - self.cap + 1
                wait = (times[excess - 1] + ATTEMPT_WINDOW_SECONDS - now
                        if excess <= len(times) else 1.0)
                raise AttemptCapReached(
                    f"{field} {number} was called {len(times)} times in the last 24 hours"
                    f"{f' and {held} more calls to it are starting' if held else ''}: the most "
                    f"{CAP_SETTING} allows is {self.cap}. Nothing was dialed",
                    field=field, rule=CAP_SETTING, number=number, attempts=len(times),
                    cap=self.cap, retry_after=round(max(1.0, wait), 3))
        self._held[call_id] = {n for _, n in rung_first}

    async def screen(self, targets: Sequence[str], call_id: str | None = None) -> dict[str, str]:
        """Those of the targets the router of call ``call_id`` must skip, with
        the rule why."""
        skip = {t: refusal.rule for t in targets
                if (refusal := self.destinations.refusal(t)) is not None}
        numbers = [n for _, n in numbers_of([("", t) for t in targets]) if n not in skip]
        if not numbers:
            return skip
        skip.update({n: DNC_RULE for n in await self.dnc_entries(numbers)})
        if self.cap:
            called = await self.book.attempts_since(numbers, self.clock() - ATTEMPT_WINDOW_SECONDS)
            skip.update({n: CAP_RULE for n in numbers if n not in skip and
                         len(called.get(n, [])) + self._held_elsewhere(n, call_id) >= self.cap})
        return skip

    async def record(self, call_id: str, targets: Sequence[str], at: float) -> None:
        """These targets are being called now: count the numbers among them."""
        numbers = [n for _, n in numbers_of([("", t) for t in targets])]
        if not numbers:
            return
        await self.book.record_attempts(call_id, numbers, at)
        self._held.get(call_id, set()).difference_update(numbers)

    def release(self, call_id: str) -> None:
        """The call ended or was never placed: it holds nothing any more."""
        self._held.pop(call_id, None)

    def _held_elsewhere(self, number: str, call_id: str | None) -> int:
        return sum(1 for other, numbers in self._held.items()
                   if other != call_id and number in numbers)

    def _dnc_message(self, field: str, entry: DncEntry) -> str:
        where = (f"the do-not-call file {self.dnc_file.path if self.dnc_file else ''}"
                 if entry.source == "file" else "the do-not-call list (added over the API)")
        reason = printable(entry.reason)
        why = f" ({reason})" if reason else ""
        return f"{field} {entry.number} is on {where}{why}; nothing was dialed"
