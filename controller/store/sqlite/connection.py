"""The connection every SQLite aggregate shares: opening, the schema's
migration, and transactions.

WAL lets readers go on while a call is saved. ``synchronous=FULL`` syncs the
WAL on every commit: with NORMAL a power cut may roll back the last commits, so
a call whose id was already returned to a client (and whose idempotency key
must keep it from being dialed twice) could vanish. A call makes only a few
commits, so the cost of FULL is small.

The database, its -wal and its -shm are 0600 (they hold webhook URLs with
their query tokens): the file is created 0600 before SQLite opens it, and
SQLite gives the -wal and -shm it creates the database file's mode. Files an
older version left group- or world-readable are tightened at open.

Two connections: every write goes through one, and an asyncio lock keeps one
coroutine's statements from interleaving with another's there; every read
goes through the other, which is read-only and reads what is committed.

Group commit: the writes made while a transaction is open (in practice, those
of one event-loop turn and the turns its statements take) share it, each but
the first in a savepoint of its own, and are committed together, once. A writer returns only
after that commit: nothing a caller is told was written (and nothing the API
acknowledges) can be lost to a crash. A write that fails rolls back its own
savepoint only; a commit that fails fails every write in it. A read sees the
last commit, never the open transaction, so it never sees what is not yet
durable, and it waits for no commit: when reads waited for the open
transaction's commit, under a steady stream of writes each commit found the
next transaction already open, and a read waited for seconds (an API
request's do-not-call look-up, the webhook outbox's look for due deliveries).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog

from controller.jsonio import dumps_text
from controller.store import StoreError
from controller.store.sqlite.link import SqliteLink
from controller.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

log = structlog.get_logger(__name__)

# How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_SECONDS = 5.0
FILE_MODE = 0o600
FOLDER_MODE = 0o750
# Rows deleted per transaction when pruning, so that calls and the outbox wait on none for long.
PRUNE_BATCH = 500
# The files SQLite keeps beside the database in WAL mode.
_COMPANIONS = ("-wal", "-shm")


def dump_json(value: dict[str, Any]) -> str:
    return dumps_text(value)


class _Batch:
    """The writes sharing one transaction, and its commit's outcome."""

    def __init__(self) -> None:
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(self, error: StoreError) -> None:
        if not self.committed.done():
            self.committed.set_exception(error)
            # Every writer in the batch awaits it; this keeps asyncio quiet if
            # the last of them was canceled meanwhile.
            self.committed.exception()


