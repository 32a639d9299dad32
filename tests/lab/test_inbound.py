"""Calls coming in to the real lab's Asterisk, driven at the backend: a SIPp
phone calls sip:NUMBER@127.0.0.1:5060, the backend reports it, and the test
claims or refuses it and runs a live call's steps on it. Checked by what the
switch reported, what the phone saw (its final status, the BYE) and heard,
and what was recorded."""

from __future__ import annotations

import asyncio
import audioop
import subprocess
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest
from panoramisk import Manager

from controller.backends.asterisk.actions import encode
from controller.backends.asterisk.backend import AsteriskBackend
from controller.backends.base import IncomingCall
from controller.config import Config
from controller.core.commands import (
    DialLegB,
    GatherDigits,
    HangupLegs,
    PauseLegA,
    PlayToLegA,
    RecordLegA,
    WaitForActions,
)
from controller.core.events import (
    AnswerAccepted,
    DigitPressed,
    DigitsGathered,
    EndedWhileAway,
    Event,
    FoundBetweenSteps,
    IdleTimedOut,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegRinging,
    PauseFinished,
    PlayFinished,
    RecordingChanged,
)
from controller.core.outcomes import Leg
from tests.lab.ami_proxy import AmiProxy
from tests.lab.callers import CALLER_MEDIA_PORT, Caller, Keypad, call_in, talk, wait
from tests.lab.capture import SOUND_RMS, Capture, rtp_rms
from tests.lab.gather_retry import a_retry_stored_but_never_sent_is_asked_after_a_restart
from tests.lab.live_fixtures import CallIn

NUMBER = "+27115550900"
CALLER = "+27115550999"
AGENT_SIP_PORT = 5072  # lab-answer-b, where +27115550202 rings
E = TypeVar("E", bound=Event)


class Arrivals:
    """The backend's on_incoming: every call the switch announces."""

    def __init__(self, backend: AsteriskBackend) -> None:
        self.backend = backend
        self.calls: asyncio.Queue[IncomingCall] = asyncio.Queue()
        backend.on_incoming = self._arrived

    async def _arrived(self, incoming: IncomingCall) -> None:
        await self.calls.put(incoming)

    async def next(self, timeout: float = 15) -> IncomingCall:
        try:
            return await asyncio.wait_for(self.calls.get(), timeout)
        except TimeoutError:
            raise AssertionError("the switch announced no incoming call: is the lab's "
                                 "lab-caller endpoint (sip-lab/asterisk/pjsip.conf) loaded?") from None


class Events:
    """One claimed call's events, as the backend's sink gets them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.seen: list[Event] = []

    def sink(self, event: Event) -> None:
        self.queue.put_nowait(event)

    async def next(self, kind: type[E], timeout: float = 20, leg: Leg | None = None) -> E:
        """The next event of this kind (on this leg); the ones before it are
        kept in seen."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self.queue.get()
                    self.seen.append(event)
                    if isinstance(event, kind) and (leg is None or getattr(event, "leg", None) is leg):
                        return event
        except TimeoutError:
            raise AssertionError(f"no {kind.__name__} within {timeout:g} s; saw {self.seen}") from None


@pytest.fixture
async def arrivals(lab_config: Config) -> AsyncIterator[Arrivals]:
    backend = AsteriskBackend(lab_config.asterisk)
    await backend.connect()
    yield Arrivals(backend)
    await backend.close()


@pytest.fixture
async def phones() -> AsyncIterator[list[Caller]]:
    started: list[Caller] = []
    yield started
    for phone in started:
        phone.stop()


def tone(config: Config, name: str, seconds: int, frequency: int) -> str:
    """A tone in the switch's media folder; its path as the switch sees it."""
    host = Path(config.media.whisper_dir) / f"inbound-test-{name}.wav"
    if not host.exists():
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(host),
                        "synth", str(seconds), "sine", str(frequency)], check=True, timeout=30)
    return config.whisper_path_on_switch(host)


