"""Property tests: no byte of user input reaches an AMI action or an Event
Socket command unescaped. Every field that can come from a request (targets,
caller ID) or from the controller (ids, file paths) is filled with
adversarial text; the encoders must either refuse it (SwitchActionFailed) or
produce commands whose structure the input cannot change."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.backends.asterisk import actions as ami
from controller.backends.freeswitch import actions as esl
from controller.config import AsteriskConfig, FreeswitchConfig, Route
from controller.core.commands import (
    AnnounceToLegA,
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayMessageThenHangup,
    PlayWhisper,
    StartRecording,
)
from controller.core.outcomes import Leg
from controller.errors import InvalidNumber, SwitchActionFailed
from controller.numbers import parse_target
from tests.unit.backends.asterisk.setvars import variables_set

PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

AMI_CONFIG = AsteriskConfig(trunk_endpoint="trunk", uri_endpoint="uri-out",
                            routes=[Route("+2711", "jhb")])
ESL_CONFIG = FreeswitchConfig(gateway="trunk", uri_profile="internal",
                              routes=[Route("+2711", "jhb")])

# Fragments that mean something to AMI, the dialplan, FreeSWITCH or SIP.
DANGEROUS = ["\r", "\n", "\r\n", "\x00", "\x1b", "\x7f", "\u2028", "\x85", ",", "&", "(", ")",
             "|", "'", '"', "{", "}", "[", "]", "$", "${CALLERID(num)}", "$[1+1]", ";", "?",
             " ", "\t", "^", "\\", "=", "!", "@", ":", "/", "\r\nAction: Hangup\r\n",
             ";transport=tcp", "?X-Foo=bar", "::", "+", "sip:", "endpoint:"]
adversarial = st.lists(st.one_of(st.sampled_from(DANGEROUS), st.text(max_size=6)),
                       max_size=8).map("".join)

# Near what a SIP URI may be: ' and ! in the user part are refused by
# parse_target, upper-case scheme and host are normalised.
SIP_URI = (r"(?i:sips?):[A-Za-z0-9_.!~*'+-]{1,12}@([A-Za-z0-9-]{1,10}(\.[A-Za-z0-9-]{1,10}){0,2}"
           r"|\[[0-9A-Fa-f:]{2,20}\])(:[0-9]{1,5})?")


def _parsed(text: str) -> str | None:
    try:
        return parse_target(text, "ZA", "leg_b").value
    except InvalidNumber:
        return None


# Targets as the core gets them: normalised by parse_target (valid numbers,
# SIP URIs, endpoints), or, as if something upstream were broken, raw text.
valid_targets = st.one_of(
    st.sampled_from(["+27115550101", "011 555 0202", "+442071234567", "(011) 555-0303"]),
    st.from_regex(SIP_URI, fullmatch=True),
    st.from_regex(r"endpoint:[A-Za-z0-9_.-]{1,20}", fullmatch=True),
).map(_parsed).filter(lambda value: value is not None)
targets = st.one_of(valid_targets, adversarial)
paths = st.one_of(st.from_regex(r"/[a-z0-9_./-]{1,30}\.wav", fullmatch=True), adversarial)
caller_ids = st.one_of(st.none(), st.from_regex(r"\+?[0-9]{3,15}", fullmatch=True), adversarial)
# Mostly well-formed ids, so the other fields' checks are reached too.
uuids = st.uuids().map(str)
call_ids = st.one_of(uuids, uuids, uuids, adversarial)
channels = st.one_of(uuids, adversarial)
dials = st.builds(
    DialLegB, targets=st.lists(targets, min_size=1, max_size=4).map(tuple),
    ring_timeout=st.integers(1, 600), time_limit=st.integers(1, 86400), caller_id=caller_ids,
    answer_audio=st.one_of(st.none(), paths),
    confirm_key=st.one_of(st.none(), st.sampled_from(list("0123456789*#")), adversarial),
    confirm_timeout=st.integers(1, 60), hold_music=st.booleans(),
    record_file=st.one_of(st.none(), paths))
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(OriginateLegA, target=targets, ring_timeout=st.integers(1, 600),
              caller_id=caller_ids, hold_music=st.booleans()),
    dials,
    st.builds(PlayWhisper, audio=paths, then_dial=dials),
    st.builds(PlayMessageThenHangup, audio=paths),
    st.builds(AnnounceToLegA, audio=paths, hold_for=st.integers(1, 3600)),
    st.builds(StartRecording, file=paths),
    st.builds(HangupLegs, legs=st.lists(st.sampled_from(Leg), min_size=1, max_size=2).map(tuple)),
)

CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# Nothing in a dial string may split Dial's arguments, join more targets,
# close an option or expand in the dialplan: a number through a trunk, a
# device, or a SIP URI (brackets only around an IPv6 host) through the URI
# endpoint, each part as the encoder is strict about it.
AMI_DIAL_PART = re.compile(r"PJSIP/(\+?[0-9]{1,20}@[A-Za-z0-9_.-]{1,64}"
                           r"|[A-Za-z0-9_.-]{1,64}"
                           r"|uri-out/sips?:[A-Za-z0-9_.+~*-]{1,64}@"
                           r"([a-z0-9.-]+|\[[0-9a-f:.]{2,45}\])(:[0-9]{1,5})?)")
AMI_CALL_VARIABLE = re.compile(r"CC_CALL_ID=[A-Za-z0-9][A-Za-z0-9-]{0,62}(,CC_HOLD_MUSIC=1)?")
AMI_PATH = re.compile(r"/[A-Za-z0-9_./-]+")
AMI_OPTIONS = re.compile(r"[rm]S\([0-9]+\)"
                         r"(U\(callconnect-answer\^(/[A-Za-z0-9_./-]+)?\^[0-9*#]?\^[0-9]+"
                         r"\^(/[A-Za-z0-9_./-]+)?\)|U\(callconnect-bridge\))")
CALLER_ID = re.compile(r"\+?[0-9]{1,20}")


def _dial_of(command: Command) -> DialLegB | None:
    if isinstance(command, DialLegB):
        return command
    if isinstance(command, PlayWhisper):
        return command.then_dial
    return None


# Known attacks, always tried besides what hypothesis makes up.
UUID = "e3e70682-c209-4cac-929f-6fbed82c07cd"
AMI_HEADER = "\r\nAction: Hangup\r\nChannel: PJSIP/victim"
KNOWN_ATTACKS = [
    (UUID, OriginateLegA("+27115550101" + AMI_HEADER, 30, None), None),
    (UUID, OriginateLegA("+27115550101", 30, "123" + AMI_HEADER), None),
    (UUID, DialLegB(("+27115550101,60,G(x)", "+2711&Local/x"), 30, 60, None), None),
    (UUID, DialLegB(("+27115550101",), 30, 60, "${CALLERID(num)}"), None),
    (UUID, DialLegB(("+27115550101",), 30, 60, None, "/a.wav)^x", "1"), None),
    (UUID, PlayMessageThenHangup("/tmp/x,rw" + AMI_HEADER), None),
    ("c1" + AMI_HEADER, StartRecording("/r/x.wav"), None),
    # MixMonitor's third argument is a shell command: the path must not reach it.
    (UUID, DialLegB(("+27115550101",), 30, 60, None, record_file="/r/x.wav,,rm -rf /"), None),
    (UUID, DialLegB(("+27115550101",), 30, 60, None, record_file="/r/x.wav)^y"), None),
    (UUID, HangupLegs((Leg.B,)), "PJSIP/x" + AMI_HEADER),
    (UUID, HangupLegs((Leg.B,)), "/.*/"),  # Hangup would take it for every channel
    (UUID, OriginateLegA("sip:a@[::1]]x[", 30, None), None),
    ("c1,CC_HOLD_MUSIC=0", OriginateLegA("+27115550101", 30, None), None),
]


def with_examples(cases: list[tuple[object, ...]]):  # type: ignore[no-untyped-def]
    def decorate(test):  # type: ignore[no-untyped-def]
        for case in cases:
            test = example(*case)(test)
        return test
    return decorate


@PROPERTY
@given(call_id=call_ids, command=commands, b_channel=st.one_of(st.none(), channels))
@with_examples(KNOWN_ATTACKS)
def test_ami_actions_hold_no_control_character_and_keep_their_structure(
        call_id: str, command: Command, b_channel: str | None) -> None:
    try:
        actions = ami.encode(call_id, command, AMI_CONFIG, b_channel)
    except SwitchActionFailed:
        return  # refused, as it should be for what it cannot make safe
    for action in actions:
        for key, value in action.items():
            assert not CONTROL.search(key) and not CONTROL.search(value), (key, value)
        if action["Action"] == "Originate":
            assert AMI_DIAL_PART.fullmatch(action["Channel"]), action
            assert AMI_CALL_VARIABLE.fullmatch(action["Variable"]), action
            assert "CallerID" not in action or re.fullmatch(r"<\+?[0-9]{1,20}>", action["CallerID"])
        if action["Action"] == "Hangup":  # "/..." would be a regular expression over channels
            assert not action["Channel"].startswith("/") and "," not in action["Channel"], action
    variables = variables_set(actions)
    dial = _dial_of(command)
    if dial is not None:
        parts = variables["CC_DIAL"].split("&")
        assert all(AMI_DIAL_PART.fullmatch(part) for part in parts), parts
        assert len(parts) == len({ami.dial_string(ami.target_of(t), AMI_CONFIG)
                                  for t in dial.targets}), "one dial string per target"
        assert AMI_OPTIONS.fullmatch(variables["CC_DIAL_OPTIONS"]), variables["CC_DIAL_OPTIONS"]
        assert variables.get("CALLERID(num)") is None or \
            CALLER_ID.fullmatch(variables["CALLERID(num)"])
    if "CC_AUDIO" in variables:
        assert AMI_PATH.fullmatch(variables["CC_AUDIO"])


# ------------------------------------------------------------------ FreeSWITCH

ESL_VALUE = re.compile(r"[A-Za-z0-9_+.:@/*#~%()\[\]-]*")  # no , } ] ' { | space or $
ESL_QUOTED = re.compile(r"'[A-Za-z0-9_+ ./:-]*'")  # the encoder's own quoted app strings
ESL_ENDPOINT = re.compile(r"(sofia|user)/[A-Za-z0-9_+.:@/*~\[\]-]+")
ESL_VARIABLES = {
    "origination_uuid", esl.CALL_ID_VARIABLE, "originate_timeout", "continue_on_fail",
    "hangup_after_bridge", "execute_on_answer", "execute_on_answer_music",
    "execute_on_pre_bridge", "origination_caller_id_number", "group_confirm_key",
    "group_confirm_file", "group_confirm_cancel_timeout", "group_confirm_read_timeout",
    esl.TARGET_VARIABLE, "leg_timeout"}


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split where FreeSWITCH would: not inside '...', [...] or {...}."""
    parts, current, quoted, depth = [], "", False, 0
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        if char == separator and not quoted and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    assert not quoted and depth == 0, f"unbalanced quote or bracket in {text!r}"
    return [*parts, current]


