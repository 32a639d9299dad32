"""Webhook deliveries and disabled URLs in SQLite. Deliveries are enqueued
with the call change that caused them (:mod:`controller.store.sqlite.calls`),
through :func:`insert_deliveries`."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from controller.errors import InvalidField
from controller.jsonio import loads
from controller.store import (
    DeliveryBacklog,
    DeliveryPage,
    DeliveryState,
    DisabledUrl,
    DueDelivery,
    StoreError,
    WebhookDelivery,
    url_id_of,
)
from controller.store.sqlite.connection import SqliteDatabase, dump_json
from controller.store.sqlite.cursor import decode_cursor, encode_cursor
from controller.store.sqlite.link import SqliteLink

DELIVERY_COLUMNS = ("event_id, call_id, url, event_type, payload, created_at, next_attempt_at, state, "
                    "attempts, last_status_code, last_error, delivered_at")


def _delivery_from_row(row: sqlite3.Row) -> WebhookDelivery:
    return WebhookDelivery(
        event_id=row["event_id"], call_id=row["call_id"], url=row["url"],
        event_type=row["event_type"], payload=loads(row["payload"]),
        created_at=row["created_at"], next_attempt_at=row["next_attempt_at"],
        state=DeliveryState(row["state"]), attempts=row["attempts"],
        last_status_code=row["last_status_code"], last_error=row["last_error"],
        delivered_at=row["delivered_at"])


def delivery_params(delivery: WebhookDelivery) -> tuple[Any, ...]:
    return (delivery.event_id, delivery.call_id, delivery.url, delivery.event_type,
            dump_json(delivery.payload), delivery.created_at, delivery.next_attempt_at,
            delivery.state.value, delivery.attempts, delivery.last_status_code,
            delivery.last_error, delivery.delivered_at)


async def insert_deliveries(db: SqliteLink, params: list[tuple[Any, ...]]) -> None:
    """Insert deliveries encoded by :func:`delivery_params`, in the caller's transaction."""
    await db.executemany(
        f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", params)


class SqliteDeliveries(SqliteDatabase):
    """:class:`~controller.store.DeliveryStore` in SQLite."""

    async def deliveries(self, call_id: str) -> list[WebhookDelivery]:
        async with self._use("reading deliveries", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE call_id = ? ORDER BY created_at, rowid",
                (call_id,))
        return [_delivery_from_row(row) for row in rows]

    async def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        """Deliveries not yet tried before retries, so a backlog of retries to a
        dead receiver does not hold up fresh webhooks; then oldest event
        first, so a backlog reaches a receiver in the order it happened."""
        async with self._use("reading due deliveries", write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT event_id, url, attempts > 0 AS retry FROM deliveries "
                "WHERE state = ? AND next_attempt_at <= ? "
                "ORDER BY attempts > 0, created_at, rowid LIMIT ?",
                (DeliveryState.PENDING.value, now, limit))
        return [DueDelivery(row["event_id"], row["url"], bool(row["retry"])) for row in rows]

    async def next_due_at(self, after: float | None = None) -> float | None:
        async with self._use("reading the next due delivery", write=False) as db:
            [(due,)] = await db.execute_fetchall(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = ? AND next_attempt_at > ?",
                (DeliveryState.PENDING.value, -math.inf if after is None else after))
        return None if due is None else float(due)

    async def delivery_backlog(self) -> DeliveryBacklog:
        # Counted on the deliveries_due index: one entry per pending delivery.
        async with self._use("counting pending deliveries", write=False) as db:
            [(pending, oldest)] = await db.execute_fetchall(
                "SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE state = ?",
                (DeliveryState.PENDING.value,))
        return DeliveryBacklog(int(pending), None if oldest is None else float(oldest))

    async def update_delivery(self, delivery: WebhookDelivery) -> None:
        async with self._use("updating a delivery", write=True) as db:
            updated = await db.execute(
                "UPDATE deliveries SET next_attempt_at = ?, state = ?, attempts = ?, last_status_code = ?, "
                "last_error = ?, delivered_at = ? WHERE event_id = ?",
                (delivery.next_attempt_at, delivery.state.value, delivery.attempts,
                 delivery.last_status_code, delivery.last_error, delivery.delivered_at,
                 delivery.event_id))
            if updated.rowcount != 1:
                raise StoreError(f"delivery {delivery.event_id} is not in {self.path}",
                                 path=str(self.path), action="updating a delivery")

    async def disable_url(self, url: str, at: float) -> None:
        async with self._use("disabling a webhook URL", write=True) as db:
            # The first 410 is kept: it says since when the URL has been gone.
            await db.execute("INSERT OR IGNORE INTO disabled_urls (url, disabled_at) VALUES (?, ?)",
                             (url, at))

    async def url_disabled(self, url: str) -> bool:
        async with self._use("reading disabled webhook URLs", write=False) as db:
            rows = await db.execute_fetchall("SELECT 1 FROM disabled_urls WHERE url = ?", (url,))
        return bool(list(rows))

    async def list_deliveries(self, *, call_id: str | None = None, state: DeliveryState | None = None,
                              limit: int = 50, cursor: str | None = None) -> DeliveryPage:
        if limit < 1:
            raise InvalidField("limit must be at least 1", field="limit")
        conditions: list[str] = []
        params: list[Any] = []
        if call_id is not None:
            conditions.append("call_id = ?")
            params.append(call_id)
        if state is not None:
            conditions.append("state = ?")
            params.append(state.value)
        if cursor is not None:
            # Keyset paging, as for calls: strictly after the previous page's last row.
            last_created_at, last_event_id = decode_cursor(cursor)
            conditions.append("(created_at, event_id) < (?, ?)")
            params += [last_created_at, last_event_id]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._use("listing deliveries", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries {where} "
                "ORDER BY created_at DESC, event_id DESC LIMIT ?", (*params, limit + 1)))
        deliveries = [_delivery_from_row(row) for row in rows[:limit]]
        last = deliveries[-1] if len(rows) > limit else None
        return DeliveryPage(deliveries, encode_cursor(last.created_at, last.event_id) if last else None)

    async def get_delivery(self, event_id: str) -> WebhookDelivery | None:
        async with self._use("reading a delivery", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ?", (event_id,)))
        return _delivery_from_row(rows[0]) if rows else None

    async def redeliver(self, event_id: str, at: float) -> WebhookDelivery | None:
        async with self._use("queuing a delivery again", write=True) as db:
            await db.execute("UPDATE deliveries SET state = ?, next_attempt_at = ? WHERE event_id = ?",
                             (DeliveryState.PENDING.value, at, event_id))
            rows = list(await db.execute_fetchall(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ?", (event_id,)))
        return _delivery_from_row(rows[0]) if rows else None

    async def disabled_urls(self, *, limit: int = 100,
                            cursor: str | None = None) -> tuple[list[DisabledUrl], str | None]:
        if limit < 1:
            raise InvalidField("limit must be at least 1", field="limit")
        condition, params = "", []
        if cursor is not None:
            last_at, last_rowid = decode_cursor(cursor)
            if not last_rowid.isdigit():
                raise InvalidField("cursor is not one this server returned", field="cursor")
            condition = "WHERE disabled_at < ? OR (disabled_at = ? AND rowid < ?)"
            params = [last_at, last_at, int(last_rowid)]
        async with self._use("reading disabled webhook URLs", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT rowid, url, disabled_at FROM disabled_urls {condition} "
                "ORDER BY disabled_at DESC, rowid DESC LIMIT ?", (*params, limit + 1)))
        urls = [DisabledUrl(url_id_of(row["url"]), row["url"], row["disabled_at"]) for row in rows[:limit]]
        if len(rows) <= limit:
            return urls, None
        last = rows[limit - 1]
        return urls, encode_cursor(last["disabled_at"], str(last["rowid"]))

    async def enable_url(self, url_id: str,
                         redeliver_at: float | None = None) -> tuple[DisabledUrl, int] | None:
        async with self._use("re-enabling a webhook URL", write=True) as db:
            # The id is a hash, so the URL is found by hashing each: there are few disabled URLs.
            rows = await db.execute_fetchall("SELECT url, disabled_at FROM disabled_urls")
            found = next((DisabledUrl(url_id, row["url"], row["disabled_at"]) for row in rows
                          if url_id_of(row["url"]) == url_id), None)
            if found is None:
                return None
            await db.execute("DELETE FROM disabled_urls WHERE url = ?", (found.url,))
            if redeliver_at is None:
                return found, 0
            queued = await db.execute(
                "UPDATE deliveries SET state = ?, next_attempt_at = ? WHERE url = ? AND state = ?",
                (DeliveryState.PENDING.value, redeliver_at, found.url, DeliveryState.DISABLED.value))
            return found, queued.rowcount

    async def prune_deliveries(self, before: float) -> int:
        return await self._delete_in_batches(
            "pruning deliveries",
            "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries "
            "WHERE state != ? AND created_at < ? LIMIT ?)",
            (DeliveryState.PENDING.value, before))
