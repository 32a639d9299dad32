"""Actions on live calls through the real daemon on a real lab switch: a
single-leg call the API places, actions sent over the API to a call that
waits, and a daemon killed while a caller is keying in digits. Checked by
the webhooks that arrived (signed), what the phones heard and got, and the
call's result.

The tests run on both switches: tests/lab/test_live_actions.py (Asterisk)
and tests/fslab/test_fs_live_actions.py (FreeSWITCH) subclass them, and each
lab's conftest.py gives the daemon and the switch."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from standardwebhooks import Webhook

from tests.conftest import StartReceiver
from tests.lab.callers import CALLER_SIP_PORT, Keypad, wait
from tests.lab.capture import Capture
from tests.lab.conftest import (
    SIGNING_SECRET,
    DaemonProcess,
    api,
    calls_to,
    ended,
    put_number,
    wait_for_state,
    webhooks,
)
from tests.lab.live_fixtures import CallIn
from tests.lab.live_parts import (
    CALLER,
    NUMBER,
    Agent,
    StartActionsUrl,
    entered,
    sip_to,
    sound_to,
    sound_to_caller,
)

NO_ANSWER = "+27115550301"  # the lab phone that rings and never answers, on either switch


class LiveActionTests:
    """Actions on live calls end to end; a subclass per switch runs them."""

    async def test_a_single_leg_appointment_call_gathers_1_and_notifies(
            self, daemon: DaemonProcess, agents: Callable[[str], Agent],
            webhook_receiver: StartReceiver) -> None:
        patient = agents("answer-press-1.xml")  # presses 1 some 2.5 s after answering
        receiver = await webhook_receiver()
        async with api(daemon) as client:
            placed = await client.post("/v1/calls", json={
                "leg_a": patient.uri,
                "actions": [
                    {"type": "gather", "prompt": "Press 1 to confirm your appointment.",
                     "max_digits": 1, "timeout": 15},
                    {"type": "play", "text": "Thank you. See you at nine."},
                    {"type": "hangup", "reason": "appointment confirmed"}],
                "webhook_url": receiver.url,
                "webhook_events": ["answered", "gathered", "completed"]})
            assert placed.status_code == 202, placed.text
            call_id = placed.json()["call_uuid"]
            call = await wait_for_state(client, call_id, "ended")
        bodies = await webhooks(receiver, "call.completed")
        assert [b["type"] for b in bodies] == ["call.answered", "call.gathered", "call.completed"]
        for raw, headers in zip(receiver.raw_bodies, receiver.headers, strict=True):
            Webhook(SIGNING_SECRET).verify(raw, headers)
        answered, gathered, completed = (b["data"] for b in bodies)
        assert answered["call_uuid"] == gathered["call_uuid"] == completed["call_uuid"] == call_id
        assert (gathered["digits"], gathered["valid"]) == ("1", True)
        assert completed["digits"] == "1" and completed["status"] == "completed"
        assert (completed["direction"], completed["to"]) == ("outbound", patient.uri)
        assert completed["reason"] == "appointment confirmed"
        assert [(a["type"], a["status"]) for a in completed["actions"]] == [
            ("gather", "completed"), ("play", "completed"), ("hangup", "completed")]
        assert call["result"] == completed
        assert patient.finished() == 0  # its scenario ran to the end: the switch's BYE

    async def test_a_connect_nobody_answers_leaves_no_hold_music_behind(
            self, daemon: DaemonProcess, agents: Callable[[str], Agent]) -> None:
        patient = agents("answer.xml")
        async with Capture() as capture, api(daemon) as client:
            placed = await client.post("/v1/calls", json={"leg_a": patient.uri, "actions": [
                {"type": "connect", "to": NO_ANSWER, "ring_timeout": 3, "while_ringing": "music",
                 "record": False},
                {"type": "pause", "seconds": 4},
                {"type": "hangup", "reason": "nobody answered"}]})
            assert placed.status_code == 202, placed.text
            call = await wait_for_state(client, placed.json()["call_uuid"], "ended")
        result = call["result"]
        assert [(a["type"], a["status"]) for a in result["actions"]] == [
            ("connect", "completed"), ("pause", "completed"), ("hangup", "completed")]
        assert result["actions"][0]["outcome"] != "bridged"
        packets = capture.packets()
        # Music while B rang (the capture hears the patient's side); then the
        # no-answer message ("playing"), and the pause after it is silence:
        # the music stopped with the connect.
        music = sound_to(packets, patient.media_port, after=entered(result, "ringing-b"),
                         before=entered(result, "playing"))
        assert music >= 25, f"the patient heard {music} packets of music while the connect rang"
        pause = entered(result, "pausing")
        after = sound_to(packets, patient.media_port, after=pause + 0.5)
        assert after == 0, f"the patient heard {after} packets of sound in the pause"
        assert patient.finished() == 0

    async def test_actions_sent_to_a_waiting_call_play_then_hang_up(
            self, daemon: DaemonProcess, caller_phone: CallIn,
            actions_url: StartActionsUrl) -> None:
        waiting = await actions_url((204, "", 0.0))  # the call waits for actions over the API
        await put_number(daemon, {"incoming_url": waiting.url})
        async with Capture() as capture, api(daemon) as client:
            phone = caller_phone(NUMBER, CALLER)
            call_id = (await waiting.first_body())["data"]["call_uuid"]
            await wait_for_state(client, call_id, "idle")
            sent = await client.post(f"/v1/calls/{call_id}/actions", json={"actions": [
                {"type": "play", "text": "Your appointment is at nine tomorrow morning."},
                {"type": "hangup", "reason": "told the time"}]})
            assert sent.status_code == 202, sent.text
            ids = [a["id"] for a in sent.json()["actions"]]
            call = await wait_for_state(client, call_id, "ended")
            assert await phone.finished() == ["answered", "bye"]
            late = await client.post(f"/v1/calls/{call_id}/actions",
                                     json={"actions": [{"type": "hangup"}]})
            assert late.status_code == 409 and late.json()["error_id"] == "call-ended"
        result = call["result"]
        assert [(a["id"], a["type"], a["status"], a["outcome"]) for a in result["actions"]] == [
            (ids[0], "play", "completed", "played"), (ids[1], "hangup", "completed", "hung-up")]
        assert call["status"] == "completed" and result["reason"] == "told the time"
        packets = capture.packets()
        [bye] = [p for p in packets if p.dport == CALLER_SIP_PORT and p.payload.startswith(b"BYE ")]
        heard = sound_to_caller(packets, before=bye.at)
        assert heard >= 50, f"the caller heard {heard} packets of the play before the BYE"
        assert sound_to_caller(packets, after=bye.at) == 0
        assert len(sip_to(packets, CALLER_SIP_PORT, "BYE")) == 1

    async def test_a_daemon_killed_during_a_gather_picks_the_call_up_again(
            self, start_daemon: Callable[..., DaemonProcess], caller_phone: CallIn,
            webhook_receiver: StartReceiver, tmp_path: Path) -> None:
        receiver = await webhook_receiver()
        first = start_daemon()
        await first.ready()
        await put_number(first, {
            "actions": [{"type": "gather", "prompt": "Enter your three digit code.", "max_digits": 3,
                         "timeout": 30, "inter_digit_timeout": 5},
                        {"type": "hangup", "reason": "code taken"}],
            "webhook_url": receiver.url, "webhook_events": ["completed"]})
        keys = Keypad(tmp_path)
        # The keys come once the restarted daemon follows the call again.
        phone = caller_phone(NUMBER, CALLER, (
            wait(12000), keys.press("1"), wait(500), keys.press("2"), wait(500), keys.press("3")))
        [call_id] = await calls_to(first, NUMBER)
        async with api(first) as client:
            await wait_for_state(client, call_id, "gathering")
        # Killed once the gather is the call's running step: the switch may not
        # have taken it up yet (its Redirect unsent), and the restarted daemon
        # then finds the caller waiting between steps and sends it again.
        first.signal(signal.SIGKILL)
        first.wait(10)
        second = start_daemon()
        await second.ready()
        call = await ended(second, call_id)
        assert await phone.finished() == ["answered", "bye"]
        result = call["result"]
        assert call["status"] == "completed", result["reason"]
        assert result["digits"] == "123" and result["reason"] == "code taken"
        assert [(a["type"], a["status"]) for a in result["actions"]] == [
            ("gather", "completed"), ("hangup", "completed")]
        await webhooks(receiver, "call.completed")
        await asyncio.sleep(2)  # a second completion would come now
        assert [b["type"] for b in receiver.bodies] == ["call.completed"]
        assert receiver.bodies[0]["data"] == result
