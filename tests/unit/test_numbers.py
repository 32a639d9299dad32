"""Unit tests for call targets (controller.numbers): numbers and SIP URIs."""

from __future__ import annotations

import pytest

from controller.errors import InvalidNumber, InvalidRequest, SameLegs
from controller.numbers import (
    Target,
    TargetKind,
    normalize_number,
    parse_target,
    refuse_same_legs,
)

ZA = "ZA"
JHB = "+27115550101"


# ---------------------------------------------------------------- numbers accepted


@pytest.mark.parametrize(
    "text",
    [
        "+27115550101",
        "+27 11 555 0101",
        "011 555 0101",
        "(011) 555-0101",
        "011-555-0101",
        "011.555.0101",
        "0115550101",
        "  011 555 0101  ",
    ],
)
def test_za_formats_normalise_to_e164(text: str) -> None:
    target = parse_target(text, ZA, "leg_a")
    assert target == Target(TargetKind.NUMBER, JHB)
    assert str(target) == JHB


def test_za_mobile_number() -> None:
    assert normalize_number("082 555 0101", ZA) == "+27825550101"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (212) 555-0100", "+12125550100"),
        ("+49 30 901820", "+4930901820"),
    ],
)
def test_other_countries_by_country_code(text: str, expected: str) -> None:
    assert normalize_number(text, ZA) == expected


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("(212) 555-0100", "US", "+12125550100"),
        ("020 7946 0958", "GB", "+442079460958"),
    ],
)
def test_local_numbers_read_in_the_given_region(text: str, region: str, expected: str) -> None:
    assert normalize_number(text, region) == expected


# ---------------------------------------------------------------- numbers refused


def refusal(text: str, field: str = "leg_a") -> InvalidNumber:
    with pytest.raises(InvalidNumber) as info:
        parse_target(text, ZA, field)
    error = info.value
    assert error.error_id == "invalid-number"
    assert isinstance(error, InvalidRequest)
    assert error.details == {"field": field}
    assert error.message.startswith(f"{field} ")
    return error


@pytest.mark.parametrize(
    "text",
    [
        "0800FLOWERS",  # keypad letters would be quietly turned into digits
        "\u0660\u0661\u0661\u0665\u0665\u0665\u0660\u0661\u0660\u0661",  # Arabic-Indic 011 555 0101
        "\uff10\uff11\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff11",  # fullwidth 011 555 0101
        "011+5550101",  # "+" in the middle
        "+27+115550101",
        "011 555 0101 ext 2",
        "011\n555 0101",
        "+",
    ],
)
def test_refused_characters(text: str) -> None:
    error = refusal(text)
    assert "is not a phone number" in error.message
    assert repr(text) in error.message


@pytest.mark.parametrize("text", ["011", "0115", "+2711"])
def test_too_short(text: str) -> None:
    assert "too short" in refusal(text).message


@pytest.mark.parametrize("text", ["+2711555010199999", "01155501010101"])
def test_too_long(text: str) -> None:
    assert "too long" in refusal(text).message


def test_not_a_valid_number_in_the_region() -> None:
    message = refusal("099 555 0101").message
    assert "is not a valid number in ZA" in message


def test_unknown_country_code() -> None:
    assert "is not a phone number" in refusal("+999 1234 5678").message


@pytest.mark.parametrize("text", ["", "   "])
def test_empty(text: str) -> None:
    assert refusal(text, "leg_b").message == "leg_b is empty"


def test_field_defaults() -> None:
    with pytest.raises(InvalidNumber) as info:
        normalize_number("abc", ZA)
    assert info.value.details == {"field": "number"}
    with pytest.raises(InvalidNumber) as info:
        parse_target("abc", ZA)
    assert info.value.details == {"field": "target"}


# ---------------------------------------------------------------- SIP URIs


@pytest.mark.parametrize(
    "text",
    [
        "sip:phone@127.0.0.1:5090",
        "sips:agent@pbx.example.com",
        "sip:1001@pbx.example.com:5060",
        "sip:+27115550101@trunk.example.net",
        "sip:agent@[::1]:5060",
        "sip:a.b_c-d@host",
    ],
)
def test_sip_uris_accepted_unchanged(text: str) -> None:
    assert parse_target(text, ZA, "leg_b") == Target(TargetKind.SIP_URI, text)


