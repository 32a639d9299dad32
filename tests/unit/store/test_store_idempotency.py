"""Idempotency keys in the SQLite store: scoped to a token, bound to a body,
and the migration of files from before (schema version 3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.calls.decision import Refused, Replayed
from controller.calls.idempotency import bind_key, replay_of
from controller.calls.request import make_request
from controller.store import IdempotencyKey, StoredCall, StoreError, TimelineEntry
from controller.store.sqlite import SqliteStore
from controller.store.sqlite.schema import SCHEMA_VERSION
from tests.unit.store.builders import at_version, make_call, make_delivery, old_file


def keyed(call_id: str, key: IdempotencyKey) -> StoredCall:
    call = make_call(call_id)
    call.idempotency_key = key
    return call


async def test_a_key_is_scoped_to_its_token(store: SqliteStore) -> None:
    mine, theirs = IdempotencyKey("order-1", "scope-a", "h1"), IdempotencyKey("order-1", "scope-b", "h1")
    assert (await store.create_call(keyed("c1", mine)))[1]
    assert (await store.create_call(keyed("c2", theirs)))[1]  # another token: another call
    existing, created = await store.create_call(keyed("c3", IdempotencyKey("order-1", "scope-a", "h2")))
    assert not created and existing.call_id == "c1" and existing.idempotency_key == mine
    assert (await store.get_call_by_idempotency_key(mine)) == keyed("c1", mine)
    found = await store.get_call_by_idempotency_key(theirs)
    assert found is not None and found.call_id == "c2"
    assert await store.get_call_by_idempotency_key(IdempotencyKey("order-1", "scope-c")) is None


async def test_saving_a_call_keeps_the_key_it_was_created_with(store: SqliteStore) -> None:
    key = IdempotencyKey("order-2", "scope-a", "h1")
    await store.create_call(keyed("c1", key))
    changed = make_call("c1", state="ended")  # a resumed call, say, that lost the key's hashes
    await store.save_call(changed, [], [])
    stored = await store.get_call("c1")
    assert stored is not None and stored.state == "ended" and stored.idempotency_key == key


def test_binding_hashes_the_token_and_the_canonical_body() -> None:
    request = make_request(leg_a="+27115550101", leg_b="+27115550202", metadata={"a": 1, "b": 2})
    same = make_request(metadata={"b": 2, "a": 1}, leg_b="+27115550202", leg_a="+27115550101")
    other = make_request(leg_a="+27115550101", leg_b="+27115550202", metadata={"a": 1, "b": 3})
    key = bind_key("order-3", "s3cret-token", request)
    assert key.key == "order-3"
    assert key.scope and "s3cret-token" not in key.scope
    assert bind_key("order-3", "s3cret-token", same) == key
    assert bind_key("order-3", "s3cret-token", other).request_hash != key.request_hash
    assert bind_key("order-3", "another-token", request).scope != key.scope


def test_another_body_is_refused_and_a_call_from_before_replays() -> None:
    key = IdempotencyKey("order-4", "scope-a", "h1")
    assert isinstance(replay_of(keyed("c1", key), key), Replayed)
    reused = replay_of(keyed("c1", key), IdempotencyKey("order-4", "scope-a", "h2"))
    assert isinstance(reused, Refused)
    assert reused.reason.error_id == "idempotency-key-reused"
    assert reused.reason.http_status == 422  # type: ignore[union-attr]
    assert reused.reason.details["call_id"] == "c1"
    assert isinstance(replay_of(keyed("c1", IdempotencyKey("order-4")), key), Replayed)


async def version_3_file(path: Path) -> None:
    """A store as callconnect with schema version 3 left it: a call with a
    key (unique on its own then), its timeline and a webhook delivery."""
    async with old_file(path) as db:
        await at_version(db, 3)
        await db.execute(
            "INSERT INTO calls (call_id, created_at, updated_at, state, status, request, snapshot, "
            "result, idempotency_key) VALUES ('old', 1.0, 2.0, 'ended', 'completed', '{}', '{}', "
            "NULL, 'order-5')")
        await db.execute("INSERT INTO timeline (call_id, at, kind, data) "
                         "VALUES ('old', 1.5, 'transition', '{}')")
        delivery = make_delivery("evt_old", "old")
        await db.execute(
            "INSERT INTO deliveries (event_id, call_id, url, event_type, payload, created_at, "
            "next_attempt_at, state, attempts) VALUES (?, ?, ?, ?, '{}', ?, ?, 'pending', 0)",
            (delivery.event_id, delivery.call_id, delivery.url, delivery.event_type,
             delivery.created_at, delivery.next_attempt_at))


async def test_a_version_3_file_is_migrated_keeping_calls_timelines_and_deliveries(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    await version_3_file(path)
    store = SqliteStore(path)
    await store.open()
    try:
        old = await store.get_call("old")
        assert old is not None and old.idempotency_key == IdempotencyKey("order-5")
        assert await store.timeline("old") == [TimelineEntry("old", 1.5, "transition", {})]
        assert [d.event_id for d in await store.deliveries("old")] == ["evt_old"]
        # The old key has no token: it replays for whichever token sends it, as before.
        scoped = IdempotencyKey("order-5", "scope-a", "h1")
        found = await store.get_call_by_idempotency_key(scoped)
        assert found is not None and found.call_id == "old"
        assert isinstance(replay_of(found, scoped), Replayed)
        existing, created = await store.create_call(keyed("new", scoped))
        assert not created and existing.call_id == "old"
        # New keys are scoped.
        assert (await store.create_call(keyed("n1", IdempotencyKey("order-6", "scope-a"))))[1]
        assert (await store.create_call(keyed("n2", IdempotencyKey("order-6", "scope-b"))))[1]
        # Foreign keys hold again after the migration.
        await store.create_call(make_call("c1"))
        with pytest.raises(StoreError):
            await store.save_call(make_call("c1"), [], [make_delivery("evt_1", "no-such-call")])
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        await store.close()
