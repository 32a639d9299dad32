"""The SQLite store's file: opening, schema, durability and its errors."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from controller.store import StoreError, TimelineEntry
from controller.store.sqlite import SqliteStore
from controller.store.sqlite.schema import SCHEMA_VERSION
from tests.unit.store.builders import make_call, make_delivery


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.sqlite"
    first = SqliteStore(path)
    await first.open()
    call = make_call("c1", key="k")
    await first.create_call(call)
    await first.save_call(call, [TimelineEntry("c1", 1.0, "transition", {"to": "x"})],
                          [make_delivery("evt_1", "c1")])
    await first.disable_url("https://gone.example.com/", 5.0)
    await first.close()

    second = SqliteStore(path)
    await second.open()
    try:
        assert await second.get_call("c1") == call
        assert len(await second.timeline("c1")) == 1
        assert [d.event_id for d in await second.due_deliveries(2000.0, 10)] == ["evt_1"]
        assert await second.url_disabled("https://gone.example.com/")
        assert (await second.create_call(make_call("c2", key="k")))[1] is False
    finally:
        await second.close()


async def test_ping_writes(store: SqliteStore) -> None:
    await store.ping()
    await store.ping()
    with sqlite3.connect(store.path) as db:
        [(rows,)] = db.execute("SELECT COUNT(*) FROM heartbeat").fetchall()
    assert rows == 1


async def test_wal_foreign_keys_and_schema_version(store: SqliteStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    with pytest.raises(StoreError):
        # The call does not exist: the foreign key refuses the delivery.
        await store.save_call(make_call("c1"), [], [])
    await store.create_call(make_call("c1"))
    with pytest.raises(StoreError):
        await store.save_call(make_call("c1"), [], [make_delivery("evt_1", "no-such-call")])


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.sqlite"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this callconnect"):
        await SqliteStore(path).open()


async def test_a_folder_that_is_a_file_gives_a_store_error(tmp_path: Path) -> None:
    # Root may write anywhere chmod forbids, but no one can create a folder under a file.
    (tmp_path / "afile").write_text("")
    path = tmp_path / "afile" / "db.sqlite"
    with pytest.raises(StoreError) as caught:
        await SqliteStore(path).open()
    assert str(path) in caught.value.message
    assert caught.value.error_id == "store-unavailable"


async def test_a_path_that_is_a_folder_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.mkdir()
    with pytest.raises(StoreError, match="cannot open") as caught:
        await SqliteStore(path).open()
    assert str(path) in caught.value.message


async def test_a_file_that_is_not_a_database_gives_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a callconnect database"):
        await SqliteStore(path).open()


async def test_a_full_disk_gives_a_store_error(store: SqliteStore) -> None:
    # SQLite reports "database or disk is full" once max_page_count is reached, as on a full disk.
    assert store._db is not None
    [(pages,)] = await store._db.execute_fetchall("PRAGMA page_count")
    await store._db.execute(f"PRAGMA max_page_count = {pages}")
    await store.create_call(make_call("c1"))
    big = make_call("c1")
    big.snapshot = {"blob": "x" * 100_000}
    with pytest.raises(StoreError, match="disk is full") as caught:
        await store.save_call(big, [], [])
    assert str(store.path) in caught.value.message
    # The failed transaction was rolled back; the store still serves reads.
    assert await store.get_call("c1") == make_call("c1")


async def test_a_read_only_database_gives_a_store_error(store: SqliteStore) -> None:
    # query_only makes SQLite answer "attempt to write a readonly database", as for a read-only
    # file, which chmod cannot produce for root.
    assert store._db is not None
    await store._db.execute("PRAGMA query_only = ON")
    with pytest.raises(StoreError, match="read-only") as caught:
        await store.ping()
    assert str(store.path) in caught.value.message
    assert caught.value.details["sqlite_error"] == "SQLITE_READONLY"


async def test_a_closed_store_gives_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    with pytest.raises(StoreError, match="not open"):
        await store.ping()


async def test_database_wal_and_shm_are_0600_in_a_0750_folder_whatever_the_umask(
        tmp_path: Path) -> None:
    path = tmp_path / "state" / "db.sqlite"
    old = os.umask(0)
    try:
        store = SqliteStore(path)
        await store.open()
        await store.ping()  # a write: the -wal and -shm exist now
    finally:
        os.umask(old)
    try:
        files = [path, path.with_name("db.sqlite-wal"), path.with_name("db.sqlite-shm")]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
            f.name: 0o600 for f in files}
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    finally:
        await store.close()


async def test_a_readable_database_left_by_an_older_version_is_made_private(
        tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    path.chmod(0o644)
    store = SqliteStore(path)
    await store.open()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        await store.close()


async def test_writes_made_together_are_each_committed_when_they_return(store: SqliteStore) -> None:
    """Group commit: calls written at the same time share a transaction, and
    each write returns only once another connection (a restart) can read it.
    One write that fails (a call never created) costs the others nothing."""
    seen_on_return: dict[str, bool] = {}

    async def create_and_save(call_id: str) -> None:
        call = make_call(call_id)
        await store.create_call(call)
        await store.save_call(call, [TimelineEntry(call_id, 1.0, "transition", {"to": "x"})],
                              [make_delivery(f"evt_{call_id}", call_id)])
        with sqlite3.connect(store.path) as other:
            rows = other.execute("SELECT count(*) FROM timeline WHERE call_id = ?",
                                 (call_id,)).fetchall()
        seen_on_return[call_id] = rows == [(1,)]

    async def save_unknown() -> None:
        with pytest.raises(StoreError, match="create it first"):
            await store.save_call(make_call("never-created"), [], [])

    await asyncio.gather(*(create_and_save(f"c{i}") for i in range(20)), save_unknown())
    assert seen_on_return == {f"c{i}": True for i in range(20)}
    assert await store.get_call("never-created") is None
    assert len(await store.due_deliveries(2000.0, 100)) == 20


async def test_a_read_during_a_commit_reads_the_last_commit_at_once(store: SqliteStore) -> None:
    """A read neither waits for the open transaction's commit nor sees its
    writes. When reads waited for it, each commit under a steady stream of
    writes found the next transaction already open, and a read waited for
    seconds."""
    assert store._db is not None
    await store.create_call(make_call("c0"))
    disk_free = threading.Event()
    store._db._disk.submit(disk_free.wait, 10)  # the commit thread is busy: the next commit waits
    writing = asyncio.create_task(store.create_call(make_call("c1")))
    try:
        async with asyncio.timeout(5):
            while not store._db.in_transaction:  # c1 is written, not yet committed
                await asyncio.sleep(0.001)
        assert await asyncio.wait_for(store.get_call("c0"), 1) == make_call("c0")
        assert await asyncio.wait_for(store.get_call("c1"), 1) is None
        assert not writing.done()
    finally:
        disk_free.set()
    await writing
    assert await store.get_call("c1") == make_call("c1")


async def test_writes_waiting_for_a_commit_go_on_in_one_turn_of_the_loop(
        store: SqliteStore) -> None:
    """Queued on a lock, the writes waiting for a commit took one turn of the
    event loop each once it ended; under load a turn is long, and at 35
    calls/s a write waited up to a second."""
    db = store._db
    assert db is not None
    disk_free = [threading.Event(), threading.Event()]
    db._disk.submit(disk_free[0].wait, 10)  # the first commit waits for the disk
    first = asyncio.create_task(store.ping())
    await asyncio.sleep(0.05)  # its commit is on the thread
    assert not first.done()
    db._disk.submit(disk_free[1].wait, 10)  # and so will the next
    waiting = [asyncio.create_task(store.create_call(make_call(f"c{i}"))) for i in range(50)]
    await asyncio.sleep(0.05)
    disk_free[0].set()
    await asyncio.wait_for(first, 5)
    turns = 0
    async with asyncio.timeout(5):  # the second commit waits: count the calls written before it
        while (await db.execute_fetchall("SELECT count(*) FROM calls"))[0][0] < 50:
            await asyncio.sleep(0)
            turns += 1
    disk_free[1].set()
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert turns < 10  # about 50 when each waiting write took a turn of its own
    assert len((await store.list_calls(limit=100)).calls) == 50


async def test_a_full_disk_under_writes_made_together_fails_each_and_keeps_the_rest(
        store: SqliteStore) -> None:
    assert store._db is not None
    await store.create_call(make_call("c0"))
    [(pages,)] = await store._db.execute_fetchall("PRAGMA page_count")
    await store._db.execute(f"PRAGMA max_page_count = {pages}")
    big = {"blob": "x" * 100_000}

    async def save(call_id: str) -> BaseException | None:
        call = make_call(call_id)
        try:
            await store.create_call(call)
            call.snapshot = big
            await store.save_call(call, [], [])
        except StoreError as exc:
            return exc
        return None

    outcomes = await asyncio.gather(*(save(f"c{i}") for i in range(1, 6)))
    assert all(isinstance(outcome, StoreError) for outcome in outcomes)
    for i in range(1, 6):  # no call is left half written with its big snapshot
        stored = await store.get_call(f"c{i}")
        assert stored is None or stored.snapshot != big
    assert await store.get_call("c0") == make_call("c0")
