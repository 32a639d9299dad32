"""The action JSON: each type's rules, the list's bound, and errors that name
the field the way the API answers (``actions[2].max_digits``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.actions.spec import MAX_ACTIONS, ActionsRequest, ConnectAction, parse_answer
from controller.calls.connect import ConnectOptions
from controller.calls.request import CallRequest, make_request
from controller.errors import InvalidField

LEG_A = "+27115550101"


def refused_field(actions: list[Any]) -> str:
    with pytest.raises(InvalidField) as caught:
        parse_answer({"actions": actions})
    return str(caught.value.details["field"])


def test_every_type_is_kept_with_its_defaults_filled() -> None:
    actions = parse_answer({"actions": [
        {"type": "play", "text": "Hello"}, {"type": "gather"}, {"type": "pause", "seconds": 2},
        {"type": "record", "command": "start"}, {"type": "hangup"},
        {"type": "redirect", "url": "https://ivr.example.com/next"},
        {"type": "connect", "to": "group:sales", "caller_id": "caller"}]})
    dumped = [action.model_dump(mode="json") for action in actions]
    assert dumped[0] == {"type": "play", "text": "Hello", "file": None, "voice": None,
                         "language": None, "loop": 1}
    assert dumped[1] == {"type": "gather", "prompt": None, "max_digits": 1, "finish_on_key": "#",
                         "timeout": 5, "inter_digit_timeout": 3, "retries": 0,
                         "valid_digits": "", "action_url": None}
    # The connect takes leg B's options, with their defaults.
    assert dumped[6]["to"] == "group:sales" and dumped[6]["strategy"] == "simultaneous"
    assert dumped[6]["confirm_timeout"] == 5 and dumped[6]["caller_id"] == "caller"


@pytest.mark.parametrize(("action", "field"), [
    ({"type": "dance"}, "actions[1].type"),
    ({"text": "no type"}, "actions[1].type"),
    ({"type": "gather", "max_digits": 33}, "actions[1].max_digits"),
    ({"type": "gather", "max_digits": 0}, "actions[1].max_digits"),
    ({"type": "gather", "valid_digits": "12a"}, "actions[1].valid_digits"),
    ({"type": "gather", "finish_on_key": "##"}, "actions[1].finish_on_key"),
    ({"type": "gather", "timeout": 61}, "actions[1].timeout"),
    ({"type": "gather", "timeout": "5"}, "actions[1].timeout"),  # strict: no "5" for 5
    ({"type": "gather", "retries": 6}, "actions[1].retries"),
    ({"type": "gather", "prompt": "<speak>hi</speak>"}, "actions[1].prompt"),
    ({"type": "play"}, "actions[1]"),  # neither text nor file
    ({"type": "play", "text": "hi", "file": "hi.wav"}, "actions[1]"),
    ({"type": "play", "file": "../etc/passwd"}, "actions[1].file"),
    ({"type": "play", "file": "sub/x.wav"}, "actions[1].file"),
    ({"type": "play", "text": "hi", "loop": 11}, "actions[1].loop"),
    ({"type": "play", "text": "line\nbreak"}, "actions[1].text"),
    ({"type": "play", "text": "hi", "voice": "-x"}, "actions[1].voice"),
    ({"type": "pause"}, "actions[1].seconds"),
    ({"type": "pause", "seconds": 601}, "actions[1].seconds"),
    ({"type": "record", "command": "pause"}, "actions[1].command"),
    ({"type": "hangup", "reason": "bye\x00"}, "actions[1].reason"),
    ({"type": "hangup", "extra": 1}, "actions[1].extra"),
    ({"type": "connect", "to": "group:sales", "confirm_key": "12"}, "actions[1].confirm_key"),
])
def test_a_bad_action_is_named_by_its_place_and_field(action: dict[str, Any], field: str) -> None:
    assert refused_field([{"type": "pause", "seconds": 1}, action]) == field


def test_a_list_holds_at_most_fifty_actions() -> None:
    pause = {"type": "pause", "seconds": 1}
    assert len(parse_answer({"actions": [pause] * MAX_ACTIONS})) == MAX_ACTIONS
    assert refused_field([pause] * (MAX_ACTIONS + 1)) == "actions"


def test_a_call_has_leg_b_or_actions_never_both_nor_neither() -> None:
    assert make_request(leg_a=LEG_A, actions=[{"type": "hangup"}]).single_leg
    assert not make_request(leg_a=LEG_A, leg_b="+27115550202").single_leg
    for fields in ({}, {"leg_b": "+27115550202", "actions": []}):
        with pytest.raises(InvalidField) as caught:
            make_request(leg_a=LEG_A, **fields)
        assert caught.value.details["field"] == "actions"
    # An empty list is a call that waits for actions sent over the API.
    assert make_request(leg_a=LEG_A, actions=[]).action_specs() == []


def test_a_call_requests_actions_are_named_under_actions() -> None:
    with pytest.raises(InvalidField) as caught:
        make_request(leg_a=LEG_A, actions=[{"type": "hangup"}, {"type": "gather", "max_digits": 40}])
    assert caught.value.details["field"] == "actions[1].max_digits"


def test_actions_sent_to_a_live_call_are_at_least_one() -> None:
    with pytest.raises(ValidationError):
        ActionsRequest.model_validate({"actions": []})
    assert ActionsRequest.model_validate({"actions": [{"type": "hangup"}], "replace": True}).replace


def test_the_connect_action_and_the_call_request_share_leg_bs_options() -> None:
    assert issubclass(ConnectAction, ConnectOptions) and issubclass(CallRequest, ConnectOptions)
