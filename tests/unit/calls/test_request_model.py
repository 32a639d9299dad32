"""Every limit of a call request, in the one model that holds them: a value at
the bound is taken, one past it is refused naming the field (the API answers
the same refusal as 400 invalid-field)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.calls import request as limits
from controller.calls.request import CallRequest, TargetOption, make_request
from controller.errors import InvalidField
from controller.tts import MAX_TEXT_CHARS

LEGS = {"leg_a": "+27115550101", "leg_b": "+27115550202"}
TARGETS = [f"+2711555{i:04d}" for i in range(limits.MAX_TARGETS + 1)]

# (fields at the bound, the same fields one past it, the field named)
BOUNDS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"ring_timeout": limits.MIN_RING_TIMEOUT}, {"ring_timeout": limits.MIN_RING_TIMEOUT - 1},
     "ring_timeout"),
    ({"ring_timeout": limits.MAX_RING_TIMEOUT}, {"ring_timeout": limits.MAX_RING_TIMEOUT + 1},
     "ring_timeout"),
    ({"time_limit": limits.MIN_TIME_LIMIT}, {"time_limit": limits.MIN_TIME_LIMIT - 1}, "time_limit"),
    ({"time_limit": limits.MAX_TIME_LIMIT}, {"time_limit": limits.MAX_TIME_LIMIT + 1}, "time_limit"),
    ({"max_attempts": 1}, {"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": limits.MAX_ATTEMPTS}, {"max_attempts": limits.MAX_ATTEMPTS + 1},
     "max_attempts"),
    ({"confirm_timeout": limits.MIN_CONFIRM_TIMEOUT},
     {"confirm_timeout": limits.MIN_CONFIRM_TIMEOUT - 1}, "confirm_timeout"),
    ({"confirm_timeout": limits.MAX_CONFIRM_TIMEOUT},
     {"confirm_timeout": limits.MAX_CONFIRM_TIMEOUT + 1}, "confirm_timeout"),
    ({"confirm_key": "#"}, {"confirm_key": "##"}, "confirm_key"),
    ({"confirm_key": "9"}, {"confirm_key": "A"}, "confirm_key"),
    ({"fallbacks": {"busy": {"dial": TARGETS[:limits.MAX_TARGETS]}}},
     {"fallbacks": {"busy": {"dial": TARGETS}}}, "fallbacks.busy.dial"),
    ({"fallbacks": {"all_busy": {"hangup": True}}}, {"fallbacks": {"everyone_left": {"hangup": True}}},
     "fallbacks.everyone_left.[key]"),
    ({"fallbacks": {"no_answer": {"queue": {"group": "sales", "max_wait": limits.QUEUE_MAX_WAIT[2]}}}},
     {"fallbacks": {"no_answer": {"queue": {"group": "sales",
                                            "max_wait": limits.QUEUE_MAX_WAIT[2] + 1}}}},
     "fallbacks.no_answer.queue.max_wait"),
    ({"whisper": "x" * MAX_TEXT_CHARS}, {"whisper": "x" * (MAX_TEXT_CHARS + 1)}, "whisper"),
    ({"caller_id": "1" * limits.MAX_CALLER_ID_CHARS},
     {"caller_id": "1" * (limits.MAX_CALLER_ID_CHARS + 1)}, "caller_id"),
    ({"leg_a": "1" * limits.MAX_LEG_A_CHARS}, {"leg_a": "1" * (limits.MAX_LEG_A_CHARS + 1)}, "leg_a"),
    ({"webhook_url": "https://h.example/" + "x" * (limits.MAX_TARGET_CHARS - 18)},
     {"webhook_url": "https://h.example/" + "x" * (limits.MAX_TARGET_CHARS - 17)}, "webhook_url"),
    ({"strategy": "sequential"}, {"strategy": "round-robin"}, "strategy"),
    ({"webhook_events": ["bridged"]}, {"webhook_events": ["hung_up"]}, "webhook_events[0]"),
    ({"whisper_timing": "on_answer"}, {"whisper_timing": "after_bridge"}, "whisper_timing"),
    ({"while_ringing": "music"}, {"while_ringing": "silence"}, "while_ringing"),
    ({"outside_calling_hours": "schedule"}, {"outside_calling_hours": "later"},
     "outside_calling_hours"),
    ({"calling_days": ["mon"] * 7}, {"calling_days": ["mon"] * 8}, "calling_days"),
    ({"metadata": {}}, {"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("taken", "refused", "field"), BOUNDS)
def test_each_limit_is_refused_just_past_its_bound(taken: dict[str, Any], refused: dict[str, Any],
                                                    field: str) -> None:
    assert isinstance(make_request(**{**LEGS, **taken}), CallRequest)
    with pytest.raises(InvalidField) as caught:
        make_request(**{**LEGS, **refused})
    assert caught.value.details["field"] == field, caught.value.message
    assert caught.value.message.startswith(f"{field}: ")


def test_a_targets_own_ring_timeout_has_the_same_bounds() -> None:
    TargetOption.model_validate({"to": "+27115550202", "ring_timeout": limits.MAX_RING_TIMEOUT})
    with pytest.raises(ValidationError) as caught:
        TargetOption.model_validate({"to": "+27115550202",
                                     "ring_timeout": limits.MAX_RING_TIMEOUT + 1})
    assert caught.value.errors()[0]["loc"] == ("ring_timeout",)


def test_metadata_limits_are_the_models_and_name_the_field() -> None:
    limits.check_metadata({f"k{i}": i for i in range(limits.MAX_METADATA_KEYS)})
    with pytest.raises(InvalidField) as caught:
        limits.check_metadata({f"k{i}": i for i in range(limits.MAX_METADATA_KEYS + 1)})
    assert caught.value.details["field"] == "metadata"
    limits.check_metadata({"custom_field": "x" * limits.MAX_CUSTOM_FIELD_CHARS})
    with pytest.raises(InvalidField) as caught:
        limits.check_metadata({"custom_field": "x" * (limits.MAX_CUSTOM_FIELD_CHARS + 1)})
    assert caught.value.details["field"] == "metadata.custom_field"


def test_the_routing_data_is_kept_as_it_was_sent() -> None:
    """leg_b and fallbacks go to the store (and GET /v1/calls/{id}) as sent:
    no null options added to them."""
    request = make_request(**{**LEGS, "leg_b": ["+27115550202", {"to": "+27115550203"}],
                              "fallbacks": {"busy": {"message": "Sorry"}}})
    assert request.routing() == {"leg_b": ["+27115550202", {"to": "+27115550203"}],
                                 "fallbacks": {"busy": {"message": "Sorry"}}}
    assert make_request(**LEGS).routing() == {"leg_b": "+27115550202", "fallbacks": None}
