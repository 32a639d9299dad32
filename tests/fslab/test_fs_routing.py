"""Routing on the lab's real FreeSWITCH, placed through the daemon's API:
simultaneous and sequential ring, confirm key, whisper on answer, hold music
or ringback while B rings, an endpoint (directory user) target.

Each agent is a SIPp phone of the test's own, reached as a sip: URI through
the lab profile, 100 ports above the Asterisk lab tests' phones; its message
trace tells when it was rung and when it was cancelled."""

from __future__ import annotations

import asyncio
import audioop
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import DaemonProcess, api, wait_for_state
from tests.lab.test_call_connect import Capture
from tests.lab.test_routing import Phone, connect, entered, settle, states

from .esl import EslClient, fs_api

AGENT = "+27115550101"  # leg A: answer-a on udp 5171, media 17010
AGENT_MEDIA_PORT = 17010
CUSTOMER = "+27115550202"
NO_ANSWER = "+27115550301"
WHISPER = "Sales call"
FIRST_PHONE_PORT = 5181


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Callable[..., Phone]]:
    started: list[Phone] = []

    def start(behaviour: str, calls: int = 1) -> Phone:
        phone = Phone(FIRST_PHONE_PORT + len(started), behaviour,
                      tmp_path / f"phone{len(started)}.trace", calls)
        phone.start()
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.stop()


