"""The AMI reader (protocol.py) on the recorded wire text: it must read every
frame as panoramisk's own ``Message.from_line`` does, however the frame is
cut across reads, skip (and log) what is malformed and read on; the Manager's
dispatch by event name must reach the same callbacks as panoramisk's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.message import Message

from controller.backends.asterisk.protocol import (
    DISPATCH_HEADERS,
    MAX_FRAME,
    AmiManager,
    AmiMessage,
    AmiProtocol,
    parse_frame,
    read_frames,
)
from tests.unit.backends.asterisk.test_ami_events import Collector
from tests.wire import chunked

FIXTURES = Path(__file__).parents[3] / "fixtures" / "ami"
WIRES = {path.stem: path.read_bytes() for path in sorted(FIXTURES.glob("*.ami"))}
VALID = b"Event: HangupRequest\r\nUniqueid: c1-a\r\nCause: 16\r\nTimestamp: 1795260166.5\r\n\r\n"


def frames_of(wire: bytes) -> list[bytes]:
    """Each frame with its blank line."""
    return [frame + b"\r\n\r\n" for frame in wire.split(b"\r\n\r\n")[:-1]]


def read(chunks: list[bytes], encoding: str = "utf8") -> list[AmiMessage]:
    """The messages the pure reader gives for these reads, in order."""
    messages: list[AmiMessage] = []
    rest, skipping = b"", False
    for chunk in chunks:
        found, rest, skipping = read_frames(rest + chunk, encoding, skipping)
        messages += found
    return messages


def protocol_with(collector: Collector) -> AmiProtocol:
    protocol = AmiProtocol()
    protocol.connection_made(transport=None)
    protocol.factory = collector
    protocol.encoding = "utf8"
    return protocol


def test_the_panoramisk_internals_the_reader_fills_in_are_as_pinned() -> None:
    # The reader builds Messages without Message.__init__: if panoramisk
    # changes how a Message keeps its headers, this fails first.
    message = Message({"Event": "Hangup", "Uniqueid": "c1-a"}, "the body")
    assert message._store == {"event": ("Event", "Hangup"), "uniqueid": ("Uniqueid", "c1-a"),
                              "content": ("content", "the body")}
    assert message.manager is None
    assert Message.quoted_keys == ["result"]
    assert Message.from_line("Response: Success\r\nResult: %20ok%21 ")["Result"] == "ok!"
    follows = Message.from_line("Response: Follows\r\nPrivilege: Command\r\nthe output\r\n")
    assert (follows["Privilege"], follows.content) == ("Command", "the output")
    # AmiManager caches what it matches in Manager.patterns, and reads Manager.callbacks.
    manager = Manager()
    manager.register_event("Dial*", print)
    assert [pattern for pattern, _ in manager.patterns] == ["FullyBooted", "Dial*"]
    assert manager.patterns[1][1].match("DialBegin") and manager.callbacks["Dial*"] == [print]


@pytest.mark.parametrize("name", sorted(WIRES))
def test_every_recorded_frame_reads_as_panoramisk_reads_it(name: str) -> None:
    frames = frames_of(WIRES[name])
    ours = read([WIRES[name]])
    theirs = [Message.from_line(frame.decode().strip()) for frame in frames]
    assert len(ours) == len(theirs) == len(frames)
    for mine, panoramisk in zip(ours, theirs, strict=True):
        assert type(mine) is AmiMessage
        assert mine._store == panoramisk._store and list(mine) == list(panoramisk)
        assert mine.manager is None and mine.content == panoramisk.content


@pytest.mark.parametrize("name", sorted(WIRES))
def test_each_recorded_frame_cut_at_every_byte_reads_as_whole(name: str) -> None:
    for frame in frames_of(WIRES[name]):
        [whole] = read([frame])
        for cut in range(1, len(frame)):
            [split] = read([frame[:cut], frame[cut:]])
            assert split._store == whole._store, (frame[:60], cut)


def test_a_character_cut_across_reads_is_kept() -> None:
    # The reader decodes a whole frame: a UTF-8 character cut between two
    # reads is not lost (panoramisk decodes each read by itself).
    frame = "Event: Newchannel\r\nCallerIDName: Zoë Ngcobo\r\nUniqueid: c1-a\r\n\r\n".encode()
    for cut in range(1, len(frame)):
        [message] = read([frame[:cut], frame[cut:]])
        assert message["CallerIDName"] == "Zoë Ngcobo"


def test_headers_given_twice_are_lists_and_quoted_values_unquoted() -> None:
    frame = (b"Response: Success\r\nActionID: a1\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n"
             b"ChanVariable: C=3\r\nResult: %3Cok%3E \r\nresult: %25\r\n\r\n")
    [message] = read([frame])
    assert message["ChanVariable"] == ["A=1", "B=2", "C=3"]
    assert message["Result"] == "%"  # names that differ in case only: the last one
    assert message._store == Message.from_line(frame.decode().strip())._store


def test_lookups_stay_case_insensitive() -> None:
    [message] = read([VALID])
    assert message.get("Uniqueid") == message.get("uniqueid") == message.get("UNIQUEID") == "c1-a"
    assert message.get("Nothing") is None and message.get("Nothing", "") == ""
    assert message.cause == "16" and "CAUSE" in message
    message["uniqueid"] = "c2-a"
    assert message.get("Uniqueid") == "c2-a"


MALFORMED = {
    "no colon": b"this is not a header line\r\n\r\n",
    "binary garbage": b"\xff\xfe\x00 binary: noise\x01\r\n\r\n",
    "neither Event nor Response": b"Uniqueid: c1-a\r\nCause: 16\r\n\r\n",
    "Event twice": b"Event: Hangup\r\nUniqueid: c1-a\r\nEvent: Newstate\r\n\r\n",
    "ActionID twice": b"Response: Success\r\nActionID: a1\r\nActionID: a2\r\n\r\n",
    "over-long": b"Event: Hangup\r\nUniqueid: c1-a\r\nValue: " + b"x" * MAX_FRAME + b"\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_frame_is_skipped_and_logged_and_the_stream_goes_on(kind: str) -> None:
    wire = VALID + MALFORMED[kind] + VALID
    for sizes in ([len(wire)], [7] * (len(wire) // 7 + 1), [65536] * (len(wire) // 65536 + 1)):
        collector = Collector()
        protocol = protocol_with(collector)
        with structlog.testing.capture_logs() as logs:
            for chunk in chunked(wire, sizes):
                protocol.data_received(chunk)
        assert [m._store for m in collector.messages] == [read([VALID])[0]._store] * 2
        assert [entry["event"] for entry in logs] == ["ami.frame.malformed"]


def test_blank_lines_between_frames_are_not_malformed() -> None:
    with structlog.testing.capture_logs() as logs:
        messages = read([b"\r\n\r\n" + VALID + b"\r\n\r\n  \r\n\r\n" + VALID])
    assert len(messages) == 2 and logs == []


def test_a_frame_that_never_ends_is_bounded_and_skipped_to_its_end() -> None:
    collector = Collector()
    protocol = protocol_with(collector)
    chunk = b"Value: " + b"y" * 65536 + b"\r\n"
    with structlog.testing.capture_logs() as logs:
        protocol.data_received(b"Event: Hangup\r\nUniqueid: c9-a\r\n")
        for _ in range(2 * MAX_FRAME // len(chunk)):
            protocol.data_received(chunk)
            assert len(protocol._pending) <= MAX_FRAME
        # Its end, cut inside the blank line, then a frame of its own.
        protocol.data_received(b"Event: Newstate\r\n\r")
        protocol.data_received(b"\n" + VALID)
    assert [m["Uniqueid"] for m in collector.messages] == ["c1-a"]
    assert [entry["event"] for entry in logs] == ["ami.frame.malformed"]


async def test_the_greeting_gives_the_version_and_the_login_answer_its_action() -> None:
    collector = Collector()
    protocol = protocol_with(collector)
    login = Action({"Action": "Login", "Username": "u", "Secret": "s"})
    protocol.responses[login.id] = login
    wire = (b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: "
            + login.id.encode() + b"\r\nMessage: Authentication accepted\r\n\r\n" + VALID)
    protocol.data_received(wire[:20])
    protocol.data_received(wire[20:])
    assert protocol.version == "11.0.0"
    answer = await asyncio.wait_for(login.future, 1)
    assert answer.success and answer["Message"] == "Authentication accepted"
    assert protocol.responses == {}
    assert [m["Event"] for m in collector.messages] == ["HangupRequest"]


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def callback(self, pattern: str) -> Any:
        def record(manager: Manager, event: Message) -> None:
            self.seen.append((pattern, event["Event"]))
        return record


async def test_events_reach_the_callbacks_panoramisks_manager_would_call() -> None:
    names = ["DialBegin", "DialEnd", "Hangup", "Newstate", "dialbegin", "UserEvent", "Dial"]
    patterns = ["*", "Dial*", "Hangup", "*state", "D?al", "Dial*"]  # Dial* twice: two callbacks
    theirs, ours = Calls(), Calls()
    panoramisk, manager = Manager(), AmiManager()
    for pattern in patterns:
        panoramisk.register_event(pattern, theirs.callback(pattern))
        manager.register_event(pattern, ours.callback(pattern))
    scheduled: list[str] = []

    async def later(manager: Manager, event: Message) -> None:
        scheduled.append(event["Event"])
    manager.register_event("User*", later)
    for round_ in range(2):  # the second time from what was matched the first
        for name in names:
            event = read([f"Event: {name}\r\nUniqueid: c1-a\r\n\r\n".encode()])[0]
            expected = [p for p in panoramisk.dispatch(event) if p != "FullyBooted"]
            assert manager.dispatch(event) == expected + (["User*"] if name == "UserEvent" else [])
            assert event.manager is manager
        assert ours.seen == theirs.seen, round_
    await asyncio.sleep(0)
    assert scheduled == ["UserEvent", "UserEvent"]
    # A pattern registered after events were matched is matched from then on.
    manager.register_event("Hang*", ours.callback("Hang*"))
    manager.dispatch(read([b"Event: Hangup\r\n\r\n"])[0])
    assert ours.seen[-3:] == [("*", "Hangup"), ("Hangup", "Hangup"), ("Hang*", "Hangup")]


# Lines recorded frames are made of, and lines that have meant trouble.
LINES = sorted({line for wire in WIRES.values() for frame in frames_of(wire)
                for line in frame.decode().split("\r\n") if line})
ODD_LINES = ["Event: Hangup", "Response: Follows", "Response: Fail", "Response: Success",
             "event: lower", "ActionID: a1", "CommandID: c1", "Result: %3Cx%3E ", "result: %25",
             "no colon here", "x: y: z", "a\rb: c", "a\nb: c", "Key:no space", ": empty name",
             "Empty: ", "Content: given", "  ", "Asterisk Call Manager/11.0.0"]


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(st.one_of(st.sampled_from(LINES), st.sampled_from(ODD_LINES)), max_size=25),
       padding=st.sampled_from(["", "\r\n", " ", "\r\n\r\n"[:3]]))
def test_any_frame_of_recorded_and_odd_lines_reads_as_panoramisk_reads_it(
        lines: list[str], padding: str) -> None:
    text = padding + "\r\n".join(lines) + padding
    with structlog.testing.capture_logs():
        ours = parse_frame(text)
    theirs = Message.from_line(text.strip())
    if theirs is None or any(isinstance(theirs.get(name), list) for name in DISPATCH_HEADERS):
        assert ours is None
    else:
        assert ours is not None and ours._store == theirs._store
