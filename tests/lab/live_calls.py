"""Inbound calls through the real daemon on a real lab switch: a SIPp phone
calls sip:NUMBER@ the switch and presses keys (RFC 2833); the daemon takes
the call on a number set over its API and runs the number's actions, or the
actions its URLs answer. Checked by what the phones saw and heard (loopback
captures), what the URLs were asked, and the call's result.

The tests run on both switches: tests/lab/test_live_calls.py (Asterisk) and
tests/fslab/test_fs_live_calls.py (FreeSWITCH) subclass them, and each lab's
conftest.py gives the daemon and the switch (``lab_switch``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from tests.lab.callers import CALLER_SIP_PORT, Keypad, wait
from tests.lab.capture import Capture
from tests.lab.conftest import (
    SIGNING_SECRET,
    DaemonProcess,
    api,
    calls_to,
    ended,
    log_events,
    put_group,
    put_number,
)
from tests.lab.live_fixtures import CallIn
from tests.lab.live_parts import (
    CALLER,
    CUSTOMER,
    NUMBER,
    UNKNOWN_NUMBER,
    Agent,
    LabSwitch,
    StartActionsUrl,
    answer,
    entered,
    sip_to,
    sound_times,
    sound_to_caller,
)


class LiveCallTests:
    """Inbound calls end to end; a subclass per switch runs them."""

    async def test_a_call_to_a_group_number_whispers_to_the_agent_alone_and_shows_the_caller(
            self, daemon: DaemonProcess, agents: Callable[[str], Agent],
            caller_phone: CallIn) -> None:
        agent = agents("answer.xml")
        await put_group(daemon, "sales", [agent.uri])
        await put_number(daemon, {"actions": [{
            "type": "connect", "to": "group:sales", "whisper": "Incoming sales call from the website",
            "caller_id": "caller", "time_limit": 3, "record": False}]})
        async with Capture() as capture:
            phone = caller_phone(NUMBER, CALLER)
            [call_id] = await calls_to(daemon, NUMBER)
            call = await ended(daemon, call_id)
            assert await phone.finished() == ["answered", "bye"]
        packets = capture.packets()
        result = call["result"]
        assert call["status"] == "completed", result["reason"]
        assert (call["direction"], call["from"], call["to"]) == ("inbound", CALLER, NUMBER)
        assert result["answered_by"] == agent.uri
        assert [(a["type"], a["status"], a["outcome"]) for a in result["actions"]] == [
            ("connect", "completed", "bridged")]
        # Everything the agent heard before the bridge was the whisper (the caller
        # sends no sound); the caller heard nothing until the agent's talk came
        # through the bridge, after the whisper ended.
        whisper = sound_times(packets, agent.media_port)
        assert len(whisper) >= 25, f"the agent heard {len(whisper)} packets of whisper"
        assert sound_to_caller(packets, before=max(whisper)) == 0, "the caller heard the whisper"
        assert sound_to_caller(packets, after=max(whisper)) >= 25, "the caller heard nobody"
        invites = sip_to(packets, agent.port, "INVITE")
        assert invites, "the agent was never invited"
        [from_header] = [line for line in invites[0].splitlines() if line.startswith("From:")]
        assert f"sip:{CALLER}@" in from_header, "the agent's phone is shown the caller's number"
        assert agent.finished() == 0

    async def test_an_ivr_plays_gathers_2_and_its_action_url_connects_support(
            self, daemon: DaemonProcess, agents: Callable[[str], Agent], caller_phone: CallIn,
            actions_url: StartActionsUrl, tmp_path: Path) -> None:
        support = agents("answer.xml")
        menu = await actions_url(answer({"type": "connect", "to": support.uri, "time_limit": 2,
                                         "record": False}))
        await put_number(daemon, {"actions": [
            {"type": "play", "text": "Welcome to the lab."},
            {"type": "gather", "prompt": "For support, press 2.", "max_digits": 1, "timeout": 15,
             "action_url": menu.url}]})
        keys = Keypad(tmp_path)
        async with Capture() as capture:
            phone = caller_phone(NUMBER, CALLER, (wait(4000), keys.press("2")))
            [call_id] = await calls_to(daemon, NUMBER)
            call = await ended(daemon, call_id)
            assert await phone.finished() == ["answered", "bye"]
        result = call["result"]
        assert call["status"] == "completed", result["reason"]
        assert [(a["type"], a["status"], a["outcome"]) for a in result["actions"]] == [
            ("play", "completed", "played"), ("gather", "completed", "gathered"),
            ("connect", "completed", "bridged")]
        assert result["actions"][2]["source"] == "action_url"
        assert result["digits"] == "2" and result["answered_by"] == support.uri
        [asked] = menu.bodies
        assert asked["type"] == "call.gathered"
        assert (asked["data"]["call_uuid"], asked["data"]["digits"]) == (call_id, "2")
        assert sound_to_caller(capture.packets(), before=entered(result, "gathering")) >= 25, \
            "the caller did not hear the play"
        assert support.finished() == 0

    async def test_dial_whom_on_an_inbound_call_is_told_the_caller_the_number_and_the_digits(
            self, daemon: DaemonProcess, caller_phone: CallIn, actions_url: StartActionsUrl,
            tmp_path: Path) -> None:
        whom = await actions_url((200, CUSTOMER, 0.0))
        await put_number(daemon, {"actions": [
            {"type": "gather", "prompt": "Enter your branch, then hash.", "max_digits": 4,
             "timeout": 15},
            {"type": "connect", "to": whom.url, "time_limit": 1, "record": False}]})
        keys = Keypad(tmp_path)
        phone = caller_phone(NUMBER, CALLER, (
            wait(3000), keys.press("4"), wait(500), keys.press("2"), wait(500), keys.press("#")))
        [call_id] = await calls_to(daemon, NUMBER)
        call = await ended(daemon, call_id)
        assert await phone.finished() == ["answered", "bye"]
        result = call["result"]
        assert call["status"] == "completed", result["reason"]
        assert result["answered_by"] == CUSTOMER and result["digits"] == "42"
        asked = whom.queries[0]
        assert {key: asked.get(key) for key in ("CallSid", "Direction", "CallFrom", "CallTo",
                                                "Digits")} == {
            "CallSid": call_id, "Direction": "incoming", "CallFrom": CALLER, "CallTo": NUMBER,
            "Digits": "42"}

    @pytest.mark.parametrize("mode", ["message", "reject"])
    async def test_a_call_to_a_number_not_configured_is_refused_and_logged(
            self, start_daemon: Callable[..., DaemonProcess], caller_phone: CallIn,
            lab_switch: LabSwitch, mode: str) -> None:
        daemon = start_daemon(CALLCONNECT_INBOUND_UNKNOWN_NUMBER=mode)
        await daemon.ready()
        async with Capture() as capture:
            phone = caller_phone(UNKNOWN_NUMBER, CALLER)
            seen = await phone.finished()
        assert seen == ["final 404"]  # never answered (the message is early media)
        heard = sound_to_caller(capture.packets())
        if mode == "message":
            assert heard >= 50, f"the caller heard {heard} packets of the message"
        [logged] = log_events(daemon, "inbound.unknown_number")
        assert (logged["dialed"], logged["caller"], logged["refused_with"], logged["cause"]) == (
            UNKNOWN_NUMBER, CALLER, mode, 1)
        async with api(daemon) as client:
            assert (await client.get("/v1/calls")).json()["calls"] == []

    async def test_an_incoming_url_that_times_out_runs_the_fallback_and_says_why(
            self, daemon: DaemonProcess, caller_phone: CallIn,
            actions_url: StartActionsUrl) -> None:
        slow = await actions_url(answer({"type": "hangup", "reason": "too late"}, delay=4.0))
        await put_number(daemon, {
            "incoming_url": slow.url, "incoming_timeout": 1,
            "fallback_actions": [{"type": "play", "text": "Sorry, we cannot take your call now."},
                                 {"type": "hangup", "reason": "fallback played"}]})
        async with Capture() as capture:
            phone = caller_phone(NUMBER, CALLER)
            [call_id] = await calls_to(daemon, NUMBER)
            call = await ended(daemon, call_id)
            assert await phone.finished() == ["answered", "bye"]
        result = call["result"]
        assert f"{slow.url} did not answer within 1 s" in result["incoming_error"]
        assert result["reason"] == "fallback played"
        assert [(a["type"], a["source"], a["status"]) for a in result["actions"]] == [
            ("play", "fallback", "completed"), ("hangup", "fallback", "completed")]
        assert sound_to_caller(capture.packets()) >= 50, "the caller did not hear the fallback"
        # What the URL was sent: the new call, signed like every webhook.
        [incoming] = slow.bodies
        assert incoming["type"] == "call.incoming"
        assert {k: incoming["data"][k] for k in ("call_uuid", "from", "to", "direction")} == {
            "call_uuid": call_id, "from": CALLER, "to": NUMBER, "direction": "inbound"}
        Webhook(SIGNING_SECRET).verify(slow.raw_bodies[0], slow.headers[0])

    @pytest.mark.parametrize("answered", [True, False])
    async def test_the_idle_timeout_ends_a_call_with_nothing_left_to_do(
            self, daemon: DaemonProcess, caller_phone: CallIn, actions_url: StartActionsUrl,
            lab_switch: LabSwitch, answered: bool) -> None:
        if answered:  # a pause answers the caller; then nothing is left
            await put_number(daemon, {"actions": [{"type": "pause", "seconds": 1}],
                                      "idle_timeout": 2})
        else:  # the URL answers 204: the caller rings on, waiting for actions
            waiting = await actions_url((204, "", 0.0))
            await put_number(daemon, {"incoming_url": waiting.url, "idle_timeout": 2})
        async with Capture() as capture:
            phone = caller_phone(NUMBER, CALLER)
            [call_id] = await calls_to(daemon, NUMBER)
            call = await ended(daemon, call_id)
            seen = await phone.finished()
        assert seen == (["answered", "bye"] if answered else [lab_switch.idle_unanswered])
        result = call["result"]
        assert result["reason"] == "idle timeout"
        assert call["status"] == ("completed" if answered else "canceled")
        assert "idle" in [step["to"] for step in result["timeline"]]
        if answered:
            byes = sip_to(capture.packets(), CALLER_SIP_PORT, "BYE")
            assert len(byes) == 1, "the switch did not hang the caller up"
