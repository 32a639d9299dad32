"""Which channels are between two dialplan applications, where a Redirect is lost.

Asterisk's dialplan loop moves a channel on to its next priority without the
channel lock a Redirect takes. A Redirect that lands while the channel runs
from one application to the next can be half overwritten, leaving the channel
at a place with no application, and Asterisk hangs it up ("Auto fallthrough",
cause 0). A Redirect that lands while the channel is inside an application
that waits (Wait, MusicOnHold, Dial, Read, Playback) is always carried out.

So a channel is *in transit* from its step's report (a CallConnect UserEvent:
the step is over and only quick applications follow it) or from our own
Redirect, until Asterisk says it started its next waiting application in a
callconnect context (its Newexten, published just before the application
runs), or it hangs up. The backend holds a Redirect for a channel in transit
until then. A pure tracker: AMI messages in, channels out.
"""

from __future__ import annotations

from collections.abc import Mapping

from .events import USER_EVENT_NAME

CONTEXT_PREFIX = "callconnect-"
# The applications of the callconnect dialplan that wait for the caller, the
# callee or a timer: the account's eventfilter lets through the Newexten of
# these only (dialplans/asterisk/manager_callconnect.conf).
WAITING_APPLICATIONS = frozenset({"Wait", "MusicOnHold", "Dial", "Read", "Playback"})


class ChannelTransit:
    def __init__(self) -> None:
        self._moving: set[str] = set()
        # Whether the account's eventfilter lets the Newexten of a wait through
        # at all: an account set up before it did never says a channel settled.
        self.waits_seen = False

    def observe(self, message: Mapping[str, str]) -> str | None:
        """The channel (Uniqueid) this message shows to have left transit, in
        a wait or hung up; None for anything else."""
        uniqueid = message.get("Uniqueid")
        if not isinstance(uniqueid, str):
            return None
        event = message.get("Event")
        if event == "UserEvent" and message.get("UserEvent") == USER_EVENT_NAME:
            self._moving.add(uniqueid)
            return None
        if event == "Newexten":
            context, application = message.get("Context"), message.get("Application")
            if not (isinstance(context, str) and context.startswith(CONTEXT_PREFIX)
                    and application in WAITING_APPLICATIONS):
                return None
            self.waits_seen = True
        elif event != "Hangup":
            return None
        if uniqueid not in self._moving:
            return None
        self._moving.discard(uniqueid)
        return uniqueid

    def in_transit(self, uniqueid: str) -> bool:
        return uniqueid in self._moving

    def redirected(self, uniqueid: str) -> None:
        """A Redirect was sent: the channel leaves its wait for the next step."""
        self._moving.add(uniqueid)

    def not_redirected(self, uniqueid: str) -> None:
        """Asterisk refused the Redirect: the channel stayed where it was."""
        self._moving.discard(uniqueid)

    def clear(self) -> None:
        """A new connection: where channels were while the link was down is not known."""
        self._moving.clear()
