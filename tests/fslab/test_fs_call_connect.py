"""The call connect on the lab's real FreeSWITCH, checked by its outcomes on
the wire (tcpdump on loopback): A hears the whisper for its length, B's INVITE
comes after it, the recording has sound for the length of the talk."""

from __future__ import annotations

import asyncio
import audioop
import wave
from pathlib import Path

import pytest

from controller.app import Controller
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.calls.request import CallRequest
from controller.cli import ConsoleListener
from controller.config import Config
from controller.errors import SwitchUnavailable
from tests.conftest import StartReceiver
from tests.lab.test_call_connect import SOUND_RMS, Capture, rtp_rms

WHISPER = "Connecting you to John Smith from the website form"
LEG_A_SIP_PORT, LEG_A_MEDIA_PORT = 5171, 17010  # answer-a (sip-lab/lab-freeswitch.sh)
LEG_B_SIP_PORT, LEG_B_MEDIA_PORT = 5172, 17020  # answer-b
BUSY_SIP_PORT = 5174


@pytest.mark.fslab
async def test_whisper_is_heard_for_its_length_before_leg_b_is_invited(
        fs_controller: Controller, webhook_receiver: StartReceiver) -> None:
    hooks = await webhook_receiver()
    async with Capture() as capture:
        call = await fs_controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b="+27115550202", whisper=WHISPER, time_limit=5,
            webhook_url=hooks.url))
        result = await asyncio.wait_for(call.wait(), 60)
    packets = capture.packets()
    assert result["status"] == "completed", result["reason"]
    assert result["hangup_by"] == "time_limit"

    invites_to_b = [p for p in packets if p.dport == LEG_B_SIP_PORT and p.payload.startswith(b"INVITE ")]
    assert invites_to_b, "leg B was never invited"
    b_invited = invites_to_b[0].at
    a_answers = [p.at for p in packets if p.sport == LEG_A_SIP_PORT
                 and p.payload.startswith(b"SIP/2.0 200") and b" INVITE\r\n" in p.payload]
    assert a_answers, "leg A never answered"
    a_answered = a_answers[0]

    sound = [p for p in packets if p.dport == LEG_A_MEDIA_PORT and p.at < b_invited
             and rtp_rms(p.payload) > SOUND_RMS]
    assert sound, "leg A heard nothing before leg B was invited"
    heard = sound[-1].at - sound[0].at
    whisper_seconds = result["whisper"]["seconds"]
    assert heard >= whisper_seconds - 0.6, f"whisper heard {heard:.2f} s of {whisper_seconds:.2f} s"
    # Not slowed down either (a packet time changed mid-whisper plays it 1.5 times slower).
    assert heard <= whisper_seconds + 0.2, f"whisper heard {heard:.2f} s of {whisper_seconds:.2f} s"
    assert sound[0].at > a_answered, "whisper audio before leg A answered"
    assert b_invited - a_answered >= whisper_seconds - 0.1, "leg B invited before the whisper ended"
    assert b_invited - sound[-1].at < 1.0, "leg B should be dialed right after the whisper"
    assert not [p for p in packets if p.dport == LEG_B_MEDIA_PORT and p.at < b_invited]

    # Both legs got a BYE from the switch at the time limit.
    byes = {p.dport for p in packets if p.payload.startswith(b"BYE ")}
    assert {LEG_A_SIP_PORT, LEG_B_SIP_PORT} <= byes

    recording = Path(result["recording"]["path"])
    with wave.open(str(recording)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth()) == (1, 2)
        seconds = audio.getnframes() / audio.getframerate()
        level = audioop.rms(audio.readframes(audio.getnframes()), 2)
    assert abs(seconds - result["talk_seconds"]) < 0.7, (seconds, result["talk_seconds"])
    assert level > 1000, f"recording is near silence (RMS {level})"

    await asyncio.wait_for(hooks.arrived.wait(), 5)
    [body] = hooks.bodies
    data = body["data"]
    assert data["call_uuid"] == result["call_uuid"] and data["status"] == "completed"
    assert data["leg_a"]["hangup_cause"] == data["leg_b"]["hangup_cause"] == 16
    assert data["created_at"] < data["leg_a_answered_at"] < data["leg_b_answered_at"] < data["ended_at"]


@pytest.mark.fslab
async def test_leg_a_hears_why_when_leg_b_is_busy(fs_controller: Controller) -> None:
    async with Capture() as capture:
        call = await fs_controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b="+27115550401", whisper="Connecting you"))
        result = await asyncio.wait_for(call.wait(), 60)
    packets = capture.packets()
    assert (result["status"], result["leg_b_status"]) == ("busy", "busy")
    busy = [p.at for p in packets if p.sport == BUSY_SIP_PORT and p.payload.startswith(b"SIP/2.0 486")]
    assert busy, "leg B never answered busy"
    sound = [p for p in packets if p.dport == LEG_A_MEDIA_PORT and p.at > busy[0]
             and rtp_rms(p.payload) > SOUND_RMS]
    message = await fs_controller.renderer.render(fs_controller.config.whisper.b_unreached_message)
    heard = sound[-1].at - sound[0].at if sound else 0.0
    assert heard >= message.seconds - 0.6, f"message heard {heard:.2f} s of {message.seconds:.2f} s"
    byes_to_a = [p.at for p in packets if p.dport == LEG_A_SIP_PORT and p.payload.startswith(b"BYE ")]
    assert byes_to_a and byes_to_a[0] >= sound[-1].at, "leg A hung up before the message ended"


@pytest.mark.fslab
async def test_hangup_request_cancels_a_ringing_call(fs_controller: Controller) -> None:
    call = await fs_controller.calls.start(CallRequest(leg_a="+27115550301", leg_b="+27115550202"))
    await asyncio.sleep(1.0)
    await fs_controller.calls.hangup(call.call_id, "test")
    result = await asyncio.wait_for(call.wait(), 15)
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "api"
    assert result["leg_a_status"] == "canceled" and result["leg_b_status"] == "not-dialed"


@pytest.mark.fslab
async def test_a_wrong_event_socket_password_is_refused_with_the_reason(fs_config: Config) -> None:
    backend = FreeswitchBackend(fs_config.freeswitch.model_copy(update={"password": "wrong"}))
    with pytest.raises(SwitchUnavailable, match="refused the password"):
        await backend.connect()
    await backend.close()


@pytest.mark.fslab
async def test_an_unknown_gateway_fails_leg_a_with_the_switchs_reason(fs_config: Config) -> None:
    config = fs_config.model_copy(update={"freeswitch": fs_config.freeswitch.model_copy(
        update={"gateway": "no-such-gateway"})})
    async with Controller(config, ConsoleListener(config, progress=False)) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+442079460018", leg_b="+27115550202"))
        result = await asyncio.wait_for(call.wait(), 30)
    assert result["status"] == "failed"
    assert result["leg_a_status"] == "failed" and result["leg_b_status"] == "not-dialed"
    assert "INVALID_GATEWAY" in result["reason"]


@pytest.mark.fslab
async def test_an_unknown_endpoint_fails_the_attempt_at_once(fs_controller: Controller) -> None:
    call = await fs_controller.calls.start(CallRequest(
        leg_a="+27115550101", leg_b="endpoint:nobody", record=False))
    result = await asyncio.wait_for(call.wait(), 60)
    assert result["leg_b_status"] == "failed"
    assert result["attempts"][0]["dial_outcome"] == "failed"
