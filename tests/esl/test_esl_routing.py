"""Leg B routing on the FreeSWITCH backend, against the Event Socket peer:
several targets at once (the first to answer wins, the others stop ringing),
one after the other through the call service, the whisper and the confirm key
on answer, the switch's own users as targets, which of them are busy, and Leg
A kept (with its hold music) between attempts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.backends.freeswitch import actions
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.backends.freeswitch.ids import b_leg_index, leg_uuid
from controller.calls.request import CallRequest
from controller.calls.runner import ActiveCall
from controller.core.commands import DialLegB, HangupLegs, OriginateLegA
from controller.core.events import AnswerAccepted, AnswerDeclined, DialFinished, Event, LegAnswered, LegEnded
from controller.core.outcomes import Leg

from .conftest import Listener, MakeConfig, freeswitch_controller, wait_until
from .peer import EslPeer, PeerConnection

WHISPER = "Press one to take this call"


async def finished(call: ActiveCall, within: float = 30.0) -> dict[str, Any]:
    return await asyncio.wait_for(call.wait(), within)


def connection(peer: EslPeer) -> PeerConnection:
    """The controller's connection (the peer keeps it after it closed)."""
    [conn] = [c for c in peer.connections if c.authed]
    return conn


def b_channels(peer: EslPeer, call_id: str) -> list[str]:
    """Every Leg B channel the peer saw for the call, in the order created."""
    seen: list[str] = []
    for conn in peer.connections:
        for name, uid in conn.sent:
            if name == "CHANNEL_CREATE" and b_leg_index(call_id, uid) is not None \
                    and uid not in seen:
                seen.append(uid)
    return seen


def causes(peer: EslPeer, channel: str) -> list[str]:
    return [cause for uid, cause in peer.hangups if uid == channel]


def events_on(peer: EslPeer, channel: str) -> list[str]:
    return [name for conn in peer.connections for name, uid in conn.sent if uid == channel]


def states(listener: Listener, call: ActiveCall) -> list[str]:
    return listener.transitions.get(call.call_id, [])


@pytest.fixture
def make_config(make_config: MakeConfig) -> MakeConfig:
    """A short message to A when leg B is not reached (the tests hear it often)."""
    def make(**overrides: object) -> Any:
        config = make_config(**overrides)
        config.whisper.b_unreached_message = "Sorry."
        return config

    return make


# ---------------------------------------------------------------- at once

async def test_simultaneous_ring_the_first_to_answer_wins(make_config: MakeConfig,
                                                         peer: EslPeer) -> None:
    listener = Listener()
    targets = ["sip:answer-after-700@127.0.0.1", "sip:answer-after-150@127.0.0.1",
               "sip:no-answer@127.0.0.1"]
    async with freeswitch_controller(make_config(), listener) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b=targets, time_limit=1))
        await wait_until(lambda: "bridged" in states(listener, call))
        slow, fast, silent = b_channels(peer, call.call_id)
        # Once one answered, the others stopped ringing: only A and the winner are left.
        await wait_until(lambda: sorted(peer.channel_ids()) == sorted(
            [leg_uuid(call.call_id, Leg.A), fast]), 2)
        result = await finished(call)
    assert (result["status"], result["answered_by"]) == ("completed", targets[1])
    assert result["attempts"][0]["targets"] == targets
    assert result["attempts"][0]["answered_by"] == targets[1]
    assert causes(peer, slow) == causes(peer, silent) == ["LOSE_RACE"]
    assert causes(peer, fast) == ["ALLOTTED_TIMEOUT"]  # the time limit, on the winner
    assert peer.channels == {}


async def test_simultaneous_ring_where_nobody_answers(make_config: MakeConfig,
                                                     peer: EslPeer) -> None:
    async with freeswitch_controller(make_config()) as controller:
        call = await controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b=["sip:busy@127.0.0.1", "sip:no-answer@127.0.0.1"], ring_timeout=1))
        result = await finished(call)
        busy, silent = b_channels(peer, call.call_id)
    # FreeSWITCH: the dial timed out (NO_ANSWER for whoever still rang).
    assert result["attempts"][0]["dial_outcome"] == "no-answer"
    assert causes(peer, busy) == ["USER_BUSY"] and causes(peer, silent) == ["NO_ANSWER"]
    assert (result["status"], result["leg_a_status"], result["leg_b_status"]) == (
        "no-answer", "completed", "no-answer")