def _variables(text: str, opening: str, closing: str) -> tuple[dict[str, str], str]:
    """A ``{a=b,c='d e'}`` (or ``[...]``) list at the start of text: its
    pairs, checked, and what follows it. The list ends where FreeSWITCH ends
    it (switch_find_end_paren): at the closing character that balances the
    opening one, so an IPv6 host's brackets stay inside."""
    assert text.startswith(opening), text
    body, quoted, depth = "", False, 1
    for i, char in enumerate(text[1:], 1):
        if char == "'":
            quoted = not quoted
        if char == opening and not quoted:
            depth += 1
        if char == closing and not quoted:
            depth -= 1
            if depth == 0:
                rest = text[i + 1:]
                break
        body += char
    else:
        raise AssertionError(f"no closing {closing} in {text!r}")
    pairs = {}
    for pair in _split_outside_quotes(body, ","):
        name, _, value = pair.partition("=")
        assert name in ESL_VARIABLES, name
        assert name not in pairs, f"{name} set twice"
        assert ESL_VALUE.fullmatch(value) or ESL_QUOTED.fullmatch(value), (name, value)
        pairs[name] = value
    return pairs, rest


def _check_bridge(arg: str, dial: DialLegB) -> None:
    _, legs_text = _variables(arg, "{", "}")
    legs = _split_outside_quotes(legs_text, ",")
    assert len(legs) == len(dial.targets), legs
    for leg, target in zip(legs, dial.targets, strict=True):
        leg_vars, endpoint = _variables(leg, "[", "]")
        assert leg_vars[esl.TARGET_VARIABLE] == target
        assert ESL_ENDPOINT.fullmatch(endpoint), endpoint


