"""The store's queries on a big store: each statement the store runs for a
list page, the start's pick-up of open calls, the do-not-call look-up and
the prunes is planned by SQLite on an index, never as a scan of every call
(or delivery), and never sorts what it found. The plans are SQLite's own
(EXPLAIN QUERY PLAN of the statement the store sent, with its parameters).
A file of schema version 5 gains the indexes of versions 6 and 7 and keeps
every row; a live call's change of state moves it in no index."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from controller.store import TimelineEntry
from controller.store.sqlite import SqliteStore
from controller.store.sqlite.link import SqliteLink
from controller.store.sqlite.schema import SCHEMA_VERSION

from .builders import at_version, make_call, make_delivery, old_file

Statements = list[tuple[str, tuple[Any, ...]]]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    """Every statement a store sends to SQLite, with its parameters."""
    sent: Statements = []
    execute, fetchall = SqliteLink.execute, SqliteLink.execute_fetchall

    async def recorded_execute(self: SqliteLink, sql: str, parameters: Any = ()) -> Any:
        sent.append((sql, tuple(parameters or ())))
        return await execute(self, sql, parameters)

    async def recorded_fetchall(self: SqliteLink, sql: str, parameters: Any = ()) -> Any:
        sent.append((sql, tuple(parameters or ())))
        return await fetchall(self, sql, parameters)

    monkeypatch.setattr(SqliteLink, "execute", recorded_execute)
    monkeypatch.setattr(SqliteLink, "execute_fetchall", recorded_fetchall)
    return sent


async def filled(store: SqliteStore) -> None:
    for number in range(6):
        ended = number % 2 == 0
        await store.create_call(make_call(f"call-{number}", 1000.0 + number,
                                          state="ended" if ended else "dialing-a",
                                          status="completed" if ended else None))
    await store.save_call(make_call("call-0", 1000.0, state="ended", status="completed"),
                          [TimelineEntry("call-0", 1001.0, "transition", {"to": "ended"})],
                          [make_delivery("evt-0", "call-0")])
    await store.put_dnc("+27115550909", "asked", 1000.0)


def plans(path: Path, sent: Statements) -> Iterator[tuple[str, list[str]]]:
    """SQLite's plan of each SELECT or DELETE sent."""
    with closing(sqlite3.connect(path)) as db:
        for sql, parameters in sent:
            if sql.lstrip().upper().startswith(("SELECT", "DELETE")):
                yield sql, [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]


def assert_indexed(path: Path, sent: Statements, *, ordered_scan: str | None = None) -> None:
    """No statement scans a whole table or sorts; ``ordered_scan``, if given,
    is the one index a statement may walk in order (a LIMIT stops it)."""
    found = list(plans(path, sent))
    assert found, "the operation sent no statement"
    for sql, plan in found:
        for step in plan:
            assert "TEMP B-TREE" not in step, (sql, plan)
            if step.startswith("SCAN"):
                assert ordered_scan is not None and step.endswith(
                    (f"USING INDEX {ordered_scan}", f"USING COVERING INDEX {ordered_scan}")), \
                    (sql, plan)


Operation = Callable[[SqliteStore], Awaitable[Any]]


async def a_cursor(store: SqliteStore, **filters: Any) -> str:
    cursor = (await store.list_calls(limit=1, **filters)).next_cursor
    assert cursor is not None
    return cursor


@pytest.mark.parametrize(("operation", "ordered_scan"), [
    (lambda s: s.list_calls(status="completed"), None),
    (lambda s: s.list_calls(status="busy", created_after=900.0, created_before=1100.0), None),
    (lambda s: s.list_calls(created_after=1001.0, created_before=1004.0), None),
    (lambda s: s.list_calls(status="active"), "calls_open"),
    (lambda s: s.list_calls(status="scheduled"), "calls_scheduled"),
    (lambda s: s.open_calls(), "calls_open"),
    (lambda s: s.dnc_entries(["+27115550909", "+27115550908"]), None),
    (lambda s: s.prune_calls(1002.0), None),
    (lambda s: s.prune_deliveries(1002.0), None),
    (lambda s: s.agent_call_started("agent:7", "call-new", 1005.0), None),
    (lambda s: s.agent_states(["agent:7", "agent:8"]), None),
    # The first page walks the creation-time index from its newest end, for one page.
    (lambda s: s.list_calls(limit=2), "calls_by_created_at"),
], ids=["status", "status-and-window", "window", "active", "scheduled", "open-calls", "do-not-call",
        "prune-calls", "prune-deliveries", "agent-busy", "agent-states", "first-page"])
async def test_a_query_on_many_calls_reads_an_index(store: SqliteStore, statements: Statements,
                                                    operation: Operation,
                                                    ordered_scan: str | None) -> None:
    await filled(store)
    statements.clear()
    await operation(store)
    assert_indexed(store.path, statements, ordered_scan=ordered_scan)


@pytest.mark.parametrize("filters", [{}, {"status": "completed"}, {"status": "active"}],
                         ids=["all", "status", "active"])
async def test_a_page_behind_a_cursor_starts_at_the_cursor(
        store: SqliteStore, statements: Statements, filters: dict[str, Any]) -> None:
    await filled(store)
    cursor = await a_cursor(store, **filters)
    statements.clear()
    page = await store.list_calls(limit=1, cursor=cursor, **filters)
    assert page.calls  # the page is the one after the cursor's row
    [(sql, plan)] = list(plans(store.path, statements))
    keys = plan[-1]
    assert keys.startswith(("SEARCH calls USING COVERING INDEX", "SEARCH calls USING INDEX")), \
        (sql, plan)
    assert "<" in keys and "TEMP B-TREE" not in keys, (sql, plan)