@pytest.mark.fslab
async def test_simultaneous_ring_first_answer_wins_and_the_others_stop_ringing(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    slow, winner, other = phones("no-answer.xml"), phones("answer.xml"), phones("no-answer.xml")
    await settle()
    result = await connect(daemon, {"leg_a": AGENT, "leg_b": [slow.uri, winner.uri, other.uri],
                                       "time_limit": 3, "record": False})
    assert result["status"] == "completed", result["reason"]
    assert result["answered_by"] == winner.uri
    assert len(result["attempts"]) == 1
    invites = [p.received("INVITE")[0] for p in (slow, winner, other)]
    assert max(invites) - min(invites) < 0.5, "the targets were not rung together"
    answered = result["leg_b_answered_at"]
    for loser in (slow, other):
        cancels = loser.received("CANCEL")
        assert cancels, "a losing phone was left ringing"
        assert cancels[0] - answered < 1.0
        assert loser.stop() == 0  # its scenario ran to the end: INVITE, CANCEL, ACK


@pytest.mark.fslab
async def test_sequential_ring_each_target_with_its_own_ring_timeout(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    first, second, third = phones("no-answer.xml"), phones("busy.xml"), phones("answer.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": AGENT, "strategy": "sequential", "time_limit": 2, "record": False,
        "leg_b": [{"to": first.uri, "ring_timeout": 3}, second.uri, third.uri]})
    assert result["status"] == "completed", result["reason"]
    assert [a["outcome"] for a in result["attempts"]] == ["no-answer", "busy", "answered"]
    assert result["answered_by"] == third.uri
    rung = [p.received("INVITE")[0] for p in (first, second, third)]
    assert rung == sorted(rung), "not rung in order"
    # Its own 3 s ring timeout, which FreeSWITCH counts in whole seconds of
    # its clock (switch_epoch_time_now in switch_ivr_originate.c): up to a
    # second off either way.
    assert 1.9 < first.received("CANCEL")[0] - rung[0] < 4.1


@pytest.mark.fslab
async def test_an_endpoint_target_is_the_directory_user(daemon: DaemonProcess) -> None:
    result = await connect(daemon, {"leg_a": AGENT, "leg_b": "endpoint:lab-answer-b",
                                       "time_limit": 2, "record": False})
    assert result["status"] == "completed", result["reason"]
    assert result["answered_by"] == "endpoint:lab-answer-b"


@pytest.mark.fslab
async def test_on_answer_whisper_then_confirm_key_bridges(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    agent = phones("answer-press-1.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": CUSTOMER, "leg_b": agent.uri, "whisper": WHISPER, "whisper_timing": "on_answer",
        "confirm_key": "1", "time_limit": 2, "record": False})
    assert result["status"] == "completed", result["reason"]
    # With answer steps the time limit counts from the bridge (execute_on_pre_bridge).
    assert result["hangup_by"] == "time_limit"
    assert states(result)[:6] == ["dialing-a", "ringing-a", "dialing-b", "ringing-b",
                                  "confirming", "bridged"]
    # The agent heard the whisper and pressed 1 (2.5 s after answering) before the bridge.
    assert entered(result, "bridged") - entered(result, "confirming") > 2.0


@pytest.mark.fslab
async def test_on_answer_whisper_without_a_key_bridges_after_it(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    agent = phones("answer.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": CUSTOMER, "leg_b": agent.uri, "whisper": "Connecting you to a caller from "
        "the website form", "whisper_timing": "on_answer", "time_limit": 2, "record": False})
    assert result["status"] == "completed", result["reason"]
    assert entered(result, "bridged") - entered(result, "confirming") >= result["whisper"]["seconds"] - 0.3


@pytest.mark.fslab
async def test_a_wrong_key_declines_and_routing_moves_on(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    wrong, right = phones("answer-press-5.xml"), phones("answer-press-1.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": CUSTOMER, "leg_b": [wrong.uri, right.uri], "strategy": "sequential",
        "confirm_key": "1", "confirm_timeout": 5, "time_limit": 2, "record": False})
    assert [a["outcome"] for a in result["attempts"]] == ["declined", "answered"]
    assert "pressed 5" in result["attempts"][0]["declined"]
    assert result["answered_by"] == right.uri
    assert wrong.received("BYE"), "the agent who declined was not hung up"


@pytest.mark.fslab
async def test_no_key_in_time_declines(daemon: DaemonProcess,
                                       phones: Callable[..., Phone]) -> None:
    agent = phones("answer.xml")
    await settle()
    result = await connect(daemon, {"leg_a": CUSTOMER, "leg_b": agent.uri, "confirm_key": "1",
                                       "confirm_timeout": 2, "record": False})
    assert result["status"] == "no-answer", result["reason"]
    assert result["attempts"][0]["outcome"] == "declined"
    assert result["attempts"][0]["declined"] == "pressed no key in time"


# ---------------------------------------------------------------- what A hears while B rings

# The lab's hold music is a tune of 392, 494 and 523 Hz notes (sip-lab/lab-freeswitch.sh);
# FreeSWITCH's us-ring ringback is 440 + 480 Hz.
MUSIC_HZ, RINGBACK_HZ = (392.0, 494.0, 523.0), (440.0, 480.0)


def tone_power(samples: bytes, hz: float, rate: int = 8000, block: int = 800) -> float:
    """How much of one frequency 16-bit linear audio holds: Goertzel over each
    100 ms block, summed (over one long window, the notes of a tune that come
    back with another phase would cancel each other out)."""
    values = [int.from_bytes(samples[i:i + 2], "little", signed=True)
              for i in range(0, len(samples) - 1, 2)]
    coefficient = 2 * math.cos(2 * math.pi * hz / rate)
    total = 0.0
    for start in range(0, len(values) - block + 1, block):
        previous = before = 0.0
        for value in values[start:start + block]:
            previous, before = value + coefficient * previous - before, previous
        total += previous ** 2 + before ** 2 - coefficient * previous * before
    return total


@pytest.mark.fslab
@pytest.mark.parametrize(("while_ringing", "music"), [("music", True), ("ringback", False)])
async def test_leg_a_hears_music_or_ringback_while_leg_b_rings(
        daemon: DaemonProcess, while_ringing: str, music: bool) -> None:
    async with Capture() as capture:
        result = await connect(daemon, {
            "leg_a": AGENT, "leg_b": NO_ANSWER, "ring_timeout": 4, "record": False,
            "while_ringing": while_ringing, "fallbacks": {"no_answer": {"hangup": True}}})
    assert result["status"] == "no-answer", result["reason"]
    ringing = entered(result, "ringing-b")
    frames = [p.payload for p in capture.packets()
              if p.dport == AGENT_MEDIA_PORT and ringing + 0.5 < p.at < ringing + 3.5
              and len(p.payload) > 12 and p.payload[1] & 0x7F in (0, 8)]
    assert len(frames) > 50, "leg A got no audio while leg B rang"
    audio = b"".join(audioop.alaw2lin(f[12:], 2) if f[1] & 0x7F == 8 else audioop.ulaw2lin(f[12:], 2)
                     for f in frames)
    tune = sum(tone_power(audio, hz) for hz in MUSIC_HZ)
    ring = sum(tone_power(audio, hz) for hz in RINGBACK_HZ)
    assert (tune > 10 * ring) is music, (while_ringing, tune, ring)
    assert (ring > 10 * tune) is not music, (while_ringing, tune, ring)


# ---------------------------------------------------------------- nothing of the wait stays on a bridged A

async def bridged_a_leg(daemon: DaemonProcess, body: dict[str, object]) -> tuple[str, str]:
    """Place the call, wait until it is bridged: (call id, leg A's channel)."""
    async with api(daemon) as client:
        call_id = (await client.post("/v1/calls", json=body)).json()["call_uuid"]
        await wait_for_state(client, call_id, "bridged")
    return call_id, f"{call_id.replace('-', '')}-a"


@pytest.mark.fslab
async def test_a_bridged_leg_a_has_no_hold_limit_and_no_music(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    """A's hold limit (hangup after 120 s waiting for the controller) and its
    hold music are for a leg A that waits, never for a bridged one: a call
    longer than the hold limit is not cut, and the music does not play over it."""
    silent = phones("no-answer.xml")
    await settle()
    call_id, a = await bridged_a_leg(daemon, {
        "leg_a": AGENT, "leg_b": [{"to": silent.uri, "ring_timeout": 2}, CUSTOMER],
        "strategy": "sequential", "while_ringing": "music", "time_limit": 4, "record": False})
    # A's bridge thread runs api_before_bridge after its first 10 frames (200 ms).
    tasks, bugs = "", ""
    for _ in range(20):
        await asyncio.sleep(0.1)
        tasks, bugs = await fs_api("show tasks"), await fs_api(f"uuid_buglist {a}")
        if a not in tasks:
            break
    async with api(daemon) as client:
        result = (await wait_for_state(client, call_id, "ended"))["result"]
    assert result["status"] == "completed", result["reason"]
    assert [at["outcome"] for at in result["attempts"]] == ["no-answer", "answered"]
    assert a not in tasks, f"leg A has a scheduled hangup while bridged:\n{tasks}"
    assert "displace" not in bugs.lower(), f"hold music plays over the bridged call:\n{bugs}"


@pytest.mark.fslab
async def test_an_endpoint_agent_on_another_call_is_skipped(daemon: DaemonProcess) -> None:
    """The switch says who is busy: a call to the directory user that the
    daemon did not place (presence_id in show channels) makes it busy."""
    other = "00000000000000000000000000other-a"
    async with EslClient() as switch:
        placed = await switch.api(f"originate {{origination_uuid={other}}}user/lab-answer-b &park()")
        assert placed.startswith("+OK"), placed
        try:
            async with api(daemon) as client:
                response = await client.put("/v1/groups/desk", json={
                    "strategy": "sequential", "agents": ["endpoint:lab-answer-b", CUSTOMER]})
                assert response.status_code == 200, response.text
            result = await connect(daemon, {"leg_a": AGENT, "leg_b": "group:desk",
                                               "time_limit": 2, "record": False})
        finally:
            await switch.api(f"uuid_kill {other}")
    assert result["status"] == "completed", result["reason"]
    assert result["answered_by"] == CUSTOMER
    assert [a["targets"] for a in result["attempts"]] == [[CUSTOMER]]
