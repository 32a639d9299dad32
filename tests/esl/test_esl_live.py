"""Live calls on the FreeSWITCH backend, against the Event Socket peer: an
incoming call parked by the inbound dialplan is announced, claimed or
refused, and runs steps (play, gather, pause, record, wait for actions);
what the caller's phone sees and the events the backend reports are the
outcomes checked. The same runs on the lab's real FreeSWITCH in
tests/fslab/test_fs_live.py."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controller.backends.base import IncomingCall
from controller.backends.freeswitch.actions import Verb
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.backends.freeswitch.inbound import incoming_call
from controller.backends.freeswitch.live import claim_commands, encode_step
from controller.core.commands import (
    GatherDigits,
    HangupLegs,
    PauseLegA,
    PlayToLegA,
    RecordLegA,
    WaitForActions,
)
from controller.core.events import (
    DigitPressed,
    DigitsGathered,
    Event,
    FoundBetweenSteps,
    IdleTimedOut,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
    SwitchLost,
)
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed
from tests.fslab.esl import EslClient

from .conftest import PASSWORD, MakeConfig, wait_until
from .peer import Caller, Channel, EslPeer, write_recording

CALL_ID = "5f0c1c1e-2b7a-4c3d-9e8f-0a1b2c3d4e5f"
NUMBER = "+27115550900"


class Sink:
    """The events the backend reports for one call, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[Event], within: float = 10.0) -> Event:
        await wait_until(lambda: bool(self.of(kind)), within)
        return self.of(kind)[0]


def audio(tmp_path: Path, name: str, seconds: float) -> str:
    path = tmp_path / f"{name}.wav"
    write_recording(str(path), seconds)
    return str(path)


async def call_in(peer: EslPeer, queue: asyncio.Queue[IncomingCall],
                  caller: Caller | None = None) -> tuple[Channel, IncomingCall]:
    channel = await peer.call_in(NUMBER, caller)
    incoming = await asyncio.wait_for(queue.get(), 5)
    return channel, incoming


@asynccontextmanager
async def restarted(make_config: MakeConfig) -> AsyncIterator[FreeswitchBackend]:
    """The controller's backend started again on the same switch (the first
    one closed, as by a restart)."""
    again = FreeswitchBackend(make_config().freeswitch)
    await again.connect()
    try:
        yield again
    finally:
        await again.close()


async def test_an_incoming_call_is_announced_with_who_called_and_the_number_dialed(
        peer: EslPeer, backend: FreeswitchBackend,
        announced: asyncio.Queue[IncomingCall]) -> None:
    channel, incoming = await call_in(peer, announced)
    assert (incoming.channel, incoming.caller, incoming.dialed) == (
        channel.uuid, "+27115550111", NUMBER)
    assert channel.responses == [180]  # the dialplan rings it while the controller decides
    await backend.refuse(incoming, None, 1)
    await wait_until(lambda: channel.hangup_cause is not None)
    assert channel.responses == [180, 404]


async def test_a_call_nobody_claims_is_hung_up_by_the_switch_itself(
        peer: EslPeer, backend: FreeswitchBackend,
        announced: asyncio.Queue[IncomingCall]) -> None:
    peer.unclaimed_after = 1
    channel, _ = await call_in(peer, announced)
    await wait_until(lambda: channel.hangup_cause is not None, 5)
    assert channel.hangup_cause == "NORMAL_CIRCUIT_CONGESTION"
    assert channel.responses == [180, 503]