@PROPERTY
@given(call_id=call_ids, command=commands, b_index=st.integers(0, 20),
       b_channels=st.lists(channels, max_size=3),
       hold_music=st.booleans())
@with_examples([(call_id, command, 0, [channel] if channel else [], False)
                for call_id, command, channel in KNOWN_ATTACKS])
def test_esl_commands_are_one_line_each_and_keep_their_structure(
        call_id: str, command: Command, b_index: int, b_channels: list[str],
        hold_music: bool) -> None:
    try:
        commands = esl.encode(call_id, command, ESL_CONFIG, b_index=b_index,
                              b_channels=b_channels, hold_music=hold_music)
    except SwitchActionFailed:
        return
    for sent in commands:
        lines = sent.wire.split("\n")
        assert not any(CONTROL.search(line) for line in lines), sent.wire
        if sent.verb is esl.Verb.SENDMSG:
            _channel, *headers = lines
            assert [h.split(": ", 1)[0] for h in headers] == \
                ["call-command", "execute-app-name", "execute-app-arg"], headers
            if headers[1] == "execute-app-name: bridge":
                dial = _dial_of(command)
                assert dial is not None
                _check_bridge(headers[2].split(": ", 1)[1], dial)
            continue
        assert len(lines) == (2 if sent.job_uuid else 1), lines
        words = _split_outside_quotes(sent.text, " ")
        if words[0] == "originate":
            assert isinstance(command, OriginateLegA)
            _, dial_string = _variables(words[1], "{", "}")
            assert ESL_ENDPOINT.fullmatch(dial_string), dial_string
            assert words[2:] == ["&park()"], words
        elif words[0] in ("uuid_kill", "uuid_broadcast", "uuid_record", "uuid_setvar",
                          "uuid_displace", "sched_del", "sched_hangup"):
            # Fixed arity: nothing from the input added an argument.
            if words[0] == "uuid_setvar" and words[2] == esl.BRIDGE_START_API:
                # The API command the bridge's start runs: disarm A's own hold limit.
                assert words[3:] == ["sched_del", words[1]], words
                continue
            arity = {"uuid_kill": 3, "uuid_broadcast": 4, "uuid_record": 4, "uuid_setvar": 4,
                     "uuid_displace": 4, "sched_del": 2, "sched_hangup": 4}[words[0]]
            assert len(words) == arity, words
            if words[0] == "uuid_setvar":  # the encoder's own tone or music, commas and all
                assert words[3] in (esl.RINGBACK, esl.HOLD_MUSIC), words
                words = words[:3]
            assert all(word and "'" not in word and "," not in word for word in words), words


