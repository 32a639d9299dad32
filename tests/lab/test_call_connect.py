"""The happy path on the real lab, checked by its outcomes: what went over the
wire (tcpdump on loopback), what was recorded, what a webhook receiver got."""

from __future__ import annotations

import asyncio
import audioop
import wave
from pathlib import Path

import pytest

from controller.app import Controller
from controller.calls.request import CallRequest
from controller.cli import ConsoleListener
from controller.config import Config
from tests.conftest import StartReceiver
from tests.lab.capture import SOUND_RMS, Capture, rtp_rms

WHISPER = "Connecting you to John Smith from the website form"
LEG_A_SIP_PORT, LEG_A_MEDIA_PORT = 5071, 16010  # lab-answer-a (sip-lab/lab)
LEG_B_SIP_PORT, LEG_B_MEDIA_PORT = 5072, 16020  # lab-answer-b


@pytest.mark.lab
async def test_whisper_is_heard_for_its_length_before_leg_b_is_invited(
        controller: Controller, webhook_receiver: StartReceiver) -> None:
    hooks = await webhook_receiver()
    async with Capture() as capture:
        call = await controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b="+27115550202", whisper=WHISPER, time_limit=5,
            webhook_url=hooks.url, metadata={"lead": "website-form"}))
        result = await asyncio.wait_for(call.wait(), 60)
    packets = capture.packets()
    assert result["status"] == "completed", result["reason"]

    invites_to_b = [p for p in packets if p.dport == LEG_B_SIP_PORT and p.payload.startswith(b"INVITE ")]
    assert invites_to_b, "leg B was never invited"
    b_invited = invites_to_b[0].at
    a_answers = [p.at for p in packets if p.sport == LEG_A_SIP_PORT
                 and p.payload.startswith(b"SIP/2.0 200") and b" INVITE\r\n" in p.payload]
    assert a_answers, "leg A never answered"
    a_answered = a_answers[0]

    to_a_before_b = [p for p in packets if p.dport == LEG_A_MEDIA_PORT and p.at < b_invited]
    sound = [p for p in to_a_before_b if rtp_rms(p.payload) > SOUND_RMS]
    assert sound, "leg A heard nothing before leg B was invited"
    heard = sound[-1].at - sound[0].at
    whisper_seconds = result["whisper"]["seconds"]
    # espeak pads the speech with a little silence at both ends.
    assert heard >= whisper_seconds - 0.6, f"whisper heard {heard:.2f} s of {whisper_seconds:.2f} s"
    assert sound[0].at > a_answered, "whisper audio before leg A answered"
    assert b_invited - a_answered >= whisper_seconds - 0.1, "leg B invited before the whisper ended"
    assert b_invited - sound[-1].at < 1.0, "leg B should be dialed right after the whisper"

    print(f"whisper {whisper_seconds:.2f} s; heard by A {heard:.2f} s; B invited "
          f"{b_invited - a_answered:.3f} s after A answered, "
          f"{(b_invited - sound[-1].at) * 1000:.0f} ms after the last whisper frame")

    # Leg B never hears the whisper: nothing reaches B's phone before its INVITE.
    assert not [p for p in packets if p.dport == LEG_B_MEDIA_PORT and p.at < b_invited]

    # The recording covers the conversation and has speech in it.
    recording = Path(result["recording"]["path"])
    with wave.open(str(recording)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        seconds = audio.getnframes() / audio.getframerate()
        level = audioop.rms(audio.readframes(audio.getnframes()), 2)
    assert abs(seconds - result["talk_seconds"]) < 0.7, (seconds, result["talk_seconds"])
    assert level > 1000, f"recording is near silence (RMS {level})"

    # The webhook receiver got the result, once.
    await asyncio.wait_for(hooks.arrived.wait(), 5)
    [body] = hooks.bodies
    assert body["type"] == "call.completed"
    assert hooks.webhook_ids == [result["webhook"]["event_id"]]
    data = body["data"]
    assert data["call_uuid"] == result["call_uuid"]
    assert data["status"] == "completed" and data["hangup_by"] == "time_limit"
    assert data["leg_a"]["status"] == data["leg_b"]["status"] == "completed"
    assert data["leg_a"]["hangup_cause"] == 16
    assert data["recording"]["path"] == str(recording)
    assert data["talk_seconds"] == pytest.approx(5.0, abs=0.5)
    assert data["created_at"] < data["leg_a_answered_at"] < data["leg_b_answered_at"] < data["ended_at"]
    assert data["metadata"] == {"lead": "website-form"}


@pytest.mark.lab
async def test_recording_can_be_turned_off(controller: Controller) -> None:
    call = await controller.calls.start(CallRequest(
        leg_a="+27115550101", leg_b="+27115550202", time_limit=2, record=False))
    assert call.initial_response()["recorded"] is False
    result = await asyncio.wait_for(call.wait(), 30)
    assert result["status"] == "completed"
    assert result["recorded"] is False and result["recording"] is None
    assert not list(Path(controller.config.media.recording_dir).glob(f"{result['call_uuid']}*"))


@pytest.mark.lab
async def test_a_number_the_switch_cannot_route_fails_with_the_reason(lab_config: Config) -> None:
    config = lab_config.model_copy(update={"asterisk": lab_config.asterisk.model_copy(
        update={"trunk_endpoint": "no-such-endpoint"})})
    async with Controller(config, ConsoleListener(config, progress=False)) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+442079460018", leg_b="+27115550202"))
        result = await asyncio.wait_for(call.wait(), 30)
    assert result["status"] == "failed"
    assert result["leg_a_status"] == "failed" and result["leg_b_status"] == "not-dialed"
    assert "could not create the channel" in result["reason"]


@pytest.mark.lab
async def test_hangup_request_cancels_a_ringing_call(controller: Controller) -> None:
    call = await controller.calls.start(CallRequest(leg_a="+27115550301", leg_b="+27115550202"))
    await asyncio.sleep(1.0)
    await controller.calls.hangup(call.call_id, "test")
    result = await asyncio.wait_for(call.wait(), 15)
    assert result["status"] == "canceled"
    assert result["hangup_by"] == "api"
    assert result["leg_a_status"] == "canceled" and result["leg_b_status"] == "not-dialed"


@pytest.mark.lab
async def test_leg_a_hears_why_when_leg_b_is_busy(controller: Controller) -> None:
    async with Capture() as capture:
        call = await controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b="+27115550401", whisper="Connecting you"))
        result = await asyncio.wait_for(call.wait(), 60)
    packets = capture.packets()
    assert (result["status"], result["leg_b_status"]) == ("busy", "busy")
    busy = [p.at for p in packets if p.sport == 5074 and p.payload.startswith(b"SIP/2.0 486")]
    assert busy, "leg B never answered busy"
    after = [p for p in packets if p.dport == LEG_A_MEDIA_PORT and p.at > busy[0]]
    sound = [p for p in after if rtp_rms(p.payload) > SOUND_RMS]
    message = await controller.renderer.render(controller.config.whisper.b_unreached_message)
    heard = sound[-1].at - sound[0].at if sound else 0.0
    assert heard >= message.seconds - 0.6, f"message heard {heard:.2f} s of {message.seconds:.2f} s"
    byes_to_a = [p.at for p in packets if p.dport == LEG_A_SIP_PORT and p.payload.startswith(b"BYE ")]
    assert byes_to_a and byes_to_a[0] >= sound[-1].at, "leg A hung up before the message ended"