class SqliteDatabase:
    """The file and its two connections, one writing and one reading; each
    aggregate's class extends it and runs its statements through :meth:`_use`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: SqliteLink | None = None
        self._reader: SqliteLink | None = None
        self._lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._batch: _Batch | None = None  # the open transaction's writes
        self._committing: asyncio.Task[None] | None = None
        self._commit_running: asyncio.Future[None] | None = None  # done when the commit on the thread is

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

    def _open_db(self, action: str) -> SqliteLink:
        if self._db is None:
            raise StoreError(f"store {self.path} is not open", path=str(self.path), action=action)
        return self._db

    def _open_reader(self, action: str) -> SqliteLink:
        if self._reader is None:
            raise StoreError(f"store {self.path} is not open", path=str(self.path), action=action)
        return self._reader

    async def _delete_in_batches(self, action: str, sql: str, params: tuple[Any, ...]) -> int:
        """Run ``sql`` (a DELETE whose last parameter is a LIMIT, given as
        PRUNE_BATCH) one transaction at a time until it deletes fewer; how many
        rows it deleted in all."""
        deleted = 0
        while True:
            async with self._use(action, write=True) as db:
                cursor = await db.execute(sql, (*params, PRUNE_BATCH))
            deleted += cursor.rowcount
            if cursor.rowcount < PRUNE_BATCH:
                return deleted

    @asynccontextmanager
    async def _use(self, action: str, *, write: bool) -> AsyncIterator[SqliteLink]:
        """A connection, alone. With write=False, the reading connection, in a
        read transaction: its statements see one commit, the last one. With
        write=True, the writing one, inside a savepoint of the open transaction
        (rolled back on any error); returns once that is committed."""
        if not write:
            async with self._read_lock:
                reader = self._open_reader(action)
                try:
                    await reader.execute("BEGIN")
                    try:
                        yield reader
                    finally:
                        if reader.in_transaction:
                            await reader.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise self._error(action, exc) from exc
                return
        while True:
            running = self._commit_running
            if running is not None:
                # The connection is the commit's until it ends. Every writer
                # waiting wakes then, in one turn of the loop; queued on the
                # lock instead, they took a turn each, and at 35 calls/s a
                # write waited up to a second for its turn.
                await asyncio.wait([running])
                continue
            async with self._lock:
                if self._commit_running is not None:
                    continue  # a commit began while this writer waited for the lock
                db = self._open_db(action)
                batch = self._batch
                # The transaction's first write needs no savepoint: nothing else is in it yet.
                first = batch is None
                try:
                    if batch is None:
                        # IMMEDIATE takes the write lock now, so the transaction cannot fail halfway on it.
                        await db.execute("BEGIN IMMEDIATE")
                        batch = self._batch = _Batch()
                        # It runs after the writers already woken in this turn: they join this commit.
                        self._committing = asyncio.create_task(self._commit(batch),
                                                               name="store-commit")
                    else:
                        await db.execute("SAVEPOINT write")
                    try:
                        yield db
                        if not first:
                            await db.execute("RELEASE write")
                    except BaseException:
                        if db.in_transaction:
                            await db.execute("ROLLBACK" if first else "ROLLBACK TO write")
                            if not first:
                                await db.execute("RELEASE write")
                        raise
                except sqlite3.Error as exc:
                    error = self._error(action, exc)
                    self._lost(db, batch, error)
                    raise error from exc
                except BaseException:
                    self._lost(db, batch, StoreError(f"store {self.path}: a write in the same "
                                                     "transaction failed and rolled it back",
                                                     path=str(self.path), action=action))
                    raise
            break
        await asyncio.shield(batch.committed)

    def _lost(self, db: SqliteLink, batch: _Batch | None, error: StoreError) -> None:
        """SQLite rolls the whole transaction back on some errors (a full disk,
        I/O): then the writes before this one in it are lost too."""
        if batch is not None and not db.in_transaction and self._batch is batch:
            self._batch = None
            batch.fail(error)

    async def _commit(self, batch: _Batch) -> None:
        async with self._lock:  # after the writers already in this turn: they join this commit
            if self._batch is not batch:
                return  # rolled back already, and its writers told
            self._batch = None
            db = self._open_db("committing")
            running = self._commit_running = asyncio.get_running_loop().create_future()
        try:
            try:
                await db.commit()
            except sqlite3.Error as exc:
                error = self._error("committing", exc)
                try:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("store.rollback_failed", path=str(self.path))
                batch.fail(error)
                return
            batch.committed.set_result(None)
        finally:
            self._commit_running = None
            running.set_result(None)

    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            self.path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {self.path}: {exc.strerror or exc}",
                             path=str(self.path), action="open") from exc
        try:
            self._restrict_files()
        except OSError as exc:
            raise StoreError(f"cannot open {self.path} to make it private (mode 0600): "
                             f"{exc.strerror or exc}; it must be a file the controller's user owns",
                             path=str(self.path), action="open") from exc
        try:
            db = SqliteLink.open(self.path, BUSY_TIMEOUT_SECONDS)
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from exc
        self._db = db
        try:
            await self._configure(db)
            await self._migrate()
            await self._enforce_foreign_keys(db)
            self._reader = await self._open_read_only()
        except BaseException:
            self._db = None
            await db.close()
            raise
        log.info("store.opened", path=str(self.path), schema_version=SCHEMA_VERSION)

    def _restrict_files(self) -> None:
        """Create the database file 0600 if it is missing, and make it and its
        companions 0600 if they are not (SQLite copies the database's mode)."""
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        for path in (self.path, *(self.path.with_name(self.path.name + s) for s in _COMPANIONS)):
            try:
                if path.stat().st_mode & 0o777 != FILE_MODE:
                    path.chmod(FILE_MODE)
            except FileNotFoundError:
                continue

    async def _configure(self, db: SqliteLink) -> None:
        try:
            [(journal_mode,)] = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from exc
        if str(journal_mode).lower() != "wal":
            raise StoreError(f"{self.path} cannot use WAL journaling (got {journal_mode!r}); put it on "
                             "a local filesystem", path=str(self.path), action="opening")

    async def _open_read_only(self) -> SqliteLink:
        """The reading connection, opened once the schema is migrated."""
        try:
            reader = SqliteLink.open(self.path, BUSY_TIMEOUT_SECONDS)
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from exc
        try:
            await reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            await reader.close()
            raise self._error("opening", exc) from exc
        return reader

    async def _enforce_foreign_keys(self, db: SqliteLink) -> None:
        # Only after the migration: one may rebuild a table, and with foreign
        # keys on, dropping the old table would delete its children. The
        # migration checks them itself before it commits.
        try:
            await db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from exc

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
            broken = (list(await db.execute_fetchall("PRAGMA foreign_key_check"))
                      if found < SCHEMA_VERSION else [])
            if broken:
                raise StoreError(f"{self.path}: the schema migration left {len(broken)} rows "
                                 f"without their parent (first in {broken[0][0]}); nothing was "
                                 "changed", path=str(self.path), action="migrating the schema")
            await db.execute("INSERT INTO schema_version (id, version) VALUES (1, ?) "
                             "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                             (SCHEMA_VERSION,))

    async def close(self) -> None:
        if self._committing is not None:
            await self._committing  # the last writes are committed first
        async with self._lock, self._read_lock:
            if self._db is None:
                return
            db, self._db = self._db, None
            reader, self._reader = self._reader, None
            try:
                if reader is not None:
                    await reader.close()
                await db.close()
            except sqlite3.Error as exc:
                raise self._error("closing", exc) from exc

    async def ping(self) -> None:
        async with self._use("writing the heartbeat", write=True) as db:
            await db.execute("INSERT INTO heartbeat (id, at) VALUES (1, ?) "
                             "ON CONFLICT (id) DO UPDATE SET at = excluded.at", (time.time(),))
