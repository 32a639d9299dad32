"""The SQLite store's calls and timelines, on real database files."""

from __future__ import annotations

import pytest

from controller.errors import InvalidField
from controller.store import (
    DeliveryState,
    IdempotencyKey,
    StoredCall,
    StoreError,
    TimelineEntry,
    WebhookDelivery,
)
from controller.store.sqlite import SqliteStore
from tests.unit.store.builders import make_call, make_delivery


async def test_every_field_round_trips(store: SqliteStore) -> None:
    call = StoredCall(call_id="c1", created_at=1700000000.125, updated_at=1700000001.5, state="ended",
                      status="completed",
                      request={"leg_a": "+27115550101", "metadata": {"crm": "Ünïcode ✓", "n": [1, 2.5]}},
                      snapshot={"state": "ended", "legs": {"a": {"answered_at": 1.25}}},
                      result={"status": "completed", "talk_seconds": 8.0, "recording": None},
                      idempotency_key=IdempotencyKey("key-1", "scope-hash", "body-hash"))
    assert await store.create_call(call) == (call, True)
    assert await store.get_call("c1") == call
    assert await store.get_call("missing") is None

    entries = [TimelineEntry("c1", 1700000000.5, "transition", {"to": "ringing-a"}),
               TimelineEntry("c1", 1700000000.25, "command", {})]
    delivery = WebhookDelivery(event_id="evt_1", call_id="c1", url="https://h.example.com/x?token=t",
                               event_type="call.completed", payload={"id": "evt_1", "data": {"a": None}},
                               created_at=1700000002.0, next_attempt_at=1700000003.0,
                               state=DeliveryState.FAILED, attempts=3, last_status_code=404,
                               last_error="HTTP 404", delivered_at=1700000004.0)
    await store.save_call(call, entries, [delivery])
    # Insertion order, not time order: the timeline is kept as written.
    assert await store.timeline("c1") == entries
    assert await store.deliveries("c1") == [delivery]


async def test_a_taken_idempotency_key_returns_the_existing_call(store: SqliteStore) -> None:
    first = make_call("c1", key="order-42")
    assert await store.create_call(first) == (first, True)
    assert await store.create_call(make_call("c2", 2000.0, key="order-42")) == (first, False)
    assert await store.get_call("c2") is None
    assert await store.get_call_by_idempotency_key(IdempotencyKey("order-42")) == first
    assert await store.get_call_by_idempotency_key(IdempotencyKey("order-43")) is None
    # Calls without a key never collide.
    assert (await store.create_call(make_call("c3")))[1]
    assert (await store.create_call(make_call("c4")))[1]


async def test_a_duplicate_call_id_is_a_store_error(store: SqliteStore) -> None:
    await store.create_call(make_call("c1"))
    with pytest.raises(StoreError) as caught:
        await store.create_call(make_call("c1"))
    assert str(store.path) in caught.value.message


async def test_pages_newest_first_with_filters(store: SqliteStore) -> None:
    # c2 and c3 share a created_at and fall on either side of a page break: the
    # cursor must order by call_id too, or one of them would be skipped or repeated.
    for call_id, created_at, ended in [("c0", 100.0, True), ("c1", 200.0, True), ("c2", 300.0, True),
                                       ("c3", 300.0, True), ("c4", 400.0, True), ("c5", 450.0, False),
                                       ("c6", 500.0, True), ("c7", 700.0, True), ("c8", 800.0, True),
                                       ("c9", 900.0, False)]:
        await store.create_call(make_call(call_id, created_at, state="ended" if ended else "bridged",
                                          status="completed" if ended else None))
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list_calls(status="completed", created_after=200.0, created_before=800.0,
                                      limit=2, cursor=cursor)
        pages.append([call.call_id for call in page.calls])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # c5 is active; c0 is before the range and c8 at its excluded end.
    assert pages == [["c7", "c6"], ["c4", "c3"], ["c2", "c1"]]

    active = await store.list_calls(status="active")
    assert [call.call_id for call in active.calls] == ["c9", "c5"] and active.next_cursor is None
    everything = await store.list_calls(limit=10)
    assert [call.call_id for call in everything.calls] == [
        "c9", "c8", "c7", "c6", "c5", "c4", "c3", "c2", "c1", "c0"]
    assert everything.next_cursor is None


async def test_pages_keep_their_order_whatever_order_the_calls_were_stored_in(
        store: SqliteStore) -> None:
    """Rows are read in the table's order and put in the list's: calls stored
    out of creation order (a clock set back, a scheduled call placed later),
    ties on created_at (ordered by call id, as SQLite compares text: "z"
    before "é" in UTF-8) and the page breaks between them come out as one list."""
    stored = [("b", 300.0), ("é", 100.0), ("a", 300.0), ("z", 100.0), ("c", 200.0),
              ("d", 500.0), ("e", 400.0), ("ab", 300.0)]
    for call_id, created_at in stored:
        await store.create_call(make_call(call_id, created_at, state="ended", status="completed"))
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list_calls(limit=3, cursor=cursor)
        pages.append([call.call_id for call in page.calls])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [["d", "e", "b"], ["ab", "a", "c"], ["é", "z"]]
    everything = await store.list_calls(status="completed", limit=8)
    assert [call.call_id for call in everything.calls] == [
        "d", "e", "b", "ab", "a", "c", "é", "z"]
    assert [call.created_at for call in everything.calls] == sorted(
        (at for _, at in stored), reverse=True)


async def test_a_foreign_cursor_is_refused(store: SqliteStore) -> None:
    for cursor in ["not base64!", "bm90IGpzb24=", "WzEsMiwzXQ=="]:
        with pytest.raises(InvalidField):
            await store.list_calls(cursor=cursor)


async def test_open_calls_are_the_ones_not_ended(store: SqliteStore) -> None:
    await store.create_call(make_call("ringing", 2.0, state="ringing-b"))
    await store.create_call(make_call("done", 1.0, state="ended", status="busy"))
    await store.create_call(make_call("dialing", 1.5))
    assert [call.call_id for call in await store.open_calls()] == ["dialing", "ringing"]


async def test_save_call_is_all_or_nothing(store: SqliteStore) -> None:
    call = make_call("c1")
    await store.create_call(call)
    await store.save_call(call, [], [make_delivery("evt_1", "c1")])

    ended = make_call("c1", state="ended", status="completed")
    ended.result = {"status": "completed"}
    with pytest.raises(StoreError):
        # evt_1 is taken: the delivery insert fails after the call update and the timeline insert.
        await store.save_call(ended, [TimelineEntry("c1", 1001.0, "transition", {})],
                              [make_delivery("evt_2", "c1"), make_delivery("evt_1", "c1")])
    assert await store.get_call("c1") == call
    assert await store.timeline("c1") == []
    assert [d.event_id for d in await store.deliveries("c1")] == ["evt_1"]


async def test_saving_an_unknown_call_changes_nothing(store: SqliteStore) -> None:
    with pytest.raises(StoreError):
        await store.save_call(make_call("ghost"), [TimelineEntry("ghost", 1.0, "transition", {})], [])
    assert await store.timeline("ghost") == []
