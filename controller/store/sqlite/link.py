"""A connection of the store (it has one that writes and one that reads):
statements on the event loop, each commit on a thread of its own.

A statement touches SQLite's page cache only, and takes microseconds; what
waits on the disk is a commit (the write and fsync of the WAL), so only the
commit leaves the event loop. A thread hop per statement (a queue, waking a
thread, then waking the loop with the answer) cost more CPU than SQLite
itself: about 40 statements a call, most in a transaction of their own at the
rates the daemon runs, were 4.7 ms of CPU a call through a thread each
(``bench/micro.py`` counts a store's life both ways).

Only :class:`~controller.store.sqlite.connection.SqliteDatabase` uses it, and
under its lock, so the thread and the loop never use the connection at once.
One daemon per store file (the README says so): no statement waits for
another process's write lock on the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

Parameters = tuple[Any, ...] | dict[str, Any]


class SqliteLink:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-commit")

    @classmethod
    def open(cls, path: Path, busy_timeout: float) -> SqliteLink:
        # isolation_level=None: transactions are begun and ended explicitly.
        connection = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout,
                                     check_same_thread=False)
        connection.row_factory = sqlite3.Row
        return cls(connection)

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    async def execute(self, sql: str, parameters: Parameters = ()) -> sqlite3.Cursor:
        return self._connection.execute(sql, parameters)

    async def executemany(self, sql: str, rows: Iterable[Parameters]) -> sqlite3.Cursor:
        return self._connection.executemany(sql, rows)

    async def execute_fetchall(self, sql: str, parameters: Parameters = ()) -> list[sqlite3.Row]:
        return self._connection.execute(sql, parameters).fetchall()

    async def commit(self) -> None:
        """COMMIT, on the disk's thread: it returns once the commit is on disk."""
        await asyncio.get_running_loop().run_in_executor(self._disk, self._connection.execute,
                                                         "COMMIT")

    async def close(self) -> None:
        try:
            self._connection.close()
        finally:
            self._disk.shutdown(wait=False)
