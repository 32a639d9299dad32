"""Switch events held back while a reattach reads the switch.

A reattach reads a call's channels to learn what the translator should
expect of them (a step still running, a channel claimed before the restart).
An event that comes meanwhile, a step's end say, means something only once
that is known: dropped as "not ours" it would leave the call waiting for an
end that already came. Both translators keep such events here and translate
them when the read is over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)

# Events kept during one read of the switch: a few calls' worth.
MAX_HELD = 10_000

HeldEvent = tuple[Mapping[str, str], float]  # an event and when it arrived
Routed = TypeVar("Routed")


class EventHold:
    """Counts the reads in progress and keeps the events that come meanwhile."""

    def __init__(self) -> None:
        self._holds = 0
        self._held: list[HeldEvent] = []

    def hold(self) -> None:
        self._holds += 1

    def keep(self, event: Mapping[str, str], now: float) -> bool:
        """True if the event is kept, to be translated after the read."""
        if not self._holds:
            return False
        if len(self._held) < MAX_HELD:
            self._held.append((event, now))
        else:
            log.warning("switch.event_dropped", reason=f"over {MAX_HELD} events came while "
                        "the switch was read after a restart")
        return True

    def release(self, translate: Callable[[Mapping[str, str], float], list[Routed]]
                ) -> list[Routed]:
        """One read is over; after the last, the events it kept, in order,
        through ``translate`` (the translator's own, no longer holding)."""
        self._holds = max(self._holds - 1, 0)
        if self._holds:
            return []
        held, self._held = self._held, []
        return [routed for event, now in held for routed in translate(event, now)]
