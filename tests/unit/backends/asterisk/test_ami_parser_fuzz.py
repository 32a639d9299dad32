"""Fuzzing what the switch sends: random bytes and mutated recorded frames,
cut into random reads, go through the AMI protocol (panoramisk's parser, as
the backend runs it) and the event translator. Nothing may raise out of
either; a malformed frame is skipped; a valid frame after garbage is still
translated."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from panoramisk.message import Message

from controller.backends.asterisk.events import AmiEventTranslator
from controller.core.events import LegHungUp
from controller.core.outcomes import Leg
from tests.unit.backends.asterisk.test_ami_events import call_id_of, parse
from tests.wire import chunked

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIXTURES = Path(__file__).parents[3] / "fixtures" / "ami"
WIRES = {path.stem: path.read_bytes() for path in sorted(FIXTURES.glob("*.ami"))}
FRAMES = [frame + b"\r\n\r\n" for wire in WIRES.values()
          for frame in wire.split(b"\r\n\r\n") if frame.strip()]
# Header names the translator reads, and values that have meant trouble.
KEYS = [b"Event", b"Uniqueid", b"DestUniqueid", b"Linkedid", b"Cause", b"Timestamp",
        b"ChannelStateDesc", b"DialStatus", b"DialString", b"UserEvent", b"Step", b"Channel",
        b"DestChannel", b"BridgeUniqueid", b"Response", b"ActionID", b"Variable", b"Value"]
VALUES = [b"", b"-1", b"nan", b"inf", b"1e999", b"\xff\xfe", b"\x00", b"Up", b"a" * 300,
          b"__init__", b"_Hangup", b"Hangup", b"PJSIP/x-0001", b": : :", b"\r", b"\n"]


def translate_all(messages: list[Message], call_ids: list[str]) -> list[object]:
    translator = AmiEventTranslator()
    for call_id in call_ids:
        translator.watch(call_id)
    events: list[object] = []
    for message in messages:
        # An incoming call the inbound dialplan announces is claimed at once.
        incoming = translator.incoming(message, now=0.0)
        if incoming is not None:
            translator.claim("inbound-call", incoming.channel)
        events += [routed.event for routed in translator.translate(message, now=0.0)]
    return events


@st.composite
def mutated_wire(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """Recorded frames, some of them mutated, in an order that may repeat or
    skip: bytes flipped, cut, doubled headers, odd values, noise between."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    frames = [rng.choice(FRAMES) for _ in range(draw(st.integers(1, 40)))]
    out = []
    for frame in frames:
        kind = draw(st.integers(0, 6))
        if kind == 1 and len(frame) > 2:  # flip bytes
            data = bytearray(frame)
            for _ in range(draw(st.integers(1, 5))):
                data[rng.randrange(len(data))] = rng.randrange(256)
            frame = bytes(data)
        elif kind == 2:  # cut short
            frame = frame[:rng.randrange(len(frame))]
        elif kind == 3:  # a header twice, or an odd value
            key, value = draw(st.sampled_from(KEYS)), draw(st.sampled_from(VALUES))
            frame = frame.replace(b"\r\n", b"\r\n" + key + b": " + value + b"\r\n", 1)
        elif kind == 4:  # noise before it
            frame = draw(st.binary(max_size=60)) + frame
        out.append(frame)
    call_ids = [call_id_of(wire) for name, wire in WIRES.items() if not name.startswith("inbound-")]
    return b"".join(out), call_ids


@FUZZ
@given(data=st.binary(max_size=2000), sizes=st.lists(st.integers(1, 300), max_size=50))
def test_random_bytes_in_random_reads_raise_nothing(data: bytes, sizes: list[int]) -> None:
    translate_all(parse(chunked(data, sizes)), ["c1"])


@FUZZ
@given(wire=mutated_wire(), sizes=st.lists(st.integers(1, 500), max_size=80))
def test_mutated_recorded_frames_raise_nothing(wire: tuple[bytes, list[str]],
                                               sizes: list[int]) -> None:
    data, call_ids = wire
    translate_all(parse(chunked(data, sizes)), call_ids)


@FUZZ
@given(garbage=st.one_of(st.binary(max_size=500),
                         mutated_wire().map(lambda wire: wire[0])),
       sizes=st.lists(st.integers(1, 300), max_size=50))
def test_a_valid_frame_after_garbage_is_still_translated(garbage: bytes, sizes: list[int]) -> None:
    # A frame ends at a blank line: whatever came before, the valid frame
    # after one is read on its own.
    valid = (b"Event: HangupRequest\r\nUniqueid: c1-a\r\nCause: 16\r\n"
             b"Timestamp: 1795260166.5\r\n\r\n")
    data = garbage + b"\r\n\r\n" + valid
    events = translate_all(parse(chunked(data, sizes)), ["c1"])
    assert events[-1:] == [LegHungUp(1795260166.5, Leg.A, 16, channel="c1-a")], events[-3:]