def test_sip_uri_surrounding_whitespace_is_stripped() -> None:
    assert parse_target("  sip:phone@127.0.0.1:5090 ", ZA).value == "sip:phone@127.0.0.1:5090"


def test_sip_scheme_is_case_insensitive() -> None:
    assert parse_target("SIP:agent@pbx.example.com", ZA).value == "sip:agent@pbx.example.com"


@pytest.mark.parametrize(
    "text",
    [
        "sip:agent@pbx.example.com;transport=tcp",
        "sip:agent@pbx.example.com?X-Evil=1",
        "sip:agent@pbx.example.com\r\nX-Evil: 1",
        "sip:agent@pbx.example.com\nX-Evil: 1",
        "sip:agent@pbx.example.com\rX-Evil: 1",
        "sip:@pbx.example.com",
        "sip:agent",
        "sip:agent@",
        "sip:age nt@pbx.example.com",
        "sip:agent@pbx.example.com:",
        # FreeSWITCH quoting and uuid_broadcast syntax: refused here, not
        # after leg A answered.
        "sip:a'b@c.com",
        "sip:a!b@c.com",
        "sip:a@[c.com]",
        "sip:a[1]@c.com",
    ],
)
def test_sip_uris_refused(text: str) -> None:
    error = refusal(text, "leg_b")
    assert "is not a SIP URI this controller dials" in error.message


@pytest.mark.parametrize("port", ["70000", "0", "65536"])
def test_sip_uri_port_out_of_range(port: str) -> None:
    error = refusal(f"sip:phone@127.0.0.1:{port}", "leg_b")
    assert f"has port {port}, outside 1-65535" in error.message


def test_sip_uri_highest_port_accepted() -> None:
    assert parse_target("sip:phone@127.0.0.1:65535", ZA).value == "sip:phone@127.0.0.1:65535"


def test_sip_uri_port_loses_its_leading_zeros() -> None:
    # As the switch encoders expect it (controller.numbers.SIP_URI).
    assert parse_target("sip:phone@127.0.0.1:05060", ZA).value == "sip:phone@127.0.0.1:5060"


# ---------------------------------------------------------------- both legs


def parse_legs(leg_a: str, leg_b: str, region: str) -> tuple[Target, Target]:
    a, b = parse_target(leg_a, region, "leg_a"), parse_target(leg_b, region, "leg_b")
    refuse_same_legs(a, [b.value])
    return a, b


def test_parse_legs_normalises_both() -> None:
    a, b = parse_legs("011 555 0101", "sip:phone@127.0.0.1:5090", ZA)
    assert a == Target(TargetKind.NUMBER, JHB)
    assert b == Target(TargetKind.SIP_URI, "sip:phone@127.0.0.1:5090")


@pytest.mark.parametrize(
    ("leg_a", "leg_b"),
    [
        (JHB, JHB),
        ("011 555 0101", JHB),
        ("(011) 555-0101", "+27 11 555 0101"),
        ("sip:agent@pbx.example.com", "sip:agent@PBX.example.com"),
    ],
)
def test_parse_legs_refuses_same_legs(leg_a: str, leg_b: str) -> None:
    with pytest.raises(SameLegs) as info:
        parse_legs(leg_a, leg_b, ZA)
    error = info.value
    assert error.error_id == "same-legs"
    assert "leg A and leg B are the same" in error.message
    assert error.details["leg_a"].lower() == error.details["leg_b"].lower()


def test_parse_legs_names_the_bad_leg() -> None:
    with pytest.raises(InvalidNumber) as info:
        parse_legs(JHB, "0800FLOWERS", ZA)
    assert info.value.details == {"field": "leg_b"}
    with pytest.raises(InvalidNumber) as info:
        parse_legs("", JHB, ZA)
    assert info.value.details == {"field": "leg_a"}