async def test_a_claimed_call_plays_gathers_pauses_records_and_idles_out(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall],
        tmp_path: Path) -> None:
    # The caller presses 2 during the prompt, then 5, then the finish key.
    caller = Caller(keys=((1.0, "2"), (1.4, "5"), (1.8, "#")))
    channel, incoming = await call_in(peer, announced, caller)
    peer.unclaimed_after = 1  # a claim disarms the dialplan's hangup: this is not it
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    assert [type(e) for e in sink.events] == [LegCreated, LegRinging]
    assert sink.events[0] == LegCreated(sink.events[0].at, Leg.A, channel.uuid)
    assert channel.variables["callconnect_call_id"] == CALL_ID

    recording = tmp_path / "recording.wav"
    await backend.execute(CALL_ID, RecordLegA("a1", str(recording)))
    assert (await sink.wait_for(RecordingChanged)) == RecordingChanged(
        sink.of(RecordingChanged)[0].at, "a1", True)
    assert channel.responses == [180, 200]  # a step with audio answered it
    assert sink.of(LegAnswered)

    await backend.execute(CALL_ID, PlayToLegA("a2", (audio(tmp_path, "hello", 0.3),)))
    played = await sink.wait_for(PlayFinished)
    assert played == PlayFinished(played.at, "a2", True)

    prompt = audio(tmp_path, "prompt", 3.0)
    await backend.execute(CALL_ID, GatherDigits("a3", prompt, 4, "#", 5, 3))
    gathered = await sink.wait_for(DigitsGathered)
    assert gathered == DigitsGathered(gathered.at, "a3", "25", "finish-key")
    assert [(e.action_id, e.digit) for e in sink.of(DigitPressed)] == [("a3", "2"), ("a3", "5")]
    # The key stopped the prompt: it did not play to its end.
    assert b"Playback-Status: break" in peer.connections[0].wire

    await backend.execute(CALL_ID, PauseLegA("a4", 1))
    paused = await sink.wait_for(PauseFinished)
    assert paused.action_id == "a4"  # type: ignore[attr-defined]

    await backend.execute(CALL_ID, RecordLegA("a5", None))
    await wait_until(lambda: len(sink.of(RecordingChanged)) == 2)
    assert sink.of(RecordingChanged)[1] == RecordingChanged(
        sink.of(RecordingChanged)[1].at, "a5", False)
    with wave.open(str(recording)) as sound:
        assert sound.getnframes() / sound.getframerate() > 1.0

    await backend.execute(CALL_ID, WaitForActions(1, ringback=False))
    await sink.wait_for(LegEnded)
    assert sink.of(IdleTimedOut)
    assert not sink.of(LegHungUp)  # the switch hung up, not the caller
    assert channel.hangup_cause == "RECOVERY_ON_TIMER_EXPIRE"
    assert [app for app, _ in peer.log if app == "schedule"]
    backend.forget(CALL_ID)


async def test_a_gather_ends_at_its_most_digits_or_its_timeout(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall]) -> None:
    caller = Caller(keys=((0.3, "1"), (0.5, "*"), (0.7, "9")))
    _, incoming = await call_in(peer, announced, caller)
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    await backend.execute(CALL_ID, GatherDigits("g1", None, 2, "", 5, 3))
    first = await sink.wait_for(DigitsGathered)
    assert first == DigitsGathered(first.at, "g1", "1*", "max-digits")
    # The 9 came after the gather had ended: it is no digit of either gather.
    await asyncio.sleep(0.5)
    await backend.execute(CALL_ID, GatherDigits("g2", None, 3, "#", 1, 1))
    await wait_until(lambda: len(sink.of(DigitsGathered)) == 2)
    second = sink.of(DigitsGathered)[1]
    assert second == DigitsGathered(second.at, "g2", "", "timeout")
    assert [e.digit for e in sink.of(DigitPressed)] == ["1", "*"]  # type: ignore[attr-defined]
    await backend.execute(CALL_ID, HangupLegs((Leg.A,)))
    await sink.wait_for(LegEnded)
    backend.forget(CALL_ID)


async def test_a_caller_who_hangs_up_mid_gather_ends_it_with_the_keys_so_far(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall]) -> None:
    _, incoming = await call_in(peer, announced, Caller(keys=((0.2, "7"),), hangup_after=0.6))
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    await backend.execute(CALL_ID, GatherDigits("g1", None, 4, "#", 5, 5))
    await sink.wait_for(LegEnded)
    assert [e.digit for e in sink.of(DigitPressed)] == ["7"]  # type: ignore[attr-defined]
    assert sink.of(LegHungUp) and not sink.of(DigitsGathered)
    backend.forget(CALL_ID)


async def test_an_unanswered_call_waits_ringing_and_is_hung_up_at_the_idle_timeout(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall]) -> None:
    channel, incoming = await call_in(peer, announced)
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    await backend.execute(CALL_ID, WaitForActions(1, ringback=True))
    await sink.wait_for(LegEnded)
    assert sink.of(IdleTimedOut)
    assert channel.responses == [180, 504]  # never answered; RECOVERY_ON_TIMER_EXPIRE
    backend.forget(CALL_ID)