# ---------------------------------------------------------------- one after the other

async def test_sequential_routing_keeps_leg_a_with_music_between_attempts(
        make_config: MakeConfig, peer: EslPeer) -> None:
    listener = Listener()
    async with freeswitch_controller(make_config(), listener) as controller:
        call = await controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b=[{"to": "sip:no-answer@127.0.0.1", "ring_timeout": 1},
                             "sip:reject@127.0.0.1", "sip:answer@127.0.0.1"],
            strategy="sequential", time_limit=1, while_ringing="music"))
        a = leg_uuid(call.call_id, Leg.A)
        await wait_until(lambda: "bridged" in states(listener, call), 10)
        leg_a = peer.channels[a]
        assert leg_a.displacing == set()
        assert not peer.scheduled.get(a)  # nothing can hang A up mid-conversation
        result = await finished(call)
        commands = connection(peer).commands
    assert result["status"] == "completed"
    assert [(t["targets"], t["outcome"]) for t in result["attempts"]] == [
        (["sip:no-answer@127.0.0.1"], "no-answer"), (["sip:reject@127.0.0.1"], "rejected"),
        (["sip:answer@127.0.0.1"], "answered")]
    assert result["answered_by"] == "sip:answer@127.0.0.1"
    assert [s for s in states(listener, call) if s in ("dialing-b", "routing", "bridged")] == [
        "dialing-b", "routing", "dialing-b", "routing", "dialing-b", "bridged"]
    # Each attempt's channel has its own id, filtered before it is dialed.
    first, second, third = b_channels(peer, call.call_id)
    assert [b_leg_index(call.call_id, c) for c in (first, second, third)] == [0, 1, 2]
    bridges = [i for i, c in enumerate(commands) if c.startswith(f"sendmsg {a}")
               and i + 1 < len(commands)]
    assert commands.index(f"filter Unique-ID {third}") < max(bridges)
    # Ringback for each attempt was the music; between attempts A waited with
    # music and a hold limit (armed with the dial), both ended by the next
    # step; the bridge's start disarmed the last one.
    assert commands.count(f"api uuid_setvar {a} transfer_ringback local_stream://moh") == 3
    assert [what for what, channel in peer.log if channel == a] == [
        "schedule", "music on",  # A answered
        "unschedule", "music off", "schedule", "music on",  # attempt 1, failed
        "unschedule", "music off", "schedule", "music on",  # attempt 2, failed
        "unschedule", "music off", "schedule", "unschedule"]  # attempt 3, bridged


async def test_a_route_that_runs_out_tells_leg_a_and_hangs_up(make_config: MakeConfig,
                                                              peer: EslPeer) -> None:
    listener = Listener()
    async with freeswitch_controller(make_config(), listener) as controller:
        call = await controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b=["sip:busy@127.0.0.1", "sip:reject@127.0.0.1"],
            strategy="sequential"))
        result = await finished(call)
    assert (result["status"], result["leg_b_status"]) == ("busy", "rejected")
    assert states(listener, call)[-4:] == ["routing", "announcing", "ending", "ended"]


# ---------------------------------------------------------------- on answer

def on_answer(leg_b: str | list[Any], **extra: Any) -> CallRequest:
    return CallRequest(leg_a="+27115550101", leg_b=leg_b, whisper=WHISPER, whisper_timing="on_answer",
                       time_limit=1, **extra)


async def test_the_right_confirm_key_bridges(make_config: MakeConfig, peer: EslPeer) -> None:
    listener = Listener()
    async with freeswitch_controller(make_config(), listener) as controller:
        call = await controller.calls.start(on_answer("sip:press-1@127.0.0.1", confirm_key="1"))
        result = await finished(call)
        [b] = b_channels(peer, call.call_id)
        a_events = events_on(peer, leg_uuid(call.call_id, Leg.A))
    assert (result["status"], result["leg_b_status"]) == ("completed", "completed")
    assert [s for s in states(listener, call) if s in ("ringing-b", "confirming", "bridged")] \
        == ["ringing-b", "confirming", "bridged"]
    # B heard the whisper and pressed the key before the bridge; A heard nothing.
    b_events = [e for e in events_on(peer, b) if e in ("PLAYBACK_START", "PLAYBACK_STOP", "DTMF")]
    assert b_events == ["PLAYBACK_START", "PLAYBACK_STOP", "DTMF"]
    assert "PLAYBACK_START" not in a_events
    assert result["whisper_played"] is True  # to B


