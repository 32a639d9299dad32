"""Fixtures shared by the unit tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.calls.runner import ActiveCall
from controller.core.commands import Command
from controller.core.states import Transition
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


class RecordingSwitch:
    """A backend that takes every command and answers none: what it was
    told is what would have reached the switch."""

    name = "recording"
    connected = True
    observe_event_lag = None
    on_reconnect = None
    reconnects = 0

    def __init__(self, trunk_of: Callable[[str], str | None] = lambda target: "trunk") -> None:
        self.watched: list[str] = []
        self.commands: list[Command] = []
        self._trunk_of = trunk_of

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def watch(self, call_id: str, sink: Any) -> None:
        self.watched.append(call_id)

    def forget(self, call_id: str) -> None: ...

    async def reattach(self, call_id: str, state: str, sink: Any,
                       then_dial: Any = None) -> list[Any]:
        return []

    async def execute(self, call_id: str, command: Command) -> None:
        self.commands.append(command)

    def trunk_of(self, target: str) -> str | None:
        return self._trunk_of(target)

    async def busy_targets(self, targets: Sequence[str]) -> set[str]:
        return set()

    async def active_channels(self) -> list[str]:
        return []


class QuietListener:
    """A call listener that keeps nothing."""

    async def call_created(self, call: ActiveCall) -> None: ...

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None: ...

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None: ...

    async def call_reported(self, call: ActiveCall, event: str, data: dict[str, Any]) -> None: ...
