"""The SQLite store's webhook deliveries and disabled URLs, on real database files."""

from __future__ import annotations

import pytest

from controller.errors import InvalidField
from controller.store import DeliveryBacklog, DeliveryState, StoreError, url_id_of
from controller.store.sqlite import SqliteStore
from tests.unit.store.builders import make_call, make_delivery


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
    # The next due after a moment: what the outbox's look has not read yet.
    assert await store.next_due_at(after=50.0) == 100.0
    assert await store.next_due_at(after=150.0) == 500.0
    assert await store.next_due_at(after=500.0) is None

    [middle] = [d for d in await store.deliveries("c1") if d.event_id == "middle"]
    middle.state = DeliveryState.DELIVERED
    middle.attempts = 1
    middle.delivered_at = 60.0
    await store.update_delivery(middle)
    assert [d.event_id for d in await store.due_deliveries(200.0, 10)] == ["old", "late"]
    # A retry (tried before) is marked so, and goes after those never tried.
    middle.state, middle.next_attempt_at = DeliveryState.PENDING, 110.0
    await store.update_delivery(middle)
    assert [(d.event_id, d.retry) for d in await store.due_deliveries(200.0, 10)] == [
        ("old", False), ("late", False), ("middle", True)]
    middle.state, middle.next_attempt_at = DeliveryState.DELIVERED, 50.0
    await store.update_delivery(middle)
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


async def test_deliveries_page_newest_first_by_call_and_state(store: SqliteStore) -> None:
    # d2 and d3 share a created_at and fall on either side of a page break: the
    # cursor orders by event_id too, so neither is skipped or repeated.
    await store.create_call(make_call("c1"))
    await store.create_call(make_call("c2"))
    await store.save_call(make_call("c1"), [], [
        make_delivery("d1", "c1", created_at=10.0), make_delivery("d2", "c1", created_at=20.0),
        make_delivery("d3", "c1", created_at=20.0), make_delivery("d4", "c1", created_at=30.0)])
    await store.save_call(make_call("c2"), [], [make_delivery("e1", "c2", created_at=25.0)])
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list_deliveries(call_id="c1", limit=2, cursor=cursor)
        pages.append([d.event_id for d in page.deliveries])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [["d4", "d3"], ["d2", "d1"]]
    assert [d.event_id for d in (await store.list_deliveries()).deliveries] == ["d4", "e1", "d3", "d2", "d1"]

    [d3] = [d for d in await store.deliveries("c1") if d.event_id == "d3"]
    d3.state = DeliveryState.DISABLED
    await store.update_delivery(d3)
    assert (await store.list_deliveries(state=DeliveryState.DISABLED)).deliveries == [d3]
    assert (await store.list_deliveries(call_id="c2", state=DeliveryState.DISABLED)).deliveries == []


async def test_a_foreign_cursor_is_invalid_field(store: SqliteStore) -> None:
    for cursor in ("not-base64!", "bnVsbA==", "WzEsIDJd"):  # junk, null, [1, 2]
        with pytest.raises(InvalidField) as caught:
            await store.list_deliveries(cursor=cursor)
        assert caught.value.details["field"] == "cursor"
        with pytest.raises(InvalidField):
            await store.disabled_urls(cursor=cursor)


async def test_redeliver_makes_any_delivery_pending_again_with_its_id(store: SqliteStore) -> None:
    await store.create_call(make_call("c1"))
    delivered = make_delivery("evt_1", "c1")
    delivered.state, delivered.attempts, delivered.last_status_code = DeliveryState.DELIVERED, 1, 200
    await store.save_call(make_call("c1"), [], [delivered])
    assert await store.due_deliveries(5000.0, 10) == []

    again = await store.redeliver("evt_1", 4000.0)
    assert again is not None
    assert (again.event_id, again.state, again.next_attempt_at) == ("evt_1", DeliveryState.PENDING, 4000.0)
    assert (again.attempts, again.last_status_code) == (1, 200)  # its history stays
    assert await store.get_delivery("evt_1") == again
    assert [d.event_id for d in await store.due_deliveries(5000.0, 10)] == ["evt_1"]
    assert await store.redeliver("ghost", 4000.0) is None
    assert await store.get_delivery("ghost") is None


async def test_disabled_urls_are_listed_by_id_and_re_enabled(store: SqliteStore) -> None:
    gone, other = "https://hooks.example.com/gone?token=t1", "https://hooks.example.com/b?token=t2"
    await store.create_call(make_call("c1"))
    stopped = [make_delivery(f"evt_{n}", "c1", url=gone) for n in range(2)]
    for delivery in stopped:
        delivery.state = DeliveryState.DISABLED
    delivered = make_delivery("evt_ok", "c1", url=gone)
    delivered.state = DeliveryState.DELIVERED
    await store.save_call(make_call("c1"), [], [*stopped, delivered])
    await store.disable_url(gone, 10.0)
    await store.disable_url(other, 20.0)

    urls, cursor = await store.disabled_urls(limit=1)
    assert [(u.url, u.disabled_at, u.url_id) for u in urls] == [(other, 20.0, url_id_of(other))]
    assert cursor is not None
    assert [u.url for u in (await store.disabled_urls(limit=1, cursor=cursor))[0]] == [gone]
    assert url_id_of(gone) != url_id_of(other) and "t1" not in url_id_of(gone)

    assert await store.enable_url("0" * 32) is None
    enabled = await store.enable_url(url_id_of(other))
    assert enabled is not None and enabled[0].url == other and enabled[1] == 0
    assert not await store.url_disabled(other)
    assert await store.enable_url(url_id_of(other)) is None  # once

    enabled = await store.enable_url(url_id_of(gone), redeliver_at=50.0)
    assert enabled is not None and enabled[1] == 2  # the delivered one is left alone
    assert sorted(d.event_id for d in await store.due_deliveries(50.0, 10)) == ["evt_0", "evt_1"]
    assert await store.disabled_urls() == ([], None)


async def test_the_backlog_counts_pending_deliveries_and_dates_the_oldest(store: SqliteStore) -> None:
    assert await store.delivery_backlog() == DeliveryBacklog(0, None)
    await store.create_call(make_call("c1"))
    done = make_delivery("done", "c1", created_at=5.0)
    done.state = DeliveryState.DELIVERED
    await store.save_call(make_call("c1"), [], [
        done, make_delivery("retry", "c1", created_at=20.0, next_attempt_at=900.0),
        make_delivery("fresh", "c1", created_at=30.0, next_attempt_at=30.0)])
    assert await store.delivery_backlog() == DeliveryBacklog(2, 20.0)
