"""A live call's steps, claim and refuse encoded as AMI actions: the step's
inputs as Setvars, then one Redirect of leg A (the claimed channel of an
incoming call), and nothing the dialplan would read as syntax."""

from __future__ import annotations

from typing import Any

import pytest

from controller.backends.asterisk.actions import claim_actions, encode, refuse_actions
from controller.config import AsteriskConfig
from controller.core.commands import (
    Command,
    GatherDigits,
    HangupLegs,
    PauseLegA,
    PlayToLegA,
    RecordLegA,
    WaitForActions,
)
from controller.core.outcomes import Leg
from controller.errors import SwitchActionFailed
from tests.unit.backends.asterisk.setvars import variables_set

CONFIG = AsteriskConfig(trunk_endpoint="trunk")
INBOUND = "1796012622.0"  # an incoming call's Uniqueid, as Asterisk names it


def steered(actions: list[dict[str, str]], channel: str) -> tuple[dict[str, str], str]:
    """The variables set and the context leg A is sent to; every action on
    ``channel``, the Redirect last."""
    assert {a["Channel"] for a in actions} == {channel}
    *setvars, redirect = actions
    assert [a["Action"] for a in setvars] == ["Setvar"] * len(setvars)
    assert (redirect["Action"], redirect["Exten"], redirect["Priority"]) == ("Redirect", "s", "1")
    return variables_set(setvars), redirect["Context"]


def test_play_sends_every_file_and_the_loop_count_to_the_claimed_channel() -> None:
    command = PlayToLegA("act-1", ("/m/welcome.wav", "/m/menu.wav"), loop=3)
    values, context = steered(encode("c1", command, CONFIG, a_channel=INBOUND), INBOUND)
    assert context == "callconnect-play"
    assert values == {"CC_ACTION": "act-1", "CC_TRY": "1", "CC_DONE": "",
                      "CC_AUDIO": "/m/welcome&/m/menu", "CC_LOOP": "3"}


def test_without_a_claimed_channel_steps_act_on_the_originated_leg_a() -> None:
    _, context = steered(encode("c1", PauseLegA("act-2", 5), CONFIG), "c1-a")
    assert context == "callconnect-pause"


def test_gather_sends_its_limits_and_keys() -> None:
    command = GatherDigits("g1", "/m/prompt.wav", max_digits=4, finish_on_key="#", timeout=5,
                           inter_digit_timeout=3)
    values, context = steered(encode("c1", command, CONFIG, a_channel=INBOUND), INBOUND)
    assert context == "callconnect-gather"
    assert values == {"CC_ACTION": "g1", "CC_TRY": "1", "CC_DONE": "", "CC_PROMPT": "/m/prompt",
                      "CC_MAX_DIGITS": "4", "CC_FINISH_KEY": "#", "CC_TIMEOUT": "5",
                      "CC_INTER_DIGIT": "3"}
    no_prompt = GatherDigits("g2", None, max_digits=1, finish_on_key="", timeout=1,
                             inter_digit_timeout=1)
    values, _ = steered(encode("c1", no_prompt, CONFIG, a_channel=INBOUND), INBOUND)
    assert (values["CC_PROMPT"], values["CC_FINISH_KEY"]) == ("", "")


def test_record_starts_into_its_file_and_stops_with_none() -> None:
    values, context = steered(encode("c1", RecordLegA("r1", "/r/c1-step.wav"), CONFIG), "c1-a")
    assert context == "callconnect-record"
    assert values == {"CC_ACTION": "r1", "CC_TRY": "1", "CC_DONE": "", "CC_RECORD": "start",
                      "CC_RECORD_FILE": "/r/c1-step.wav"}
    values, _ = steered(encode("c1", RecordLegA("r2", None), CONFIG), "c1-a")
    assert values == {"CC_ACTION": "r2", "CC_TRY": "1", "CC_DONE": "", "CC_RECORD": "stop"}


@pytest.mark.parametrize(("command", "try_number"), [
    (PlayToLegA("s1", ("/m/welcome.wav",)), "1"),
    (GatherDigits("s1", "/m/prompt.wav", max_digits=4, finish_on_key="#", timeout=5,
                  inter_digit_timeout=3, try_number=3), "3"),
    (PauseLegA("s1", 5), "1"), (RecordLegA("s1", "/r/c1-step.wav"), "1")])
