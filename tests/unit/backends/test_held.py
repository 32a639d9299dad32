"""Events held back while a reattach reads the switch (controller/backends/held.py)."""

from __future__ import annotations

from collections.abc import Mapping

from controller.backends import held
from controller.backends.held import EventHold


def unchanged(event: Mapping[str, str], now: float) -> list[tuple[Mapping[str, str], float]]:
    """A translation that gives back what it was given."""
    return [(event, now)]


def test_events_pass_unless_a_read_is_in_progress() -> None:
    hold = EventHold()
    assert not hold.keep({"Event": "Newstate"}, 1.0)
    assert hold.release(unchanged) == []


def test_held_events_come_back_in_order_after_the_last_of_overlapping_reads() -> None:
    hold = EventHold()
    hold.hold()
    hold.hold()
    assert hold.keep({"n": "1"}, 1.0) and hold.keep({"n": "2"}, 2.0)
    assert hold.release(unchanged) == []  # one read still runs
    assert hold.keep({"n": "3"}, 3.0)
    assert hold.release(unchanged) == [({"n": "1"}, 1.0), ({"n": "2"}, 2.0), ({"n": "3"}, 3.0)]
    assert not hold.keep({"n": "4"}, 4.0)


def test_a_flood_during_a_read_is_bounded() -> None:
    hold = EventHold()
    hold.hold()
    for n in range(held.MAX_HELD + 5):
        assert hold.keep({"n": str(n)}, float(n))
    kept = hold.release(unchanged)
    assert len(kept) == held.MAX_HELD and kept[-1] == ({"n": str(held.MAX_HELD - 1)},
                                                       float(held.MAX_HELD - 1))
