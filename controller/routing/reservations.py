"""Which targets each live call holds, so that a group never offers an agent
who is already taken.

A call holds its leg A target for its whole life, and leg B's targets from the
moment the router chooses them (ringing) until that attempt ends; once one of
them answers, only that one, until the call ends. The router consults the
book and fills it in one step, with nothing awaited in between, so two calls
choosing at once cannot take the same agent. The runner tells the book what
each call's core says after every event (:func:`held_by`), which releases an
attempt's targets when it ends; a resumed call is told the same way, so the
book is rebuilt from the live calls after a restart. It lives in memory, one
per controller, shared by every call's router.

Targets are compared as the controller normalised them: E.164 numbers,
``sip:`` URIs (scheme and host in lower case), ``endpoint:NAME``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.core.machine import CallConnect


@dataclass
class _Held:
    by_core: frozenset[str] = frozenset()  # what the call's core says it holds
    attempts_seen: int = 0  # how many attempts the core had then
    # Chosen by the router and not yet dialed by the core: held from the
    # moment they are chosen.
    chosen: tuple[str, ...] = ()
    chosen_after: int = 0  # attempts the core had when they were chosen

    @property
    def targets(self) -> set[str]:
        return set(self.by_core) | set(self.chosen)


class Reservations:
    def __init__(self) -> None:
        self._calls: dict[str, _Held] = {}

    def held_elsewhere(self, targets: Iterable[str], call_id: str) -> set[str]:
        """Those of ``targets`` another live call holds."""
        wanted = set(targets)
        return {t for other, held in self._calls.items() if other != call_id
                for t in held.targets & wanted}

    def choose(self, call_id: str, targets: Sequence[str]) -> None:
        """The router's choice for the call's next attempt, replacing any
        earlier choice not yet dialed."""
        held = self._calls.setdefault(call_id, _Held())
        held.chosen = tuple(targets)
        held.chosen_after = held.attempts_seen

    def follow(self, call_id: str, core: CallConnect) -> None:
        """What the call's core holds now; the router's choice is dropped once
        the core has dialed it (or the call ended)."""
        if core.finished:
            self.release(call_id)
            return
        held = self._calls.setdefault(call_id, _Held())
        held.by_core = held_by(core)
        held.attempts_seen = len(core.attempts)
        if held.attempts_seen > held.chosen_after:
            held.chosen = ()

    def release(self, call_id: str) -> None:
        """The call ended (or was never placed): it holds nothing."""
        self._calls.pop(call_id, None)

    def holders(self) -> dict[str, set[str]]:
        """Call id -> the targets it holds (for logs and tests)."""
        return {call_id: held.targets for call_id, held in self._calls.items()}


def held_by(core: CallConnect) -> frozenset[str]:
    """The targets a live call holds by its state: leg A, and leg B's
    targets while an attempt rings (only the one that answered, once one has)."""
    if core.finished:
        return frozenset()
    held = {core.plan.leg_a}
    if core.attempts and core.attempts[-1]["ended_at"] is None:
        attempt = core.attempts[-1]
        answered = attempt["answered_by"]
        held |= {answered} if answered else set(attempt["targets"])
    return frozenset(held)
