"""A gather's retry stored but never sent, across a restart of the
controller's backend, on either lab switch (tests/lab/test_inbound.py,
tests/fslab/test_fs_live.py run it): the real live-call core, restored from
its snapshot as a restarted daemon does, drives the backend, and a phone
calls in and presses keys. Checked by what the core reports: the digits, and
on which try."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from controller.backends.base import Backend, IncomingCall
from controller.core.commands import CallEnded, Command, GatherDigits, WaitForActions
from controller.core.events import DigitsGathered, Event, FoundBetweenSteps, LegEnded, LegRinging
from controller.core.live import LiveCall, core_from_snapshot
from controller.core.states import CallState
from tests.lab.callers import Keypad, wait
from tests.lab.live_fixtures import CallIn
from tests.unit.core.live_helpers import INBOUND_PLAN, LiveRun, gather, steps

NUMBER = "+27115550900"
CALLER = "+27115550999"
# Seconds the call waits once the gather is over, then the switch hangs up:
# longer than what is left of the phone's key presses (it takes a BYE only
# once they are done).
IDLE_TIMEOUT = 8
# One key, 1 or 2; 10 s for it.
GATHER = gather("g1", prompt=None, retries=1, valid_digits="12", timeout=10, inter_digit_timeout=1)


class Sink:
    """One call's events from one backend, and those of them the core has not had yet."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.taken = 0

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    async def wait_for(self, kind: type[Event], within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not any(isinstance(e, kind) for e in self.events[self.taken:]):
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {kind.__name__} within {within:g} s; saw {self.events}")
            await asyncio.sleep(0.05)

    def into(self, run: LiveRun) -> list[Command]:
        """The core handles the events it has not had yet; its commands for the switch."""
        new, self.taken = self.events[self.taken:], len(self.events)
        return steps(run.send(*new))


async def connected(make_backend: Callable[[], Backend]) -> tuple[Backend, asyncio.Queue[IncomingCall]]:
    backend = make_backend()
    arrivals: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def arrived(incoming: IncomingCall) -> None:
        arrivals.put_nowait(incoming)

    backend.on_incoming = arrived
    await backend.connect()
    return backend, arrivals


async def a_retry_stored_but_never_sent_is_asked_after_a_restart(
        make_backend: Callable[[], Backend], caller_phone: CallIn, tmp_path: Path) -> None:
    """Try 1 ends on the switch with a key that is no answer (9); the core
    stores try 2, and the backend stops before try 2 reached the switch.
    Restarted, it finds try 1's end on the caller's channel: the core does
    not take it as try 2's, sends try 2 again, and the key the caller
    presses then (2) is the gather's, on its second try. The phone presses 9
    1 s after the answer (try 1 answered it), and 2 from 4 s on, again
    every 2 s in case the restart took longer (each one after the gather
    ended is lost in the wait between steps). Then the backend stops again
    before try 2's end reached the core: restarted, it finds that end, and
    the core takes it as try 2's."""
    keys = Keypad(tmp_path)
    phone = caller_phone(NUMBER, CALLER, (wait(1000), keys.press("9"), wait(3000), keys.press("2"),
                                          wait(2000), keys.press("2"), wait(2000), keys.press("2")))
    backend, arrivals = await connected(make_backend)
    call_id = str(uuid.uuid4())
    try:
        try:
            incoming = await asyncio.wait_for(arrivals.get(), 15)
        except TimeoutError:
            raise AssertionError("the switch announced no incoming call: is the lab's inbound "
                                 "dialplan loaded?") from None
        run = LiveRun(LiveCall.inbound(replace(INBOUND_PLAN, call_id=call_id), incoming.caller,
                                       incoming.dialed, IDLE_TIMEOUT, created_at=time.time()))
        run.call.start()
        sink = Sink()
        await backend.claim(incoming, call_id, sink)
        await sink.wait_for(LegRinging)
        sink.into(run)
        [try_1] = steps(run.queue(time.time(), GATHER, source="number"))
        assert isinstance(try_1, GatherDigits) and try_1.try_number == 1
        await backend.execute(call_id, try_1)
        await sink.wait_for(DigitsGathered)
        [try_2] = sink.into(run)
        assert run.record_of("g1")["tries"] == 2 and not run.reports("call.gathered"), sink.events
        assert try_2 == replace(try_1, try_number=2), try_2
    finally:
        await backend.close()  # gone before try 2 was sent

    again = LiveRun(core_from_snapshot(json.loads(json.dumps(run.call.snapshot()))))
    assert again.state() is CallState.GATHERING and again.record_of("g1")["tries"] == 2
    backend, _ = await connected(make_backend)
    try:
        sink = Sink()
        found = await backend.reattach(call_id, str(CallState.GATHERING), sink)
        [between] = [e for e in found if isinstance(e, FoundBetweenSteps)]
        assert isinstance(between.last_end, DigitsGathered) and between.end_try == 1, between
        assert (between.last_end.digits, between.last_end.ended_by) == ("9", "max-digits"), between
        assert steps(again.send(*found)) == [try_2]
        await backend.execute(call_id, try_2)
        await sink.wait_for(DigitsGathered)
    finally:
        await backend.close()  # gone again, before it took try 2's end in

    backend, _ = await connected(make_backend)
    try:
        sink = Sink()
        found = await backend.reattach(call_id, str(CallState.GATHERING), sink)
        [between] = [e for e in found if isinstance(e, FoundBetweenSteps)]
        assert isinstance(between.last_end, DigitsGathered) and between.end_try == 2, between
        assert (between.last_end.digits, between.last_end.ended_by) == ("2", "max-digits"), between
        [idle] = steps(again.send(*found))
        assert idle == WaitForActions(IDLE_TIMEOUT, ringback=False)
        await backend.execute(call_id, idle)
        await sink.wait_for(LegEnded)
        sink.into(again)
        assert [c for c in again.commands if isinstance(c, CallEnded)], again.state()
        assert await phone.finished() == ["answered", "bye"]
        backend.forget(call_id)
    finally:
        await backend.close()
    [gathered] = again.reports("call.gathered")
    assert (gathered["digits"], gathered["valid"], gathered["tries"]) == ("2", True, 2), gathered
    result = again.call.result()
    assert (result["status"], result["digits"]) == ("completed", "2"), result
    assert [(a["id"], a["status"], a["outcome"], a["tries"]) for a in result["actions"]] == [
        ("g1", "completed", "gathered", 2)], result["actions"]
