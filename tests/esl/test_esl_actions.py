"""Core commands encoded as Event Socket commands: the right commands in the
right order, our own ids on every channel (each within FreeSWITCH's 36
characters), several targets at once, the confirm step, and no value that
could add a header, a variable, a second target or an API argument."""

from __future__ import annotations

import pytest

from controller.backends.freeswitch.actions import (
    EslCommand,
    Verb,
    answer_steps,
    dial_legs,
    dial_string,
    encode,
    execute,
    restart_music,
    unwatch_filters,
    watch_filters,
)
from controller.backends.freeswitch.ids import MAX_CHANNEL_ID, b_leg_index, leg_uuid, originate_job_uuid
from controller.backends.freeswitch.steps import AnswerSteps
from controller.config import FreeswitchConfig, Route
from controller.core.commands import (
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed

CONFIG = FreeswitchConfig(gateway="trunk", uri_profile="internal", routes=[
    Route("+2711", "jhb"), Route("+271155501", "lab-a")])
CALL = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
A = "5f0c1d2e3a4b4c5d8e6f7a8b9c0d1e2f-a"
B0 = "5f0c1d2e3a4b4c5d8e6f7a8b9c0d1e2f-b00"
DIAL_B = DialLegB(("+27115550202",), 30, 60, None)


def test_numbers_take_the_longest_matching_route_else_the_gateway() -> None:
    assert dial_string("+27115550101", CONFIG) == "sofia/gateway/lab-a/+27115550101"
    assert dial_string("+27115559999", CONFIG) == "sofia/gateway/jhb/+27115559999"
    assert dial_string("+442071234567", CONFIG) == "sofia/gateway/trunk/+442071234567"


def test_sip_uris_go_through_the_uri_profile() -> None:
    assert dial_string("sip:agent@127.0.0.1:5090", CONFIG) == \
        "sofia/internal/sip:agent@127.0.0.1:5090"
    assert dial_string("sips:agent@[::1]", CONFIG) == "sofia/internal/sips:agent@[::1]"


def test_channel_ids_fit_in_36_characters_and_say_whose_they_are() -> None:
    assert leg_uuid(CALL, Leg.A) == A
    assert leg_uuid(CALL, Leg.B) == B0
    assert leg_uuid(CALL, Leg.B, 37) == "5f0c1d2e3a4b4c5d8e6f7a8b9c0d1e2f-b11"
    assert leg_uuid(CALL, Leg.B, 1295).endswith("-bzz")
    assert b_leg_index(CALL, leg_uuid(CALL, Leg.B, 1295)) == 1295
    assert b_leg_index(CALL, A) is None
    assert b_leg_index("other", B0) is None
    # A call id that is not a UUID gets a UUID of its own, still 36 at most.
    other = leg_uuid("call-1", Leg.B, 5)
    assert len(other) == MAX_CHANNEL_ID and other != leg_uuid("call-2", Leg.B, 5)
    for leg, index in [(Leg.A, 0), (Leg.B, 0), (Leg.B, 1295)]:
        assert len(leg_uuid(CALL, leg, index)) <= MAX_CHANNEL_ID
    with pytest.raises(ValueError):
        leg_uuid(CALL, Leg.B, 1296)


def test_originate_sets_our_ids_filters_first_and_arms_the_hold_limit() -> None:
    commands = encode(CALL, OriginateLegA("+27115550101", 30, "+27110000000"), CONFIG)
    assert [c.wire for c in commands[:2]] == [
        f"filter Unique-ID {A}", f"filter Job-UUID {originate_job_uuid(CALL)}"]
    originate = commands[2]
    assert originate.verb is Verb.BGAPI
    assert originate.job_uuid == originate_job_uuid(CALL)
    assert originate.wire == (
        f"bgapi originate {{origination_uuid={A},callconnect_call_id={CALL},"
        "originate_timeout=30,continue_on_fail=true,hangup_after_bridge=true,"
        "execute_on_answer='sched_hangup +120 RECOVERY_ON_TIMER_EXPIRE',"
        "origination_caller_id_number=+27110000000}"
        f"sofia/gateway/lab-a/+27115550101 &park()\nJob-UUID: {originate_job_uuid(CALL)}")
    assert len(commands) == 3
    assert commands == [*watch_filters(CALL), originate]
    assert [c.wire for c in unwatch_filters(CALL, [B0])] == [
        f"filter delete Unique-ID {A}", f"filter delete Job-UUID {originate_job_uuid(CALL)}",
        f"filter delete Unique-ID {B0}"]


def test_hold_music_starts_when_leg_a_answers() -> None:
    [*_, originate] = encode(CALL, OriginateLegA("+27115550101", 30, None, hold_music=True),
                             CONFIG)
    assert ("execute_on_answer='sched_hangup +120 RECOVERY_ON_TIMER_EXPIRE',"
            "execute_on_answer_music='displace_session local_stream://moh mux'}") in originate.wire


def test_hold_music_comes_back_after_an_attempt_on_leg_as_own_channel() -> None:
    assert restart_music(CALL).wire == f"api uuid_displace {A} start local_stream://moh 0 mux"
    # A claimed incoming caller's channel is the switch's, not named after the call.
    caller = "9f0c2d4e-1b2a-4c3d-8e9f-0a1b2c3d4e5f"
    assert restart_music(CALL, caller).wire == (
        f"api uuid_displace {caller} start local_stream://moh 0 mux")
    with pytest.raises(SwitchActionFailed):
        restart_music(CALL, "x y")


def test_whisper_and_message_are_broadcast_to_leg_a_with_a_fresh_hold_limit() -> None:
    commands = encode(CALL, PlayWhisper("/var/lib/callconnect/media/abc.wav", DIAL_B), CONFIG)
    assert [c.wire for c in commands] == [
        f"api sched_del {A}",
        f"api sched_hangup +120 {A} RECOVERY_ON_TIMER_EXPIRE",
        f"api uuid_broadcast {A} /var/lib/callconnect/media/abc.wav aleg"]
    *_, message = encode(CALL, PlayMessageThenHangup("/m/sorry.wav"), CONFIG, hold_music=True)
    assert message.wire == f"api uuid_broadcast {A} playback!NORMAL_CLEARING::/m/sorry.wav aleg"
    stop = encode(CALL, PlayMessageThenHangup("/m/sorry.wav"), CONFIG, hold_music=True)[1]
    assert stop.wire == f"api uuid_displace {A} stop local_stream://moh"
    assert stop.optional  # the music may not be playing


def test_dial_b_is_a_bridge_on_leg_a_with_ring_timeout_and_time_limit() -> None:
    commands = encode(CALL, DialLegB(("sip:bob@10.0.0.5:5060",), 25, 600, "+27110000000"),
                      CONFIG)
    assert [c.wire for c in commands] == [
        f"api sched_del {A}",
        f"filter Unique-ID {B0}",
        f"api uuid_setvar {A} transfer_ringback %(2000,4000,440,480)",
        # A's hold limit covers the ring and the wait after a failed bridge;
        # the bridge's start disarms it.
        f"api sched_hangup +145 {A} RECOVERY_ON_TIMER_EXPIRE",
        f"api uuid_setvar {A} api_before_bridge sched_del {A}",
        f"sendmsg {A}\ncall-command: execute\nexecute-app-name: bridge\n"
        f"execute-app-arg: {{callconnect_call_id={CALL},originate_timeout=25,"
        "execute_on_answer='sched_hangup +600 ALLOTTED_TIMEOUT',"
        "origination_caller_id_number=+27110000000}"
        f"[origination_uuid={B0},callconnect_target=sip:bob@10.0.0.5:5060]"
        "sofia/internal/sip:bob@10.0.0.5:5060"]
    assert commands[-1].verb is Verb.SENDMSG


def test_several_targets_ring_at_once_each_with_its_own_id_and_target() -> None:
    targets = ("+27115550202", "sip:ann@example.com", "endpoint:agent-7")
    commands = encode(CALL, DialLegB(targets, 20, 60, None, hold_music=True), CONFIG, b_index=3)
    ids = [leg_uuid(CALL, Leg.B, i) for i in (3, 4, 5)]
    assert dial_legs(CALL, targets, 3) == list(zip(ids, targets, strict=True))
    wires = [c.wire for c in commands]
    assert wires[:2] == [f"api sched_del {A}", f"api uuid_displace {A} stop local_stream://moh"]
    assert wires[2:5] == [f"filter Unique-ID {i}" for i in ids]
    assert wires[5:8] == [f"api uuid_setvar {A} transfer_ringback local_stream://moh",
                          f"api sched_hangup +140 {A} RECOVERY_ON_TIMER_EXPIRE",
                          f"api uuid_setvar {A} api_before_bridge sched_del {A}"]
    assert len(wires) == 9  # nothing queued behind the bridge: it would run while B rings
    bridge = wires[8].rsplit("execute-app-arg: ", 1)[1]
    assert bridge == (
        f"{{callconnect_call_id={CALL},originate_timeout=20,"
        "execute_on_answer='sched_hangup +60 ALLOTTED_TIMEOUT'}"
        f"[origination_uuid={ids[0]},callconnect_target=+27115550202]"
        "sofia/gateway/jhb/+27115550202,"
        f"[origination_uuid={ids[1]},callconnect_target=sip:ann@example.com]"
        "sofia/internal/sip:ann@example.com,"
        f"[origination_uuid={ids[2]},callconnect_target=endpoint:agent-7]user/agent-7")


def test_confirm_key_is_group_confirm_with_per_leg_ring_timeouts() -> None:
    command = DialLegB(("+27115550202", "+27115550203"), 20, 60, None,
                       answer_audio="/m/whisper.wav", confirm_key="#", confirm_timeout=4)
    bridge = encode(CALL, command, CONFIG)[-1].wire.rsplit("execute-app-arg: ", 1)[1]
    assert bridge.startswith(
        f"{{callconnect_call_id={CALL},originate_timeout=140,"
        "execute_on_pre_bridge='sched_hangup +60 ALLOTTED_TIMEOUT',group_confirm_key=#,"
        "group_confirm_read_timeout=4000,group_confirm_file=/m/whisper.wav,"
        "group_confirm_cancel_timeout=true}"
        f"[origination_uuid={B0},callconnect_target=+27115550202,leg_timeout=20]")
    assert answer_steps(command) == AnswerSteps("#", "/m/whisper.wav", 4)
    key_only = DialLegB(("+27115550202",), 20, 60, None, confirm_key="5", confirm_timeout=3)
    bridge = encode(CALL, key_only, CONFIG)[-1].wire
    assert ("group_confirm_key=5,group_confirm_read_timeout=3000,"
            "group_confirm_cancel_timeout=true}") in bridge


def test_a_whisper_on_answer_alone_is_group_confirm_exec_playback() -> None:
    command = DialLegB(("+27115550202",), 20, 60, None, answer_audio="/m/whisper.wav")
    bridge = encode(CALL, command, CONFIG)[-1].wire
    assert ("group_confirm_key=exec,group_confirm_file='playback /m/whisper.wav',"
            "group_confirm_cancel_timeout=true}") in bridge
    assert answer_steps(command) == AnswerSteps(None, "/m/whisper.wav", 5)
    assert answer_steps(DIAL_B) is None


@pytest.mark.parametrize("key", ["12", "a", " ", ",", "1}", "\n"])
def test_confirm_keys_with_syntax_never_reach_freeswitch(key: str) -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, DialLegB(("+27115550202",), 20, 60, None, confirm_key=key), CONFIG)


