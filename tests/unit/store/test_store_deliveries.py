"""The SQLite store's webhook deliveries and disabled URLs, on real database files."""

from __future__ import annotations

import pytest

from controller.store import DeliveryState, StoreError
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