@pytest.mark.parametrize(("phone", "whisper", "reason"), [
    ("sip:press-2@127.0.0.1", True, "pressed 2, not the confirm key"),
    # The prompt starts again: FreeSWITCH says the read timed out.
    ("sip:answer@127.0.0.1", True, "pressed no key in time"),
    # No prompt: nothing to see; the backend's own timer.
    ("sip:answer@127.0.0.1", False, "pressed no key in time"),
], ids=["wrong-key", "no-key", "no-key-no-prompt"])
async def test_a_wrong_key_or_none_declines(make_config: MakeConfig, peer: EslPeer,
                                            phone: str, whisper: bool, reason: str) -> None:
    listener = Listener()
    loop = asyncio.get_running_loop()
    request = on_answer(phone, confirm_key="1", confirm_timeout=1) if whisper else \
        CallRequest(leg_a="+27115550101", leg_b=phone, confirm_key="1", confirm_timeout=1)
    async with freeswitch_controller(make_config(), listener) as controller:
        call = await controller.calls.start(request)
        started = loop.time()
        result = await finished(call)
        [b] = b_channels(peer, call.call_id)
    assert (result["status"], result["leg_b_status"]) == ("no-answer", "declined")
    assert result["attempts"][0]["declined"] == reason
    assert causes(peer, b) == ["NORMAL_CLEARING"]  # hung up by the controller, once
    assert "bridged" not in states(listener, call)
    assert states(listener, call)[-4:] == ["routing", "announcing", "ending", "ended"]
    assert loop.time() - started < 10


async def test_a_decline_then_the_next_target_accepts(make_config: MakeConfig,
                                                      peer: EslPeer) -> None:
    async with freeswitch_controller(make_config()) as controller:
        call = await controller.calls.start(on_answer(
            ["sip:press-2@127.0.0.1", "sip:press-1@127.0.0.1"], strategy="sequential",
            confirm_key="1"))
        result = await finished(call)
    assert result["status"] == "completed"
    assert [(t["outcome"], t.get("declined")) for t in result["attempts"]] == [
        ("declined", "pressed 2, not the confirm key"), ("answered", None)]
    assert result["answered_by"] == "sip:press-1@127.0.0.1"


async def test_the_whisper_on_answer_plays_to_b_before_the_bridge(make_config: MakeConfig,
                                                                 peer: EslPeer) -> None:
    async with freeswitch_controller(make_config()) as controller:
        call = await controller.calls.start(on_answer("sip:answer@127.0.0.1"))
        result = await finished(call)
        [b] = b_channels(peer, call.call_id)
        a = leg_uuid(call.call_id, Leg.A)
        sent = connection(peer).sent
    assert result["status"] == "completed"
    order = [(name, uid) for name, uid in sent
             if (name, uid) in (("PLAYBACK_STOP", b), ("CHANNEL_BRIDGE", a))]
    assert order == [("PLAYBACK_STOP", b), ("CHANNEL_BRIDGE", a)]


async def test_with_answer_steps_the_first_answer_stops_the_others(make_config: MakeConfig,
                                                                   peer: EslPeer) -> None:
    async with freeswitch_controller(make_config()) as controller:
        call = await controller.calls.start(on_answer(
            ["sip:press-1@127.0.0.1", "sip:answer-after-1500-press-1@127.0.0.1"],
            confirm_key="1"))
        result = await finished(call)
        _, second = b_channels(peer, call.call_id)
    assert (result["status"], result["answered_by"]) == ("completed", "sip:press-1@127.0.0.1")
    assert causes(peer, second) == ["LOSE_RACE"]  # cancelled while the first confirmed
    assert "CHANNEL_ANSWER" not in events_on(peer, second)


async def test_with_answer_steps_each_leg_still_rings_only_the_ring_timeout(
        make_config: MakeConfig, peer: EslPeer) -> None:
    loop = asyncio.get_running_loop()
    async with freeswitch_controller(make_config()) as controller:
        started = loop.time()
        call = await controller.calls.start(on_answer("sip:no-answer@127.0.0.1", ring_timeout=1,
                                                      confirm_key="1"))
        result = await finished(call)
        [b] = b_channels(peer, call.call_id)
    # leg_timeout, not the dial's longer originate_timeout, ended it.
    assert causes(peer, b) == ["ALLOTTED_TIMEOUT"]
    assert (result["status"], result["leg_b_status"]) == ("no-answer", "no-answer")
    assert result["attempts"][0]["dial_outcome"] == "no-answer"
    assert result["attempts"][0]["ended_at"] - result["attempts"][0]["started_at"] < 3
    assert loop.time() - started < 10


