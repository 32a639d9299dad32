"""The do-not-call numbers added over the API and the calls placed to each
number, in SQLite: the compliance guards'
:class:`~controller.compliance.book.ComplianceBook`."""

from __future__ import annotations

from collections.abc import Sequence

from controller.compliance.book import ATTEMPT_WINDOW_SECONDS
from controller.compliance.dnc import API as DNC_API
from controller.compliance.dnc import DncEntry
from controller.store.sqlite.connection import SqliteDatabase


class SqliteCompliance(SqliteDatabase):
    """:class:`~controller.compliance.book.ComplianceBook` in SQLite."""

    async def dnc_entries(self, numbers: Sequence[str]) -> dict[str, DncEntry]:
        if not numbers:
            return {}
        marks = ",".join("?" * len(set(numbers)))
        async with self._use("reading the do-not-call list", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT number, reason, added_at FROM dnc WHERE number IN ({marks})",
                tuple(set(numbers)))
        return {row["number"]: DncEntry(row["number"], row["reason"], DNC_API, row["added_at"])
                for row in rows}

    async def put_dnc(self, number: str, reason: str, at: float) -> DncEntry:
        async with self._use("adding to the do-not-call list", write=True) as db:
            await db.execute("INSERT INTO dnc (number, reason, added_at) VALUES (?, ?, ?) "
                             "ON CONFLICT (number) DO UPDATE SET reason = excluded.reason",
                             (number, reason, at))
            [row] = await db.execute_fetchall(
                "SELECT number, reason, added_at FROM dnc WHERE number = ?", (number,))
        return DncEntry(row["number"], row["reason"], DNC_API, row["added_at"])

    async def delete_dnc(self, number: str) -> bool:
        async with self._use("removing from the do-not-call list", write=True) as db:
            cursor = await db.execute("DELETE FROM dnc WHERE number = ?", (number,))
        return cursor.rowcount > 0

    async def list_dnc(self, after: str | None, limit: int) -> list[DncEntry]:
        async with self._use("listing the do-not-call list", write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT number, reason, added_at FROM dnc WHERE number > ? ORDER BY number LIMIT ?",
                (after or "", limit))
        return [DncEntry(row["number"], row["reason"], DNC_API, row["added_at"]) for row in rows]

    async def record_attempts(self, call_id: str, numbers: Sequence[str], at: float) -> None:
        async with self._use("counting calls to numbers", write=True) as db:
            await db.executemany("INSERT OR IGNORE INTO number_attempts (number, call_id, at) "
                                 "VALUES (?, ?, ?)", [(n, call_id, at) for n in numbers])
            # Calls that no cap counts any more.
            await db.execute("DELETE FROM number_attempts WHERE at < ?",
                             (at - 2 * ATTEMPT_WINDOW_SECONDS,))

    async def attempts_since(self, numbers: Sequence[str], since: float) -> dict[str, list[float]]:
        called: dict[str, list[float]] = {n: [] for n in numbers}
        if not called:
            return called
        marks = ",".join("?" * len(called))
        async with self._use("reading calls to numbers", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT number, at FROM number_attempts WHERE number IN ({marks}) AND at > ? "
                "ORDER BY at", (*called, since))
        for row in rows:
            called[row["number"]].append(row["at"])
        return called