async def claimed(arrivals: Arrivals) -> tuple[str, Events]:
    incoming = await arrivals.next()
    call_id, events = str(uuid.uuid4()), Events()
    await arrivals.backend.claim(incoming, call_id, events.sink)
    created = await events.next(LegCreated)
    assert (created.leg, created.channel) == (Leg.A, incoming.channel)
    assert (await events.next(LegRinging)).leg is Leg.A
    return call_id, events


@pytest.mark.lab
async def test_a_call_in_is_claimed_played_to_and_gathers_the_keys_pressed(
        arrivals: Arrivals, phones: list[Caller], lab_config: Config, tmp_path: Path) -> None:
    play = tone(lab_config, "play", 2, 440)
    prompt = tone(lab_config, "prompt", 30, 660)
    # From the answer: 2 s of play, then the prompt, during which 1 is pressed.
    keys = Keypad(tmp_path)
    phones.append(call_in(tmp_path, NUMBER, CALLER, (
        wait(3500), keys.press("1"), wait(1000), keys.press("2"), wait(1000), keys.press("#"))))
    incoming = await arrivals.next()
    assert (incoming.caller, incoming.dialed) == (CALLER, NUMBER)
    call_id, events = str(uuid.uuid4()), Events()
    await arrivals.backend.claim(incoming, call_id, events.sink)
    backend = arrivals.backend

    await backend.execute(call_id, PlayToLegA("p1", (play,)))
    answered = await events.next(LegAnswered)
    assert (answered.leg, answered.channel) == (Leg.A, incoming.channel)
    played = await events.next(PlayFinished)
    assert (played.action_id, played.played) == ("p1", True)

    await backend.execute(call_id, GatherDigits("g1", prompt, max_digits=4, finish_on_key="#",
                                                timeout=5, inter_digit_timeout=3))
    # The prompt lasts 30 s: the gather ends well before only because the key
    # pressed during it stopped it and counted.
    gathered = await events.next(DigitsGathered, timeout=20)
    assert (gathered.action_id, gathered.digits, gathered.ended_by) == ("g1", "12", "finish-key")
    pressed = [(e.action_id, e.digit) for e in events.seen if isinstance(e, DigitPressed)]
    assert pressed == [("g1", "1"), ("g1", "2")]
    assert [type(e) for e in events.seen[:2]] == [LegCreated, LegRinging]

    await backend.execute(call_id, HangupLegs((Leg.A,)))
    assert (await events.next(LegEnded)).leg is Leg.A
    assert await phones[0].finished() == ["answered", "bye"]


@pytest.mark.lab
async def test_a_step_sent_while_the_claim_is_still_being_carried_out_is_sent_again(
        lab_config: Config, phones: list[Caller], tmp_path: Path) -> None:
    """Under load Asterisk refuses a Redirect that comes while the channel is
    still leaving for the previous one (the claim's, then at once the first
    step's) as "channel not up". The proxy answers each Redirect so twice
    before passing it on: the claim and the play still happen."""
    proxy = AmiProxy(redirects_refused=2)
    config = lab_config.model_copy(deep=True)
    config.asterisk.port = await proxy.start()
    backend = AsteriskBackend(config.asterisk)
    await backend.connect()
    try:
        arrivals = Arrivals(backend)
        phones.append(call_in(tmp_path, NUMBER, CALLER, (wait(200),)))  # then waits for the BYE
        call_id, events = await claimed(arrivals)
        await backend.execute(call_id, PlayToLegA("p1", (tone(lab_config, "retried", 1, 440),)))
        assert (await events.next(PlayFinished)).played
        await backend.execute(call_id, HangupLegs((Leg.A,)))
        await events.next(LegEnded)
    finally:
        await backend.close()
        await proxy.close()
    assert proxy.refusals == 2 * 2  # the claim's Redirect and the play's
    assert await phones[0].finished() == ["answered", "bye"]


