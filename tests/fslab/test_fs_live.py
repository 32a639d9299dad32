"""Live calls on the lab's real FreeSWITCH, driven at the backend: a SIPp
phone (sip-lab/phones/fs-call-in.xml) calls sip:NUMBER@127.0.0.1:5080, the
lab's inbound dialplan (dialplans/freeswitch/callconnect_inbound.xml) parks
it and announces it, and the backend claims or refuses it and runs steps on
it. Outcomes are read off the wire (tcpdump on loopback: the SIP statuses
and the audio the phone got), from the events the backend reports (the keys
the phone pressed) and from the recording left behind."""

from __future__ import annotations

import asyncio
import audioop
import subprocess
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controller.backends.base import IncomingCall
from controller.backends.freeswitch.actions import Verb
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.backends.freeswitch.live import encode_step
from controller.config import Config
from controller.core.commands import GatherDigits, PauseLegA, PlayToLegA, RecordLegA, WaitForActions
from controller.core.events import (
    DigitPressed,
    DigitsGathered,
    Event,
    FoundBetweenSteps,
    IdleTimedOut,
    LegAnswered,
    LegEnded,
    LegHungUp,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
)
from controller.core.outcomes import Leg
from tests.lab.capture import SOUND_RMS, Capture, Packet, rtp_rms
from tests.lab.gather_retry import a_retry_stored_but_never_sent_is_asked_after_a_restart
from tests.lab.live_fixtures import CallIn

from .esl import EslClient, channel_rows

REPO = Path(__file__).resolve().parents[2]
CALLER_PHONE = REPO / "sip-lab" / "phones" / "fs-call-in.xml"
CALLER_SIP_PORT, CALLER_MEDIA_PORT = 5190, 17190
CALLER = "+27115550111"  # the phone's From
NUMBER = "+27115550900"
CALL_ID = "7d1e6a52-4c1b-4f7e-9a3d-2b8c0f1e5a77"
SWITCH_SIP_PORT = 5080


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[Event], count: int = 1, within: float = 20.0) -> Event:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.of(kind)) < count:
            assert loop.time() < deadline, f"no {kind.__name__} within {within} s: {self.events}"
            await asyncio.sleep(0.05)
        return self.of(kind)[count - 1]


@pytest.fixture
async def backend(fs_config: Config) -> AsyncIterator[FreeswitchBackend]:
    switch = FreeswitchBackend(fs_config.freeswitch)
    await switch.connect()
    try:
        yield switch
    finally:
        await switch.close()


@pytest.fixture
def announced(backend: FreeswitchBackend) -> asyncio.Queue[IncomingCall]:
    queue: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def take(incoming: IncomingCall) -> None:
        queue.put_nowait(incoming)

    backend.on_incoming = take
    return queue


@asynccontextmanager
async def calling_phone(number: str, tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """The lab caller, calling ``number`` once; its exit status is 0 when
    its call went as the scenario expects (answered, or refused)."""
    process = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{SWITCH_SIP_PORT}", "-sf", str(CALLER_PHONE), "-s", number,
        "-i", "127.0.0.1", "-p", str(CALLER_SIP_PORT), "-mi", "127.0.0.1",
        "-mp", str(CALLER_MEDIA_PORT), "-m", "1", "-nostdin", "-timeout", "60",
        "-timeout_error", "-trace_err", "-error_file", str(tmp_path / "caller.errors"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def phone_done(process: asyncio.subprocess.Process, tmp_path: Path) -> None:
    code = await asyncio.wait_for(process.wait(), 30)
    errors = tmp_path / "caller.errors"
    assert code == 0, f"the caller's call failed: {errors.read_text() if errors.exists() else ''}"


def tone(tmp_path: Path, name: str, seconds: float, hertz: int) -> str:
    path = tmp_path / f"{name}.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path),
                    "synth", str(seconds), "sine", str(hertz), "vol", "0.5"], check=True)
    path.chmod(0o644)
    return str(path)


def statuses_to_caller(packets: list[Packet]) -> list[int]:
    """The status of every SIP response the switch sent the caller, in order."""
    return [int(p.payload[8:11]) for p in packets
            if p.dport == CALLER_SIP_PORT and p.payload.startswith(b"SIP/2.0 ")]


def sound_to_caller(packets: list[Packet]) -> list[Packet]:
    return [p for p in packets if p.dport == CALLER_MEDIA_PORT and rtp_rms(p.payload) > SOUND_RMS]


