"""The SQLite schema and its migrations: a file of any earlier version is
brought up to this one when opened."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.store.sqlite.link import SqliteLink


async def _create_schema_v1(db: SqliteLink) -> None:
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


async def _add_routing_v2(db: SqliteLink) -> None:
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


async def _add_compliance_v3(db: SqliteLink) -> None:
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


async def _scope_idempotency_keys_v4(db: SqliteLink) -> None:
    """An idempotency key belongs to the token that sent it (a hash of the
    token: ``idempotency_scope``) and is bound to its request body
    (``request_hash``). The key is no longer unique on its own, so the table
    is rebuilt (SQLite cannot drop a UNIQUE constraint); foreign keys are off
    meanwhile, so dropping the old table deletes no timeline or delivery.
    Rows from before keep both hashes NULL and replay for their key as before."""
    columns = "call_id, created_at, updated_at, state, status, request, snapshot, result, idempotency_key"
    for statement in (
        """CREATE TABLE calls_v4 (
             call_id TEXT PRIMARY KEY,
             created_at REAL NOT NULL,
             updated_at REAL NOT NULL,
             state TEXT NOT NULL,
             status TEXT,
             request TEXT NOT NULL CHECK (json_valid(request)),
             snapshot TEXT NOT NULL CHECK (json_valid(snapshot)),
             result TEXT CHECK (result IS NULL OR json_valid(result)),
             idempotency_key TEXT,
             idempotency_scope TEXT,
             request_hash TEXT)""",
        f"INSERT INTO calls_v4 ({columns}) SELECT {columns} FROM calls",
        "DROP TABLE calls",
        "ALTER TABLE calls_v4 RENAME TO calls",
        "CREATE INDEX calls_by_created_at ON calls (created_at, call_id)",
        "CREATE INDEX calls_by_status ON calls (status, created_at)",
        "CREATE INDEX calls_by_state ON calls (state)",
        # One call per key and token; '' stands for the rows from before scopes.
        """CREATE UNIQUE INDEX calls_by_idempotency_key
             ON calls (idempotency_key, ifnull(idempotency_scope, ''))
             WHERE idempotency_key IS NOT NULL""",
    ):
        await db.execute(statement)


async def _add_numbers_v5(db: SqliteLink) -> None:
    """The numbers made over the API (PUT /v1/numbers/{number}): each as its
    settings were given, by its number in E.164."""
    await db.execute("""CREATE TABLE numbers (
             number TEXT PRIMARY KEY,
             data TEXT NOT NULL CHECK (json_valid(data)),
             updated_at REAL NOT NULL)""")


async def _index_big_stores_v6(db: SqliteLink) -> None:
    """Indexes that keep a store of millions of calls as quick as an empty one:

    * calls by status with call_id last, so a filtered page reads its rows in
      the list's order (no sort of every call with that status);
    * the open calls (not ended nor scheduled) alone, in creation order: the
      start's pick-up of open calls and ``status=active`` read only those.
      The queries name the two states as literals: SQLite uses a partial
      index only when the query's own terms imply its WHERE;
    * calls by state and creation time, for pruning old ended calls;
    * deliveries by creation time, for pruning them and for their list.

    Only indexes change, so every row stays as it was."""
    for statement in (
        "DROP INDEX calls_by_status",
        "CREATE INDEX calls_by_status ON calls (status, created_at, call_id)",
        "DROP INDEX calls_by_state",
        "CREATE INDEX calls_by_state ON calls (state, created_at)",
        """CREATE INDEX calls_open ON calls (created_at, call_id)
             WHERE state NOT IN ('ended', 'scheduled')""",
        "CREATE INDEX deliveries_by_created_at ON deliveries (created_at, event_id)",
    ):
        await db.execute(statement)


async def _index_resting_states_v7(db: SqliteLink) -> None:
    """Only the states a call rests in are indexed: scheduled (waiting for its
    calling window) and ended (for pruning), each a partial index in creation
    order. An index on every state moved a live call's entry at each of its
    transitions, from one state's part of the index to another's: 4 to 8 of
    SQLite's pages written for one change of state where the row itself is
    one. Now a live call's transitions rewrite only its entry in calls_open
    (whose WHERE names the state), and its row enters the other indexes of
    state when it is scheduled or ends. The queries name the states as
    literals, as for calls_open (v6)."""
    for statement in (
        "DROP INDEX calls_by_state",
        "CREATE INDEX calls_scheduled ON calls (created_at, call_id) WHERE state = 'scheduled'",
        "CREATE INDEX calls_ended ON calls (created_at) WHERE state = 'ended'",
    ):
        await db.execute(statement)


# MIGRATIONS[i] takes the schema from version i to i + 1. Append a step for
# every schema change; never edit one that has been released.
MIGRATIONS: tuple[Callable[[SqliteLink], Awaitable[None]], ...] = (
    _create_schema_v1, _add_routing_v2, _add_compliance_v3, _scope_idempotency_keys_v4,
    _add_numbers_v5, _index_big_stores_v6, _index_resting_states_v7)
SCHEMA_VERSION = len(MIGRATIONS)