async def test_a_refusal_plays_its_message_as_early_media_then_gives_the_status(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall],
        tmp_path: Path) -> None:
    channel, incoming = await call_in(peer, announced)
    message = audio(tmp_path, "not-in-service", 0.5)
    await backend.refuse(incoming, message, 1)
    await wait_until(lambda: channel.hangup_cause is not None)
    assert channel.responses == [180, 183, 404]
    assert ("PLAYBACK_STOP", channel.uuid) not in peer.connections[0].sent  # not followed
    assert not channel.answered.is_set()


async def test_a_call_gone_before_its_claim_cannot_be_claimed(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall]) -> None:
    channel, incoming = await call_in(peer, announced)
    peer.hangup(channel, "NORMAL_CLEARING", "recv_cancel")
    await wait_until(lambda: not peer.channel_ids())
    with pytest.raises(SwitchActionFailed, match="cannot claim the incoming call"):
        await backend.claim(incoming, CALL_ID, Sink())
    backend.forget(CALL_ID)


async def test_a_restarted_controller_finds_a_claimed_call_and_its_gather(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend, tmp_path: Path) -> None:
    caller = Caller(keys=((1.5, "4"), (1.8, "#")))
    channel, incoming = await call_in(peer, announced, caller)
    await backend.claim(incoming, CALL_ID, Sink())
    await backend.execute(CALL_ID, GatherDigits("g1", audio(tmp_path, "menu", 3.0), 3, "#", 5, 3))
    await backend.close()  # the controller goes away mid-gather

    assert peer.hashes == {f"callconnect_{CALL_ID}": channel.uuid}
    async with restarted(make_config) as again:
        sink = Sink()
        missed = await again.reattach(CALL_ID, "gathering", sink)
        # The gather still runs; the caller was answered when the switch says.
        assert missed == [LegAnswered(channel.answered_at / 1e6, Leg.A, channel.uuid)]
        gathered = await sink.wait_for(DigitsGathered)
        assert gathered == DigitsGathered(gathered.at, "g1", "4", "finish-key")
        await again.execute(CALL_ID, HangupLegs((Leg.A,)))
        await sink.wait_for(LegEnded)
        again.forget(CALL_ID)
        await wait_until(lambda: not peer.hashes)  # its entry goes with it


async def test_a_gather_that_ends_while_a_restarted_controller_reads_the_switch_still_ends(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend, tmp_path: Path) -> None:
    channel, incoming = await call_in(peer, announced)
    await backend.claim(incoming, CALL_ID, Sink())
    await backend.execute(CALL_ID, GatherDigits("g1", audio(tmp_path, "menu", 30.0), 3, "#", 5, 3))
    await wait_until(lambda: channel.variables.get("current_application") == "read")
    await backend.close()

    async def caller_presses_while_the_dump_is_on_its_way(args: str) -> None:
        # The dump says the gather still runs; the gather's end reaches the
        # controller before that answer does.
        if args.startswith(channel.uuid) and not channel.variables.get("callconnect_done"):
            channel.dtmf.put_nowait("7")
            channel.dtmf.put_nowait("#")
            await wait_until(lambda: channel.variables.get("callconnect_done") == "g1")

    peer.meanwhile["uuid_dump"] = caller_presses_while_the_dump_is_on_its_way
    async with restarted(make_config) as again:
        sink = Sink()
        missed = await again.reattach(CALL_ID, "gathering", sink)
        assert [type(e) for e in missed] == [LegAnswered]
        gathered = await sink.wait_for(DigitsGathered)
        assert gathered == DigitsGathered(gathered.at, "g1", "7", "finish-key")
        await again.execute(CALL_ID, HangupLegs((Leg.A,)))
        await sink.wait_for(LegEnded)
        again.forget(CALL_ID)


async def test_without_mod_hash_a_restarted_controller_finds_the_call_by_its_variable(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend) -> None:
    peer.refuse["hash"] = "-ERR hash Command not found!\n"
    channel, incoming = await call_in(peer, announced)
    await backend.claim(incoming, CALL_ID, Sink())
    await backend.execute(CALL_ID, WaitForActions(30, ringback=True))
    await backend.close()
    async with restarted(make_config) as again:
        sink = Sink()
        assert await again.reattach(CALL_ID, "idle", sink) == []
        await again.execute(CALL_ID, HangupLegs((Leg.A,)))
        await sink.wait_for(LegEnded)
        assert channel.hangup_cause == "NORMAL_CLEARING"
        again.forget(CALL_ID)