# ---------------------------------------------------------------- agent groups

async def test_calls_at_once_ring_different_agents_and_a_third_finds_all_busy(
        make_config: MakeConfig, peer: EslPeer) -> None:
    """An agent is held from the moment it is offered a call: two calls
    reaching a group together ring one agent each, and a third call, while
    both still ring, takes all_busy."""
    agents = ["sip:no-answer-1@127.0.0.1", "sip:no-answer-2@127.0.0.1"]
    config = make_config()
    config.groups = {"desk": {"strategy": "sequential", "agents": agents}}
    listener = Listener()

    def request(leg_a: str) -> CallRequest:
        return CallRequest(leg_a=leg_a, leg_b="group:desk", ring_timeout=5, max_attempts=1)

    async with freeswitch_controller(config, listener) as controller:
        first, second = await asyncio.gather(controller.calls.start(request("+27115550101")),
                                             controller.calls.start(request("+27115550102")))
        await wait_until(lambda: all("dialing-b" in states(listener, c) for c in (first, second)))
        third = await controller.calls.start(request("+27115550103"))
        busy = await finished(third)
        results = [await finished(first), await finished(second)]
    assert sorted(r["attempts"][0]["targets"] for r in results) == [[agents[0]], [agents[1]]]
    assert [r["status"] for r in results] == ["no-answer", "no-answer"]
    assert (busy["status"], busy["reason"]) == ("busy", "every agent of group desk is busy")
    assert busy["attempts"] == []
    assert sum(ds.endswith(tuple(agents)) for ds in peer.dial_strings) == 2  # each rung once


async def test_an_agent_on_a_call_as_leg_a_is_not_offered_as_leg_b(make_config: MakeConfig,
                                                                    peer: EslPeer) -> None:
    agents = ["sip:answer-1@127.0.0.1", "sip:answer-2@127.0.0.1"]
    config = make_config()
    config.groups = {"desk": {"strategy": "sequential", "agents": agents}}
    listener = Listener()
    async with freeswitch_controller(config, listener) as controller:
        outbound = await controller.calls.start(CallRequest(leg_a=agents[0], leg_b="+27115550202",
                                                            time_limit=3))
        await wait_until(lambda: "bridged" in states(listener, outbound))
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="group:desk",
                                                        time_limit=1))
        result = await finished(call)
        await finished(outbound)
    assert (result["status"], result["answered_by"]) == ("completed", agents[1])
    assert [a["targets"] for a in result["attempts"]] == [[agents[1]]]


# ---------------------------------------------------------------- the switch's users

async def test_an_endpoint_is_a_directory_user(make_config: MakeConfig, peer: EslPeer) -> None:
    peer.directory = {"agent-1"}
    async with freeswitch_controller(make_config()) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="endpoint:agent-1",
                                                        time_limit=1))
        result = await finished(call)
        [b] = b_channels(peer, call.call_id)
        missing = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="endpoint:agent-9"))
        gone = await finished(missing)
    assert (result["status"], result["answered_by"]) == ("completed", "endpoint:agent-1")
    assert peer.dial_strings[1].endswith(
        f"[origination_uuid={b},callconnect_target=endpoint:agent-1]user/agent-1")
    assert causes(peer, b) == ["ALLOTTED_TIMEOUT"]
    # No such user: no channel at all, and the dial says why.
    assert (gone["status"], gone["leg_b_status"]) == ("failed", "failed")
    assert gone["attempts"][0]["dial_outcome"] == "failed"
    assert gone["leg_b"]["dialed"] is False


async def test_busy_targets_are_users_on_any_call(make_config: MakeConfig, peer: EslPeer) -> None:
    backend = FreeswitchBackend(make_config().freeswitch)
    await backend.connect()
    try:
        targets = ["endpoint:agent-1", "endpoint:Agent-2", "+27115550202", "sip:a@b.c"]
        assert await backend.busy_targets(targets) == set()
        other = asyncio.create_task(peer.foreign_call(dial_string="user/agent-2", hold=1.0))
        await wait_until(lambda: any(ch.answered.is_set() and "agent-2" in ch.name
                                     for ch in peer.channels.values()))
        assert await backend.busy_targets(targets) == {"endpoint:Agent-2"}
        assert await backend.busy_targets(["+27115550202"]) == set()  # not even asked
        await other
        assert await backend.busy_targets(targets) == set()
        peer.refuse["show"] = "-ERR not now"
        assert await backend.busy_targets(targets) == set()  # cannot tell: none
    finally:
        await backend.close()


