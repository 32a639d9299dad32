"""Incoming calls: the event the inbound dialplan raises for each, and
finding a claimed one again after a restart.

``dialplans/freeswitch/callconnect_inbound.xml`` parks every call it takes
and raises ``CUSTOM callconnect::incoming`` with the channel's data
(``event`` application); the backend subscribes to that subclass and lets it
through its filters. Caller text in it (the caller's number or name) is
bounded here and never reaches a command: only the channel's id, checked,
does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from controller.backends.base import IncomingCall
from controller.errors import SwitchActionFailed

from .actions import CALL_ID_VARIABLE, INCOMING_SUBCLASS, EslCommand, Verb
from .live import CLAIMS_REALM, claim_commands
from .queries import Send, SendTogether, send_all
from .wire import channel_rows

# The dialplan keeps the number dialed here (the destination may be
# rewritten on the way in).
DIALED_VARIABLE = "callconnect_dialed"
MAX_CALLER = 256
MAX_DIALED = 64
# At most this many incoming channels are looked at to find a claimed one.
MAX_SCANNED = 2000

_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def incoming_call(event: Mapping[str, str], at: float) -> IncomingCall | None:
    """The incoming call an event announces, or None if it is none."""
    if (event.get("Event-Name") != "CUSTOM"
            or event.get("Event-Subclass") != INCOMING_SUBCLASS):
        return None
    channel = event.get("Unique-ID", "")
    if not _UUID.fullmatch(channel):
        return None
    caller = event.get("Caller-Caller-ID-Number") or event.get("Caller-ANI", "")
    dialed = event.get(f"variable_{DIALED_VARIABLE}") or event.get(
        "Caller-Destination-Number", "")
    return IncomingCall(channel, _bounded(caller, MAX_CALLER), _bounded(dialed, MAX_DIALED), at)


def _bounded(text: str, most: int) -> str:
    return _UNPRINTABLE.sub("", text)[:most]


async def claim_channel(send: SendTogether, channel: str, call_id: str) -> None:
    """Claim the parked channel for ``call_id`` (``live.claim_commands``):
    its filter first, so that no event of it is missed from then on."""
    commands = claim_commands(channel, call_id)
    await send(commands[:1])
    [reply] = await send(commands[1:2])
    if not reply.ok:
        raise SwitchActionFailed(f"cannot claim the incoming call: {reply.text} (the caller hung "
                                 "up, or the switch hung it up unclaimed)",
                                 action="claim", call_id=call_id)
    await send_all(send, commands[2:], call_id)


async def find_claimed(send: Send, call_id: str) -> str | None:
    """The incoming channel claimed for ``call_id``, if the switch still has
    it: the one mod_hash keeps for it, else the inbound channel whose
    callconnect_call_id variable is the call id (``show channels`` lists a
    new channel only a moment after it exists)."""
    kept = await send(EslCommand(Verb.API, f"hash select/{CLAIMS_REALM}/{call_id}"))
    channel = kept.body.strip()
    if _UUID.fullmatch(channel) and await _claimed_for(send, channel, call_id):
        return channel
    reply = await send(EslCommand(Verb.API, "show channels as json"))
    try:
        rows = channel_rows(reply.body)
    except ValueError:
        return None
    candidates = [row.get("uuid", "") for row in rows if row.get("direction") == "inbound"]
    for channel in candidates[:MAX_SCANNED]:
        if _UUID.fullmatch(channel) and await _claimed_for(send, channel, call_id):
            return channel
    return None


async def _claimed_for(send: Send, channel: str, call_id: str) -> bool:
    answer = await send(EslCommand(Verb.API, f"uuid_getvar {channel} {CALL_ID_VARIABLE}"))
    return answer.body.strip() == call_id
