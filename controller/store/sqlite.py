"""The default store: one SQLite file, written through aiosqlite.

WAL lets readers go on while a call is saved. ``synchronous=FULL`` syncs the
WAL on every commit: with NORMAL a power cut may roll back the last commits, so
a call whose id was already returned to a client (and whose idempotency key
must keep it from being dialed twice) could vanish. A call makes only a few
commits, so the cost of FULL is small.

One connection serves the whole controller; an asyncio lock keeps one
coroutine's transaction from interleaving with another's statements.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from controller.compliance.book import ATTEMPT_WINDOW_SECONDS
from controller.compliance.dnc import API as DNC_API
from controller.compliance.dnc import DncEntry
from controller.errors import InvalidField
from controller.routing.agents import AgentState
from controller.store import (
    CallPage,
    DeliveryState,
    StoredCall,
    StoreError,
    TimelineEntry,
    WebhookDelivery,
)

log = structlog.get_logger(__name__)

# How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_SECONDS = 5.0

ENDED = "ended"
SCHEDULED = "scheduled"  # waiting for its calling window; nothing dialed yet


async def _create_schema_v1(db: aiosqlite.Connection) -> None:
    for statement in (
        """CREATE TABLE heartbeat (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             at REAL NOT NULL)""",
        """CREATE TABLE calls (
             call_id TEXT PRIMARY KEY,
             created_at REAL NOT NULL,
             updated_at REAL NOT NULL,
             state TEXT NOT NULL,
             status TEXT,
             request TEXT NOT NULL CHECK (json_valid(request)),
             snapshot TEXT NOT NULL CHECK (json_valid(snapshot)),
             result TEXT CHECK (result IS NULL OR json_valid(result)),
             idempotency_key TEXT UNIQUE)""",
        "CREATE INDEX calls_by_created_at ON calls (created_at, call_id)",
        "CREATE INDEX calls_by_status ON calls (status, created_at)",
        "CREATE INDEX calls_by_state ON calls (state)",
        """CREATE TABLE timeline (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             call_id TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
             at REAL NOT NULL,
             kind TEXT NOT NULL,
             data TEXT NOT NULL CHECK (json_valid(data)))""",
        "CREATE INDEX timeline_by_call ON timeline (call_id, id)",
        """CREATE TABLE deliveries (
             event_id TEXT PRIMARY KEY,
             call_id TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
             url TEXT NOT NULL,
             event_type TEXT NOT NULL,
             payload TEXT NOT NULL CHECK (json_valid(payload)),
             created_at REAL NOT NULL,
             next_attempt_at REAL NOT NULL,
             state TEXT NOT NULL,
             attempts INTEGER NOT NULL,
             last_status_code INTEGER,
             last_error TEXT,
             delivered_at REAL)""",
        "CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at)",
        "CREATE INDEX deliveries_by_call ON deliveries (call_id, created_at)",
        """CREATE TABLE disabled_urls (
             url TEXT PRIMARY KEY,
             disabled_at REAL NOT NULL)""",
    ):
        await db.execute(statement)


async def _add_routing_v2(db: aiosqlite.Connection) -> None:
    """Agent groups made over the API, and the agent state their strategies use."""
    for statement in (
        """CREATE TABLE agent_groups (
             name TEXT PRIMARY KEY,
             data TEXT NOT NULL CHECK (json_valid(data)))""",
        """CREATE TABLE agents (
             target TEXT PRIMARY KEY,
             on_call TEXT,
             last_ended_at REAL)""",
        """CREATE TABLE agent_calls (
             target TEXT NOT NULL,
             call_id TEXT NOT NULL,
             at REAL NOT NULL,
             PRIMARY KEY (target, call_id))""",
        "CREATE INDEX agent_calls_by_time ON agent_calls (target, at)",
        """CREATE TABLE group_cursors (
             name TEXT PRIMARY KEY,
             position INTEGER NOT NULL)""",
    ):
        await db.execute(statement)


async def _add_compliance_v3(db: aiosqlite.Connection) -> None:
    """The do-not-call numbers added over the API, and the calls placed to
    each number (the daily cap counts them). Scheduled calls are rows of
    ``calls`` in state "scheduled": no table of their own."""
    for statement in (
        """CREATE TABLE dnc (
             number TEXT PRIMARY KEY,
             reason TEXT NOT NULL,
             added_at REAL NOT NULL)""",
        """CREATE TABLE number_attempts (
             number TEXT NOT NULL,
             call_id TEXT NOT NULL,
             at REAL NOT NULL,
             PRIMARY KEY (number, call_id))""",
        "CREATE INDEX number_attempts_by_time ON number_attempts (number, at)",
        "CREATE INDEX number_attempts_by_age ON number_attempts (at)",
    ):
        await db.execute(statement)


# MIGRATIONS[i] takes the schema from version i to i + 1. Append a step for
# every schema change; never edit one that has been released.
MIGRATIONS: tuple[Callable[[aiosqlite.Connection], Awaitable[None]], ...] = (
    _create_schema_v1, _add_routing_v2, _add_compliance_v3)
# Agent call history older than this is dropped (least-calls periods are shorter).
AGENT_HISTORY_SECONDS = 31 * 86400
SCHEMA_VERSION = len(MIGRATIONS)

CALL_COLUMNS = "call_id, created_at, updated_at, state, status, request, snapshot, result, idempotency_key"
DELIVERY_COLUMNS = ("event_id, call_id, url, event_type, payload, created_at, next_attempt_at, state, "
                    "attempts, last_status_code, last_error, delivered_at")


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _call_from_row(row: sqlite3.Row) -> StoredCall:
    return StoredCall(
        call_id=row["call_id"], created_at=row["created_at"], updated_at=row["updated_at"],
        state=row["state"], status=row["status"], request=json.loads(row["request"]),
        snapshot=json.loads(row["snapshot"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        idempotency_key=row["idempotency_key"])


def _delivery_from_row(row: sqlite3.Row) -> WebhookDelivery:
    return WebhookDelivery(
        event_id=row["event_id"], call_id=row["call_id"], url=row["url"],
        event_type=row["event_type"], payload=json.loads(row["payload"]),
        created_at=row["created_at"], next_attempt_at=row["next_attempt_at"],
        state=DeliveryState(row["state"]), attempts=row["attempts"],
        last_status_code=row["last_status_code"], last_error=row["last_error"],
        delivered_at=row["delivered_at"])


def _delivery_params(delivery: WebhookDelivery) -> tuple[Any, ...]:
    return (delivery.event_id, delivery.call_id, delivery.url, delivery.event_type,
            _dump(delivery.payload), delivery.created_at, delivery.next_attempt_at,
            delivery.state.value, delivery.attempts, delivery.last_status_code,
            delivery.last_error, delivery.delivered_at)


class _Entries:
    """A change's timeline entries and webhook deliveries, encoded before the
    transaction (a value JSON cannot take fails without touching the file)."""

    def __init__(self, timeline: list[TimelineEntry], deliveries: list[WebhookDelivery]) -> None:
        self.timeline = [(e.call_id, e.at, e.kind, _dump(e.data)) for e in timeline]
        self.deliveries = [_delivery_params(d) for d in deliveries]

    async def insert(self, db: aiosqlite.Connection) -> None:
        await db.executemany("INSERT INTO timeline (call_id, at, kind, data) VALUES (?, ?, ?, ?)",
                             self.timeline)
        await db.executemany(
            f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.deliveries)


def encode_cursor(created_at: float, call_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, call_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, call_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, UnicodeError, ValueError, TypeError) as exc:
        raise InvalidField("cursor is not one this server returned", field="cursor") from exc
    if not isinstance(created_at, int | float) or not isinstance(call_id, str):
        raise InvalidField("cursor is not one this server returned", field="cursor")
    return float(created_at), call_id


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        # Extended result codes (e.g. SQLITE_READONLY_DIRECTORY) keep the primary code in the low byte.
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        where = str(self.path)
        if code == sqlite3.SQLITE_FULL:
            message = f"cannot write {where}: the disk is full; free space on its filesystem"
        elif code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
            message = (f"cannot write {where}: it or its folder is read-only; make both writable "
                       "by the user the controller runs as")
        elif code == sqlite3.SQLITE_CANTOPEN:
            message = (f"cannot open {where}: check that its folder exists, is a folder, and is "
                       "writable by the user the controller runs as")
        elif code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            message = (f"{where} stayed locked by another process for {BUSY_TIMEOUT_SECONDS:g} s; "
                       "run one controller per store file")
        elif code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            message = f"{where} is not a callconnect database or is damaged; restore it or use a new file"
        elif code == sqlite3.SQLITE_IOERR:
            message = f"I/O error on {where}: check the disk and its filesystem ({exc})"
        else:
            message = f"store {where} failed while {action}: {exc}"
        return StoreError(message, path=where, action=action,
                          sqlite_error=getattr(exc, "sqlite_errorname", type(exc).__name__))

    @asynccontextmanager
    async def _use(self, action: str, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, alone; with write=True inside one transaction that is
        committed on success and rolled back on any error."""
        async with self._lock:
            if self._db is None:
                raise StoreError(f"store {self.path} is not open", path=str(self.path), action=action)
            db = self._db
            try:
                if not write:
                    yield db
                    return
                # IMMEDIATE takes the write lock now, so the transaction cannot fail halfway on it.
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    await db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc

    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {self.path}: {exc.strerror or exc}",
                             path=str(self.path), action="open") from exc
        try:
            # isolation_level=None: transactions are begun and ended explicitly in _use.
            db = await aiosqlite.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from exc
        db.row_factory = sqlite3.Row
        self._db = db
        try:
            await self._configure(db)
            await self._migrate()
        except BaseException:
            self._db = None
            await db.close()
            raise
        log.info("store.opened", path=str(self.path), schema_version=SCHEMA_VERSION)

    async def _configure(self, db: aiosqlite.Connection) -> None:
        try:
            [(journal_mode,)] = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from exc
        if str(journal_mode).lower() != "wal":
            raise StoreError(f"{self.path} cannot use WAL journaling (got {journal_mode!r}); put it on "
                             "a local filesystem", path=str(self.path), action="opening")

    async def _migrate(self) -> None:
        async with self._use("migrating the schema", write=True) as db:
            await db.execute("""CREATE TABLE IF NOT EXISTS schema_version (
                                  id INTEGER PRIMARY KEY CHECK (id = 1),
                                  version INTEGER NOT NULL)""")
            rows = list(await db.execute_fetchall("SELECT version FROM schema_version"))
            found = rows[0]["version"] if rows else 0
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {found}, newer than this callconnect knows "
                    f"({SCHEMA_VERSION}); upgrade callconnect or use another file",
                    path=str(self.path), action="migrating the schema")
            for version in range(found, SCHEMA_VERSION):
                await MIGRATIONS[version](db)
                log.info("store.migrated", path=str(self.path), schema_version=version + 1)
            await db.execute("INSERT INTO schema_version (id, version) VALUES (1, ?) "
                             "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                             (SCHEMA_VERSION,))

    async def close(self) -> None:
        async with self._lock:
            if self._db is None:
                return
            db, self._db = self._db, None
            try:
                await db.close()
            except sqlite3.Error as exc:
                raise self._error("closing", exc) from exc

    async def ping(self) -> None:
        async with self._use("writing the heartbeat", write=True) as db:
            await db.execute("INSERT INTO heartbeat (id, at) VALUES (1, ?) "
                             "ON CONFLICT (id) DO UPDATE SET at = excluded.at", (time.time(),))

    async def create_call(self, call: StoredCall) -> tuple[StoredCall, bool]:
        params = (call.call_id, call.created_at, call.updated_at, call.state, call.status,
                  _dump(call.request), _dump(call.snapshot),
                  None if call.result is None else _dump(call.result), call.idempotency_key)
        async with self._use("creating a call", write=True) as db:
            if call.idempotency_key is not None:
                existing = list(await db.execute_fetchall(
                    f"SELECT {CALL_COLUMNS} FROM calls WHERE idempotency_key = ? AND call_id != ?",
                    (call.idempotency_key, call.call_id)))
                if existing:
                    return _call_from_row(existing[0]), False
            # A scheduled call is placed under its own id: its row becomes the
            # live call's, keeping when it was asked for. Any other row with
            # this id (say a scheduled call canceled meanwhile) is left alone.
            inserted = await db.execute(
                f"INSERT INTO calls ({CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
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

    async def get_call_by_idempotency_key(self, key: str) -> StoredCall | None:
        async with self._use("reading a call", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE idempotency_key = ?", (key,)))
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
            conditions.append("state NOT IN (?, ?)")
            params += [ENDED, SCHEDULED]
        elif status == SCHEDULED:
            conditions.append("state = ?")
            params.append(SCHEDULED)
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
            conditions.append("(created_at < ? OR (created_at = ? AND call_id < ?))")
            params += [last_created_at, last_created_at, last_call_id]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._use("listing calls", write=False) as db:
            rows = list(await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls {where} "
                "ORDER BY created_at DESC, call_id DESC LIMIT ?", (*params, limit + 1)))
        calls = [_call_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return CallPage(calls, encode_cursor(calls[-1].created_at, calls[-1].call_id) if more else None)

    async def open_calls(self) -> list[StoredCall]:
        async with self._use("reading open calls", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE state NOT IN (?, ?) "
                "ORDER BY created_at, call_id", (ENDED, SCHEDULED))
        return [_call_from_row(row) for row in rows]

    async def save_call(self, call: StoredCall, timeline: list[TimelineEntry],
                        deliveries: list[WebhookDelivery]) -> None:
        # Encoded before the transaction, so a value JSON cannot take fails without touching the file.
        call_params = (call.updated_at, call.state, call.status, _dump(call.request),
                       _dump(call.snapshot), None if call.result is None else _dump(call.result),
                       call.idempotency_key, call.call_id)
        entries = _Entries(timeline, deliveries)
        async with self._use("saving a call", write=True) as db:
            updated = await db.execute(
                "UPDATE calls SET updated_at = ?, state = ?, status = ?, request = ?, snapshot = ?, "
                "result = ?, idempotency_key = ? WHERE call_id = ?", call_params)
            if updated.rowcount != 1:
                raise StoreError(f"call {call.call_id} is not in {self.path}; create it first",
                                 path=str(self.path), action="saving a call")
            await entries.insert(db)

    async def timeline(self, call_id: str) -> list[TimelineEntry]:
        async with self._use("reading a timeline", write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT call_id, at, kind, data FROM timeline WHERE call_id = ? ORDER BY id", (call_id,))
        return [TimelineEntry(row["call_id"], row["at"], row["kind"], json.loads(row["data"]))
                for row in rows]

    async def deliveries(self, call_id: str) -> list[WebhookDelivery]:
        async with self._use("reading deliveries", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE call_id = ? ORDER BY created_at, rowid",
                (call_id,))
        return [_delivery_from_row(row) for row in rows]

    async def due_deliveries(self, now: float, limit: int) -> list[WebhookDelivery]:
        """Oldest event first, so a backlog reaches a receiver in the order it happened."""
        async with self._use("reading due deliveries", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = ? AND next_attempt_at <= ? "
                "ORDER BY created_at, rowid LIMIT ?", (DeliveryState.PENDING.value, now, limit))
        return [_delivery_from_row(row) for row in rows]

    async def next_due_at(self) -> float | None:
        async with self._use("reading the next due delivery", write=False) as db:
            [(due,)] = await db.execute_fetchall(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = ?",
                (DeliveryState.PENDING.value,))
        return None if due is None else float(due)

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

    # ------------------------------------------------------------ agent groups

    async def list_groups(self) -> dict[str, dict[str, Any]]:
        async with self._use("reading agent groups", write=False) as db:
            rows = await db.execute_fetchall("SELECT name, data FROM agent_groups ORDER BY name")
        return {row["name"]: json.loads(row["data"]) for row in rows}

    async def put_group(self, name: str, data: dict[str, Any]) -> None:
        async with self._use("saving an agent group", write=True) as db:
            await db.execute("INSERT INTO agent_groups (name, data) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET data = excluded.data",
                             (name, _dump(data)))

    async def delete_group(self, name: str) -> bool:
        async with self._use("deleting an agent group", write=True) as db:
            cursor = await db.execute("DELETE FROM agent_groups WHERE name = ?", (name,))
            await db.execute("DELETE FROM group_cursors WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # ------------------------------------------------------------ agents (AgentBook)

    async def agent_states(self, targets: Sequence[str]) -> dict[str, AgentState]:
        states = {t: AgentState(t) for t in targets}
        if not states:
            return states
        marks = ",".join("?" * len(states))
        async with self._use("reading agent state", write=False) as db:
            for row in await db.execute_fetchall(
                    f"SELECT target, on_call, last_ended_at FROM agents WHERE target IN ({marks})",
                    tuple(states)):
                states[row["target"]].on_call = row["on_call"]
                states[row["target"]].last_ended_at = row["last_ended_at"]
            for row in await db.execute_fetchall(
                    f"SELECT target, at FROM agent_calls WHERE target IN ({marks})", tuple(states)):
                states[row["target"]].calls.append(row["at"])
        return states

    async def agent_call_started(self, target: str, call_id: str, at: float) -> None:
        async with self._use("saving agent state", write=True) as db:
            await db.execute("INSERT INTO agents (target, on_call) VALUES (?, ?) "
                             "ON CONFLICT (target) DO UPDATE SET on_call = excluded.on_call",
                             (target, call_id))
            await db.execute("INSERT OR IGNORE INTO agent_calls (target, call_id, at) "
                             "VALUES (?, ?, ?)", (target, call_id, at))
            await db.execute("DELETE FROM agent_calls WHERE at < ?",
                             (at - AGENT_HISTORY_SECONDS,))

    async def agent_call_ended(self, target: str, call_id: str, at: float) -> None:
        async with self._use("saving agent state", write=True) as db:
            await db.execute(
                "INSERT INTO agents (target, last_ended_at) VALUES (?, ?) "
                "ON CONFLICT (target) DO UPDATE SET last_ended_at = excluded.last_ended_at, "
                "on_call = CASE WHEN on_call = ? THEN NULL ELSE on_call END",
                (target, at, call_id))

    async def group_cursor(self, group: str) -> int:
        async with self._use("reading a group's position", write=False) as db:
            rows = list(await db.execute_fetchall(
                "SELECT position FROM group_cursors WHERE name = ?", (group,)))
        return int(rows[0]["position"]) if rows else -1

    async def set_group_cursor(self, group: str, index: int) -> None:
        async with self._use("saving a group's position", write=True) as db:
            await db.execute("INSERT INTO group_cursors (name, position) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                             (group, index))

    # ------------------------------------------------------------ compliance (ComplianceBook)

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

    # ------------------------------------------------------------ scheduled calls

    async def scheduled_calls(self) -> list[StoredCall]:
        """Calls waiting for their calling window, the one due first first."""
        async with self._use("reading scheduled calls", write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE state = ? "
                "ORDER BY json_extract(snapshot, '$.scheduled_for'), call_id", (SCHEDULED,))
        return [_call_from_row(row) for row in rows]

    async def save_scheduled(self, call: StoredCall, timeline: list[TimelineEntry],
                             deliveries: list[WebhookDelivery]) -> bool:
        """Like save_call, but only while the call is still scheduled (not
        placed meanwhile): False, and nothing written, if it is not."""
        call_params = (call.updated_at, call.state, call.status, _dump(call.snapshot),
                       None if call.result is None else _dump(call.result), call.call_id, SCHEDULED)
        entries = _Entries(timeline, deliveries)
        async with self._use("saving a scheduled call", write=True) as db:
            updated = await db.execute(
                "UPDATE calls SET updated_at = ?, state = ?, status = ?, snapshot = ?, result = ? "
                "WHERE call_id = ? AND state = ?", call_params)
            if updated.rowcount != 1:
                return False
            await entries.insert(db)
        return True
