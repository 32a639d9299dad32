"""Core commands encoded as Event Socket commands: the right commands in the
right order, our own ids on every channel, and no value that could add a
header, a variable, a second target or an API argument."""

from __future__ import annotations

import pytest

from controller.backends.freeswitch.actions import (
    EslCommand,
    Verb,
    dial_string,
    encode,
    unwatch_filters,
    watch_filters,
)
from controller.backends.freeswitch.events import originate_job_uuid
from controller.calls.core import (
    Command,
    DialLegB,
    HangupLegs,
    Leg,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.config import FreeswitchConfig, Route
from controller.errors import SwitchActionFailed

CONFIG = FreeswitchConfig(gateway="trunk", uri_profile="internal", routes=[
    Route("+2711", "jhb"), Route("+271155501", "lab-a")])
CALL = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
DIAL_B = DialLegB("+27115550202", 30, 60, None)


def test_numbers_take_the_longest_matching_route_else_the_gateway() -> None:
    assert dial_string("+27115550101", CONFIG) == "sofia/gateway/lab-a/+27115550101"
    assert dial_string("+27115559999", CONFIG) == "sofia/gateway/jhb/+27115559999"
    assert dial_string("+442071234567", CONFIG) == "sofia/gateway/trunk/+442071234567"


def test_sip_uris_go_through_the_uri_profile() -> None:
    assert dial_string("sip:agent@127.0.0.1:5090", CONFIG) == \
        "sofia/internal/sip:agent@127.0.0.1:5090"
    assert dial_string("sips:agent@[::1]", CONFIG) == "sofia/internal/sips:agent@[::1]"


def test_originate_sets_our_ids_and_filters_first() -> None:
    commands = encode(CALL, OriginateLegA("+27115550101", 30, "+27110000000"), CONFIG)
    assert [c.wire for c in commands[:3]] == [
        f"filter Unique-ID {CALL}-a", f"filter Unique-ID {CALL}-b",
        f"filter Job-UUID {originate_job_uuid(CALL)}"]
    originate = commands[3]
    assert originate.verb is Verb.BGAPI
    assert originate.job_uuid == originate_job_uuid(CALL)
    assert originate.wire == (
        f"bgapi originate {{origination_uuid={CALL}-a,callconnect_call_id={CALL},"
        "originate_timeout=30,continue_on_fail=true,hangup_after_bridge=true,"
        "park_timeout=150:RECOVERY_ON_TIMER_EXPIRE,origination_caller_id_number=+27110000000}"
        f"sofia/gateway/lab-a/+27115550101 &park()\nJob-UUID: {originate_job_uuid(CALL)}")
    assert len(commands) == 4
    assert commands == [*watch_filters(CALL), originate]
    assert [c.wire for c in unwatch_filters(CALL)] == [
        f"filter delete Unique-ID {CALL}-a", f"filter delete Unique-ID {CALL}-b",
        f"filter delete Job-UUID {originate_job_uuid(CALL)}"]


def test_whisper_and_message_are_broadcast_to_leg_a() -> None:
    [whisper] = encode(CALL, PlayWhisper("/var/lib/callconnect/media/abc.wav", DIAL_B), CONFIG)
    assert whisper.wire == f"api uuid_broadcast {CALL}-a /var/lib/callconnect/media/abc.wav aleg"
    [message] = encode(CALL, PlayMessageThenHangup("/m/sorry.wav"), CONFIG)
    assert message.wire == \
        f"api uuid_broadcast {CALL}-a playback!NORMAL_CLEARING::/m/sorry.wav aleg"


def test_dial_b_is_a_bridge_on_leg_a_with_ring_timeout_and_time_limit() -> None:
    setvar, bridge = encode(CALL, DialLegB("sip:bob@10.0.0.5:5060", 25, 600, "+27110000000"),
                            CONFIG)
    assert setvar.wire == f"api uuid_setvar {CALL}-a ringback %(2000,4000,440,480)"
    assert bridge.verb is Verb.SENDMSG
    assert bridge.wire == (
        f"sendmsg {CALL}-a\ncall-command: execute\nexecute-app-name: bridge\n"
        f"execute-app-arg: {{origination_uuid={CALL}-b,callconnect_call_id={CALL},"
        "originate_timeout=25,execute_on_answer='sched_hangup +600 ALLOTTED_TIMEOUT',"
        "origination_caller_id_number=+27110000000}sofia/internal/sip:bob@10.0.0.5:5060")


def test_recording_and_hangups() -> None:
    [record] = encode(CALL, StartRecording("/r/c1.wav"), CONFIG)
    assert record.wire == f"api uuid_record {CALL}-a start /r/c1.wav"
    hangups = encode(CALL, HangupLegs((Leg.A, Leg.B)), CONFIG)
    assert [h.wire for h in hangups] == [f"api uuid_kill {CALL}-a NORMAL_CLEARING",
                                         f"api uuid_kill {CALL}-b NORMAL_CLEARING"]
    assert all(h.missing_ok for h in hangups)
    assert encode(CALL, HangupLegs(()), CONFIG) == []


def test_command_names_for_logs() -> None:
    assert EslCommand(Verb.API, "uuid_kill x").name == "api uuid_kill"
    assert EslCommand(Verb.SENDMSG, "x\ncall-command: execute").name == "sendmsg"


BAD_TARGETS = [
    "+2711\r\nJob-UUID: x", "+2711\nX", "+27,11", "+27 11", "+27|11", "${SHELL}", "+27;x=y",
    "+27\x00", "{a=b}+27", "+27'", "sip:a b@host", "sip:a@host;transport=tcp",
    "sip:a@host,sofia/gateway/x/1", "sip:a@host|sip:b@host", "sip:a!b@host", "sip:${x}@host",
    "sip:a@host\r\n", "", "gateway/x/+27",
]


@pytest.mark.parametrize("bad", BAD_TARGETS)
def test_targets_with_syntax_never_reach_freeswitch(bad: str) -> None:
    for command in (OriginateLegA(bad, 30, None), DialLegB(bad, 30, 60, None)):
        with pytest.raises(SwitchActionFailed, match="refusing"):
            encode(CALL, command, CONFIG)


BAD_PATHS = [
    "/m/a b.wav", "/m/a\nb.wav", "/m/x.wav aleg", "relative.wav", "/m/a,b.wav", "/m/a!b.wav",
    "/m/hangup::x", "/m/${x}.wav", "/m/{a=b}.wav", "/m/a'b.wav", "/m/a;b.wav", "/m/\x7f.wav",
]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_paths_with_syntax_never_reach_freeswitch(bad: str) -> None:
    commands: list[Command] = [PlayWhisper(bad, DIAL_B), PlayMessageThenHangup(bad), StartRecording(bad)]
    for command in commands:
        with pytest.raises(SwitchActionFailed, match="refusing"):
            encode(CALL, command, CONFIG)


@pytest.mark.parametrize("bad", ["+27 11", "+27,1", "27x", "+27\r\n1", "${x}", "+" + "1" * 21])
def test_caller_ids_with_syntax_never_reach_freeswitch(bad: str) -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, OriginateLegA("+27115550101", 30, bad), CONFIG)


@pytest.mark.parametrize("bad", ["c 1", "c\n1", "c,1", "c}1", "", "-leading", "a" * 64, "c/1"])
def test_call_ids_with_syntax_never_reach_freeswitch(bad: str) -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(bad, HangupLegs((Leg.A,)), CONFIG)


@pytest.mark.parametrize("gateway", ["trunk/x", "a,b", "a b", "a\n", "{x}", ""])
def test_gateway_and_profile_names_are_checked_too(gateway: str) -> None:
    config = FreeswitchConfig(gateway=gateway, uri_profile=gateway)
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, OriginateLegA("+27115550101", 30, None), config)
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, OriginateLegA("sip:a@host", 30, None), config)


@pytest.mark.parametrize("seconds", [0, -1, 601, True])
def test_ring_timeouts_out_of_range_are_refused(seconds: int) -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, OriginateLegA("+27115550101", seconds, None), CONFIG)
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, DialLegB("+27115550101", seconds, 60, None), CONFIG)


@pytest.mark.parametrize("seconds", [0, 86401])
def test_time_limits_out_of_range_are_refused(seconds: int) -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, DialLegB("+27115550101", 30, seconds, None), CONFIG)
