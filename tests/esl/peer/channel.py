"""A channel as the peer keeps it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .phones import Caller, Phone
from .wire import STATE_NUMBERS, now_us


@dataclass
class Channel:
    uuid: str
    name: str
    destination: str
    variables: dict[str, str]
    caller_number: str
    originator: Channel | None = None
    created: int = field(default_factory=now_us)
    progress: int = 0
    answered_at: int = 0
    hungup_at: int = 0
    bridged_at: int = 0
    state: str = "CS_INIT"
    state_number: int = 2
    call_state: str = "DOWN"
    hangup_cause: str | None = None
    bridged_with: Channel | None = None
    recording: tuple[str, float] | None = None
    destroyed: bool = False
    # (application, argument, event-lock) sent to the channel, in order.
    apps: asyncio.Queue[tuple[str, str, bool]] = field(default_factory=asyncio.Queue)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    phone_task: asyncio.Task[Any] | None = None
    phone: Phone | None = None
    dtmf: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    handing_over: bool = False  # answered, not yet running its originate's application
    winner: bool = False  # group_confirm: it confirmed (CF_WINNER)
    tagged: bool = False  # group_confirm: answered, confirming (CF_TAGGED)
    displacing: set[str] = field(default_factory=set)  # uuid_displace / displace_session files
    direction: str = "outbound"  # "inbound": a call to the switch (call_in)
    caller: Caller | None = None  # inbound: the phone that called
    responses: list[int] = field(default_factory=list)  # inbound: SIP statuses it sent back

    def basic_data(self) -> list[tuple[str, str]]:
        if self.hangup_cause:
            answer_state = "hangup"
        elif self.answered.is_set():
            answer_state = "answered"
        else:
            answer_state = "ringing"
        headers = [
            ("Channel-State", self.state), ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(self.state_number)), ("Channel-Name", self.name),
            ("Unique-ID", self.uuid), ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true" if self.direction == "inbound" else "false"),
            ("Channel-Call-UUID", self.originator.uuid if self.originator else self.uuid),
            ("Answer-State", answer_state),
        ]
        if self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        if self.answered.is_set():
            headers += [("Channel-Read-Codec-Name", "PCMU"), ("Channel-Read-Codec-Rate", "8000"),
                        ("Channel-Read-Codec-Bit-Rate", "64000"),
                        ("Channel-Write-Codec-Name", "PCMU"),
                        ("Channel-Write-Codec-Rate", "8000"),
                        ("Channel-Write-Codec-Bit-Rate", "64000")]
        headers += self._profile("Caller", self)
        if self.originator is not None:
            headers.append(("Other-Type", "originator"))
            headers += self._profile("Other-Leg", self.originator)
        elif self.bridged_with is not None:
            headers.append(("Other-Type", "originatee"))
            headers += self._profile("Other-Leg", self.bridged_with)
        return headers

    @staticmethod
    def _profile(prefix: str, ch: Channel) -> list[tuple[str, str]]:
        number = ch.destination.split("@", 1)[0].removeprefix("sip:")
        return [
            (f"{prefix}-Direction", "outbound"), (f"{prefix}-Logical-Direction", "outbound"),
            (f"{prefix}-Username", ch.caller_number), (f"{prefix}-Dialplan", "XML"),
            (f"{prefix}-Caller-ID-Name", ch.caller_number),
            (f"{prefix}-Caller-ID-Number", ch.caller_number),
            (f"{prefix}-Orig-Caller-ID-Name", ch.caller_number),
            (f"{prefix}-Orig-Caller-ID-Number", ch.caller_number),
            (f"{prefix}-Callee-ID-Name", "Outbound Call"), (f"{prefix}-Callee-ID-Number", number),
            (f"{prefix}-Network-Addr", "127.0.0.1"), (f"{prefix}-ANI", ch.caller_number),
            (f"{prefix}-Destination-Number", number), (f"{prefix}-Unique-ID", ch.uuid),
            (f"{prefix}-Source", "mod_sofia"), (f"{prefix}-Context", "default"),
            (f"{prefix}-Channel-Name", ch.name), (f"{prefix}-Profile-Index", "1"),
            (f"{prefix}-Profile-Created-Time", str(ch.created)),
            (f"{prefix}-Channel-Created-Time", str(ch.created)),
            (f"{prefix}-Channel-Answered-Time", str(ch.answered_at)),
            (f"{prefix}-Channel-Progress-Time", str(ch.progress)),
            (f"{prefix}-Channel-Progress-Media-Time", "0"),
            (f"{prefix}-Channel-Hangup-Time", str(ch.hungup_at)),
            (f"{prefix}-Channel-Transfer-Time", "0"), (f"{prefix}-Channel-Resurrect-Time", "0"),
            (f"{prefix}-Channel-Bridged-Time", str(ch.bridged_at)),
            (f"{prefix}-Channel-Last-Hold", "0"), (f"{prefix}-Channel-Hold-Accum", "0"),
            (f"{prefix}-Screen-Bit", "true"), (f"{prefix}-Privacy-Hide-Name", "false"),
            (f"{prefix}-Privacy-Hide-Number", "false"),
        ]

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_number = STATE_NUMBERS[state]

