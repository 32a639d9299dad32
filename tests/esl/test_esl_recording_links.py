"""The signed recording link of the completion webhook, end to end: a real
daemon (backend = "freeswitch", against the Event Socket peer, which writes
the recording as FreeSWITCH does) reports to a real webhook receiver on
loopback, and the link in that webhook fetches the recording with no token.
Altered and expired links are refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from controller.recording_links import RecordingLinks
from tests.conftest import StartReceiver, WebhookReceiver
from tests.lab.conftest import SIGNING_SECRET, DaemonProcess, api

from .peer import EslPeer
from .test_esl_daemon import freeswitch_env

LINK_HOURS = 2


def with_query(link: str, **changes: str) -> str:
    url = urlsplit(link)
    query = {**dict(parse_qsl(url.query)), **changes}
    return urlunsplit(url._replace(query=urlencode(query)))


async def completed(receiver: WebhookReceiver) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while not receiver.bodies:
            receiver.arrived.clear()
            await receiver.arrived.wait()
    [body] = receiver.bodies
    Webhook(SIGNING_SECRET).verify(receiver.raw_bodies[0], receiver.headers[0])
    assert body["type"] == "call.completed", body
    return dict(body["data"])


async def test_the_completion_webhooks_link_fetches_the_recording_without_a_token(
        peer: EslPeer, tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    daemon = DaemonProcess(tmp_path / "store.sqlite3", tmp_path / "daemon.log", freeswitch_env(
        peer, tmp_path, CALLCONNECT_API_RECORDING_LINK_HOURS=str(LINK_HOURS)))
    daemon.start()
    try:
        await daemon.ready()
        async with api(daemon) as client:
            placed = await client.post("/v1/calls", json={
                "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1,
                "webhook_url": receiver.url, "webhook_events": ["completed"]})
            assert placed.status_code == 202, placed.text
            call_id = placed.json()["call_uuid"]
            result = await completed(receiver)
            # The token route gives the same file: the link serves what the API serves.
            with_token = await client.get(f"/v1/calls/{call_id}/recording")
        async with api(daemon, token=None) as anyone:
            recording = result["recording"]
            assert result["status"] == "completed", result["reason"]
            # No public_url is set: links start at the API's bind address.
            assert recording["url"] == f"{daemon.url}/v1/calls/{call_id}/recording"
            assert recording["signed_url"].startswith(f"{daemon.url}/v1/recordings/{call_id}?")
            expires = recording["signed_url_expires_at"]
            assert abs(expires - (result["ended_at"] + LINK_HOURS * 3600)) < 60, (expires, result)

            fetched = await anyone.get(recording["signed_url"])
            assert fetched.status_code == 200, fetched.text
            assert fetched.headers["content-type"] == "audio/wav"
            assert fetched.content == Path(recording["path"]).read_bytes() == with_token.content
            assert fetched.content[:4] == b"RIFF" and len(fetched.content) > 8000
            part = await anyone.get(recording["signed_url"], headers={"Range": "bytes=0-99"})
            assert (part.status_code, part.content) == (206, fetched.content[:100])

            token_route = await anyone.get(recording["url"])
            assert token_route.status_code == 401, token_route.text

            signature = dict(parse_qsl(urlsplit(recording["signed_url"]).query))["signature"]
            other_id = call_id[:-1] + ("0" if call_id[-1] != "0" else "1")
            tampered = [
                recording["signed_url"].replace(call_id, other_id),
                with_query(recording["signed_url"], expires=str(expires + 86400)),
                with_query(recording["signed_url"], signature=signature[::-1]),
            ]
            for link in tampered:
                refused = await anyone.get(link)
                assert refused.status_code == 403, (link, refused.text)
                assert refused.json()["error_id"] == "recording-link-invalid", refused.text

            # A link signed with this daemon's key whose time is up.
            stale, _ = RecordingLinks.for_daemon(SIGNING_SECRET, daemon.url, -60).link(
                call_id, time.time())
            gone = await anyone.get(stale)
            assert gone.status_code == 410, gone.text
            assert gone.json()["error_id"] == "recording-link-expired"
            assert f"/v1/calls/{call_id}/recording" in gone.json()["message"]

            missing = await anyone.get(recording["signed_url"].split("?")[0])
            assert missing.status_code == 400, missing.text  # no expiry, no signature
    finally:
        daemon.stop()
    log = daemon.log.read_text()
    assert signature not in log and SIGNING_SECRET not in log


async def test_a_link_to_a_recording_no_longer_on_disk_is_404(
        peer: EslPeer, tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
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
        recording = (await completed(receiver))["recording"]
        Path(recording["path"]).unlink()
        async with httpx.AsyncClient(timeout=10) as anyone:
            gone = await anyone.get(recording["signed_url"])
    finally:
        daemon.stop()
    assert gone.status_code == 404, gone.text
    assert gone.json()["error_id"] == "recording-not-found"