def test_endpoints_are_the_switch_own_users() -> None:
    assert dial_string("endpoint:agent.7_x-y", CONFIG) == "user/agent.7_x-y"
    for bad in ("endpoint:", "endpoint:a/b", "endpoint:a@b", "endpoint:a,b", "endpoint:a b"):
        with pytest.raises(SwitchActionFailed, match="refusing"):
            dial_string(bad, CONFIG)


def test_recording_and_hangups() -> None:
    [record] = encode(CALL, StartRecording("/r/c1.wav"), CONFIG)
    assert record.wire == f"api uuid_record {A} start /r/c1.wav"
    b1 = leg_uuid(CALL, Leg.B, 1)
    hangups = encode(CALL, HangupLegs((Leg.A, Leg.B)), CONFIG, b_channels=[B0, b1])
    assert [h.wire for h in hangups] == [f"api uuid_kill {A} NORMAL_CLEARING",
                                         f"api uuid_kill {B0} NORMAL_CLEARING",
                                         f"api uuid_kill {b1} NORMAL_CLEARING"]
    assert all(h.missing_ok for h in hangups)
    assert encode(CALL, HangupLegs(()), CONFIG) == []
    assert encode(CALL, HangupLegs((Leg.B,)), CONFIG) == []  # no B channel yet


