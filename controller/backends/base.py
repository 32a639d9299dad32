"""The interface every switch backend offers the rest of the controller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from controller.calls.core import Command, Event

EventSink = Callable[[Event], None]


class Backend(Protocol):
    name: str

    async def connect(self) -> None:
        """Connect and authenticate; SwitchUnavailable says why not."""

    async def close(self) -> None: ...

    def watch(self, call_id: str, sink: EventSink) -> None:
        """Deliver this call's events to ``sink`` from now on (call before
        the first command, so no event is missed)."""

    def forget(self, call_id: str) -> None: ...

    async def execute(self, call_id: str, command: Command) -> None:
        """Carry out one command; SwitchActionFailed if the switch refuses
        it or does not answer in time."""

    async def active_channels(self) -> list[str]:
        """Names of every channel on the switch (not only ours)."""