@pytest.mark.lab
async def test_a_pause_an_unanswered_gather_and_the_idle_timeout_that_hangs_up(
        arrivals: Arrivals, phones: list[Caller], tmp_path: Path) -> None:
    phones.append(call_in(tmp_path, NUMBER, CALLER))
    call_id, events = await claimed(arrivals)
    backend = arrivals.backend
    await backend.execute(call_id, PauseLegA("w1", 1))
    assert (await events.next(LegAnswered)).leg is Leg.A
    assert (await events.next(PauseFinished)).action_id == "w1"
    await backend.execute(call_id, GatherDigits("g1", None, max_digits=1, finish_on_key="#",
                                                timeout=1, inter_digit_timeout=1))
    gathered = await events.next(DigitsGathered)
    assert (gathered.digits, gathered.ended_by) == ("", "timeout")
    await backend.execute(call_id, WaitForActions(2, ringback=False))
    await events.next(IdleTimedOut)
    assert (await events.next(LegEnded)).leg is Leg.A
    assert await phones[0].finished() == ["answered", "bye"]


@pytest.mark.lab
async def test_the_idle_timeout_before_an_answer_turns_the_caller_away_unanswered(
        arrivals: Arrivals, phones: list[Caller], tmp_path: Path) -> None:
    phones.append(call_in(tmp_path, NUMBER, CALLER))
    call_id, events = await claimed(arrivals)
    await arrivals.backend.execute(call_id, WaitForActions(1, ringback=True))
    await events.next(IdleTimedOut)
    assert (await events.next(LegEnded)).leg is Leg.A
    assert not [e for e in events.seen if isinstance(e, LegAnswered)]
    assert await phones[0].finished() == ["final 480"]  # cause 19, no answer
    # What a restarted controller would learn: never answered.
    [ended] = await arrivals.backend.reattach(call_id, "idle", Events().sink)
    assert isinstance(ended, EndedWhileAway)
    assert (ended.a_answered, ended.a_cause) == (False, 19)
    arrivals.backend.forget(call_id)


@pytest.mark.lab
async def test_a_refused_call_is_rejected_with_the_sip_status_of_its_cause(
        arrivals: Arrivals, phones: list[Caller], tmp_path: Path) -> None:
    phones.append(call_in(tmp_path, "+27115550901", CALLER))
    incoming = await arrivals.next()
    await arrivals.backend.refuse(incoming, None, 1)
    assert await phones[0].finished() == ["final 404"]  # cause 1, unallocated number


@pytest.mark.lab
async def test_a_call_nobody_claims_is_turned_away_by_the_switch_itself(
        arrivals: Arrivals, phones: list[Caller], tmp_path: Path) -> None:
    phones.append(call_in(tmp_path, NUMBER, CALLER))
    await arrivals.next()
    assert await phones[0].finished() == ["final 503"]  # cause 34: the controller is not there


@pytest.mark.lab
async def test_a_refused_call_hears_the_message_then_is_hung_up(
        arrivals: Arrivals, phones: list[Caller], lab_config: Config, tmp_path: Path) -> None:
    message = tone(lab_config, "message", 2, 523)
    async with Capture() as capture:
        phones.append(call_in(tmp_path, "+27115550901", CALLER))
        incoming = await arrivals.next()
        await arrivals.backend.refuse(incoming, message, 21)
        assert await phones[0].finished() == ["final 403"]  # never answered: early media
    heard = [p for p in capture.packets()
             if p.dport == CALLER_MEDIA_PORT and rtp_rms(p.payload) > SOUND_RMS]
    assert len(heard) >= 50, f"the caller heard {len(heard)} frames of sound (20 ms each)"