def test_command_names_for_logs() -> None:
    assert EslCommand(Verb.API, "uuid_kill x").name == "api uuid_kill"
    assert EslCommand(Verb.SENDMSG, "x\ncall-command: execute").name == "sendmsg"
    # A sendmsg by its application: the error of one refused among a step's says which.
    assert execute("x", "playback", "/m/a.wav", lock=True).name == "sendmsg playback"


BAD_TARGETS = [
    "+2711\r\nJob-UUID: x", "+2711\nX", "+27,11", "+27 11", "+27|11", "${SHELL}", "+27;x=y",
    "+27\x00", "{a=b}+27", "+27'", "sip:a b@host", "sip:a@host;transport=tcp",
    "sip:a@host,sofia/gateway/x/1", "sip:a@host|sip:b@host", "sip:a!b@host", "sip:${x}@host",
    "sip:a@host\r\n", "", "gateway/x/+27", "endpoint:a,b", "endpoint:[x]", "endpoint:",
]


@pytest.mark.parametrize("bad", BAD_TARGETS)
def test_targets_with_syntax_never_reach_freeswitch(bad: str) -> None:
    for command in (OriginateLegA(bad, 30, None), DialLegB((bad,), 30, 60, None),
                    DialLegB(("+27115550202", bad), 30, 60, None)):
        with pytest.raises(SwitchActionFailed, match="refusing"):
            encode(CALL, command, CONFIG)