@PROPERTY
@given(call_id=uuids, b_channels=st.lists(channels, min_size=1, max_size=3))
def test_esl_hangups_name_one_channel_each(call_id: str, b_channels: list[str]) -> None:
    try:
        commands = esl.encode(call_id, HangupLegs((Leg.A, Leg.B)), ESL_CONFIG,
                              b_channels=b_channels)
    except SwitchActionFailed:
        return
    for sent in commands:
        assert not CONTROL.search(sent.wire), sent.wire
        assert re.fullmatch(r"uuid_kill [A-Za-z0-9-]+ NORMAL_CLEARING", sent.text), sent.text


@PROPERTY
@given(call_id=call_ids, b_channels=st.lists(channels, min_size=1, max_size=3))
def test_esl_event_filters_name_one_channel_each(call_id: str, b_channels: list[str]) -> None:
    try:
        filters = esl.unwatch_filters(call_id, b_channels)
    except SwitchActionFailed:
        return
    for sent in filters:
        assert not CONTROL.search(sent.wire), sent.wire
        assert sent.text.split(" ")[:-1] in (["delete", "Unique-ID"], ["delete", "Job-UUID"]), sent
        assert re.fullmatch(r"[A-Za-z0-9-]+", sent.text.split(" ")[-1]), sent


