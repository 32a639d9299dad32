"""The numbers made over the API, in SQLite."""

from __future__ import annotations

import json
from typing import Any

from controller.store.sqlite.connection import SqliteDatabase, dump_json


class SqliteNumbers(SqliteDatabase):
    """:class:`~controller.store.NumberStore` in SQLite."""

    async def list_numbers(self) -> dict[str, dict[str, Any]]:
        async with self._use("reading the numbers", write=False) as db:
            rows = await db.execute_fetchall("SELECT number, data FROM numbers ORDER BY number")
        return {row["number"]: json.loads(row["data"]) for row in rows}

    async def put_number(self, number: str, data: dict[str, Any], at: float) -> None:
        async with self._use("saving a number", write=True) as db:
            await db.execute("INSERT INTO numbers (number, data, updated_at) VALUES (?, ?, ?) "
                             "ON CONFLICT (number) DO UPDATE SET data = excluded.data, "
                             "updated_at = excluded.updated_at", (number, dump_json(data), at))

    async def delete_number(self, number: str) -> bool:
        async with self._use("deleting a number", write=True) as db:
            cursor = await db.execute("DELETE FROM numbers WHERE number = ?", (number,))
        return cursor.rowcount > 0
