"""AMI wire text recorded from the lab's Asterisk 22 while a phone called in
and the backend ran a live call's steps on it (tests/lab/test_inbound.py),
replayed through the backend's parser and the translator: the incoming call,
then each step's end, however the bytes are split, whatever junk comes in
between."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from panoramisk.message import Message

from controller.backends.asterisk.events import AmiEventTranslator
from controller.backends.base import IncomingCall
from controller.core.events import (
    Event,
)
from controller.core.outcomes import Leg
from tests.unit.backends.asterisk.test_ami_events import parse
from tests.wire import chunked

FIXTURES = Path(__file__).parents[3] / "fixtures" / "ami"
CHANNEL = "1796012622.0"  # the incoming channel in inbound-gather.ami
CALL_ID = "5f0c1a2b-0000-4000-8000-000000000001"


def replay(messages: list[Message], claim: bool = True) -> tuple[list[IncomingCall], list[Event]]:
    """What the backend would do: tell of each incoming call (and claim it
    for CALL_ID), route the rest; events carry no time here."""
    translator = AmiEventTranslator()
    arrived: list[IncomingCall] = []
    events: list[Event] = []
    for message in messages:
        incoming = translator.incoming(message, now=0.0)
        if incoming is not None:
            arrived.append(incoming)
            if claim:
                translator.claim(CALL_ID, incoming.channel)
            continue
        for routed in translator.translate(message, now=0.0):
            assert routed.call_id == CALL_ID
            events.append(routed.event)
    return arrived, events


def untimed(events: list[Event]) -> list[tuple[object, ...]]:
    return [(type(e).__name__, *(v for k, v in vars(e).items() if k != "at")) for e in events]


EXPECTED = {
    "inbound-gather": [
        ("LegAnswered", Leg.A, CHANNEL, ""),
        ("PlayFinished", "p1", True),
        ("DigitPressed", "g1", "1"),
        ("DigitPressed", "g1", "2"),
        ("DigitsGathered", "g1", "12", "finish-key"),
        ("LegEnded", Leg.A, 16, "Normal Clearing", CHANNEL),
    ],
    "inbound-idle": [
        ("LegAnswered", Leg.A, CHANNEL, ""),
        ("PauseFinished", "w1"),
        ("DigitsGathered", "g1", "", "timeout"),
        ("IdleTimedOut",),
        ("LegEnded", Leg.A, 16, "Normal Clearing", CHANNEL),
    ],
    "inbound-record": [
        ("LegAnswered", Leg.A, CHANNEL, ""),
        ("RecordingChanged", "r1", True, None),
        ("PauseFinished", "w1"),
        ("RecordingChanged", "r2", False, None),
        ("LegEnded", Leg.A, 16, "Normal Clearing", CHANNEL),
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recorded_incoming_call_gives_its_caller_and_each_steps_end(name: str) -> None:
    arrived, events = replay(parse([(FIXTURES / f"{name}.ami").read_bytes()]))
    [incoming] = arrived
    assert (incoming.caller, incoming.dialed) == ("+27115550999", "+27115550900")
    assert incoming.at > 1.7e9, "the switch's own time, not the replay's"
    expected = [tuple(incoming.channel if v == CHANNEL else v for v in row)
                for row in EXPECTED[name]]
    assert untimed(events) == expected


def test_an_incoming_call_nobody_claims_routes_nothing() -> None:
    arrived, events = replay(parse([(FIXTURES / "inbound-unclaimed.ami").read_bytes()]),
                             claim=False)
    assert [c.dialed for c in arrived] == ["+27115550900"]
    assert events == []


def test_steps_of_a_channel_not_claimed_are_not_routed() -> None:
    _, events = replay(parse([(FIXTURES / "inbound-gather.ami").read_bytes()]), claim=False)
    assert events == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frames_split_across_reads_give_the_same_call_and_events(seed: int) -> None:
    wire = (FIXTURES / "inbound-gather.ami").read_bytes()
    whole = replay(parse([wire]))
    rng = random.Random(seed)
    assert replay(parse(chunked(wire, [rng.randint(1, 200) for _ in range(len(wire))]))) == whole
    assert replay(parse(chunked(wire, [1] * len(wire)))) == whole


def user_event(step: str, **headers: str) -> bytes:
    lines = [f"Event: UserEvent\r\nUniqueid: {CHANNEL}\r\nUserEvent: CallConnect\r\nStep: {step}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# Frames Asterisk would not send for our steps, each of which must be skipped
# alone: the events around them still arrive.
MALFORMED = [
    user_event("digit", CallAction="g1", Digit="12"),
    user_event("digit", CallAction="g1", Digit="x"),
    user_event("digit", CallAction="g 1", Digit="1"),
    user_event("gather-done", CallAction="g1", Digits="12", EndedBy="bored"),
    user_event("gather-done", CallAction="g1", Digits="1a", EndedBy="timeout"),
    user_event("play-done", PlaybackStatus="SUCCESS"),
    user_event("pause-done", CallAction="w1,x"),
    user_event("something-new", CallAction="w1"),
    user_event("incoming", Caller="+27115550999", Dialed="+2711;drop"),
    user_event("incoming", Caller="alice", Dialed="+27115550900"),
    (f"Event: UserEvent\r\nUniqueid: {CHANNEL}\r\nUserEvent: CallConnect\r\nStep: digit\r\n"
     "CallAction: g1\r\nDigit: 1\r\nDigit: 2\r\n\r\n").encode(),
    (f"Event: UserEvent\r\nUniqueid: {CHANNEL}\r\nUserEvent: CallConnect\r\nStep: incoming\r\n"
     "Caller: 1\r\nDialed: 1\r\nDialed: 2\r\n\r\n").encode(),
    b"Event: Newstate\r\nChannelStateDesc: Up\r\n\r\n",
    b"not a frame at all\r\n\r\n",
]


def test_malformed_frames_between_real_ones_are_skipped_alone() -> None:
    wire = (FIXTURES / "inbound-gather.ami").read_bytes()
    cut = wire.index(b"Step: digit")
    cut = wire.rindex(b"Event: UserEvent", 0, cut)
    mixed = wire[:cut] + b"".join(MALFORMED) + wire[cut:]
    assert replay(parse([mixed])) == replay(parse([wire]))


def test_a_second_incoming_event_for_a_claimed_channel_is_not_a_new_call() -> None:
    wire = (FIXTURES / "inbound-gather.ami").read_bytes()
    start = wire.index(b"Event: UserEvent")
    end = wire.index(b"\r\n\r\n", start) + 4
    arrived, _ = replay(parse([wire + wire[start:end]]))
    assert len(arrived) == 1


def test_steps_that_end_while_a_reattach_reads_the_switch_are_routed_once_it_knows_the_channel(
        ) -> None:
    # A restarted controller learns which channel it claimed from its read of
    # the switch; the steps' events that arrive meanwhile wait for that.
    messages = parse([(FIXTURES / "inbound-gather.ami").read_bytes()])
    translator = AmiEventTranslator()
    translator.hold()
    channels = [incoming.channel for m in messages
                if (incoming := translator.incoming(m, now=0.0)) is not None]
    held = [r for m in messages if translator.incoming(m, now=0.0) is None
            for r in translator.translate(m, now=0.0)]
    assert held == []
    translator.claim(CALL_ID, channels[0])
    events = [routed.event for routed in translator.release()]
    # As if claimed at once, and the channel's creation, held with the rest.
    assert untimed(events) == [("LegCreated", Leg.A, channels[0]),
                               *untimed(replay(messages)[1])]
