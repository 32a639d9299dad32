"""How often Asterisk loses a leg A the controller redirects at once.

``python -m bench.redirect_race --calls 1200 --rate 30`` (as root, lab up)
originates calls to the lab's phone A into the shipped ``[callconnect-leg-a]``,
as the controller does, and sends each one on the moment its ``answered``
UserEvent arrives (a ``Setvar`` and a ``Redirect`` to ``callconnect-idle``,
which hangs it up a second later), with no store and no HTTP in between, so
the Redirect reaches Asterisk as soon as it can. It prints how the calls
ended: normally (cause 16), or hung up by Asterisk itself with cause 0, the
"Auto fallthrough" of a Redirect that landed while the channel's dialplan
was between two applications. The controller lane of ``make bench`` meets
the same as a call "canceled: leg A hung up during the whisper".

No CC_CALL_ID is set, so the dialplan keeps no outcome in AstDB for these
calls; the lab is left with no channel of theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from typing import Any

from panoramisk import Manager

from .common import connect_watching

LEG_A = "PJSIP/+27115550101@lab-answer-a"
# The controller's AMI account in the lab (sip-lab/lab writes its secret).
ACCOUNT = {"username": "callconnect", "secret": "callconnect-lab"}
WAIT_FOR_ENDS = 20.0  # seconds after the last call, for the lab to end them all


class RedirectRace:
    def __init__(self, calls: int, rate: float) -> None:
        self.calls, self.rate = calls, rate
        self.ours: set[str] = set()
        self.answered = 0
        self.causes: Counter[str] = Counter()
        self.manager = Manager(host="127.0.0.1", port=5038, events="call,user", ping_delay=10,
                               **ACCOUNT)
        self.manager.register_event("UserEvent", self.on_user_event)
        self.manager.register_event("Hangup", self.on_hangup)

    def on_user_event(self, manager: Manager, event: Any) -> None:
        if event.get("Uniqueid") not in self.ours or event.get("Step") != "answered":
            return
        self.answered += 1
        channel = event["Channel"]
        manager.send_action({"Action": "Setvar", "Channel": channel,
                             "Variable": "CC_WAIT", "Value": "1"})
        manager.send_action({"Action": "Redirect", "Channel": channel,
                             "Context": "callconnect-idle", "Exten": "s", "Priority": "1"})

    def on_hangup(self, manager: Manager, event: Any) -> None:
        if event.get("Uniqueid") in self.ours:
            self.causes[str(event.get("Cause", "?"))] += 1

    async def run(self) -> Counter[str]:
        await connect_watching(self.manager, ["Event: (UserEvent|Hangup)[[:space:]]"])
        start = time.monotonic()
        for placed in range(self.calls):
            await asyncio.sleep(max(0.0, start + placed / self.rate - time.monotonic()))
            channel_id = str(uuid.uuid4())
            self.ours.add(channel_id)
            self.manager.send_action({
                "Action": "Originate", "Channel": LEG_A, "Context": "callconnect-leg-a",
                "Exten": "s", "Priority": "1", "ChannelId": channel_id, "Async": "true",
                "Timeout": "10000"})
            if placed % max(1, int(self.rate * 10)) == 0:
                print(f"[race] {placed} of {self.calls} placed, {self.answered} answered, "
                      f"{self.causes['0']} fell through", flush=True)
        deadline = time.monotonic() + WAIT_FOR_ENDS
        while sum(self.causes.values()) < len(self.ours) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.manager.close()
        return self.causes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1200)
    parser.add_argument("--rate", type=float, default=30.0, help="calls a second")
    args = parser.parse_args()
    if args.calls < 1 or args.rate <= 0:
        parser.error("--calls must be at least 1 and --rate above 0")
    race = RedirectRace(args.calls, args.rate)
    causes = asyncio.run(race.run())
    ended = sum(causes.values())
    print(f"[race] {args.calls} calls at {args.rate:g}/s: {race.answered} answered; ended "
          f"normally (cause 16) {causes['16']}, fell through (cause 0) {causes['0']}, "
          f"otherwise {ended - causes['16'] - causes['0']} {dict(causes)}; "
          f"not ended in time {args.calls - ended}")
    return 0 if ended == args.calls else 1


if __name__ == "__main__":
    sys.exit(main())
