"""The daemon with backend = "freeswitch": a real process, driven over HTTP,
against the Event Socket peer, reporting to a real webhook receiver."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from standardwebhooks import Webhook

from tests.conftest import StartReceiver
from tests.lab.conftest import SIGNING_SECRET, DaemonProcess, api
from tests.openapi_document import OpenApiDocument

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
                "webhook_events": ["initiated", "ringing", "answered", "bridged", "completed"]})
            assert placed.status_code == 202, placed.text
            async with asyncio.timeout(30):
                while "call.completed" not in [body["type"] for body in receiver.bodies]:
                    receiver.arrived.clear()
                    await receiver.arrived.wait()
            call = await client.get(f"/v1/calls/{placed.json()['call_uuid']}")
    finally:
        daemon.stop()
    types = [body["type"] for body in receiver.bodies]
    assert sorted(types) == ["call.answered", "call.answered", "call.bridged", "call.completed",
                             "call.initiated", "call.ringing", "call.ringing", "call.ringing"]
    assert types[-1] == "call.completed"  # the others come seconds before it, in any order
    result = receiver.bodies[-1]["data"]
    assert result["status"] == "completed", result["reason"]
    assert [a["outcome"] for a in result["attempts"]] == ["no-answer", "answered"]
    assert result["answered_by"] == "+27115550202"
    document = OpenApiDocument()  # every body and answer as the API document specifies it
    for raw, headers, body in zip(receiver.raw_bodies, receiver.headers, receiver.bodies,
                                  strict=True):
        Webhook(SIGNING_SECRET).verify(raw, headers)
        document.webhook(body)
    document.check("get", "/v1/calls/{call_id}", call)
    assert call.json()["result"] == result


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



async def test_a_url_a_410_disabled_is_re_enabled_and_its_delivery_sent_again_with_its_id(
        peer: EslPeer, tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([410])  # then 200
    daemon = DaemonProcess(tmp_path / "store.sqlite3", tmp_path / "daemon.log",
                           freeswitch_env(peer, tmp_path))
    daemon.start()
    try:
        await daemon.ready()
        async with api(daemon) as client:
            placed = await client.post("/v1/calls", json={
                "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1,
                "webhook_url": receiver.url, "webhook_events": ["completed"]})
            assert placed.status_code == 202, placed.text
            call_id = placed.json()["call_uuid"]
            async with asyncio.timeout(30):
                while True:  # the outcome is saved just after the receiver answered
                    listed = await client.get("/v1/webhooks/deliveries", params={"call_id": call_id})
                    assert listed.status_code == 200, listed.text
                    items = listed.json()["deliveries"]
                    if items and items[0]["state"] == "disabled":
                        break
                    await asyncio.sleep(0.1)
            [delivery] = items
            assert (delivery["event_type"], delivery["last_status_code"], delivery["attempts"]) == (
                "call.completed", 410, 1)
            assert delivery["url"] == receiver.url.split("?")[0]  # the token is not shown
            assert delivery["event_id"] == receiver.webhook_ids[0]

            disabled = (await client.get("/v1/webhooks/disabled-urls")).json()
            assert [(u["url"], u["url_id"]) for u in disabled["urls"]] == [
                (delivery["url"], delivery["url_id"])]
            redeliver = f"/v1/webhooks/deliveries/{delivery['event_id']}/redeliver"
            refused = await client.post(redeliver)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error_id"] == "url-disabled"
            assert refused.json()["details"]["url_id"] == delivery["url_id"]

            enabled = await client.delete(f"/v1/webhooks/disabled-urls/{delivery['url_id']}")
            assert enabled.status_code == 200, enabled.text
            assert (enabled.json()["url"], enabled.json()["redelivered"]) == (delivery["url"], 0)
            again = await client.delete(f"/v1/webhooks/disabled-urls/{delivery['url_id']}")
            assert again.status_code == 404 and again.json()["error_id"] == "disabled-url-not-found"
            assert (await client.get("/v1/webhooks/disabled-urls")).json()["urls"] == []

            queued = await client.post(redeliver)
            assert queued.status_code == 202, queued.text
            assert (queued.json()["event_id"], queued.json()["state"]) == (delivery["event_id"], "pending")
            async with asyncio.timeout(30):
                while len(receiver.webhook_ids) < 2:
                    receiver.arrived.clear()
                    await receiver.arrived.wait()
                while True:
                    [sent] = (await client.get("/v1/webhooks/deliveries",
                                               params={"call_id": call_id})).json()["deliveries"]
                    if sent["state"] != "pending":
                        break
                    await asyncio.sleep(0.1)
    finally:
        daemon.stop()
    assert receiver.webhook_ids == [delivery["event_id"]] * 2  # the receiver can drop the repeat
    assert (sent["state"], sent["attempts"], sent["last_status_code"]) == ("delivered", 2, 200)
    Webhook(SIGNING_SECRET).verify(receiver.raw_bodies[1], receiver.headers[1])
