"""Calls and their timelines in SQLite: idempotency keys, listing with
cursors, and scheduled calls (rows in state "scheduled"). A call's change is
saved with its timeline entries and webhook deliveries in one transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import InvalidField
from controller.jsonio import loads
from controller.store import (
    CallPage,
    DeliveryState,
    IdempotencyKey,
    StoredCall,
    StoreError,
    TimelineEntry,
    WebhookDelivery,
)
from controller.store.sqlite.connection import SqliteDatabase, dump_json
from controller.store.sqlite.cursor import decode_cursor, encode_cursor
from controller.store.sqlite.deliveries import delivery_params, insert_deliveries
from controller.store.sqlite.link import SqliteLink

ENDED = "ended"
SCHEDULED = "scheduled"  # waiting for its calling window; nothing dialed yet
# The calls still open, scheduled and ended, in the words of the partial
# indexes calls_open (schema v6), calls_scheduled and calls_ended (v7):
# literals, since SQLite uses a partial index only for a query whose own terms
# imply its WHERE, which a bound parameter never does.
_OPEN = f"state NOT IN ('{ENDED}', '{SCHEDULED}')"
_IS_SCHEDULED = f"state = '{SCHEDULED}'"
_IS_ENDED = f"state = '{ENDED}'"

CALL_COLUMNS = ("call_id, created_at, updated_at, state, status, request, snapshot, result, "
                "idempotency_key, idempotency_scope, request_hash")
# The call under a key from a token: its own, else one stored before keys had
# a scope (those replay for their key whichever token sends it).
_BY_KEY = ("idempotency_key = ? AND (idempotency_scope = ? OR idempotency_scope IS NULL) "
           "ORDER BY idempotency_scope IS NULL LIMIT 1")


def _call_from_row(row: sqlite3.Row) -> StoredCall:
    return StoredCall(
        call_id=row["call_id"], created_at=row["created_at"], updated_at=row["updated_at"],
        state=row["state"], status=row["status"], request=loads(row["request"]),
        snapshot=loads(row["snapshot"]),
        result=None if row["result"] is None else loads(row["result"]),
        idempotency_key=None if row["idempotency_key"] is None else IdempotencyKey(
            row["idempotency_key"], row["idempotency_scope"], row["request_hash"]))


def _list_order(row: sqlite3.Row) -> tuple[float, str]:
    """A row's place in the list (newest first is this, descending), as
    SQLite compares it: call ids as UTF-8 bytes, the order of their code points."""
    return row["created_at"], row["call_id"]


class _Entries:
    """A change's timeline entries and webhook deliveries, encoded before the
    transaction (a value JSON cannot take fails without touching the file)."""

    def __init__(self, timeline: list[TimelineEntry], deliveries: list[WebhookDelivery]) -> None:
        self.timeline = [(e.call_id, e.at, e.kind, dump_json(e.data)) for e in timeline]
        self.deliveries = [delivery_params(d) for d in deliveries]

    async def insert(self, db: SqliteLink) -> None:
        await self.insert_all(db, [self])

    @staticmethod
    async def insert_all(db: SqliteLink, changes: list[_Entries]) -> None:
        timeline = [entry for change in changes for entry in change.timeline]
        deliveries = [delivery for change in changes for delivery in change.deliveries]
        if timeline:
            await db.executemany("INSERT INTO timeline (call_id, at, kind, data) VALUES (?, ?, ?, ?)",
                                 timeline)
        if deliveries:
            await insert_deliveries(db, deliveries)


_UPDATE_CALL = ("UPDATE calls SET updated_at = ?, state = ?, status = ?, request = ?, snapshot = ?, "
                "result = ? WHERE call_id = ?")
# A call in progress has no status yet. Left out of the SET, it is left out of
# calls_by_status too: SQLite rewrites the index entries of every column a
# statement sets, changed or not.
_UPDATE_OPEN_CALL = ("UPDATE calls SET updated_at = ?, state = ?, request = ?, snapshot = ?, "
                     "result = ? WHERE call_id = ?")


@dataclass
class _QueuedSave:
    """One call's change, waiting to be written with the others of its turn."""

    call_id: str
    statement: str  # _UPDATE_CALL or _UPDATE_OPEN_CALL
    params: tuple[Any, ...]
    entries: _Entries
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class SqliteCalls(SqliteDatabase):
    """:class:`~controller.store.CallStore` in SQLite."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        # Calls' changes of this event-loop turn, written together by one task.
        self._queued_saves: list[_QueuedSave] = []
        self._saver: asyncio.Task[None] | None = None

    async def create_call(self, call: StoredCall) -> tuple[StoredCall, bool]:
        key = call.idempotency_key
        params = (call.call_id, call.created_at, call.updated_at, call.state, call.status,
                  dump_json(call.request), dump_json(call.snapshot),
                  None if call.result is None else dump_json(call.result),
                  *((key.key, key.scope, key.request_hash) if key else (None, None, None)))
        async with self._use("creating a call", write=True) as db:
            if key is not None:
                existing = list(await db.execute_fetchall(
                    f"SELECT {CALL_COLUMNS} FROM calls WHERE call_id != ? AND {_BY_KEY}",
                    (call.call_id, key.key, key.scope)))
                if existing:
                    return _call_from_row(existing[0]), False
            # A scheduled call is placed under its own id: its row becomes the
            # live call's, keeping when it was asked for. Any other row with
            # this id (say a scheduled call canceled meanwhile) is left alone.
            inserted = await db.execute(
                f"INSERT INTO calls ({CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (call_id) DO UPDATE SET updated_at = excluded.updated_at, "
                "state = excluded.state, status = excluded.status, request = excluded.request, "
                "snapshot = excluded.snapshot, result = excluded.result "
                "WHERE calls.state = ?", (*params, SCHEDULED))
            if inserted.rowcount != 1:
                raise StoreError(f"call {call.call_id} is already in {self.path} and not "
                                 "scheduled", path=str(self.path), action="creating a call")
        return call, True

    async def get_call(self, call_id: str) -> StoredCall | None:
        async with self._use("reading a call", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE call_id = ?", (call_id,)))
        return _call_from_row(rows[0]) if rows else None

    async def get_call_by_idempotency_key(self, key: IdempotencyKey) -> StoredCall | None:
        async with self._use("reading a call", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE {_BY_KEY}", (key.key, key.scope)))
        return _call_from_row(rows[0]) if rows else None

    async def list_calls(self, *, status: str | None = None, created_after: float | None = None,
                         created_before: float | None = None, limit: int = 50,
                         cursor: str | None = None) -> CallPage:
        """Newest first. created_after is inclusive and created_before exclusive,
        so consecutive ranges neither overlap nor leave gaps."""
        if limit < 1:
            raise InvalidField("limit must be at least 1", field="limit")
        conditions: list[str] = []
        params: list[Any] = []
        if status == "active":
            conditions.append(_OPEN)
        elif status == SCHEDULED:
            conditions.append(_IS_SCHEDULED)
        elif status is not None:
            conditions.append("status = ?")
            params.append(status)
        if created_after is not None:
            conditions.append("created_at >= ?")
            params.append(created_after)
        if created_before is not None:
            conditions.append("created_at < ?")
            params.append(created_before)
        if cursor is not None:
            # Keyset paging: strictly after the last row of the previous page in (created_at, call_id) order.
            last_created_at, last_call_id = decode_cursor(cursor)
            # As a row value, so that SQLite starts the index search there.
            conditions.append("(created_at, call_id) < (?, ?)")
            params += [last_created_at, last_call_id]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        # The page's rows are picked from an index alone, then read in the
        # table's order (rowid, the order calls were created in): read newest
        # first, a page of calls not in memory cost one disk read per table
        # page (about 80); read forward, the kernel reads ahead (a few reads).
        keys = (f"SELECT rowid FROM calls {where} "
                "ORDER BY created_at DESC, call_id DESC LIMIT ?")
        async with self._use("listing calls", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE rowid IN ({keys}) ORDER BY rowid",
                (*params, limit + 1)))
        rows.sort(key=_list_order, reverse=True)
        calls = [_call_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return CallPage(calls, encode_cursor(calls[-1].created_at, calls[-1].call_id) if more else None)

    async def open_calls(self) -> list[StoredCall]:
        async with self._use("reading open calls", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE {_OPEN} ORDER BY created_at, call_id")
        return [_call_from_row(row) for row in rows]

    async def save_call(self, call: StoredCall, timeline: list[TimelineEntry],
                        deliveries: list[WebhookDelivery]) -> None:
        # Encoded before the transaction, so a value JSON cannot take fails without touching the file.
        # The idempotency key is the one the call was created with: never changed here.
        status = () if call.status is None else (call.status,)
        call_params = (call.updated_at, call.state, *status, dump_json(call.request),
                       dump_json(call.snapshot), None if call.result is None else dump_json(call.result),
                       call.call_id)
        save = _QueuedSave(call.call_id, _UPDATE_CALL if status else _UPDATE_OPEN_CALL, call_params,
                           _Entries(timeline, deliveries))
        self._queued_saves.append(save)
        if self._saver is None:
            # It runs after this turn: every call's change made in it joins.
            self._saver = asyncio.create_task(self._save_queued(), name="store-save")
        # Shielded: a caller canceled while it waits leaves the others' write alone.
        await asyncio.shield(save.done)

    def _take_queued(self) -> list[_QueuedSave]:
        saves, self._queued_saves, self._saver = self._queued_saves, [], None
        return saves

    async def _save_queued(self) -> None:
        """The queued changes in one write: a statement per table for all of
        them (two for calls: those in progress, and those with a status).
        If any of them fails, each is written alone, so that one call's
        failure (say, it is not in the store) is its own."""
        saves: list[_QueuedSave] = []
        try:
            async with self._use("saving calls", write=True) as db:
                saves = self._take_queued()  # taken late, so changes queued meanwhile join
                updated = 0
                for statement in (_UPDATE_OPEN_CALL, _UPDATE_CALL):
                    rows = [s.params for s in saves if s.statement == statement]
                    if rows:
                        updated += (await db.executemany(statement, rows)).rowcount
                if updated != len(saves):
                    raise StoreError("a call to save is not in the store", path=str(self.path),
                                     action="saving calls")
                await _Entries.insert_all(db, [s.entries for s in saves])
        except Exception:
            for save in saves or self._take_queued():
                try:
                    await self._save_one(save)
                except Exception as exc:  # the caller's to handle, as from any write
                    if not save.done.done():
                        save.done.set_exception(exc)
                else:
                    if not save.done.done():
                        save.done.set_result(None)
            return
        except BaseException:
            for save in saves or self._take_queued():
                save.done.cancel()
            raise
        for save in saves:
            if not save.done.done():
                save.done.set_result(None)

    async def _save_one(self, save: _QueuedSave) -> None:
        async with self._use("saving a call", write=True) as db:
            updated = await db.execute(save.statement, save.params)
            if updated.rowcount != 1:
                raise StoreError(f"call {save.call_id} is not in {self.path}; create it first",
                                 path=str(self.path), action="saving a call")
            await save.entries.insert(db)

    async def timeline(self, call_id: str) -> list[TimelineEntry]:
        async with self._use("reading a timeline", write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT call_id, at, kind, data FROM timeline WHERE call_id = ? ORDER BY id", (call_id,))
        return [TimelineEntry(row["call_id"], row["at"], row["kind"], loads(row["data"]))
                for row in rows]

    # ------------------------------------------------------------ scheduled calls

    async def scheduled_calls(self) -> list[StoredCall]:
        """Calls waiting for their calling window, the one due first first."""
        async with self._use("reading scheduled calls", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE {_IS_SCHEDULED} "
                "ORDER BY json_extract(snapshot, '$.scheduled_for'), call_id")
        return [_call_from_row(row) for row in rows]

    async def save_scheduled(self, call: StoredCall, timeline: list[TimelineEntry],
                             deliveries: list[WebhookDelivery]) -> bool:
        """Like save_call, but only while the call is still scheduled (not
        placed meanwhile): False, and nothing written, if it is not."""
        call_params = (call.updated_at, call.state, call.status, dump_json(call.snapshot),
                       None if call.result is None else dump_json(call.result), call.call_id, SCHEDULED)
        entries = _Entries(timeline, deliveries)
        async with self._use("saving a scheduled call", write=True) as db:
            updated = await db.execute(
                "UPDATE calls SET updated_at = ?, state = ?, status = ?, snapshot = ?, result = ? "
                "WHERE call_id = ? AND state = ?", call_params)
            if updated.rowcount != 1:
                return False
            await entries.insert(db)
        return True

    # ------------------------------------------------------------ retention

    async def prune_calls(self, before: float) -> int:
        # Their timeline entries and deliveries go with them (ON DELETE CASCADE).
        return await self._delete_in_batches(
            "pruning calls",
            "DELETE FROM calls WHERE call_id IN (SELECT call_id FROM calls "
            f"WHERE {_IS_ENDED} AND created_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries "
            "WHERE deliveries.call_id = calls.call_id AND deliveries.state = ?) LIMIT ?)",
            (before, DeliveryState.PENDING.value))
