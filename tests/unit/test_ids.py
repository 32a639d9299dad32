"""Ids of calls and webhook events (controller/ids.py): UUIDv7, whose first
48 bits are the time in milliseconds, so each id sorts after the ones made
before it (and the store's indexes keyed by it grow at their end)."""

from __future__ import annotations

import time
import uuid

from controller.ids import new_call_id, time_ordered_uuid
from controller.webhooks.envelope import new_event_id

MS = 1_000_000  # nanoseconds
MADE = 1000


def test_an_id_is_a_version_7_uuid_carrying_its_millisecond() -> None:
    before = time.time_ns() // MS
    made = time_ordered_uuid()
    assert made.version == 7 and made.variant == uuid.RFC_4122
    # Within one millisecond, later ids may take the next ones, to stay in order.
    assert before <= made.int >> 80 <= time.time_ns() // MS + MADE


def test_ids_sort_in_the_order_they_were_made_even_within_a_millisecond() -> None:
    ids = [new_call_id() for _ in range(MADE)]
    assert sorted(ids) == ids and len(set(ids)) == MADE
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)


def test_event_ids_are_time_ordered_too() -> None:
    ids = [new_event_id() for _ in range(MADE)]
    assert sorted(ids) == ids and len(set(ids)) == MADE
    assert all(i.startswith("evt_") and uuid.UUID(hex=i.removeprefix("evt_")).version == 7
               for i in ids)