# ------------------------------------------------------------------ parse_target

SAFE_TARGET = re.compile(r"\+[0-9]{4,17}"
                         r"|sips?:[A-Za-z0-9_.~*+-]{1,64}@[a-z0-9.-]+(:[0-9]{1,5})?"
                         r"|sips?:[A-Za-z0-9_.~*+-]{1,64}@\[[0-9a-f:.]+\](:[0-9]{1,5})?"
                         r"|endpoint:[A-Za-z0-9_.-]{1,64}")
near_targets = st.one_of(
    adversarial,
    st.from_regex(SIP_URI, fullmatch=True).flatmap(
        lambda uri: st.tuples(st.just(uri), adversarial).map("".join)),
    st.from_regex(r"\+?[0-9 ()./-]{3,20}", fullmatch=True),
    st.text(alphabet=string.digits + "+٠١٢٣４５６７ -", max_size=20),
    st.tuples(st.sampled_from(["sip:", "SIP:", "sips:", "endpoint:", "+27", "\u017fip:"]),
              adversarial).map("".join),
)


@PROPERTY
@given(text=near_targets)
def test_parse_target_refuses_or_returns_only_safe_characters(text: str) -> None:
    try:
        target = parse_target(text, "ZA", "leg_b")
    except InvalidNumber as exc:
        assert exc.details["field"] == "leg_b"
        return
    assert SAFE_TARGET.fullmatch(target.value), (text, target.value)


# ------------------------------------------------- one rule for the API and the switch

@PROPERTY
@given(text=near_targets, call_id=uuids)
@example(text="sip:a'b@c.com", call_id=UUID)
@example(text="sip:a!b@c.com", call_id=UUID)
@example(text="sip:agent@[::1]:5060", call_id=UUID)
@example(text="SIP:Agent@PBX.Example.com", call_id=UUID)
@example(text="endpoint:desk-1.a_b", call_id=UUID)
def test_what_the_api_accepts_both_switches_dial(text: str, call_id: str) -> None:
    """A target parse_target accepts is never refused later by an encoder
    (after leg A was rung), and one it refuses is never dialed by either."""
    try:
        target = parse_target(text, "ZA", "leg_b").value
    except InvalidNumber:
        # (Which digits make a number is phonenumbers' to say, before the
        # encoders; what a URI or a device name may hold is the one rule.)
        if text.startswith(("sip:", "sips:", "endpoint:")):
            refused = OriginateLegA(text, 30, None)
            with pytest.raises(SwitchActionFailed):
                ami.encode(call_id, refused, AMI_CONFIG)
            with pytest.raises(SwitchActionFailed):
                esl.encode(call_id, refused, ESL_CONFIG)
        return
    for command in (OriginateLegA(target, 30, None), DialLegB((target,), 30, 60, None)):
        ami.encode(call_id, command, AMI_CONFIG)
        esl.encode(call_id, command, ESL_CONFIG)
