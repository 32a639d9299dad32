"""The daemon with backend = "freeswitch": a real process, driven over HTTP,
against the Event Socket peer, reporting to a real webhook receiver."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from standardwebhooks import Webhook

from tests.conftest import StartReceiver
from tests.lab.conftest import SIGNING_SECRET, DaemonProcess, api

from .conftest import PASSWORD
from .peer import EslPeer


def freeswitch_env(peer: EslPeer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CALLCONNECT_BACKEND": "freeswitch",
        "CALLCONNECT_FREESWITCH_PORT": str(peer.port),
        "CALLCONNECT_FREESWITCH_PASSWORD": PASSWORD,
        "CALLCONNECT_FREESWITCH_GATEWAY": "lab",
        "CALLCONNECT_MEDIA_WHISPER_DIR": str(tmp_path / "media"),
        "CALLCONNECT_MEDIA_WHISPER_SWITCH_DIR": "",
        "CALLCONNECT_MEDIA_RECORDING_DIR": str(tmp_path / "recordings"),
        "CALLCONNECT_MEDIA_RECORDING_SWITCH_DIR": "",
        **extra,
    }


async def test_a_routed_call_through_the_api_reports_to_its_webhook(
        peer: EslPeer, tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    daemon = DaemonProcess(tmp_path / "store.sqlite3", tmp_path / "daemon.log",
                           freeswitch_env(peer, tmp_path))
    daemon.start()
    try:
        await daemon.ready()
        async with api(daemon) as client:
            placed = await client.post("/v1/calls", json={
                "leg_a": "+27115550101", "leg_b": ["+27115550301", "+27115550202"],
                "strategy": "sequential", "ring_timeout": 2, "whisper": "Connecting you",
                "time_limit": 2, "webhook_url": receiver.url,
                "webhook_events": ["bridged", "completed"]})
            assert placed.status_code == 202, placed.text
        async with asyncio.timeout(30):
            while len(receiver.bodies) < 2:
                receiver.arrived.clear()
                await receiver.arrived.wait()
    finally:
        daemon.stop()
    assert [body["type"] for body in receiver.bodies] == ["call.bridged", "call.completed"]
    result = receiver.bodies[1]["data"]
    assert result["status"] == "completed", result["reason"]
    assert [a["outcome"] for a in result["attempts"]] == ["no-answer", "answered"]
    assert result["answered_by"] == "+27115550202"
    Webhook(SIGNING_SECRET).verify(receiver.raw_bodies[1], receiver.headers[1])


async def test_a_whisper_that_cannot_be_rendered_is_503_whisper_failed(
        peer: EslPeer, tmp_path: Path) -> None:
    # The whisper is rendered once the switch is known to be up, so this needs
    # a connected switch. A PATH with sox but without espeak-ng: the renderer
    # fails for real.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sox = shutil.which("sox")
    assert sox is not None, "sox is needed for this test (apt-get install sox)"
    (bin_dir / "sox").symlink_to(sox)
    daemon = DaemonProcess(tmp_path / "store.sqlite3", tmp_path / "daemon.log",
                           freeswitch_env(peer, tmp_path, PATH=str(bin_dir)))
    daemon.start()
    try:
        await daemon.ready()
        async with api(daemon) as client:
            response = await client.post("/v1/calls", json={
                "leg_a": "+27115550101", "leg_b": "+27115550202", "whisper": "Connecting you"})
    finally:
        daemon.stop()
    assert response.status_code == 503, response.text
    body = response.json()
    assert (body["error_id"], body["details"].get("field")) == ("whisper-failed", "whisper"), body
    assert "espeak-ng" in body["message"] and "without a whisper" in body["message"], body
    assert body["details"]["tool"] == "espeak-ng"
    commands = [command for conn in peer.connections for command in conn.commands]
    assert commands and not [c for c in commands if "originate" in c], commands  # nothing dialed

