"""A live step's applications (its sendmsgs, from the first to the hold
limit armed again) go to FreeSWITCH in one write, against the Event Socket
peer: the peer gets them in one piece, each reply is matched to its own
command (a refusal or a silence in the middle too), and a controller killed
right after the write leaves the step whole on the switch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from controller.backends.base import IncomingCall
from controller.backends.freeswitch.actions import Verb
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.backends.freeswitch.live import encode_step
from controller.core.commands import Command, GatherDigits, HangupLegs, PlayToLegA
from controller.core.events import FoundBetweenSteps, LegEnded, PlayFinished
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed

from .conftest import PASSWORD, MakeConfig, wait_until
from .peer import Channel, EslPeer
from .test_esl_live import CALL_ID, Sink, audio, call_in, restarted

REPO = Path(__file__).resolve().parents[2]


def step_write(a: str, step: Command, *, answered: bool) -> bytes:
    """The bytes of the step's sendmsgs, as one write puts them on the wire."""
    queue = [esl for esl in encode_step(a, step, answered=answered) if esl.verb is Verb.SENDMSG]
    assert len(queue) >= 3  # the application, its end mark, the hold limit
    return "".join(esl.wire + "\n\n" for esl in queue).encode()


async def claimed(peer: EslPeer, backend: FreeswitchBackend,
                  announced: asyncio.Queue[IncomingCall]) -> tuple[Channel, Sink]:
    channel, incoming = await call_in(peer, announced)
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    return channel, sink


async def hang_up(backend: FreeswitchBackend, sink: Sink) -> None:
    await backend.execute(CALL_ID, HangupLegs((Leg.A,)))
    await sink.wait_for(LegEnded)
    backend.forget(CALL_ID)


async def test_a_steps_applications_reach_the_switch_in_one_piece_and_run(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall],
        tmp_path: Path) -> None:
    channel, sink = await claimed(peer, backend, announced)
    play = PlayToLegA("p1", (audio(tmp_path, "hello", 0.2),))
    await backend.execute(CALL_ID, play)
    # Not answered yet: answer, playback, the end mark and the hold limit.
    assert step_write(channel.uuid, play, answered=False) in peer.connections[0].received
    played = await sink.wait_for(PlayFinished)
    assert played == PlayFinished(played.at, "p1", True)
    await wait_until(lambda: channel.variables.get("current_application") == "sched_hangup")
    assert channel.variables["callconnect_done"] == "p1"
    assert ("schedule", channel.uuid) in peer.log[-1:]  # the hold limit armed again, last

    gather = GatherDigits("g1", None, 2, "#", 1, 1)
    await backend.execute(CALL_ID, gather)
    assert step_write(channel.uuid, gather, answered=True) in peer.connections[0].received
    await wait_until(lambda: channel.variables.get("callconnect_done") == "g1")
    await hang_up(backend, sink)


async def test_a_refusal_in_the_middle_of_a_step_names_its_own_command(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall],
        tmp_path: Path) -> None:
    channel, sink = await claimed(peer, backend, announced)

    async def refuse_the_end_mark(channel_uuid: str) -> str:
        return "-ERR the end mark refused"

    peer.on_sendmsg["set"] = refuse_the_end_mark
    with pytest.raises(SwitchActionFailed) as failed:
        await backend.execute(CALL_ID, PlayToLegA("p1", (audio(tmp_path, "hello", 0.2),)))
    assert failed.value.message == "FreeSWITCH refused sendmsg set: -ERR the end mark refused"
    assert failed.value.details["action"] == "sendmsg set"
    # The ones around it were taken: the play ran, the hold limit was armed.
    await sink.wait_for(PlayFinished)
    await wait_until(lambda: channel.variables.get("current_application") == "sched_hangup")
    assert not channel.variables.get("callconnect_done")
    # The next command gets its own reply (the channel list, not a sendmsg's +OK).
    assert await backend.active_channels() == [channel.name]
    await hang_up(backend, sink)


async def test_a_reply_that_does_not_come_fails_the_step_and_comes_late_to_its_own_command(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        tmp_path: Path) -> None:
    backend = FreeswitchBackend(make_config(action_timeout=0.5).freeswitch)
    await backend.connect()
    try:
        channel, sink = await claimed(peer, backend, announced)
        released = asyncio.Event()

        async def busy_with_the_end_mark(channel_uuid: str) -> None:
            await released.wait()

        peer.on_sendmsg["set"] = busy_with_the_end_mark
        with pytest.raises(SwitchActionFailed) as failed:
            await backend.execute(CALL_ID, PlayToLegA("p1", (audio(tmp_path, "hello", 0.2),)))
        assert failed.value.message == "FreeSWITCH did not answer sendmsg set within 0.5 s"
        # The next command is sent while the end mark's and the hold limit's
        # replies are still due: they come first and must not be taken for its.
        listed = asyncio.ensure_future(backend.active_channels())
        await asyncio.sleep(0.1)
        released.set()
        assert await listed == [channel.name]
        await wait_until(lambda: channel.variables.get("callconnect_done") == "p1")
        await hang_up(backend, sink)
    finally:
        await backend.close()


# A controller that claims the call and sends a play step; the test kills it.
CONTROLLER = """
import asyncio, sys
from controller.backends.base import IncomingCall
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.config import FreeswitchConfig
from controller.core.commands import PlayToLegA

async def main(port: str, password: str, channel: str, call_id: str, audio: str) -> None:
    backend = FreeswitchBackend(FreeswitchConfig(port=int(port), password=password))
    await backend.connect()
    await backend.claim(IncomingCall(channel, "", "", 0.0), call_id, lambda event: None)
    await backend.execute(call_id, PlayToLegA("p1", (audio,)))
    await asyncio.sleep(60)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_controller_killed_right_after_sending_a_step_leaves_it_whole_on_the_switch(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend, tmp_path: Path) -> None:
    """Killed (SIGKILL) the moment the switch takes the play: the end mark and
    the hold limit were in the same write, so the switch still has them
    queued behind it; the play's end is marked, the caller is not left
    waiting for ever, and a restarted controller finds the play over."""
    channel, _ = await call_in(peer, announced)
    await backend.close()  # the controller below takes the call
    controller = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, str(peer.port), PASSWORD, channel.uuid, CALL_ID,
         audio(tmp_path, "hello", 0.3)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = asyncio.Event()

    async def kill_the_controller(channel_uuid: str) -> None:
        controller.kill()
        await asyncio.to_thread(controller.wait, 10)
        killed.set()

    peer.on_sendmsg["playback"] = kill_the_controller
    try:
        await asyncio.wait_for(killed.wait(), 30)
    finally:
        if controller.poll() is None:
            controller.kill()
        _, errors = controller.communicate(timeout=10)
    assert controller.returncode == -9, errors[-2000:]

    await wait_until(lambda: channel.variables.get("callconnect_done") == "p1", 10)
    await wait_until(lambda: channel.variables.get("current_application") == "sched_hangup")
    assert ("schedule", channel.uuid) in peer.log[-1:]  # the hold limit armed again
    async with restarted(make_config) as again:
        sink = Sink()
        [_, found] = await again.reattach(CALL_ID, "playing", sink)
        assert found == FoundBetweenSteps(found.at, PlayFinished(found.at, "p1", True))
        await hang_up(again, sink)