@pytest.mark.lab
async def test_recording_started_and_stopped_by_steps_leaves_a_file_with_sound(
        arrivals: Arrivals, phones: list[Caller], lab_config: Config, tmp_path: Path) -> None:
    phones.append(call_in(tmp_path, NUMBER, CALLER, (talk(),)))
    call_id, events = await claimed(arrivals)
    backend = arrivals.backend
    host_file = Path(lab_config.media.recording_dir) / f"{call_id}-step.wav"
    await backend.execute(call_id, RecordLegA("r1", lab_config.recording_path_on_switch(host_file)))
    assert (await events.next(LegAnswered)).leg is Leg.A
    started = await events.next(RecordingChanged)
    assert (started.action_id, started.recording, started.error) == ("r1", True, None)
    await backend.execute(call_id, PauseLegA("w1", 3))
    await events.next(PauseFinished)
    await backend.execute(call_id, RecordLegA("r2", None))
    stopped = await events.next(RecordingChanged)
    assert (stopped.action_id, stopped.recording, stopped.error) == ("r2", False, None)
    await backend.execute(call_id, HangupLegs((Leg.A,)))
    await events.next(LegEnded)
    assert await phones[0].finished() == ["answered", "bye"]
    try:
        with wave.open(str(host_file)) as audio:
            frames = audio.readframes(audio.getnframes())
            assert audio.getnframes() > 8000, "less than a second was recorded"
            assert audioop.rms(frames, audio.getsampwidth()) > SOUND_RMS, "the recording is silent"
    finally:
        host_file.unlink(missing_ok=True)


@pytest.mark.lab
async def test_a_claimed_call_is_found_again_by_its_call_id_after_a_restart(
        arrivals: Arrivals, phones: list[Caller], lab_config: Config, tmp_path: Path) -> None:
    keys = Keypad(tmp_path)  # 4 then 2: a key lower than the one before
    phones.append(call_in(tmp_path, NUMBER, CALLER, (
        wait(1000), keys.press("4"), wait(1000), keys.press("2"), wait(1000), keys.press("#"))))
    call_id, events = await claimed(arrivals)
    await arrivals.backend.execute(call_id, GatherDigits("g1", None, max_digits=4, finish_on_key="#",
                                                         timeout=10, inter_digit_timeout=5))
    await events.next(DigitsGathered)
    # The controller goes away before it recorded the gather's end; a new
    # one follows the call again from its last known state.
    await arrivals.backend.close()
    restarted = AsteriskBackend(lab_config.asterisk)
    await restarted.connect()
    try:
        again = Events()
        [answered_now, found] = await restarted.reattach(call_id, "gathering", again.sink)
        # The caller is answered (the core keeps the answer it already had),
        # and waits between steps: the gather ended.
        assert isinstance(answered_now, LegAnswered) and answered_now.leg is Leg.A
        assert isinstance(found, FoundBetweenSteps) and isinstance(found.last_end, DigitsGathered)
        assert (found.last_end.action_id, found.last_end.digits, found.last_end.ended_by) == (
            "g1", "42", "finish-key")
        await restarted.execute(call_id, HangupLegs((Leg.A,)))  # acts on the claimed channel
        assert (await again.next(LegEnded)).cause == 16
        assert await phones[0].finished() == ["answered", "bye"]
        # Gone while nobody listened: the dialplan kept how it ended, and
        # when the caller was answered.
        [answered, ended] = await restarted.reattach(call_id, "gathering", Events().sink)
        assert isinstance(ended, EndedWhileAway)
        assert (ended.a_answered, ended.a_cause) == (True, 16)
        assert isinstance(answered, LegAnswered) and answered.leg is Leg.A
        assert answered.at == answered_now.at < ended.at
        restarted.forget(call_id)
    finally:
        await restarted.close()