# ---------------------------------------------------------------- leg A's hold limit

async def test_leg_a_is_hung_up_if_no_next_step_comes(make_config: MakeConfig, peer: EslPeer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller goes away after a failed attempt: FreeSWITCH itself
    hangs A up after the hold limit, but never while A is bridged."""
    monkeypatch.setattr(actions, "HOLD_LIMIT", 1)
    call_id = "7e57ca11-0000-4000-8000-0000000000d1"
    a = leg_uuid(call_id, Leg.A)
    backend = FreeswitchBackend(make_config().freeswitch)
    seen: list[Event] = []
    await backend.connect()
    try:
        backend.watch(call_id, seen.append)
        await backend.execute(call_id, OriginateLegA("+27115550101", 30, None))
        await wait_until(lambda: any(isinstance(e, LegAnswered) for e in seen))
        # Bridged for longer than the hold limit: only the time limit ends it.
        await backend.execute(call_id, DialLegB(("sip:answer@127.0.0.1",), 5, 2, None))
        await wait_until(lambda: any(isinstance(e, LegEnded) and e.leg is Leg.A for e in seen), 5)
        assert causes(peer, a) == ["NORMAL_CLEARING"]  # hangup_after_bridge, after B's limit

        seen.clear()
        second = "7e57ca11-0000-4000-8000-0000000000d2"
        backend.watch(second, seen.append)
        await backend.execute(second, OriginateLegA("+27115550101", 30, None))
        await wait_until(lambda: any(isinstance(e, LegAnswered) for e in seen))
        await backend.execute(second, DialLegB(("sip:no-answer@127.0.0.1",), 1, 60, None))
        await wait_until(lambda: any(isinstance(e, DialFinished) for e in seen), 5)
        await wait_until(lambda: any(isinstance(e, LegEnded) and e.leg is Leg.A for e in seen), 5)
        assert causes(peer, leg_uuid(second, Leg.A)) == ["RECOVERY_ON_TIMER_EXPIRE"]
    finally:
        await backend.close()


async def test_freeswitch_cannot_schedule_a_hangup_for_a_longer_id(peer: EslPeer) -> None:
    """Why every id we give a channel fits in 36 characters: a scheduled
    hangup keeps only 36 (switch_ivr_async.c), and then finds no channel."""
    long_id = "7e57ca11-0000-4000-8000-0000000000d3-a"
    short_id = leg_uuid("7e57ca11-0000-4000-8000-0000000000d3", Leg.A)
    for channel_id in (long_id, short_id):
        reply = await peer.run_api("originate", f"{{origination_uuid={channel_id},"
                                   "execute_on_answer='sched_hangup +1 ALLOTTED_TIMEOUT'}"
                                   "sofia/gateway/lab/+27115550101 &park()")
        assert reply == f"+OK {channel_id}\n"
    await asyncio.sleep(1.5)
    assert causes(peer, short_id) == ["ALLOTTED_TIMEOUT"]
    assert causes(peer, long_id) == []
    await peer.run_api("uuid_kill", long_id)


# ---------------------------------------------------------------- the wire

async def test_a_declined_answer_is_hung_up_by_the_controller(make_config: MakeConfig,
                                                               peer: EslPeer) -> None:
    call_id = "7e57ca11-0000-4000-8000-0000000000d4"
    backend = FreeswitchBackend(make_config().freeswitch)
    seen: list[Event] = []
    await backend.connect()
    try:
        backend.watch(call_id, seen.append)
        await backend.execute(call_id, OriginateLegA("+27115550101", 30, None))
        await wait_until(lambda: any(isinstance(e, LegAnswered) for e in seen))
        await backend.execute(call_id, DialLegB(("sip:press-7@127.0.0.1",), 5, 60, None,
                                                confirm_key="1", confirm_timeout=2))
        await wait_until(lambda: any(isinstance(e, DialFinished) for e in seen), 5)
        b = leg_uuid(call_id, Leg.B)
        assert [e.reason for e in seen if isinstance(e, AnswerDeclined)] == [
            "pressed 7, not the confirm key"]
        assert f"api uuid_kill {b} NORMAL_CLEARING" in connection(peer).commands
        await backend.execute(call_id, DialLegB(("sip:answer@127.0.0.1",), 5, 60, None))
        b1 = leg_uuid(call_id, Leg.B, 1)
        await wait_until(lambda: any(isinstance(e, LegAnswered) and e.channel == b1
                                     for e in seen), 5)
        [answered] = [e for e in seen if isinstance(e, LegAnswered) and e.channel == b1]
        assert answered == LegAnswered(answered.at, Leg.B, b1, "sip:answer@127.0.0.1")
        await backend.execute(call_id, HangupLegs((Leg.A, Leg.B)))
    finally:
        await backend.close()


# ---------------------------------------------------------------- after a restart

async def test_reattach_finds_the_leg_b_channels_still_ringing(make_config: MakeConfig,
                                                             peer: EslPeer) -> None:
    config = make_config()
    call_id = "7e57ca11-0000-4000-8000-0000000000d5"
    first = FreeswitchBackend(config.freeswitch)
    seen: list[Event] = []
    await first.connect()
    first.watch(call_id, seen.append)
    await first.execute(call_id, OriginateLegA("+27115550101", 30, None))
    await wait_until(lambda: any(isinstance(e, LegAnswered) for e in seen))
    targets = ("sip:no-answer@127.0.0.1", "sip:answer-after-1500@127.0.0.1")
    await first.execute(call_id, DialLegB(targets, 5, 60, None))
    await asyncio.sleep(0.3)
    await first.close()  # the controller goes away while both ring

    second = FreeswitchBackend(config.freeswitch)
    later: list[Event] = []
    await second.connect()
    try:
        missed = await second.reattach(call_id, "ringing-b", later.append)
        b0, b1 = leg_uuid(call_id, Leg.B), leg_uuid(call_id, Leg.B, 1)
        assert [(type(e).__name__, getattr(e, "channel", None)) for e in missed] == [
            ("LegCreated", b0), ("LegCreated", b1)]
        # Its events are followed again: the second target answers and wins.
        await wait_until(lambda: any(isinstance(e, LegAnswered) for e in later), 5)
        [answered] = [e for e in later if isinstance(e, LegAnswered)]
        assert (answered.channel, answered.target) == (b1, targets[1])
        await wait_until(lambda: any(isinstance(e, LegEnded) and e.channel == b0 for e in later))
        await second.execute(call_id, HangupLegs((Leg.A, Leg.B)))
        await wait_until(lambda: sum(isinstance(e, LegEnded) for e in later) == 3)
    finally:
        await second.close()


async def test_reattach_while_leg_b_hears_the_confirm_prompt(make_config: MakeConfig,
                                                            peer: EslPeer) -> None:
    config = make_config()
    prompt = await freeswitch_controller(config).renderer.render(WHISPER)
    call_id = "7e57ca11-0000-4000-8000-0000000000d6"
    first = FreeswitchBackend(config.freeswitch)
    seen: list[Event] = []
    await first.connect()
    first.watch(call_id, seen.append)
    await first.execute(call_id, OriginateLegA("+27115550101", 30, None))
    await wait_until(lambda: any(isinstance(e, LegAnswered) for e in seen))
    await first.execute(call_id, DialLegB(("sip:press-1@127.0.0.1",), 5, 60, None,
                                          answer_audio=str(prompt.path), confirm_key="1"))
    await wait_until(lambda: sum(isinstance(e, LegAnswered) for e in seen) == 2)
    await first.close()  # gone while B hears the prompt

    second = FreeswitchBackend(config.freeswitch)
    later: list[Event] = []
    await second.connect()
    try:
        b = leg_uuid(call_id, Leg.B)
        missed = await second.reattach(call_id, "confirming", later.append)
        assert [type(e).__name__ for e in missed] == ["LegCreated", "LegAnswered"]
        # The key comes after the restart: the bridge is the acceptance.
        await wait_until(lambda: any(isinstance(e, AnswerAccepted) for e in later), 10)
        await second.execute(call_id, HangupLegs((Leg.A, Leg.B)))
        await wait_until(lambda: {e.channel for e in later if isinstance(e, LegEnded)}
                         == {leg_uuid(call_id, Leg.A), b})
    finally:
        await second.close()
