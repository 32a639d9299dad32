"""Ids of calls and webhook events (controller/ids.py): UUIDv7, whose first
48 bits are the time in milliseconds, so each id sorts after the ones made
before it (and the store's indexes keyed by it grow at their end)."""

from __future__ import annotations

import time
import uuid

import pytest

from controller.ids import new_call_id, time_ordered_uuid
from controller.webhooks.envelope import new_event_id

MS = 1_000_000  # nanoseconds


def test_an_id_is_a_version_7_uuid_carrying_its_millisecond() -> None:
    before = time.time_ns() // MS
    made = time_ordered_uuid()
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= time.time_ns() // MS


def test_ids_made_later_sort_after_whatever_their_random_bits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_796_000_000_000 * MS, 1_796_000_000_500 * MS, MS))
    monkeypatch.setattr("controller.ids.time.time_ns", lambda: next(clock))
    ids = [new_call_id() for _ in range(500)]
    assert sorted(ids) == ids and len(set(ids)) == 500
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)


def test_ids_of_one_millisecond_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.ids.time.time_ns", lambda: 1_796_000_000_000 * MS)
    ids = {time_ordered_uuid() for _ in range(1000)}
    assert len(ids) == 1000 and {i.int >> 80 for i in ids} == {1_796_000_000_000}


def test_event_ids_are_time_ordered_too(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1_796_000_000_002 * MS, 1_796_000_000_001 * MS])
    monkeypatch.setattr("controller.ids.time.time_ns", lambda: next(clock))
    later, earlier = new_event_id(), new_event_id()
    assert earlier < later and later.startswith("evt_")
    assert uuid.UUID(hex=later.removeprefix("evt_")).version == 7
