"""The daemon with the FreeSWITCH backend, as a workflow uses it: a real
process driving the lab's real FreeSWITCH, over HTTP, with real signed
webhooks to receivers on loopback; killed mid-call and restarted (reattach)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook

from tests.conftest import StartReceiver
from tests.lab.conftest import SIGNING_SECRET, DaemonProcess, api, wait_for_state
from tests.lab.test_daemon import deliveries, place_then_kill

from .esl import channel_rows


@pytest.mark.fslab
async def test_daemon_places_a_call_and_signs_every_status_webhook(
        daemon: DaemonProcess, webhook_receiver: StartReceiver) -> None:
    statuses = await webhook_receiver()
    async with api(daemon) as client:
        response = await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "011 555 0202", "time_limit": 3,
            "whisper": "Connecting you to John Smith from the website form",
            "webhook_url": statuses.url, "metadata": {"crm_id": 42},
            "webhook_events": ["initiated", "ringing", "answered", "bridged", "completed"]})
        assert response.status_code == 202, response.text
        call_id = response.json()["call_uuid"]
        ended = await wait_for_state(client, call_id, "ended")
        await deliveries(statuses, 7)
        recording = await client.get(f"/v1/calls/{call_id}/recording")
    result = ended["result"]
    assert ended["status"] == "completed", result["reason"]
    assert result["hangup_by"] == "time_limit"
    assert result["leg_a"]["hangup_cause"] == result["leg_b"]["hangup_cause"] == 16
    assert result["whisper"]["played"] is True
    assert result["talk_seconds"] == pytest.approx(3, abs=1)
    types = [(b["type"], b["data"].get("leg")) for b in statuses.bodies]
    assert types == [("call.initiated", "a"), ("call.ringing", "a"), ("call.answered", "a"),
                     ("call.ringing", "b"), ("call.answered", "b"), ("call.bridged", "b"),
                     ("call.completed", None)]
    for raw, headers in zip(statuses.raw_bodies, statuses.headers, strict=True):
        assert Webhook(SIGNING_SECRET).verify(raw, headers)
    completed = statuses.bodies[-1]["data"]
    assert completed["call_uuid"] == call_id and completed["metadata"] == {"crm_id": 42}
    assert recording.status_code == 200 and recording.content[:4] == b"RIFF"
    assert len(recording.content) > 16000, "the recording holds less than a second"


@pytest.mark.fslab
async def test_daemon_hangup_cancels_a_ringing_call(daemon: DaemonProcess) -> None:
    async with api(daemon) as client:
        call_id = (await client.post("/v1/calls", json={
            "leg_a": "+27115550301", "leg_b": "+27115550202"})).json()["call_uuid"]
        await wait_for_state(client, call_id, "ringing-a")
        assert (await client.post(f"/v1/calls/{call_id}/hangup")).status_code == 202
        ended = await wait_for_state(client, call_id, "ended")
    assert ended["status"] == "canceled" and ended["result"]["hangup_by"] == "api"


@pytest.mark.fslab
async def test_sigkill_mid_call_then_restart_reattaches_and_follows_the_call(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    call_id = await place_then_kill(start_daemon, {
        "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 8,
        "webhook_url": receiver.url}, "bridged")
    # The call goes on on the switch while no controller follows it.
    rows = await channel_rows()
    assert len([r for r in rows if r.get("uuid", "").startswith(call_id.replace("-", ""))]) == 2
    second = start_daemon()
    await second.ready()
    async with api(second) as client:
        ended = await wait_for_state(client, call_id, "ended")
    assert ended["status"] == "completed", ended["result"]["reason"]
    assert ended["result"]["hangup_by"] == "time_limit"
    assert ended["result"]["talk_seconds"] == pytest.approx(8, abs=1)
    await deliveries(receiver, 1)
    await asyncio.sleep(0.5)
    assert [b["type"] for b in receiver.bodies] == ["call.completed"]


@pytest.mark.fslab
async def test_a_call_that_ended_while_the_daemon_was_down_is_closed(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    call_id = await place_then_kill(start_daemon, {
        "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 2,
        "webhook_url": receiver.url}, "bridged")
    await asyncio.sleep(4)  # the switch's own time limit ends the call meanwhile
    assert await channel_rows() == []
    second = start_daemon()
    await second.ready()
    async with api(second) as client:
        ended = await wait_for_state(client, call_id, "ended")
    # FreeSWITCH keeps nothing of a channel once it is gone: a bridged call is
    # closed as completed, with no cause and the end when the daemon noticed.
    assert ended["status"] == "completed"
    reason = ended["result"]["reason"]
    assert "ended while the controller was away" in reason and "kept no outcome" in reason
    assert ended["result"]["hangup_by"] == "switch"
    await deliveries(receiver, 1)
    assert receiver.bodies[0]["data"]["call_uuid"] == call_id


@pytest.mark.fslab
async def test_restart_while_leg_b_rings_picks_the_dial_up_again(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    """Reattach mid-dial: the new daemon finds the ringing Leg B channel by its
    id (show channels), and the dial's end still moves the call on."""
    call_id = await place_then_kill(start_daemon, {
        "leg_a": "+27115550101", "leg_b": "+27115550301", "ring_timeout": 6,
        "record": False}, "ringing-b")
    second = start_daemon()
    await second.ready()
    async with api(second) as client:
        ended = await wait_for_state(client, call_id, "ended")
    result = ended["result"]
    assert ended["status"] == "no-answer", result["reason"]
    assert result["leg_a"]["status"] == "completed" and result["leg_b"]["status"] == "no-answer"
    assert [step["data"]["to"] for step in ended["timeline"]
            if step["kind"] == "transition"][-4:] == ["routing", "announcing", "ending", "ended"]


@pytest.mark.fslab
async def test_restart_during_the_whisper_dials_leg_b_after_it(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    """Reattach mid-whisper: the new daemon sees A still playing it (uuid_dump)
    and dials B when it ends."""
    call_id = await place_then_kill(start_daemon, {
        "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 2, "record": False,
        "whisper": "Connecting you to John Smith from the website form, who asked for a call"},
        "whispering")
    second = start_daemon()
    await second.ready()
    async with api(second) as client:
        ended = await wait_for_state(client, call_id, "ended")
    result = ended["result"]
    assert ended["status"] == "completed", result["reason"]
    assert result["hangup_by"] == "time_limit" and result["whisper"]["played"] is True
    assert [step["data"]["to"] for step in ended["timeline"] if step["kind"] == "transition"] == [
        "dialing-a", "ringing-a", "whispering", "dialing-b", "ringing-b", "bridged", "ending",
        "ended"]
