"""How often Asterisk loses a leg A that is redirected as its step ends.

``python -m bench.redirect_race --calls 1200 --rate 30`` (as root, lab up)
originates calls to the lab's phone A into ``[callconnect-leg-a]``, as the
controller does, and sends each one on (a ``Setvar`` and a ``Redirect`` to
``callconnect-idle``, which hangs it up a second later) with no store and no
HTTP in between, so the Redirect reaches Asterisk as soon as it can. It runs
two lanes one after the other:

* ``at-report``: the Redirect goes the moment the ``answered`` UserEvent
  arrives, as the controller sent it before it waited for waits;
* ``in-wait``: the Redirect goes once the controller's own tracker
  (``controller.backends.asterisk.transit``) says the channel is in the hold's
  wait, as the controller sends it now.

For each it prints how the calls ended: normally (cause 16), or lost: hung
up by Asterisk itself with cause 0, the "Auto fallthrough" of a Redirect that
landed while the channel's dialplan went from one application to the next,
or with the hold's cause 102, a Redirect that was not carried out at all.

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

from controller.backends.asterisk.transit import ChannelTransit

from .common import connect_watching

LEG_A = "PJSIP/+27115550101@lab-answer-a"
# The controller's AMI account in the lab (sip-lab/lab writes its secret),
# with its eventfilter: the Newexten of the dialplan's waits among them.
ACCOUNT = {"username": "callconnect", "secret": "callconnect-lab"}
WAIT_FOR_ENDS = 20.0  # seconds after the last call, for the lab to end them all
LANES = ("at-report", "in-wait")


class RedirectRace:
    def __init__(self, calls: int, rate: float, lane: str) -> None:
        self.calls, self.rate, self.lane = calls, rate, lane
        self.ours: set[str] = set()
        self.redirected: set[str] = set()
        self.answered = 0
        self.causes: Counter[str] = Counter()
        self.transit = ChannelTransit()
        self.manager = Manager(host="127.0.0.1", port=5038, events="call,user,dialplan",
                               ping_delay=10, **ACCOUNT)
        self.manager.register_event("*", self.on_event)

    def on_event(self, manager: Manager, event: Any) -> None:
        uniqueid = event.get("Uniqueid")
        if uniqueid not in self.ours:
            return
        settled = self.transit.observe(event)
        if event.get("Event") == "Hangup":
            self.causes[str(event.get("Cause", "?"))] += 1
            return
        answered = event.get("Event") == "UserEvent" and event.get("Step") == "answered"
        self.answered += answered
        if uniqueid in self.redirected:
            return
        if (self.lane == "at-report" and answered) or (self.lane == "in-wait" and settled):
            self.redirected.add(uniqueid)
            self.transit.redirected(uniqueid)
            manager.send_action({"Action": "Setvar", "Channel": uniqueid,
                                 "Variable": "CC_WAIT", "Value": "1"})
            manager.send_action({"Action": "Redirect", "Channel": uniqueid,
                                 "Context": "callconnect-idle", "Exten": "s", "Priority": "1"})

    async def run(self) -> Counter[str]:
        await connect_watching(self.manager, [])
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
                print(f"[race] {self.lane}: {placed} of {self.calls} placed, {self.answered} "
                      f"answered, {self.causes['0'] + self.causes['102']} lost", flush=True)
        deadline = time.monotonic() + WAIT_FOR_ENDS
        while sum(self.causes.values()) < len(self.ours) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.manager.close()
        return self.causes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1200, help="calls in each lane")
    parser.add_argument("--rate", type=float, default=30.0, help="calls a second")
    parser.add_argument("--lanes", default=",".join(LANES),
                        help=f"which lanes, in order, comma-separated: {', '.join(LANES)}")
    args = parser.parse_args()
    lanes = args.lanes.split(",")
    if args.calls < 1 or args.rate <= 0:
        parser.error("--calls must be at least 1 and --rate above 0")
    if not lanes or any(lane not in LANES for lane in lanes):
        parser.error(f"--lanes takes {', '.join(LANES)}")
    all_ended = True
    for lane in lanes:
        race = RedirectRace(args.calls, args.rate, lane)
        causes = asyncio.run(race.run())
        ended = sum(causes.values())
        all_ended = all_ended and ended == args.calls
        lost = causes["0"] + causes["102"]
        print(f"[race] {lane}: {args.calls} calls at {args.rate:g}/s: {race.answered} answered; "
              f"ended normally (cause 16) {causes['16']}, lost {lost} (fell through, cause 0: "
              f"{causes['0']}; not redirected, cause 102: {causes['102']}), otherwise "
              f"{ended - causes['16'] - lost} {dict(causes)}; "
              f"not ended in time {args.calls - ended}", flush=True)
    return 0 if all_ended else 1


if __name__ == "__main__":
    sys.exit(main())
