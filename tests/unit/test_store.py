"""The SQLite store, on real database files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.errors import InvalidField
from controller.store import DeliveryState, StoredCall, StoreError, TimelineEntry, WebhookDelivery
from controller.store.sqlite import SCHEMA_VERSION, SqliteStore


def make_call(call_id: str, created_at: float = 1000.0, *, state: str = "dialing-a",
              status: str | None = None, key: str | None = None) -> StoredCall:
    return StoredCall(call_id=call_id, created_at=created_at, updated_at=created_at, state=state,
                      status=status, request={"leg_a": "+27115550101", "leg_b": "+27115550202"},
                      snapshot={"state": state}, idempotency_key=key)


def make_delivery(event_id: str, call_id: str, *, created_at: float = 1000.0,
                  next_attempt_at: float = 1000.0, url: str = "https://hooks.example.com/a?token=t"
                  ) -> WebhookDelivery:
    return WebhookDelivery(event_id=event_id, call_id=call_id, url=url, event_type="call.completed",
                           payload={"id": event_id, "type": "call.completed", "data": {}},
                           created_at=created_at, next_attempt_at=next_attempt_at)




async def test_every_field_round_trips(store: SqliteStore) -> None:
    call = StoredCall(call_id="c1", created_at=1700000000.125, updated_at=1700000001.5, state="ended",
                      status="completed",
                      request={"leg_a": "+27115550101", "metadata": {"crm": "Ünïcode ✓", "n": [1, 2.5]}},
                      snapshot={"state": "ended", "legs": {"a": {"answered_at": 1.25}}},
                      result={"status": "completed", "talk_seconds": 8.0, "recording": None},
                      idempotency_key="key-1")
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
    assert await store.get_call_by_idempotency_key("order-42") == first
    assert await store.get_call_by_idempotency_key("order-43") is None
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


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.sqlite"
    first = SqliteStore(path)
    await first.open()
    call = make_call("c1", key="k")
    await first.create_call(call)
    await first.save_call(call, [TimelineEntry("c1", 1.0, "transition", {"to": "x"})],
                          [make_delivery("evt_1", "c1")])
    await first.disable_url("https://gone.example.com/", 5.0)
    await first.close()

    second = SqliteStore(path)
    await second.open()
    try:
        assert await second.get_call("c1") == call
        assert len(await second.timeline("c1")) == 1
        assert [d.event_id for d in await second.due_deliveries(2000.0, 10)] == ["evt_1"]
        assert await second.url_disabled("https://gone.example.com/")
        assert (await second.create_call(make_call("c2", key="k")))[1] is False
    finally:
        await second.close()


async def test_due_deliveries_oldest_first_up_to_the_limit(store: SqliteStore) -> None:
    await store.create_call(make_call("c1"))
    await store.save_call(make_call("c1"), [], [
        make_delivery("late", "c1", created_at=30.0, next_attempt_at=100.0),
        make_delivery("old", "c1", created_at=10.0, next_attempt_at=150.0),
        make_delivery("middle", "c1", created_at=20.0, next_attempt_at=50.0),
        make_delivery("future", "c1", created_at=5.0, next_attempt_at=500.0),
    ])
    assert [d.event_id for d in await store.due_deliveries(200.0, 10)] == ["old", "middle", "late"]
    assert [d.event_id for d in await store.due_deliveries(200.0, 2)] == ["old", "middle"]
    assert [d.event_id for d in await store.due_deliveries(120.0, 10)] == ["middle", "late"]
    assert await store.next_due_at() == 50.0

    [middle] = [d for d in await store.deliveries("c1") if d.event_id == "middle"]
    middle.state = DeliveryState.DELIVERED
    middle.attempts = 1
    middle.delivered_at = 60.0
    await store.update_delivery(middle)
    assert [d.event_id for d in await store.due_deliveries(200.0, 10)] == ["old", "late"]
    assert await store.next_due_at() == 100.0
    assert [d for d in await store.deliveries("c1") if d.event_id == "middle"] == [middle]


async def test_next_due_at_is_none_without_pending_deliveries(store: SqliteStore) -> None:
    assert await store.next_due_at() is None
    await store.create_call(make_call("c1"))
    delivered = make_delivery("evt_1", "c1")
    delivered.state = DeliveryState.DELIVERED
    await store.save_call(make_call("c1"), [], [delivered])
    assert await store.next_due_at() is None


async def test_updating_an_unknown_delivery_is_a_store_error(store: SqliteStore) -> None:
    with pytest.raises(StoreError):
        await store.update_delivery(make_delivery("ghost", "c1"))


async def test_disable_url(store: SqliteStore) -> None:
    url = "https://hooks.example.com/gone?token=t"
    assert not await store.url_disabled(url)
    await store.disable_url(url, 10.0)
    await store.disable_url(url, 20.0)
    assert await store.url_disabled(url)
    assert not await store.url_disabled("https://hooks.example.com/gone")


async def test_ping_writes(store: SqliteStore) -> None:
    await store.ping()
    await store.ping()
    with sqlite3.connect(store.path) as db:
        [(rows,)] = db.execute("SELECT COUNT(*) FROM heartbeat").fetchall()
    assert rows == 1


async def test_wal_foreign_keys_and_schema_version(store: SqliteStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    with pytest.raises(StoreError):
        # The call does not exist: the foreign key refuses the delivery.
        await store.save_call(make_call("c1"), [], [])
    await store.create_call(make_call("c1"))
    with pytest.raises(StoreError):
        await store.save_call(make_call("c1"), [], [make_delivery("evt_1", "no-such-call")])


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.sqlite"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this callconnect"):
        await SqliteStore(path).open()


async def test_a_folder_that_is_a_file_gives_a_store_error(tmp_path: Path) -> None:
    # Root may write anywhere chmod forbids, but no one can create a folder under a file.
    (tmp_path / "afile").write_text("")
    path = tmp_path / "afile" / "db.sqlite"
    with pytest.raises(StoreError) as caught:
        await SqliteStore(path).open()
    assert str(path) in caught.value.message
    assert caught.value.error_id == "store-unavailable"


async def test_a_path_that_is_a_folder_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.mkdir()
    with pytest.raises(StoreError, match="cannot open") as caught:
        await SqliteStore(path).open()
    assert str(path) in caught.value.message


async def test_a_file_that_is_not_a_database_gives_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a callconnect database"):
        await SqliteStore(path).open()


async def test_a_full_disk_gives_a_store_error(store: SqliteStore) -> None:
    # SQLite reports "database or disk is full" once max_page_count is reached, as on a full disk.
    assert store._db is not None
    [(pages,)] = await store._db.execute_fetchall("PRAGMA page_count")
    await store._db.execute(f"PRAGMA max_page_count = {pages}")
    await store.create_call(make_call("c1"))
    big = make_call("c1")
    big.snapshot = {"blob": "x" * 100_000}
    with pytest.raises(StoreError, match="disk is full") as caught:
        await store.save_call(big, [], [])
    assert str(store.path) in caught.value.message
    # The failed transaction was rolled back; the store still serves reads.
    assert await store.get_call("c1") == make_call("c1")


async def test_a_read_only_database_gives_a_store_error(store: SqliteStore) -> None:
    # query_only makes SQLite answer "attempt to write a readonly database", as for a read-only
    # file, which chmod cannot produce for root.
    assert store._db is not None
    await store._db.execute("PRAGMA query_only = ON")
    with pytest.raises(StoreError, match="read-only") as caught:
        await store.ping()
    assert str(store.path) in caught.value.message
    assert caught.value.details["sqlite_error"] == "SQLITE_READONLY"


async def test_a_closed_store_gives_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    with pytest.raises(StoreError, match="not open"):
        await store.ping()
