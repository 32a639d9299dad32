"""The interface every switch backend offers the rest of the controller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.core.commands import Command, DialLegB
from controller.core.events import Event

EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class IncomingCall:
    """A call that arrived at the switch for the controller, not yet claimed.

    ``channel`` is the switch's id of it (Asterisk: Uniqueid; FreeSWITCH: the
    channel's uuid); ``caller`` the caller's number or SIP URI as the switch
    has it (never trusted: the service normalises it), ``dialed`` the number
    dialed, ``at`` when it arrived on the switch."""

    channel: str
    caller: str
    dialed: str
    at: float
# Seconds between attempts to reach a switch that is down: first fast, then calmer.
RECONNECT_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


class Backend(Protocol):
    name: str
    connected: bool
    # Told how late each switch event is handled, in seconds (for metrics).
    observe_event_lag: Callable[[float], None] | None
    # Awaited after a lost link is back, so live calls can be looked at again
    # (by backends that keep following their calls through a loss: Asterisk).
    on_reconnect: Callable[[], Awaitable[None]] | None
    # How often a lost link was reopened.
    reconnects: int
    # Told of every call that arrives for the controller (its inbound
    # dialplan); it must claim or refuse it, or the switch hangs it up itself.
    on_incoming: Callable[[IncomingCall], Awaitable[None]] | None

    async def connect(self) -> None:
        """Connect and authenticate; SwitchUnavailable says why not."""

    async def close(self) -> None: ...

    def watch(self, call_id: str, sink: EventSink) -> None:
        """Deliver this call's events to ``sink`` from now on (call before
        the first command, so no event is missed)."""

    def forget(self, call_id: str) -> None:
        """The call has ended and its end is recorded: drop what the backend
        (and the switch) kept for it."""

    async def reattach(self, call_id: str, state: str, sink: EventSink,
                       then_dial: DialLegB | None = None) -> list[Event]:
        """Follow a call again after a restart, given the core state it was
        last known in, and during a whisper the dial of leg B that follows it
        (PlayWhisper.then_dial). Returns the events that happened while
        nobody was listening, as far as the switch can tell (EndedWhileAway if
        it ended)."""

    async def claim(self, incoming: IncomingCall, call_id: str, sink: EventSink) -> None:
        """Take an incoming call as leg A of ``call_id``: from now on its
        events go to ``sink`` (first LegCreated and LegRinging for leg A),
        and commands for ``call_id`` act on its channel."""

    async def refuse(self, incoming: IncomingCall, audio: str | None, cause: int) -> None:
        """Turn an incoming call away: play ``audio`` (if any), then hang up
        with the Q.850 ``cause`` (e.g. 1, unallocated number: SIP 404)."""

    async def execute(self, call_id: str, command: Command) -> None:
        """Carry out one command; SwitchActionFailed if the switch refuses
        it or does not answer in time."""

    def trunk_of(self, target: str) -> str | None:
        """The trunk a call to this normalised target leaves the switch
        through (Asterisk: a PJSIP endpoint; FreeSWITCH: a gateway), for the
        per-trunk limits; None when it uses none."""

    async def busy_targets(self, targets: Sequence[str]) -> set[str]:
        """Those of ``targets`` the switch itself reports busy (on a call
        placed by any means); targets it cannot tell about are left out."""

    async def active_channels(self) -> list[str]:
        """Names of every channel on the switch (not only ours)."""
