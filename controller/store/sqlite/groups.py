"""Agent groups made over the API, in SQLite."""

from __future__ import annotations

import json
from typing import Any

from controller.store.sqlite.connection import SqliteDatabase, dump_json


class SqliteGroups(SqliteDatabase):
    """:class:`~controller.store.GroupStore` in SQLite."""

    async def list_groups(self) -> dict[str, dict[str, Any]]:
        async with self._use("reading agent groups", write=False) as db:
            rows = await db.execute_fetchall("SELECT name, data FROM agent_groups ORDER BY name")
        return {row["name"]: json.loads(row["data"]) for row in rows}

    async def put_group(self, name: str, data: dict[str, Any]) -> None:
        async with self._use("saving an agent group", write=True) as db:
            await db.execute("INSERT INTO agent_groups (name, data) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET data = excluded.data",
                             (name, dump_json(data)))

    async def delete_group(self, name: str) -> bool:
        async with self._use("deleting an agent group", write=True) as db:
            cursor = await db.execute("DELETE FROM agent_groups WHERE name = ?", (name,))
            # Its round-robin position (kept by the agents' book) goes with it.
            await db.execute("DELETE FROM group_cursors WHERE name = ?", (name,))
        return cursor.rowcount > 0
