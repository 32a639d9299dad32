"""On the real lab: a real call's completion webhook carries a signed link
that downloads the call's recording, with the conversation's sound in it,
without the API token."""

from __future__ import annotations

import asyncio
import audioop
import io
import wave

import pytest
from standardwebhooks import Webhook

from tests.conftest import StartReceiver
from tests.lab.conftest import SIGNING_SECRET, DaemonProcess, api

# The lab phones play speech-like audio: a recording below this RMS is silence.
SOUND_RMS = 1000


@pytest.mark.lab
async def test_the_completion_webhooks_link_downloads_the_recording_with_sound(
        daemon: DaemonProcess, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    async with api(daemon) as client:
        placed = await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 4,
            "whisper": "Connecting you", "webhook_url": receiver.url,
            "webhook_events": ["completed"]})
        assert placed.status_code == 202, placed.text
    await asyncio.wait_for(receiver.arrived.wait(), 60)
    [body] = receiver.bodies
    Webhook(SIGNING_SECRET).verify(receiver.raw_bodies[0], receiver.headers[0])
    result = body["data"]
    assert result["status"] == "completed", result["reason"]
    link = result["recording"]["signed_url"]
    assert link.startswith(f"{daemon.url}/v1/recordings/{result['call_uuid']}?"), link

    async with api(daemon, token=None) as anyone:
        fetched = await anyone.get(link)
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(fetched.content)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        seconds = audio.getnframes() / audio.getframerate()
        level = audioop.rms(audio.readframes(audio.getnframes()), 2)
    assert abs(seconds - result["talk_seconds"]) < 0.7, (seconds, result["talk_seconds"])
    assert level > SOUND_RMS, f"the linked recording is near silence (RMS {level})"
