"""The numbers made over the API, in the SQLite store: kept as given, replaced
whole, deleted; and a file from before numbers existed gains their table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from controller.store.sqlite import SqliteStore
from controller.store.sqlite.schema import SCHEMA_VERSION
from tests.unit.store.builders import at_version, old_file


async def test_a_number_is_kept_replaced_and_deleted(store: SqliteStore) -> None:
    assert await store.list_numbers() == {}
    await store.put_number("+27115550901", {"actions": [{"type": "hangup"}]}, 10.0)
    await store.put_number("+27115550900", {"incoming_url": "https://crm.example.com/in"}, 11.0)
    await store.put_number("+27115550901", {"actions": [{"type": "pause", "seconds": 2}]}, 12.0)
    assert await store.list_numbers() == {
        "+27115550900": {"incoming_url": "https://crm.example.com/in"},
        "+27115550901": {"actions": [{"type": "pause", "seconds": 2}]}}
    assert await store.delete_number("+27115550901")
    assert not await store.delete_number("+27115550901")
    assert list(await store.list_numbers()) == ["+27115550900"]


async def test_a_version_4_file_gains_the_numbers_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    async with old_file(path) as db:
        await at_version(db, 4)
        await db.execute("INSERT INTO dnc VALUES ('+27115550909', 'asked', 1.0)")
    store = SqliteStore(path)
    await store.open()
    try:
        await store.put_number("+27115550900", {"actions": [{"type": "hangup"}]}, 1.0)
        assert list(await store.list_numbers()) == ["+27115550900"]
        assert list(await store.dnc_entries(["+27115550909"])) == ["+27115550909"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