def test_a_step_clears_its_end_mark_with_its_action_and_try_in_its_first_setvar(
        command: Command, try_number: str) -> None:
    """The dialplan marks a step ended (CC_DONE=CC_ACTION): one set up and
    never started carries no mark of its action, even if only its first
    Setvar was sent, so a restarted controller sends it again. Its try is
    set with it (1 for all but a gather tried again, so a gather's try never
    outlives its step), so an end found is matched to the try that ran."""
    first, *_ = encode("c1", command, CONFIG)
    set_first = variables_set([first])
    assert (set_first["CC_ACTION"], set_first["CC_TRY"], set_first["CC_DONE"]) == (
        "s1", try_number, "")


def test_waiting_for_actions_rings_only_an_unanswered_call() -> None:
    values, context = steered(encode("c1", WaitForActions(30, ringback=True), CONFIG), "c1-a")
    assert context == "callconnect-idle"
    assert values == {"CC_WAIT": "30", "CC_RINGBACK": "1"}
    values, _ = steered(encode("c1", WaitForActions(30, ringback=False), CONFIG), "c1-a")
    assert values["CC_RINGBACK"] == ""


def test_hanging_up_a_claimed_call_hangs_up_its_channel() -> None:
    [action] = encode("c1", HangupLegs((Leg.A,)), CONFIG, a_channel=INBOUND)
    assert (action["Action"], action["Channel"]) == ("Hangup", INBOUND)


def test_claim_keeps_the_call_id_on_the_channel_and_holds_it() -> None:
    values, context = steered(claim_actions(INBOUND, "5f0c1a2b-0000-4000-8000-000000000001"),
                              INBOUND)
    assert context == "callconnect-hold"
    assert values == {"CC_CALL_ID": "5f0c1a2b-0000-4000-8000-000000000001"}


def test_refuse_plays_a_message_or_rejects_with_the_cause() -> None:
    values, context = steered(refuse_actions(INBOUND, "/m/sorry.wav", 16), INBOUND)
    assert context == "callconnect-refuse"
    assert values == {"CC_AUDIO": "/m/sorry", "CC_CAUSE": "16"}
    values, _ = steered(refuse_actions(INBOUND, None, 1), INBOUND)
    assert values == {"CC_AUDIO": "", "CC_CAUSE": "1"}


@pytest.mark.parametrize("command", [
    PlayToLegA("a,b", ("/m/x.wav",)),  # an id the dialplan would split
    PlayToLegA("act-1", ("/m/x.wav",), loop=0),
    PlayToLegA("act-1", ("/m/x.wav",), loop=11),
    PlayToLegA("act-1", ()),
    PlayToLegA("act-1", ("/m/x,y.wav",)),
    PlayToLegA("act-1", ("relative.wav",)),
    GatherDigits("g1", None, max_digits=0, finish_on_key="#", timeout=5, inter_digit_timeout=3),
    GatherDigits("g1", None, max_digits=4, finish_on_key="##", timeout=5, inter_digit_timeout=3),
    GatherDigits("g1", None, max_digits=4, finish_on_key="a", timeout=5, inter_digit_timeout=3),
    GatherDigits("g1", None, max_digits=4, finish_on_key="#", timeout=0, inter_digit_timeout=3),
    GatherDigits("g1", "/m/${SHELL(id)}.wav", max_digits=4, finish_on_key="#", timeout=5,
                 inter_digit_timeout=3),
    GatherDigits("g1", None, max_digits=4, finish_on_key="#", timeout=5, inter_digit_timeout=3,
                 try_number=0),
    PauseLegA("w1", 0),
    PauseLegA("w1\r\nAction: Hangup", 5),
    RecordLegA("r1", "/r/x.wav^y"),
    WaitForActions(0, ringback=False),
])
def test_a_value_the_dialplan_would_misread_is_refused_before_sending(command: Command) -> None:
    with pytest.raises(SwitchActionFailed):
        encode("c1", command, CONFIG, a_channel=INBOUND)


@pytest.mark.parametrize(("channel", "args"), [
    ("/PJSIP/.*", ("c1",)),  # Hangup would read it as a pattern over every channel
    ("1796.0\r\nAction: Hangup", ("c1",)),
    (INBOUND, ("c1,x",)),
])
def test_claim_refuses_a_channel_or_call_id_that_is_not_one(channel: str, args: Any) -> None:
    with pytest.raises(SwitchActionFailed):
        claim_actions(channel, *args)


@pytest.mark.parametrize("cause", [0, 128, -1])
def test_refuse_takes_only_q850_causes(cause: int) -> None:
    with pytest.raises(SwitchActionFailed):
        refuse_actions(INBOUND, None, cause)


def test_steps_on_a_claimed_channel_refuse_a_channel_pattern() -> None:
    with pytest.raises(SwitchActionFailed):
        encode("c1", PauseLegA("w1", 1), CONFIG, a_channel="/.*/")
