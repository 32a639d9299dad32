"""A gather tried again, across a controller restart, on the FreeSWITCH
backend against the Event Socket peer: the live-call core (the real one,
restored from its snapshot as a restarted daemon does) and the backend
together. Try 1 ends with nothing valid and the core stores try 2; the
controller stops before or after try 2 reached the switch. What the caller
is asked and the digits and tries the core reports are the outcomes checked.
The same runs on the lab's real FreeSWITCH (tests/fslab/test_fs_live_retry.py)
and Asterisk (tests/lab/test_inbound_retry.py)."""

from __future__ import annotations

import asyncio
import json

from controller.backends.base import IncomingCall
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.core.commands import GatherDigits, HangupLegs, PlayToLegA
from controller.core.events import DigitsGathered, FoundBetweenSteps, LegEnded
from controller.core.live import LiveCall, core_from_snapshot
from controller.core.outcomes import Leg
from controller.core.states import CallState
from tests.unit.core.helpers import T0
from tests.unit.core.live_helpers import CALLER, INBOUND_PLAN, NUMBER, LiveRun, gather, play, steps

from .conftest import MakeConfig, wait_until
from .peer import EslPeer
from .test_esl_live import CALL_ID, Sink, call_in, press, restarted

# Try 1 times out at once (no key); a valid answer is 1 or 2.
GATHER = gather("g1", prompt=None, retries=1, valid_digits="12", timeout=1, inter_digit_timeout=1)


def restored(run: LiveRun) -> LiveRun:
    """The call as a restarted daemon reads it back from its stored snapshot."""
    call = core_from_snapshot(json.loads(json.dumps(run.call.snapshot())))
    assert isinstance(call, LiveCall)
    return LiveRun(call)


async def try_1_failed(backend: FreeswitchBackend, incoming: IncomingCall) -> tuple[LiveRun, GatherDigits]:
    """The core runs the gather; try 1 ends on the switch with no key, and
    the core stores try 2 and returns its command (not sent here)."""
    run = LiveRun(LiveCall.inbound(INBOUND_PLAN, CALLER, NUMBER, 30, created_at=T0))
    run.call.start()
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    run.send(*sink.events)  # leg A's channel, ringing
    sink.events.clear()
    [try_1] = steps(run.queue(T0 + 1, GATHER, play("p2"), source="number"))
    assert isinstance(try_1, GatherDigits) and try_1.try_number == 1
    await backend.execute(CALL_ID, try_1)
    ended = await sink.wait_for(DigitsGathered)
    assert ended == DigitsGathered(ended.at, "g1", "", "timeout")
    [try_2] = steps(run.send(*sink.events))
    assert isinstance(try_2, GatherDigits) and try_2.try_number == 2
    assert run.record_of("g1")["tries"] == 2
    return run, try_2


async def test_a_gather_retry_stored_but_never_sent_is_asked_after_a_restart(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend) -> None:
    """Stopped before try 2 reached the switch: the restarted controller finds
    try 1's end, which the core does not take as try 2's; try 2 is sent
    again, the caller is asked, and the keys pressed are try 2's."""
    channel, incoming = await call_in(peer, announced)
    run, try_2 = await try_1_failed(backend, incoming)
    await backend.close()

    again = restored(run)
    async with restarted(make_config) as switch:
        sink = Sink()
        found = await switch.reattach(CALL_ID, str(CallState.GATHERING), sink)
        assert [e for e in found if isinstance(e, FoundBetweenSteps)] == [
            FoundBetweenSteps(found[-1].at, DigitsGathered(found[-1].at, "g1", "", "timeout"), 1)]
        assert steps(again.send(*found)) == [try_2]
        await switch.execute(CALL_ID, try_2)
        await wait_until(lambda: channel.variables.get("current_application") == "read")
        press(channel, "2")
        await sink.wait_for(DigitsGathered)
        assert steps(again.send(*sink.events)) == [PlayToLegA("p2", ("/tts/p2",), 1)]
        [gathered] = again.reports("call.gathered")
        assert (gathered["digits"], gathered["valid"], gathered["tries"]) == ("2", True, 2)
        await switch.execute(CALL_ID, HangupLegs((Leg.A,)))
        await sink.wait_for(LegEnded)
        switch.forget(CALL_ID)


async def test_a_gather_retry_that_ended_while_away_is_taken_as_its_own_end(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend) -> None:
    """Try 2 reached the switch and the caller answered it while the
    controller was away: its end is found as try 2's, and its digits count."""
    channel, incoming = await call_in(peer, announced)
    run, try_2 = await try_1_failed(backend, incoming)
    await backend.execute(CALL_ID, try_2)
    await wait_until(lambda: channel.variables.get("current_application") == "read")
    await backend.close()
    press(channel, "1")
    await wait_until(lambda: channel.variables.get("current_application") == "sched_hangup")

    again = restored(run)
    async with restarted(make_config) as switch:
        found = await switch.reattach(CALL_ID, str(CallState.GATHERING), Sink())
        assert found[-1] == FoundBetweenSteps(found[-1].at, DigitsGathered(
            found[-1].at, "g1", "1", "max-digits"), 2)
        assert steps(again.send(*found)) == [PlayToLegA("p2", ("/tts/p2",), 1)]
        [gathered] = again.reports("call.gathered")
        assert (gathered["digits"], gathered["valid"], gathered["tries"]) == ("1", True, 2)
        await switch.execute(CALL_ID, HangupLegs((Leg.A,)))
        switch.forget(CALL_ID)
    await wait_until(lambda: channel.hangup_cause is not None)
