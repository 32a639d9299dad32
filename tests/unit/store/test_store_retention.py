"""Retention in the SQLite store, on real database files: what is old goes,
with what belongs to it; what is new, live, scheduled or pending stays."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

from controller.store import DeliveryState, TimelineEntry, WebhookDelivery
from controller.store.sqlite import SCHEDULED, SqliteStore
from controller.store.sqlite.agents import AGENT_HISTORY_SECONDS
from controller.store.sqlite.connection import PRUNE_BATCH
from tests.unit.store.builders import make_call, make_delivery

CUTOFF = 5000.0


def settled(event_id: str, call_id: str, state: DeliveryState,
            created_at: float = 1000.0) -> WebhookDelivery:
    delivery = make_delivery(event_id, call_id, created_at=created_at)
    delivery.state = state
    return delivery


async def test_old_ended_calls_go_with_their_timelines_and_deliveries(store: SqliteStore) -> None:
    calls = {
        "old-ended": make_call("old-ended", 1000.0, state="ended", status="completed"),
        "new-ended": make_call("new-ended", 9000.0, state="ended", status="completed"),
        "old-live": make_call("old-live", 1000.0, state="bridged"),
        "old-scheduled": make_call("old-scheduled", 1000.0, state=SCHEDULED),
        "old-pending": make_call("old-pending", 1000.0, state="ended", status="failed"),
    }
    for call in calls.values():
        await store.create_call(call)
    await store.save_call(calls["old-ended"], [TimelineEntry("old-ended", 1001.0, "transition")],
                          [settled("evt_done", "old-ended", DeliveryState.DELIVERED)])
    await store.save_call(calls["old-pending"], [], [make_delivery("evt_pending", "old-pending")])

    assert await store.prune_calls(CUTOFF) == 1

    assert await store.get_call("old-ended") is None
    assert await store.timeline("old-ended") == []
    assert await store.get_delivery("evt_done") is None
    for kept in ("new-ended", "old-live", "old-scheduled", "old-pending"):
        assert await store.get_call(kept) is not None, kept
    assert await store.get_delivery("evt_pending") is not None
    assert await store.prune_calls(CUTOFF) == 0  # nothing more to do


async def test_settled_deliveries_go_once_old_and_pending_ones_never(store: SqliteStore) -> None:
    call = make_call("c1", 1000.0, state="ended", status="completed")
    await store.create_call(call)
    old = [settled(f"evt_{state}", "c1", state)
           for state in (DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.DISABLED)]
    new = settled("evt_new", "c1", DeliveryState.DELIVERED, created_at=9000.0)
    pending = make_delivery("evt_pending", "c1", created_at=1000.0)
    await store.save_call(call, [], [*old, new, pending])

    assert await store.prune_deliveries(CUTOFF) == 3

    assert {d.event_id for d in await store.deliveries("c1")} == {"evt_new", "evt_pending"}
    assert await store.get_call("c1") is not None  # a delivery's call is not its to delete


async def test_pruning_goes_on_past_one_batch(store: SqliteStore) -> None:
    count = PRUNE_BATCH + 3
    for n in range(count):
        call = make_call(f"c{n}", 1000.0 + n, state="ended", status="completed")
        await store.create_call(call)
    await store.create_call(make_call("live", 1000.0))

    assert await store.prune_calls(CUTOFF) == count

    page = await store.list_calls(limit=10)
    assert [c.call_id for c in page.calls] == ["live"]


async def test_an_agents_calls_older_than_its_history_go_when_it_takes_a_call(
        store: SqliteStore) -> None:
    now = time.time()
    old = now - AGENT_HISTORY_SECONDS - 1
    for agent in ("agent:1", "agent:2"):
        await store.agent_call_started(agent, f"{agent}-old", old)
        await store.agent_call_ended(agent, f"{agent}-old", old + 60)
    await store.agent_call_started("agent:1", "agent:1-recent", now - 86400)
    await store.agent_call_started("agent:1", "agent:1-now", now)
    states = await store.agent_states(["agent:1", "agent:2"])
    assert sorted(states["agent:1"].calls) == [now - 86400, now], "its old call is gone"
    # Another agent's old call waits for that agent's next call, and is not its history.
    assert states["agent:2"].calls == []
    with closing(sqlite3.connect(store.path)) as db:
        kept = db.execute("SELECT target, call_id FROM agent_calls ORDER BY at").fetchall()
    assert kept == [("agent:2", "agent:2-old"), ("agent:1", "agent:1-recent"),
                    ("agent:1", "agent:1-now")]
