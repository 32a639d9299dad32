"""Core commands encoded as AMI actions: right actions, right order, and no
value that could smuggle an extra header into AMI."""

from __future__ import annotations

import pytest

from controller.backends.asterisk.actions import MAX_LINE, dial_string, encode
from controller.config import AsteriskConfig, Route
from controller.core.commands import (
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed
from controller.numbers import target_of
from tests.unit.backends.asterisk.setvars import separate_args, variables_set

CONFIG = AsteriskConfig(trunk_endpoint="trunk", uri_endpoint="uri-out", routes=[
    Route("+2711", "jhb"), Route("+271155501", "lab-a")])


def test_numbers_take_the_longest_matching_route_else_the_trunk() -> None:
    assert dial_string(target_of("+27115550101"), CONFIG) == "PJSIP/+27115550101@lab-a"
    assert dial_string(target_of("+27115559999"), CONFIG) == "PJSIP/+27115559999@jhb"
    assert dial_string(target_of("+442071234567"), CONFIG) == "PJSIP/+442071234567@trunk"


def test_sip_uris_go_through_the_uri_endpoint() -> None:
    assert dial_string(target_of("sip:agent@127.0.0.1:5090"), CONFIG) == \
        "PJSIP/uri-out/sip:agent@127.0.0.1:5090"


def test_originate_uses_our_channel_id_and_passes_no_text() -> None:
    [action] = encode("c1", OriginateLegA("+27115550101", 30, "+27110000000"), CONFIG)
    assert action["Action"] == "Originate"
    assert action["ChannelId"] == "c1-a"
    assert action["Channel"] == "PJSIP/+27115550101@lab-a"
    assert action["Context"] == "callconnect-leg-a"
    assert action["Timeout"] == "30000"
    assert action["Async"] == "true"
    assert action["Variable"] == "CC_CALL_ID=c1"
    assert action["CallerID"] == "<+27110000000>"
    assert action["ActionID"] == "originate-c1"


def test_whisper_arms_leg_bs_dial_then_redirects_leg_a() -> None:
    # The dialplan dials B itself when the whisper ends: no round trip.
    command = PlayWhisper("/var/lib/callconnect/media/abc.wav",
                          DialLegB(("+27115550202",), 25, 600, None))
    actions = encode("c1", command, CONFIG)
    # One Setvar sets all four (ARRAY()): two actions where five were.
    assert [a["Action"] for a in actions] == ["Setvar", "Redirect"]
    values = variables_set(actions)
    assert values == {"CC_AUDIO": "/var/lib/callconnect/media/abc",
                      "CC_DIAL": "PJSIP/+27115550202@jhb", "CC_RING_TIMEOUT": "25",
                      "CC_DIAL_OPTIONS": "rS(600)U(callconnect-bridge)"}
    assert actions[-1]["Context"] == "callconnect-whisper"
    message = encode("c1", PlayMessageThenHangup("/m/sorry.wav"), CONFIG)
    assert message[-1]["Context"] == "callconnect-message"


def test_dial_b_sets_dial_string_timeout_and_time_limit() -> None:
    actions = encode("c1", DialLegB(("+27115550202",), 25, 600, None), CONFIG)
    values = variables_set(actions)
    assert values == {"CC_DIAL": "PJSIP/+27115550202@jhb", "CC_RING_TIMEOUT": "25",
                      "CC_DIAL_OPTIONS": "rS(600)U(callconnect-bridge)"}
    assert actions[-1] == {"Action": "Redirect", "Channel": "c1-a",
                           "Context": "callconnect-dial", "Exten": "s", "Priority": "1"}


def test_recording_is_started_by_the_dialplan_as_b_accepts_not_over_ami() -> None:
    # The AMI MixMonitor action needs the `system` class; the dialplan's answer
    # gosub starts MixMonitor on B with the path the controller chose.
    assert encode("c1", StartRecording("/r/c1.wav"), CONFIG) == []
    actions = encode("c1", DialLegB(("+27115550202",), 25, 600, None, record_file="/r/c1.wav"),
                     CONFIG)
    values = variables_set(actions)
    assert values["CC_DIAL_OPTIONS"] == "rS(600)U(callconnect-answer^^^5^/r/c1.wav)"
    both = encode("c1", DialLegB(("+27115550202",), 25, 600, None, "/m/hi.wav", "1", 7,
                                 record_file="/r/c1.wav"), CONFIG)
    values = variables_set(both)
    assert values["CC_DIAL_OPTIONS"] == "rS(600)U(callconnect-answer^/m/hi^1^7^/r/c1.wav)"


@pytest.mark.parametrize("bad", ["/r/x.wav,,rm -rf /", "/r/x.wav)^y", "r.wav", "/r/a b.wav"])
def test_recording_paths_that_could_reach_mixmonitors_options_are_refused(bad: str) -> None:
    with pytest.raises(SwitchActionFailed):
        encode("c1", DialLegB(("+27115550202",), 25, 600, None, record_file=bad), CONFIG)


def test_hangup() -> None:
    hangups = encode("c1", HangupLegs((Leg.A, Leg.B)), CONFIG, b_channel="1795.12")
    assert [a["Channel"] for a in hangups] == ["c1-a", "1795.12"]
    assert encode("c1", HangupLegs((Leg.B,)), CONFIG, b_channel=None) == []


@pytest.mark.parametrize("bad", [
    "+2711\r\nAction: Originate", "+2711\nX", "+27,11", "+27 11", "${SHELL}", "$[1+1]",
    "+27;user=phone", "+27\x00",
])
def test_control_and_dialplan_characters_never_reach_ami(bad: str) -> None:
    with pytest.raises(SwitchActionFailed):
        encode("c1", OriginateLegA(bad, 30, None), CONFIG)
    with pytest.raises(SwitchActionFailed):
        encode("c1", DialLegB((bad,), 30, 60, None), CONFIG)
    with pytest.raises(SwitchActionFailed):
        encode("c1", OriginateLegA("+27115550101", 30, bad), CONFIG)


@pytest.mark.parametrize("bad", ["/m/a b.wav", "/m/a,b.wav", "relative.wav", "/m/x\r\n.wav"])
def test_audio_paths_are_checked(bad: str) -> None:
    with pytest.raises(SwitchActionFailed):
        encode("c1", PlayWhisper(bad, DialLegB(("+27115550202",), 25, 600, None)), CONFIG)


def test_simultaneous_targets_ring_in_one_dial() -> None:
    command = DialLegB(("+27115550202", "sip:agent@127.0.0.1:5090", "endpoint:desk-7"), 20, 600, None)
    values = variables_set(encode("c1", command, CONFIG))
    assert values["CC_DIAL"] == ("PJSIP/+27115550202@jhb&PJSIP/uri-out/sip:agent@127.0.0.1:5090"
                                 "&PJSIP/desk-7")
    with pytest.raises(SwitchActionFailed):
        encode("c1", DialLegB(("+27115550202", "+27\r\nX"), 20, 600, None), CONFIG)


def test_hold_music_and_answer_steps_become_dial_options() -> None:
    [originate] = encode("c1", OriginateLegA("+27115550101", 30, None, hold_music=True), CONFIG)
    assert originate["Variable"] == "CC_CALL_ID=c1,CC_HOLD_MUSIC=1"
    command = DialLegB(("+27115550202",), 25, 600, None, answer_audio="/m/whisper.wav",
                       confirm_key="1", confirm_timeout=7, hold_music=True)
    values = variables_set(encode("c1", command, CONFIG))
    assert values["CC_DIAL_OPTIONS"] == "mS(600)U(callconnect-answer^/m/whisper^1^7^)"


@pytest.mark.parametrize("key", ["12", "a", "^", ")"])
def test_confirm_keys_are_single_dtmf_digits(key: str) -> None:
    with pytest.raises(SwitchActionFailed):
        encode("c1", DialLegB(("+27115550202",), 25, 600, None, confirm_key=key), CONFIG)


def test_the_reader_of_array_values_splits_as_asterisk_does() -> None:
    assert separate_args('a,(b,c),"d,e",f\\,g,[h,i],') == ["a", "(b,c)", "d,e", "f,g", "[h,i]", ""]


def test_a_steps_inputs_go_in_one_setvar_until_a_line_would_be_too_long() -> None:
    many = tuple(f"+2711555{n:04d}" for n in range(43))  # 988 characters of dial strings
    actions = encode("c1", PlayWhisper("/m/w.wav", DialLegB(many, 25, 600, None)), CONFIG)
    assert [a["Action"] for a in actions] == ["Setvar", "Setvar", "Redirect"]
    assert all(len(f"{key}: {value}\r\n") <= MAX_LINE for a in actions for key, value in a.items())
    assert variables_set(actions)["CC_DIAL"].split("&") == [f"PJSIP/{n}@jhb" for n in many]
    assert variables_set(actions)["CC_DIAL_OPTIONS"] == "rS(600)U(callconnect-bridge)"


def test_a_value_longer_than_an_ami_line_is_refused_with_the_limit() -> None:
    many = tuple(f"+2711555{n:04d}" for n in range(60))
    with pytest.raises(SwitchActionFailed, match="over 1024 bytes"):
        encode("c1", DialLegB(many, 25, 600, None), CONFIG)