async def test_a_restarted_controller_hears_of_a_step_that_ended_while_it_was_away(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend) -> None:
    channel, incoming = await call_in(peer, announced, Caller(keys=((0.2, "8"),)))
    await backend.claim(incoming, CALL_ID, Sink())
    await backend.execute(CALL_ID, GatherDigits("g1", None, 1, "#", 5, 3))
    await backend.close()
    await wait_until(lambda: channel.variables.get("current_application") == "sched_hangup")

    async with restarted(make_config) as again:
        [answered, found] = await again.reattach(CALL_ID, "gathering", Sink())
        # Leg A waits between steps, the gather's end on it.
        assert isinstance(answered, LegAnswered)
        assert found == FoundBetweenSteps(found.at, DigitsGathered(found.at, "g1", "8", "max-digits"))
        await again.execute(CALL_ID, HangupLegs((Leg.A,)))
        again.forget(CALL_ID)


def press(channel: Channel, keys: str) -> None:
    """The caller presses ``keys`` now (the peer's channel takes them in turn)."""
    for key in keys:
        channel.dtmf.put_nowait(key)


async def step_setup_only(peer: EslPeer, channel: Channel, step: GatherDigits) -> None:
    """What the controller sends of ``step`` before the application that runs
    it (the API commands), sent on a connection of its own: as if it stopped
    right after them."""
    commands = encode_step(channel.uuid, step, answered=False)
    setup = commands[:[c.verb for c in commands].index(Verb.SENDMSG)]
    assert [c.verb for c in setup] == [Verb.API, Verb.API]
    async with EslClient("127.0.0.1", peer.port, PASSWORD) as client:
        for command in setup:
            assert (await client.api(command.text)).startswith("+OK")


@pytest.mark.parametrize("sent", ["nothing", "its setup"])
async def test_a_step_stored_as_running_that_never_started_is_found_so_and_runs_when_sent_again(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend, sent: str) -> None:
    """The controller stored a gather as running and stopped before the
    switch took it up (before anything of it was sent, or after its setup):
    a restarted one finds the caller waiting, unanswered, with no end of the
    gather, and the gather sent again runs."""
    channel, incoming = await call_in(peer, announced)
    await backend.claim(incoming, CALL_ID, Sink())
    gather = GatherDigits("g1", None, 3, "#", 5, 3)
    if sent == "its setup":
        await step_setup_only(peer, channel, gather)
    await backend.close()

    async with restarted(make_config) as again:
        sink = Sink()
        [found] = await again.reattach(CALL_ID, "gathering", sink)
        assert found == FoundBetweenSteps(found.at, None)
        assert channel.responses == [180]  # still ringing: nothing answered it
        await again.execute(CALL_ID, gather)
        await wait_until(lambda: channel.variables.get("current_application") == "read")
        press(channel, "4#")
        gathered = await sink.wait_for(DigitsGathered)
        assert gathered == DigitsGathered(gathered.at, "g1", "4", "finish-key")
        assert channel.responses == [180, 200]
        await again.execute(CALL_ID, HangupLegs((Leg.A,)))
        await sink.wait_for(LegEnded)
        again.forget(CALL_ID)


async def test_a_restarted_controller_finds_the_end_of_the_step_before_one_never_sent(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend, tmp_path: Path) -> None:
    """A play ended; the gather after it was stored as running but never
    sent: the end found is the play's (the core, running the gather, sends
    the gather again)."""
    channel, incoming = await call_in(peer, announced)
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    await backend.execute(CALL_ID, PlayToLegA("p1", (audio(tmp_path, "hello", 0.2),)))
    await sink.wait_for(PlayFinished)
    await backend.close()

    async with restarted(make_config) as again:
        [answered, found] = await again.reattach(CALL_ID, "gathering", Sink())
        assert isinstance(answered, LegAnswered)
        assert found == FoundBetweenSteps(found.at, PlayFinished(found.at, "p1", True))
        await again.execute(CALL_ID, HangupLegs((Leg.A,)))
        again.forget(CALL_ID)
    await wait_until(lambda: channel.hangup_cause is not None)