@pytest.mark.lab
async def test_a_step_set_up_but_never_started_is_found_so_and_runs_when_sent_again(
        arrivals: Arrivals, phones: list[Caller], lab_config: Config, tmp_path: Path) -> None:
    """The controller went away after it set a gather up on the caller's
    channel (its Setvars) and before the Redirect that starts it: a restarted
    one finds the caller waiting, unanswered, with no end of the gather, and
    the gather sent again runs."""
    keys = Keypad(tmp_path)
    phones.append(call_in(tmp_path, NUMBER, CALLER, (
        wait(1000), keys.press("4"), wait(500), keys.press("2"))))
    incoming = await arrivals.next()
    call_id = str(uuid.uuid4())
    await arrivals.backend.claim(incoming, call_id, Events().sink)
    gather = GatherDigits("g1", None, max_digits=2, finish_on_key="", timeout=10,
                          inter_digit_timeout=5)
    *setup, start = encode(call_id, gather, lab_config.asterisk, a_channel=incoming.channel)
    assert start["Action"] == "Redirect"
    await send_as_the_controller(lab_config, setup)
    await arrivals.backend.close()
    restarted = AsteriskBackend(lab_config.asterisk)
    await restarted.connect()
    try:
        again = Events()
        [found] = await restarted.reattach(call_id, "gathering", again.sink)
        assert found == FoundBetweenSteps(found.at, None)
        await restarted.execute(call_id, gather)
        gathered = await again.next(DigitsGathered)
        assert (gathered.action_id, gathered.digits, gathered.ended_by) == ("g1", "42", "max-digits")
        await restarted.execute(call_id, HangupLegs((Leg.A,)))
        assert await phones[0].finished() == ["answered", "bye"]
        restarted.forget(call_id)
    finally:
        await restarted.close()


async def send_as_the_controller(config: Config, actions: list[dict[str, str]]) -> None:
    """Send AMI actions on a connection of the controller's account of their own."""
    manager = Manager(loop=asyncio.get_running_loop(), host=config.asterisk.host,
                      port=config.asterisk.port, username=config.asterisk.username,
                      secret=config.asterisk.secret, ping_delay=10)
    await asyncio.wait_for(manager.connect(), 10)
    try:
        for action in actions:
            response = await asyncio.wait_for(manager.send_action(action), 10)
            assert response.success, f"Asterisk refused {action}: {response}"
    finally:
        manager.close()


@pytest.mark.lab
async def test_a_claimed_call_is_connected_to_an_agent_who_hears_the_whisper_first(
        arrivals: Arrivals, phones: list[Caller], lab_config: Config, tmp_path: Path) -> None:
    whisper = tone(lab_config, "agent-whisper", 1, 784)
    phones.append(call_in(tmp_path, NUMBER, CALLER))
    async with Capture() as capture:
        call_id, events = await claimed(arrivals)
        # The caller rings on until the agent (lab-answer-b) accepted; the
        # switch ends the bridge after 3 s.
        await arrivals.backend.execute(call_id, DialLegB(
            ("+27115550202",), ring_timeout=10, time_limit=3, caller_id=CALLER,
            answer_audio=whisper))
        await events.next(AnswerAccepted)
        assert [e.leg for e in events.seen if isinstance(e, LegAnswered)] == [Leg.B]
        await events.next(LegAnswered, leg=Leg.A)  # by the bridge
        await events.next(LegEnded, leg=Leg.A)
        if Leg.B not in [e.leg for e in events.seen if isinstance(e, LegEnded)]:
            await events.next(LegEnded, leg=Leg.B)
        assert await phones[0].finished() == ["answered", "bye"]
    invites = [p.payload.decode() for p in capture.packets()
               if p.dport == AGENT_SIP_PORT and p.payload.startswith(b"INVITE ")]
    assert invites, "the agent was never invited"
    [from_header] = [line for line in invites[0].splitlines() if line.startswith("From:")]
    assert f"sip:{CALLER}@" in from_header, "the agent is shown the caller's number"


@pytest.mark.lab
async def test_a_gather_retry_stored_but_never_sent_is_asked_after_a_restart(
        lab_config: Config, caller_phone: CallIn, tmp_path: Path) -> None:
    await a_retry_stored_but_never_sent_is_asked_after_a_restart(
        lambda: AsteriskBackend(lab_config.asterisk), caller_phone, tmp_path)
