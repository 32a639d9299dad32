"""What the backend keeps for each call it drives, in one record, so that
forgetting a call is dropping that record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from controller.backends.base import EventSink
from controller.core.commands import DialLegB


@dataclass
class FsCall:
    # Where the call's core events go (watch()); None until it is watched.
    sink: EventSink | None = None
    # Leg B's dial to start when the call's whisper ends (PlayWhisper.then_dial).
    then_dial: DialLegB | None = None
    # Leg A may hear the hold music (OriginateLegA.hold_music).
    hold_music: bool = False
    # Restarting Leg A's hold music after a bridge that did not connect; the
    # next step waits for it, so that it cannot start the music after it.
    music_restart: asyncio.Task[None] | None = None
    # Declines the answering Leg B if it presses no confirm key in time.
    confirm_timer: asyncio.TimerHandle | None = None

    def cancel_confirm_timer(self) -> None:
        if self.confirm_timer is not None:
            self.confirm_timer.cancel()
            self.confirm_timer = None

    def start_confirm_timer(self, loop: asyncio.AbstractEventLoop, seconds: float,
                            expired: Callable[[], None]) -> None:
        """``expired`` runs in ``seconds`` unless cancelled first; counted
        from now, not from the event's time: the switch's clock may not be ours."""
        self.cancel_confirm_timer()
        self.confirm_timer = loop.call_later(seconds, expired)