async def test_a_gather_tried_again_is_running_not_over_with_the_first_tries_end(
        peer: EslPeer, make_config: MakeConfig, announced: asyncio.Queue[IncomingCall],
        backend: FreeswitchBackend) -> None:
    """A gather sent again under the same action id (a retry) clears the
    first try's end mark: a restarted controller finds the retry running
    and gets its own digits."""
    channel, incoming = await call_in(peer, announced)
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    await backend.execute(CALL_ID, GatherDigits("g1", None, 3, "#", 1, 1))
    first = await sink.wait_for(DigitsGathered)
    assert first == DigitsGathered(first.at, "g1", "", "timeout")
    await backend.execute(CALL_ID, GatherDigits("g1", None, 3, "#", 5, 3))
    await wait_until(lambda: channel.variables.get("current_application") == "read")
    await backend.close()

    async with restarted(make_config) as again:
        sink = Sink()
        missed = await again.reattach(CALL_ID, "gathering", sink)
        assert [type(e) for e in missed] == [LegAnswered]
        press(channel, "6#")
        gathered = await sink.wait_for(DigitsGathered)
        assert gathered == DigitsGathered(gathered.at, "g1", "6", "finish-key")
        await again.execute(CALL_ID, HangupLegs((Leg.A,)))
        await sink.wait_for(LegEnded)
        again.forget(CALL_ID)


async def test_a_claimed_call_is_hung_up_once_a_lost_link_is_back(
        peer: EslPeer, backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall]) -> None:
    channel, incoming = await call_in(peer, announced)
    sink = Sink()
    await backend.claim(incoming, CALL_ID, sink)
    peer.drop_connections()
    await sink.wait_for(SwitchLost)
    await wait_until(lambda: channel.hangup_cause is not None, 10)
    assert channel.hangup_cause == "NORMAL_CLEARING"
    backend.forget(CALL_ID)


# ---------------------------------------------------------------- the wire

def test_caller_text_never_reaches_a_command() -> None:
    event = {"Event-Name": "CUSTOM", "Event-Subclass": "callconnect::incoming",
             "Unique-ID": "0b6f1c7e-1111-4222-8333-944455556666",
             "Caller-Caller-ID-Number": "+2711\r\nsendmsg x" + "9" * 500,
             "variable_callconnect_dialed": NUMBER}
    incoming = incoming_call(event, 1.0)
    assert incoming is not None
    assert "\n" not in incoming.caller and len(incoming.caller) <= 256
    # A channel id that is not one never gets into a command.
    assert incoming_call({**event, "Unique-ID": "x y\nz"}, 1.0) is None
    with pytest.raises(SwitchActionFailed):
        claim_commands("abc def", CALL_ID)


def test_each_step_disarms_the_hold_limit_first_and_arms_it_again_last() -> None:
    a = "0b6f1c7e-1111-4222-8333-944455556666"
    commands = encode_step(a, PlayToLegA("p1", ("/m/a.wav", "/m/b.wav"), loop=2), answered=False)
    wire = [c.wire for c in commands]
    assert wire[0] == f"api sched_del {a}"
    # The step set up, its end mark cleared, in one command.
    assert wire[1] == (f"api uuid_setvar_multi {a} callconnect_done=;callconnect_action=play/p1;"
                       "callconnect_try=1")
    assert "execute-app-name: answer" in wire[2]
    assert wire[3].endswith("execute-app-arg: file_string:///m/a.wav!/m/b.wav!/m/a.wav!/m/b.wav"
                            "\nevent-lock: true")
    assert wire[4].endswith("execute-app-name: set\nexecute-app-arg: callconnect_done=p1"
                            "\nevent-lock: true")
    assert wire[5].endswith("execute-app-name: sched_hangup\nexecute-app-arg: +120 "
                            "RECOVERY_ON_TIMER_EXPIRE\nevent-lock: true")
    gather = encode_step(a, GatherDigits("g1", None, 4, "", 5, 3, try_number=2), answered=True)
    assert gather[1].wire == (f"api uuid_setvar_multi {a} callconnect_done=;"
                              "callconnect_action=gather/g1/4/;callconnect_try=2")
    assert gather[-3].wire.endswith("execute-app-arg: 1 4 silence callconnect_digits 5000 none "
                                    "3000\nevent-lock: true")
    with pytest.raises(SwitchActionFailed):
        encode_step(a, GatherDigits("g1", None, 4, "x", 5, 3), answered=True)
    with pytest.raises(SwitchActionFailed):
        encode_step(a, GatherDigits("g1", None, 4, "#", 5, 3, try_number=0), answered=True)
    with pytest.raises(SwitchActionFailed):
        encode_step(a, PlayToLegA("p 1", ("/m/a.wav",)), answered=True)
