"""The FreeSWITCH backend's I/O against the Event Socket peer: logging in (and
failing to, with a message a user can act on), the switch refusing commands,
malformed frames and split writes on the live socket, a lost connection, a
command FreeSWITCH is slow to answer, event filters, JSON events, picking a
call up again after a restart, and gevent staying inside its thread."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.app import Controller
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.backends.freeswitch.ids import leg_uuid
from controller.backends.freeswitch.link import THREAD_NAME
from controller.calls.request import CallRequest
from controller.calls.runner import ActiveCall
from controller.config import Config
from controller.core.commands import DialLegB, HangupLegs, OriginateLegA, PlayWhisper
from controller.core.events import EndedWhileAway, Event, LegAnswered, LegCreated, LegEnded, WhisperFinished
from controller.core.outcomes import Leg
from controller.errors import SwitchUnavailable

from .conftest import Listener, MakeConfig, channels_gone, freeswitch_controller, wait_until
from .peer import EslPeer, PeerConnection

REPO = Path(__file__).resolve().parents[2]
WHISPER = "Connecting you now"


def esl_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


async def finished(call: ActiveCall, within: float = 30.0) -> dict[str, Any]:
    return await asyncio.wait_for(call.wait(), within)


def backend_connection(peer: EslPeer) -> PeerConnection:
    [conn] = peer.live_connections()
    return conn


def reached(listener: Listener, call: ActiveCall, state: str) -> bool:
    return state in listener.transitions.get(call.call_id, [])


# ---------------------------------------------------------------- logging in

async def test_a_bad_password_fails_at_once_and_says_so(make_config: MakeConfig,
                                                        peer: EslPeer) -> None:
    backend = FreeswitchBackend(make_config(password="wrong").freeswitch)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SwitchUnavailable, match="refused the password") as error:
        await backend.connect()
    assert loop.time() - started < 1.0
    assert "CALLCONNECT_FREESWITCH_PASSWORD" in error.value.message
    assert peer.connections[0].commands == ["auth wrong"]
    assert esl_threads() == []


async def test_an_unreachable_switch_says_where_it_looked(make_config: MakeConfig) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config()
    config.freeswitch.port = port
    with pytest.raises(SwitchUnavailable, match=rf"cannot reach .* at 127\.0\.0\.1:{port}") as error:
        await FreeswitchBackend(config.freeswitch).connect()
    assert "listen-ip" in error.value.message


async def test_a_host_the_acl_refuses_is_told_so(make_config: MakeConfig, peer: EslPeer) -> None:
    peer.acl_reject = True
    with pytest.raises(SwitchUnavailable, match=r"refused this host \(Access Denied") as error:
        await FreeswitchBackend(make_config().freeswitch).connect()
    assert "apply-inbound-acl" in error.value.message


async def test_a_port_that_never_greets_fails_within_connect_timeout(
        make_config: MakeConfig) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    config = make_config(connect_timeout=0.5)
    config.freeswitch.port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(SwitchUnavailable, match="no Event Socket greeting"):
            await FreeswitchBackend(config.freeswitch).connect()
    finally:
        server.close()
    assert loop.time() - started < 2.0
    assert esl_threads() == []


async def test_close_is_bounded_and_leaves_no_thread(make_config: MakeConfig,
                                                     peer: EslPeer) -> None:
    backend = FreeswitchBackend(make_config().freeswitch)
    await backend.connect()
    assert len(esl_threads()) == 1
    await asyncio.wait_for(backend.close(), 5)
    await backend.close()
    assert esl_threads() == []
    await wait_until(lambda: not peer.live_connections())
    assert peer.connections[0].commands[-1] == "exit"


# ---------------------------------------------------------------- the switch says no

async def test_an_originate_that_fails_fails_the_call_with_the_reason(
        make_config: MakeConfig, peer: EslPeer) -> None:
    async with freeswitch_controller(make_config(gateway="no-such-gateway")) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202"))
        result = await finished(call)
    assert (result["status"], result["leg_a_status"], result["leg_b_status"]) == \
        ("failed", "failed", "not-dialed")
    assert "-ERR INVALID_GATEWAY (no such sofia gateway" in result["reason"]


async def test_a_refused_bgapi_fails_the_call(make_config: MakeConfig, peer: EslPeer) -> None:
    peer.refuse["bgapi originate"] = "-ERR permission denied"
    async with freeswitch_controller(make_config()) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202"))
        result = await finished(call)
    assert result["status"] == "failed"
    assert result["reason"] == ("OriginateLegA failed: FreeSWITCH refused bgapi originate: "
                                "-ERR permission denied")


async def test_a_refused_command_mid_call_ends_it_and_hangs_up(make_config: MakeConfig,
                                                               peer: EslPeer) -> None:
    peer.refuse["uuid_broadcast"] = "-ERR Cannot open file\n"
    async with freeswitch_controller(make_config()) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                                        whisper=WHISPER))
        result = await finished(call)
    assert result["status"] == "failed"
    assert result["reason"] == ("PlayWhisper failed: FreeSWITCH refused api uuid_broadcast: "
                                "-ERR Cannot open file")
    assert result["leg_b"]["dialed"] is False


async def test_hangup_requested_while_leg_a_rings(make_config: MakeConfig, peer: EslPeer) -> None:
    listener = Listener()
    async with freeswitch_controller(make_config(), listener) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550301", leg_b="+27115550202"))
        await wait_until(lambda: reached(listener, call, "ringing-a"))
        await controller.calls.hangup(call.call_id, "operator")
        result = await finished(call)
    assert (result["status"], result["leg_a_status"], result["hangup_by"]) == \
        ("canceled", "canceled", "api")


# ---------------------------------------------------------------- the wire misbehaves

MALFORMED = (b"this is not a header line\n\n"
             b"Content-Length: 5\n\nhello"
             b"Content-Type: text/event-plain\nContent-Length: twelve\n\n"
             b"\xff\xfe\x00 binary noise\n\n"
             b"Content-Length: 9\nContent-Type: text/event-json\n\n{not json"
             b"Content-Length: 21\nContent-Type: text/event-plain\n\nno colon on this line")


async def test_split_writes_and_malformed_frames_do_not_disturb_a_call(
        make_config: MakeConfig, peer: EslPeer) -> None:
    peer.split_writes = True
    listener = Listener()
    async with freeswitch_controller(make_config(), listener) as controller:
        backend = controller.backend
        assert isinstance(backend, FreeswitchBackend)
        peer.inject(MALFORMED)
        call = await controller.calls.start(CallRequest(
            leg_a="+27115550101", leg_b="+27115550202", whisper=WHISPER, time_limit=1))
        await wait_until(lambda: reached(listener, call, "whispering"))
        peer.inject(MALFORMED)
        await wait_until(lambda: reached(listener, call, "bridged"))
        peer.inject(MALFORMED)
        result = await finished(call)
        assert backend.connected and backend.reconnects == 0
        assert await controller.backend.active_channels() == []
    assert (result["status"], result["hangup_by"], result["whisper_played"], result["recorded"]) \
        == ("completed", "time_limit", True, True)


async def test_a_lost_connection_fails_a_waiting_command_at_once_then_reconnects(
        make_config: MakeConfig, peer: EslPeer) -> None:
    peer.stall["uuid_broadcast"] = 3.0  # the switch is slow to answer the whisper
    listener = Listener()
    loop = asyncio.get_running_loop()
    async with freeswitch_controller(make_config(action_timeout=5.0), listener) as controller:
        backend = controller.backend
        assert isinstance(backend, FreeswitchBackend)
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                                        whisper=WHISPER))
        await wait_until(lambda: any(c.startswith("api uuid_broadcast")
                                     for c in backend_connection(peer).commands))
        dropped = loop.time()
        peer.drop_connections()
        result = await finished(call)
        assert loop.time() - dropped < 1.0, "the waiting command failed at once"
        assert result["status"] == "failed"
        assert "lost the connection to FreeSWITCH" in result["reason"]
        await wait_until(lambda: backend.connected and backend.reconnects == 1)
        # Once back, the calls it lost are hung up on the switch.
        assert await channels_gone(peer, call.call_id) == []
        again = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                                         time_limit=1))
        assert (await finished(again))["status"] == "completed"


async def test_a_lost_connection_while_bridged_ends_the_call_as_completed(
        make_config: MakeConfig, peer: EslPeer) -> None:
    listener = Listener()
    async with freeswitch_controller(make_config(), listener) as controller:
        backend = controller.backend
        assert isinstance(backend, FreeswitchBackend)
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202"))
        await wait_until(lambda: reached(listener, call, "bridged"))
        peer.drop_connections()
        result = await finished(call)
        assert (result["status"], result["hangup_by"]) == ("completed", "switch")
        assert result["reason"].startswith("switch lost: lost the connection to FreeSWITCH")
        await wait_until(lambda: backend.connected)
        assert await channels_gone(peer, call.call_id) == []


async def test_a_command_answered_late_times_out_and_later_replies_stay_in_order(
        make_config: MakeConfig, peer: EslPeer) -> None:
    peer.stall["uuid_record"] = 0.8
    async with freeswitch_controller(make_config(action_timeout=0.3)) as controller:
        backend = controller.backend
        assert isinstance(backend, FreeswitchBackend)
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                                        time_limit=2))
        result = await finished(call)
        assert backend.connected and backend.reconnects == 0
        # The next command gets its own reply, not the late uuid_record one.
        assert await backend.active_channels() == []
    assert (result["status"], result["hangup_by"]) == ("completed", "time_limit")
    assert result["recording_error"] == "FreeSWITCH did not answer api uuid_record within 0.3 s"


# ---------------------------------------------------------------- events

async def test_only_our_calls_events_reach_the_controller(make_config: MakeConfig,
                                                          peer: EslPeer) -> None:
    listener = Listener()
    async with freeswitch_controller(make_config(), listener) as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                                        time_limit=1))
        await wait_until(lambda: reached(listener, call, "bridged"))
        names = await controller.backend.active_channels()
        foreign = await peer.foreign_call()
        peer.heartbeat()
        result = await finished(call)
        sent = backend_connection(peer).sent
    assert sorted(names) == ["sofia/external/+27115550101", "sofia/external/+27115550202"]
    assert result["status"] == "completed"
    assert foreign and all(uid != foreign for _, uid in sent)
    assert {uid for _, uid in sent} == {"", leg_uuid(call.call_id, Leg.A),
                                        leg_uuid(call.call_id, Leg.B)}
    assert ("HEARTBEAT", "") in sent


async def test_event_lag_is_observed_for_metrics(make_config: MakeConfig, peer: EslPeer) -> None:
    lags: list[float] = []
    async with freeswitch_controller(make_config()) as controller:
        controller.backend.observe_event_lag = lags.append
        call = await controller.calls.start(CallRequest(leg_a="+27115550401", leg_b="+27115550202"))
        assert (await finished(call))["status"] == "busy"
    assert len(lags) >= 3 and all(0 <= lag < 1 for lag in lags)


async def test_json_events_work_the_same(make_config: MakeConfig, peer: EslPeer) -> None:
    async with freeswitch_controller(make_config(), event_format="json") as controller:
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                                        whisper=WHISPER, time_limit=1))
        result = await finished(call)
        assert backend_connection(peer).format == "json"
    assert (result["status"], result["hangup_by"], result["whisper_played"]) == \
        ("completed", "time_limit", True)


# ---------------------------------------------------------------- after a restart

async def test_reattach_while_the_whisper_plays(make_config: MakeConfig, peer: EslPeer) -> None:
    config = make_config()
    controller = freeswitch_controller(config)
    whisper = await controller.renderer.render("Connecting you to John Smith")
    call_id = "7e57ca11-0000-4000-8000-00000000000a"
    first = FreeswitchBackend(config.freeswitch)
    seen: list[Event] = []
    await first.connect()
    first.watch(call_id, seen.append)
    await first.execute(call_id, OriginateLegA("+27115550101", 30, None))
    await wait_until(lambda: any(isinstance(e, LegAnswered) for e in seen))
    await first.execute(call_id, PlayWhisper(str(whisper.path),
                                             DialLegB(("+27115550202",), 30, 60, None)))
    await asyncio.sleep(0.2)
    await first.close()  # the controller goes away mid-whisper; the call stays up

    second = FreeswitchBackend(config.freeswitch)
    later: list[Event] = []
    await second.connect()
    try:
        missed = await second.reattach(call_id, "whispering", later.append)
        assert missed == []  # still playing: its end will come as an event
        await wait_until(lambda: any(isinstance(e, WhisperFinished) for e in later), 10)
        await second.execute(call_id, HangupLegs((Leg.A,)))
        await wait_until(lambda: any(isinstance(e, LegEnded) for e in later))
        gone = await second.reattach("7e57ca11-0000-4000-8000-00000000000b", "bridged",
                                     later.append)
        assert len(gone) == 1 and isinstance(gone[0], EndedWhileAway)
        assert gone[0].a_answered is True and gone[0].a_cause is None
    finally:
        await second.close()


async def originate_leg_a_then_stop(config: Config, call_id: str) -> None:
    """A controller originates leg A and goes away before it answers."""
    first = FreeswitchBackend(config.freeswitch)
    await first.connect()
    first.watch(call_id, lambda event: None)
    await first.execute(call_id, OriginateLegA("+27115550101", 30, None))
    await first.close()


async def test_reattach_when_leg_a_answered_meanwhile(make_config: MakeConfig,
                                                      peer: EslPeer) -> None:
    config = make_config()
    call_id = "7e57ca11-0000-4000-8000-00000000000c"
    await originate_leg_a_then_stop(config, call_id)
    a = leg_uuid(call_id, Leg.A)
    await wait_until(lambda: a in peer.channels
                     and peer.channels[a].variables.get("current_application") == "park")
    second = FreeswitchBackend(config.freeswitch)
    await second.connect()
    try:
        missed = await second.reattach(call_id, "ringing-a", lambda event: None)
        assert [type(e) for e in missed] == [LegCreated, LegAnswered]
        await second.execute(call_id, HangupLegs((Leg.A,)))
    finally:
        await second.close()


async def test_reattach_when_leg_a_answered_but_is_not_parked_yet(make_config: MakeConfig,
                                                                  peer: EslPeer) -> None:
    # A whisper sent before park() would be cut short: the answer is
    # reported once A is parked, with the answer's time.
    peer.handover_seconds = 3.0
    config = make_config()
    call_id = "7e57ca11-0000-4000-8000-00000000000d"
    await originate_leg_a_then_stop(config, call_id)
    a = leg_uuid(call_id, Leg.A)
    await wait_until(lambda: a in peer.channels and peer.channels[a].answered.is_set())
    answered_at = peer.channels[a].answered_at / 1e6
    later: list[object] = []
    second = FreeswitchBackend(config.freeswitch)
    await second.connect()
    try:
        missed = await second.reattach(call_id, "ringing-a", later.append)
        assert [type(e) for e in missed] == [LegCreated]
        assert peer.channels[a].variables.get("current_application") != "park"
        await wait_until(lambda: bool(later), within=10)
        assert later == [LegAnswered(answered_at, Leg.A, a)]
        await second.execute(call_id, HangupLegs((Leg.A,)))
    finally:
        await second.close()


# ---------------------------------------------------------------- gevent stays inside

def test_the_asyncio_side_never_imports_gevent() -> None:
    code = ("import sys\n"
            "import controller.app, controller.calls.service, controller.cli\n"
            "from controller.backends.freeswitch import actions, calls, causes, ids, reattach, steps\n"
            "from controller.backends.freeswitch import tracking, translator, wire\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gevent', 'greenswitch'))\n"
            "print(','.join(bad))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""


async def test_using_the_backend_monkey_patches_nothing(make_config: MakeConfig,
                                                        peer: EslPeer) -> None:
    import gevent.monkey
    import gevent.socket

    async with freeswitch_controller(make_config()) as controller:
        assert isinstance(controller, Controller)
        call = await controller.calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                                        time_limit=1))
        assert (await finished(call))["status"] == "completed"
        assert [t.name for t in esl_threads()] == [THREAD_NAME]
    for module in ("socket", "threading", "time", "select", "ssl", "os"):
        assert not gevent.monkey.is_module_patched(module)
    assert socket.socket is not gevent.socket.socket
    assert threading.current_thread() is threading.main_thread()
    assert esl_threads() == []