@pytest.mark.fslab
async def test_a_caller_is_claimed_hears_a_play_and_a_prompt_and_its_keys_arrive(
        backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall], tmp_path: Path) -> None:
    hello = tone(tmp_path, "hello", 0.5, 523)
    prompt = tone(tmp_path, "prompt", 8.0, 440)
    recording = tmp_path / "recording.wav"
    sink = Sink()
    async with Capture() as capture, calling_phone(NUMBER, tmp_path) as phone:
        incoming = await asyncio.wait_for(announced.get(), 10)
        assert (incoming.caller, incoming.dialed) == (CALLER, NUMBER)
        await backend.claim(incoming, CALL_ID, sink)

        await backend.execute(CALL_ID, RecordLegA("r1", str(recording)))
        started = await sink.wait_for(RecordingChanged)
        assert (started.action_id, started.recording) == ("r1", True)  # type: ignore[attr-defined]
        assert sink.of(LegAnswered)
        await backend.execute(CALL_ID, PlayToLegA("p1", (hello,)))
        played = await sink.wait_for(PlayFinished)
        assert played == PlayFinished(played.at, "p1", True)
        # The phone presses 2 1.5 s after its answer: during the 8 s prompt.
        await backend.execute(CALL_ID, GatherDigits("g1", prompt, 4, "#", 10, 5))
        gathered = await sink.wait_for(DigitsGathered)
        assert gathered == DigitsGathered(gathered.at, "g1", "25", "finish-key")
        assert [(e.action_id, e.digit) for e in sink.of(DigitPressed)] == [  # type: ignore[attr-defined]
            ("g1", "2"), ("g1", "5")]
        await backend.execute(CALL_ID, PauseLegA("s1", 1))
        paused = await sink.wait_for(PauseFinished)
        assert paused == PauseFinished(paused.at, "s1")
        await backend.execute(CALL_ID, RecordLegA("r2", None))
        stopped = await sink.wait_for(RecordingChanged, 2)
        assert stopped == RecordingChanged(stopped.at, "r2", False)
        await backend.execute(CALL_ID, WaitForActions(2, ringback=False))
        await sink.wait_for(LegEnded)
        await phone_done(phone, tmp_path)
    backend.forget(CALL_ID)
    packets = capture.packets()

    assert sink.of(IdleTimedOut) and not sink.of(LegHungUp)  # the switch hung up, at the idle timeout
    assert statuses_to_caller(packets)[-1] == 200 and 180 in statuses_to_caller(packets)
    assert [p for p in packets if p.dport == CALLER_SIP_PORT and p.payload.startswith(b"BYE ")]
    # The key stopped the prompt: the caller heard the tone and the prompt's
    # start, far less than their 8.5 s.
    heard = sound_to_caller(packets)
    assert heard, "the caller heard nothing"
    assert heard[-1].at - heard[0].at < 5.0, f"sound for {heard[-1].at - heard[0].at:.1f} s"
    with wave.open(str(recording)) as audio:
        seconds = audio.getnframes() / audio.getframerate()
        level = audioop.rms(audio.readframes(audio.getnframes()), audio.getsampwidth())
    assert seconds > 2.0, f"recording of {seconds:.1f} s"
    assert level > SOUND_RMS, f"recording is near silence (RMS {level})"


@pytest.mark.fslab
async def test_a_refused_caller_hears_the_message_then_gets_the_status(
        backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall], tmp_path: Path) -> None:
    message = tone(tmp_path, "not-in-service", 1.5, 660)
    async with Capture() as capture, calling_phone("+27115550999", tmp_path) as phone:
        incoming = await asyncio.wait_for(announced.get(), 10)
        await backend.refuse(incoming, message, 1)  # unallocated number: 404
        await phone_done(phone, tmp_path)
    packets = capture.packets()
    statuses = statuses_to_caller(packets)
    assert 200 not in statuses
    assert statuses[-1] == 404 and 183 in statuses
    final = next(p.at for p in packets if p.dport == CALLER_SIP_PORT
                 and p.payload.startswith(b"SIP/2.0 404"))
    heard = [p for p in sound_to_caller(packets) if p.at < final]
    assert heard and heard[-1].at - heard[0].at > 1.0, "the message was not heard before the 404"


@pytest.mark.fslab
async def test_a_rejected_caller_gets_the_status_at_once(
        backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall], tmp_path: Path) -> None:
    async with Capture() as capture, calling_phone("+27115550998", tmp_path) as phone:
        incoming = await asyncio.wait_for(announced.get(), 10)
        await backend.refuse(incoming, None, 21)  # call rejected: 603
        await phone_done(phone, tmp_path)
    assert statuses_to_caller(capture.packets())[-1] == 603


@pytest.mark.fslab
async def test_an_unanswered_caller_rings_until_the_idle_timeout(
        backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall], tmp_path: Path) -> None:
    sink = Sink()
    async with Capture() as capture, calling_phone(NUMBER, tmp_path) as phone:
        incoming = await asyncio.wait_for(announced.get(), 10)
        await backend.claim(incoming, CALL_ID, sink)
        await backend.execute(CALL_ID, WaitForActions(2, ringback=True))
        await sink.wait_for(LegEnded)
        await phone_done(phone, tmp_path)
    backend.forget(CALL_ID)
    assert sink.of(IdleTimedOut) and not sink.of(LegAnswered)
    statuses = statuses_to_caller(capture.packets())
    assert 180 in statuses and 200 not in statuses and statuses[-1] == 504


