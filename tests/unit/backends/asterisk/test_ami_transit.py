"""Which channels a Redirect must wait for, from AMI wire text recorded from
the lab's Asterisk 22 with the shipped account (its Newexten filter): a call
connect from leg A's answer to the time limit's hangup, whisper and dial
included."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from panoramisk.message import Message

from controller.backends.asterisk.transit import ChannelTransit
from tests.unit.backends.asterisk.test_ami_events import call_id_of, parse
from tests.wire import chunked

WIRE = (Path(__file__).parents[3] / "fixtures" / "ami" / "happy-path-waits.ami").read_bytes()
LEG_A = call_id_of(WIRE) + "-a"


def position(message: Message) -> str:
    """What the message says of where leg A is, for the test's reading."""
    if message.get("Event") == "UserEvent":
        return f"report {message['Step']}"
    if message.get("Event") == "Newexten":
        return f"wait {message['Context']} {message['Application']}"
    return str(message.get("Event"))


def walk(messages: list[Message]) -> list[tuple[str, bool, str | None]]:
    """Each of leg A's messages, whether leg A is in transit after it, and the
    channel it settled. The controller's Redirect is sent where it would be:
    on the answered report's wait (to the whisper)."""
    transit = ChannelTransit()
    steps = []
    for message in messages:
        settled = transit.observe(message)
        if message.get("Uniqueid") != LEG_A:
            continue
        steps.append((position(message), transit.in_transit(LEG_A), settled))
        if position(message) == "wait callconnect-hold Wait":
            transit.redirected(LEG_A)
    return steps


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_leg_a_is_in_transit_from_each_report_to_its_next_wait(seed: int | None) -> None:
    rng = random.Random(seed)
    reads = [WIRE] if seed is None else chunked(WIRE, [rng.randint(1, 90) for _ in range(len(WIRE))])
    steps = [step for step in walk(parse(reads)) if step[0].split()[0] in ("report", "wait", "Hangup")]
    assert steps == [
        ("report answered", True, None),
        ("wait callconnect-hold Wait", False, LEG_A),
        # the Redirect to the whisper was sent here
        ("wait callconnect-whisper Playback", False, LEG_A),
        ("report whisper-done", True, None),
        ("wait callconnect-dial Dial", False, LEG_A),
        ("Hangup", False, None),
    ], steps


def test_no_channel_is_left_in_transit_once_the_call_has_hung_up() -> None:
    transit = ChannelTransit()
    messages = parse([WIRE])
    for message in messages:
        transit.observe(message)
    channels = {m["Uniqueid"] for m in messages if isinstance(m.get("Uniqueid"), str)}
    assert len(channels) >= 3, "leg A, leg B and a forget channel"
    assert not [c for c in channels if transit.in_transit(c)]
    assert transit.waits_seen


def test_a_redirect_refused_leaves_the_channel_where_it_was() -> None:
    transit = ChannelTransit()
    transit.redirected(LEG_A)
    assert transit.in_transit(LEG_A)
    transit.not_redirected(LEG_A)
    assert not transit.in_transit(LEG_A)


def test_a_wait_outside_the_callconnect_dialplan_settles_nothing() -> None:
    transit = ChannelTransit()
    transit.redirected(LEG_A)
    for context, application in (("from-internal", "Wait"), ("callconnect-hold", "Set"),
                                 ("callconnect-hold", "WaitExten")):
        assert transit.observe({"Event": "Newexten", "Uniqueid": LEG_A, "Context": context,
                                "Application": application}) is None
        assert transit.in_transit(LEG_A)
    assert not transit.waits_seen
    # A header given twice (panoramisk's list) is no channel.
    assert transit.observe({"Event": "Hangup", "Uniqueid": [LEG_A, LEG_A]}) is None  # type: ignore[dict-item]
    assert transit.observe({"Event": "Hangup", "Uniqueid": LEG_A}) == LEG_A
    assert not transit.in_transit(LEG_A)