BAD_PATHS = [
    "/m/a b.wav", "/m/a\nb.wav", "/m/x.wav aleg", "relative.wav", "/m/a,b.wav", "/m/a!b.wav",
    "/m/hangup::x", "/m/${x}.wav", "/m/{a=b}.wav", "/m/a'b.wav", "/m/a;b.wav", "/m/\x7f.wav",
]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_paths_with_syntax_never_reach_freeswitch(bad: str) -> None:
    commands: list[Command] = [PlayWhisper(bad, DIAL_B), PlayMessageThenHangup(bad), StartRecording(bad),
                               DialLegB(("+27115550202",), 30, 60, None, answer_audio=bad)]
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
    # Built without the config's own checks (which refuse ""): the encoder refuses on its own.
    config = FreeswitchConfig.model_construct(gateway=gateway, uri_profile=gateway)
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, OriginateLegA("+27115550101", 30, None), config)
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, OriginateLegA("sip:a@host", 30, None), config)


@pytest.mark.parametrize("seconds", [0, -1, 601, True])
def test_ring_timeouts_out_of_range_are_refused(seconds: int) -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, OriginateLegA("+27115550101", seconds, None), CONFIG)
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, DialLegB(("+27115550101",), seconds, 60, None), CONFIG)


def test_no_target_and_confirm_timeouts_out_of_range_are_refused() -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, DialLegB((), 30, 60, None), CONFIG)
    for seconds in (0, 61):
        with pytest.raises(SwitchActionFailed, match="refusing"):
            encode(CALL, DialLegB(("+27115550101",), 30, 60, None, confirm_key="1",
                                  confirm_timeout=seconds), CONFIG)


@pytest.mark.parametrize("seconds", [0, 86401])
def test_time_limits_out_of_range_are_refused(seconds: int) -> None:
    with pytest.raises(SwitchActionFailed, match="refusing"):
        encode(CALL, DialLegB(("+27115550101",), 30, seconds, None), CONFIG)