@pytest.mark.fslab
async def test_a_call_nobody_claims_is_turned_away_by_the_switch_itself(
        backend: FreeswitchBackend, tmp_path: Path) -> None:
    # No on_incoming: the controller takes nothing; the dialplan's own hangup
    # (10 s) ends the call.
    async with Capture() as capture, calling_phone(NUMBER, tmp_path) as phone:
        await phone_done(phone, tmp_path)
    statuses = statuses_to_caller(capture.packets())
    assert 180 in statuses and statuses[-1] == 503


async def answered_on_the_switch(channel: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not any(row.get("uuid") == channel and row.get("callstate") == "ACTIVE"
                  for row in await channel_rows()):
        assert time.monotonic() < deadline, f"FreeSWITCH did not answer {channel}"
        await asyncio.sleep(0.05)


@pytest.mark.fslab
async def test_a_restarted_controller_finds_the_claimed_caller_and_its_gather(
        backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall], fs_config: Config,
        tmp_path: Path) -> None:
    prompt = tone(tmp_path, "menu", 8.0, 440)
    async with calling_phone(NUMBER, tmp_path) as phone:
        incoming = await asyncio.wait_for(announced.get(), 10)
        await backend.claim(incoming, CALL_ID, Sink())
        await backend.execute(CALL_ID, GatherDigits("g1", prompt, 4, "#", 10, 5))
        await backend.close()  # the controller goes away while the caller hears the menu
        # The gather answers the caller while the controller is away.
        await answered_on_the_switch(incoming.channel)

        again = FreeswitchBackend(fs_config.freeswitch)
        await again.connect()
        try:
            sink = Sink()
            back = time.time()
            # Still gathering (its end comes as an event), or over by now (the
            # caller found between steps, with its end): either way with the
            # caller's keys.
            for missed in await again.reattach(CALL_ID, "gathering", sink):
                sink(missed.last_end or missed if isinstance(missed, FoundBetweenSteps) else missed)
            gathered = await sink.wait_for(DigitsGathered)
            assert (gathered.action_id, gathered.digits) == ("g1", "25")  # type: ignore[attr-defined]
            # The gather answered the caller before the controller came back:
            # the answer comes back with the switch's time for it.
            [answered] = [e for e in sink.of(LegAnswered) if isinstance(e, LegAnswered)]
            assert answered.leg is Leg.A and answered.at < back, (answered, back)
            await again.execute(CALL_ID, WaitForActions(1, ringback=False))
            await sink.wait_for(LegEnded)
            assert sink.of(IdleTimedOut)
            await phone_done(phone, tmp_path)
            again.forget(CALL_ID)
        finally:
            await again.close()


@pytest.mark.fslab
async def test_a_step_set_up_but_never_started_is_found_so_and_runs_when_sent_again(
        backend: FreeswitchBackend, announced: asyncio.Queue[IncomingCall], fs_config: Config,
        tmp_path: Path) -> None:
    """The controller went away after it set a gather up on the caller's
    channel (its API commands) and before the applications that run it: a
    restarted one finds the caller waiting, unanswered, with no end of the
    gather, and the gather sent again runs."""
    async with calling_phone(NUMBER, tmp_path) as phone:
        incoming = await asyncio.wait_for(announced.get(), 10)
        await backend.claim(incoming, CALL_ID, Sink())
        gather = GatherDigits("g1", None, 4, "#", 10, 5)
        commands = encode_step(incoming.channel, gather, answered=False)
        setup = commands[:[c.verb for c in commands].index(Verb.SENDMSG)]
        switch = fs_config.freeswitch
        async with EslClient(switch.host, switch.port, switch.password) as client:
            for command in setup:  # on a connection of the controller's account of their own
                answer = await client.api(command.text)
                assert answer.startswith("+OK"), f"FreeSWITCH refused {command.wire}: {answer}"
        await backend.close()

        again = FreeswitchBackend(switch)
        await again.connect()
        try:
            sink = Sink()
            [found] = await again.reattach(CALL_ID, "gathering", sink)
            assert found == FoundBetweenSteps(found.at, None)
            await again.execute(CALL_ID, gather)
            gathered = await sink.wait_for(DigitsGathered)
            assert (gathered.action_id, gathered.digits, gathered.ended_by) == (  # type: ignore[attr-defined]
                "g1", "25", "finish-key")
            await again.execute(CALL_ID, WaitForActions(1, ringback=False))
            await sink.wait_for(LegEnded)
            await phone_done(phone, tmp_path)
            again.forget(CALL_ID)
        finally:
            await again.close()


@pytest.mark.fslab
async def test_a_gather_retry_stored_but_never_sent_is_asked_after_a_restart(
        fs_config: Config, caller_phone: CallIn, tmp_path: Path) -> None:
    await a_retry_stored_but_never_sent_is_asked_after_a_restart(
        lambda: FreeswitchBackend(fs_config.freeswitch), caller_phone, tmp_path)