@pytest.mark.parametrize(("filters", "picked_by"), [
    ({}, "COVERING INDEX calls_by_created_at"),
    ({"status": "completed"}, "COVERING INDEX calls_by_status"),
    ({"created_after": 1001.0, "created_before": 1004.0}, "COVERING INDEX calls_by_created_at"),
    # SQLite reads the row to check a partial index's own term: the open
    # calls are few (those running), and their rows in memory.
    ({"status": "active"}, "INDEX calls_open"),
], ids=["all", "status", "window", "active"])
async def test_a_page_reads_its_rows_in_the_tables_order(
        store: SqliteStore, statements: Statements, filters: dict[str, Any], picked_by: str) -> None:
    """The page's calls are picked from an index alone (no row read), then
    their rows are read by rowid, ascending: the order they lie in the file,
    which the kernel reads ahead (newest first, each page was a read of its own)."""
    await filled(store)
    statements.clear()
    assert (await store.list_calls(limit=2, **filters)).calls
    [(sql, plan)] = list(plans(store.path, statements))
    assert plan[0] == "SEARCH calls USING INTEGER PRIMARY KEY (rowid=?)", (sql, plan)
    assert plan[1] == "LIST SUBQUERY 1", (sql, plan)
    assert len(plan) == 3 and f" USING {picked_by}" in plan[2], (sql, plan)
    assert sql.rstrip().endswith("ORDER BY rowid"), sql


def written_trees(path: Path) -> set[str]:
    """The tables and indexes whose pages the WAL holds."""
    wal = Path(f"{path}-wal").read_bytes()
    with closing(sqlite3.connect(path)) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        owners = dict(db.execute("SELECT pageno, name FROM dbstat"))
    # The WAL's header is 32 bytes, then each frame: 24 bytes (its page number first), a page.
    frames = range(32, len(wal), 24 + page_size)
    return {owners[struct.unpack(">I", wal[at:at + 4])[0]] for at in frames}


async def test_a_live_call_s_change_of_state_rewrites_its_row_and_calls_open_alone(
        store: SqliteStore) -> None:
    """Only the states a call rests in (scheduled, ended) have an index of
    their own, and a call in progress sets no status: its transitions write
    its row and its entry in calls_open, no other index of calls."""
    await filled(store)
    await store.create_call(make_call("call-live", 1010.0, state="dialing-a"))
    with closing(sqlite3.connect(store.path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await store.save_call(make_call("call-live", 1010.0, state="ringing-a"), [], [])
    assert written_trees(store.path) == {"calls", "calls_open"}
    await store.save_call(make_call("call-live", 1010.0, state="ended", status="completed"),
                          [], [])
    # Its end moves it to the ended and by-status indexes, out of the open calls'.
    assert written_trees(store.path) == {"calls", "calls_open", "calls_ended", "calls_by_status"}
    assert "call-live" not in [c.call_id for c in await store.open_calls()]


TABLES = ("calls", "timeline", "deliveries", "disabled_urls", "agent_groups", "agents",
          "agent_calls", "group_cursors", "dnc", "number_attempts", "numbers", "heartbeat")


def rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(path)) as db:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in TABLES}


async def test_a_version_5_file_keeps_every_row_and_gains_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    async with old_file(path) as db:
        await at_version(db, 5)
    async with old_file(path) as db:
        request = '{"leg_a": "+27115550101", "leg_b": "+27115550202"}'
        for number, (state, status) in enumerate([("ended", "completed"), ("ended", "busy"),
                                                  ("dialing-a", None), ("scheduled", None)]):
            await db.execute(
                "INSERT INTO calls (call_id, created_at, updated_at, state, status, request, "
                "snapshot, result, idempotency_key, idempotency_scope, request_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, '{}', NULL, ?, 'scope', 'hash')",
                (f"call-{number}", 1000.0 + number, 1001.0 + number, state, status, request,
                 f"key-{number}"))
            await db.execute("INSERT INTO timeline (call_id, at, kind, data) VALUES (?, ?, "
                             "'transition', '{}')", (f"call-{number}", 1000.0 + number))
            await db.execute("INSERT INTO deliveries VALUES (?, ?, 'https://h.example.com/', "
                             "'call.completed', '{}', ?, ?, 'delivered', 1, 200, NULL, ?)",
                             (f"evt-{number}", f"call-{number}", 1000.0 + number, 1000.0, 1002.0))
        for statement in (
                "INSERT INTO disabled_urls VALUES ('https://gone.example.com/', 5.0)",
                "INSERT INTO agent_groups VALUES ('desk', '{}')",
                "INSERT INTO agents VALUES ('+27115550101', NULL, 7.0)",
                "INSERT INTO agent_calls VALUES ('+27115550101', 'call-0', 1000.0)",
                "INSERT INTO group_cursors VALUES ('desk', 3)",
                "INSERT INTO dnc VALUES ('+27115550909', 'asked', 1.0)",
                "INSERT INTO number_attempts VALUES ('+27115550202', 'call-0', 1000.0)",
                "INSERT INTO numbers VALUES ('+27115550900', '{}', 2.0)",
                "INSERT INTO heartbeat VALUES (1, 9.0)"):
            await db.execute(statement)
    before = rows(path)
    assert all(before.values())  # every table has a row to keep
    store = SqliteStore(path)
    await store.open()
    try:
        assert [c.call_id for c in await store.open_calls()] == ["call-2"]
    finally:
        await store.close()
    assert rows(path) == before
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                                  "'index'")}
        assert {"calls_open", "calls_by_status", "calls_scheduled", "calls_ended",
                "deliveries_by_created_at"} <= indexes
        assert "calls_by_state" not in indexes
