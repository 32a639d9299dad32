"""Fixtures shared by the unit tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.store.sqlite import SqliteStore


class Clock:
    """A clock the test moves; by default it starts at the real time (so
    webhook signatures verify)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in a folder the store itself has to create."""
    store = SqliteStore(tmp_path / "state" / "callconnect.sqlite")
    await store.open()
    yield store
    await store.close()
