"""AMI wire text recorded from the lab's Asterisk 22, replayed through
panoramisk's protocol parser, the translator and the core: each recorded call
must end with the outcome it really had, however the bytes are split."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from panoramisk.message import Message

from controller.backends.asterisk.events import AmiEventTranslator, dial_outcome
from controller.backends.asterisk.protocol import AmiProtocol
from controller.core.commands import ChooseTargets, Command
from controller.core.events import (
    CommandFailed,
    Event,
    LegAnswered,
    LegCreated,
    LegHungUp,
    RecordingStarted,
    RouteExhausted,
)
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus, DialOutcome, Leg
from controller.core.plan import Attempt, CallPlan
from tests.wire import chunked

FIXTURES = Path(__file__).parents[3] / "fixtures" / "ami"

# fixture: (call status, leg A status, leg B status, hangup_by)
OUTCOMES = {
    "happy-path-time-limit": ("completed", "completed", "completed", "time_limit"),
    "a-busy": ("busy", "busy", "not-dialed", None),
    "a-no-answer": ("no-answer", "no-answer", "not-dialed", None),
    "a-reject": ("busy", "rejected", "not-dialed", None),
    "a-bad-endpoint": ("failed", "failed", "not-dialed", None),
    "a-hangs-up-whisper": ("canceled", "completed", "not-dialed", "leg_a"),
    "a-hangs-up-bridged": ("completed", "completed", "completed", "leg_a"),
    "b-busy": ("busy", "completed", "busy", None),
    "b-no-answer": ("no-answer", "completed", "no-answer", None),
    "b-reject": ("busy", "completed", "rejected", None),
    "b-hangs-up": ("completed", "completed", "completed", "leg_b"),
}


class Collector:
    """Stands where panoramisk's Manager would: receives dispatched events."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def dispatch(self, message: Message) -> None:
        self.messages.append(message)


def parse(chunks: list[bytes]) -> list[Message]:
    """Frames as the backend's own protocol (panoramisk's, hardened) reads them."""
    protocol = AmiProtocol()
    protocol.connection_made(transport=None)
    collector = Collector()
    protocol.factory = collector
    for chunk in chunks:
        protocol.data_received(chunk)
    return collector.messages


def call_id_of(wire: bytes) -> str:
    match = re.search(rb"Uniqueid: ([0-9a-f-]{36})-a\r\n", wire)
    assert match, "fixture has no leg A channel"
    return match.group(1).decode()


# How the router ends a one-target route, by how its attempt ended.
_ROUTE_STATUS = {"busy": CallStatus.BUSY, "rejected": CallStatus.BUSY,
                 "no-answer": CallStatus.NO_ANSWER}


def replay(messages: list[Message], call_id: str) -> CallConnect:
    """Feed the wire through the translator into the core. The lab calls rang
    one number: the service's router answers a failed attempt with nobody
    more to ring and the "not reached" message, as the plan once did."""
    plan = CallPlan(call_id=call_id, leg_a="+27115550101", leg_b="+27115550202",
                    ring_timeout=8, time_limit=5, whisper_audio="/m/whisper",
                    recording_file="/r/x.wav",
                    first_attempt=Attempt(("+27115550202",), ring_timeout=8))
    translator = AmiEventTranslator()
    translator.watch(call_id)
    core = CallConnect(plan, created_at=0.0)
    core.start()

    for message in messages:
        for routed in translator.translate(message, now=0.0):
            assert routed.call_id == call_id
            commands: list[Command] = core.handle(routed.event)
            for command in commands:
                if isinstance(command, ChooseTargets):
                    assert command.previous is not None, "the first attempt is in the plan"
                    core.handle(RouteExhausted(
                        routed.event.at, _ROUTE_STATUS.get(command.previous, CallStatus.FAILED),
                        f"nobody more to ring; the last attempt was {command.previous}",
                        message_audio="/m/sorry"))
    return core


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_recorded_call_ends_with_its_real_outcome(name: str) -> None:
    wire = (FIXTURES / f"{name}.ami").read_bytes()
    core = replay(parse([wire]), call_id_of(wire))
    result = core.result()
    assert core.finished, f"{name}: call did not end, state {core.state}"
    assert (result["status"], result["leg_a_status"], result["leg_b_status"],
            result["hangup_by"]) == OUTCOMES[name]
    states = [t["to"] for t in result["timeline"]]
    if name.startswith("b-") and result["status"] != "completed":
        # Leg B's attempt failed: the route ran out and leg A heard why.
        assert states[-4:] == ["routing", "announcing", "ending", "ended"]
        [attempt] = result["attempts"]
        assert (attempt["targets"], attempt["outcome"]) == (["+27115550202"], result["leg_b_status"])
    else:
        assert "routing" not in states
    if result["leg_b_answered_at"] is not None:
        assert result["answered_by"] == "+27115550202"
        assert [a["outcome"] for a in result["attempts"]] == ["answered"]
        # The dialplan's recording-started UserEvent on leg B.
        assert result["recorded"] is True and result["recording_error"] is None


@pytest.mark.parametrize("name", ["happy-path-time-limit", "b-no-answer", "a-busy"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frames_split_across_reads_give_the_same_events(name: str, seed: int) -> None:
    wire = (FIXTURES / f"{name}.ami").read_bytes()
    whole = parse([wire])
    rng = random.Random(seed)
    sizes = [rng.randint(1, 300) for _ in range(len(wire))]
    split = parse(chunked(wire, sizes))
    assert [dict(m) for m in split] == [dict(m) for m in whole]
    one_byte = parse(chunked(wire, [1] * len(wire)))
    assert [dict(m) for m in one_byte] == [dict(m) for m in whole]


def test_malformed_and_unknown_frames_are_skipped_not_fatal() -> None:
    wire = (FIXTURES / "b-hangs-up.ami").read_bytes()
    call_id = call_id_of(wire)
    garbage = (
        b"this is not a header line\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: " + call_id.encode() + b"-a\r\nCause: not-a-number\r\n\r\n"
        b"Event: SomethingAsteriskAddsTomorrow\r\nUniqueid: " + call_id.encode() + b"-a\r\n\r\n"
        b"\xff\xfe\x00 binary noise\r\n\r\n"
    )
    cut = wire.index(b"Event: BridgeEnter")
    messages = parse([wire[:cut], garbage, wire[cut:]])
    core = replay(messages, call_id)
    assert core.finished
    assert core.result()["status"] == "completed"
    assert core.result()["hangup_by"] == "leg_b"


def test_originate_dial_events_are_not_mistaken_for_leg_b() -> None:
    # An Originate raises DialBegin/DialEnd with leg A as destination and no
    # Uniqueid; only leg A's own Dial creates leg B.
    wire = (FIXTURES / "happy-path-time-limit.ami").read_bytes()
    call_id = call_id_of(wire)
    translator = AmiEventTranslator()
    translator.watch(call_id)
    events: list[Event] = []
    b_uniqueid = None
    for message in parse([wire]):
        events += [r.event for r in translator.translate(message, now=0.0)]
        b_uniqueid = b_uniqueid or translator.channel_of(call_id, Leg.B)
    created = [e for e in events if isinstance(e, LegCreated)]
    assert [e.leg for e in created] == [Leg.A, Leg.B]
    assert b_uniqueid is not None and not b_uniqueid.startswith(call_id)
    assert translator.channel_of(call_id, Leg.B) is None, "leg B is forgotten once it hung up"


def test_events_of_other_calls_are_ignored() -> None:
    wire = (FIXTURES / "b-busy.ami").read_bytes()
    translator = AmiEventTranslator()
    translator.watch("00000000-0000-0000-0000-000000000000")
    routed: list[Any] = []
    for message in parse([wire]):
        routed += translator.translate(message, now=0.0)
    assert routed == []


def test_event_time_is_the_switch_timestamp() -> None:
    translator = AmiEventTranslator()
    translator.watch("c1")
    message = Message({"Event": "HangupRequest", "Uniqueid": "c1-a", "Cause": "17",
                       "Timestamp": "1795260166.633697"})
    [routed] = translator.translate(message, now=5.0)
    assert routed.event == LegHungUp(1795260166.633697, Leg.A, 17, channel="c1-a")
    message = Message({"Event": "HangupRequest", "Uniqueid": "c1-a"})
    [routed] = translator.translate(message, now=5.0)
    assert routed.event == LegHungUp(5.0, Leg.A, 0, channel="c1-a")


def test_an_event_with_its_timestamp_given_twice_is_still_translated() -> None:
    translator = AmiEventTranslator()
    translator.watch("c1")
    [message] = parse([b"Event: HangupRequest\r\nUniqueid: c1-a\r\nCause: 17\r\n"
                       b"Timestamp: 1795260166.6\r\nTimestamp: 1795260166.7\r\n\r\n"])
    [routed] = translator.translate(message, now=5.0)
    assert routed.event == LegHungUp(5.0, Leg.A, 17, channel="c1-a")


@pytest.mark.parametrize(
    ("dial_status", "outcome"),
    [
        ("ANSWER", DialOutcome.ANSWERED),
        ("NOANSWER", DialOutcome.NO_ANSWER),
        ("BUSY", DialOutcome.BUSY),
        ("busy", DialOutcome.BUSY),
        ("CANCEL", DialOutcome.CANCELED),
        ("CHANUNAVAIL", DialOutcome.FAILED),
        ("CONGESTION", DialOutcome.FAILED),
        ("", DialOutcome.FAILED),
    ],
)
def test_dial_status_is_translated_into_the_cores_words(dial_status: str, outcome: DialOutcome) -> None:
    assert dial_outcome(dial_status) is outcome


def _leg_b_answered(translator: AmiEventTranslator) -> None:
    translator.watch("c1")
    translator.translate(Message({"Event": "DialBegin", "Uniqueid": "c1-a",
                                  "DestUniqueid": "1795.7", "DestChannel": "PJSIP/b-1",
                                  "DialString": "+27115550202@trunk"}), now=1.0)


def test_the_dialplans_recording_events_on_leg_b_become_the_cores() -> None:
    translator = AmiEventTranslator()
    _leg_b_answered(translator)
    started = Message({"Event": "UserEvent", "UserEvent": "CallConnect", "Uniqueid": "1795.7",
                       "Step": "recording-started", "Timestamp": "7.5"})
    assert [r.event for r in translator.translate(started, now=9.0)] == [RecordingStarted(7.5)]
    failed = Message({"Event": "UserEvent", "UserEvent": "CallConnect", "Uniqueid": "1795.7",
                      "Step": "recording-failed", "Status": "NOAPP", "Timestamp": "7.5"})
    [routed] = translator.translate(failed, now=9.0)
    assert isinstance(routed.event, CommandFailed) and routed.event.command == "StartRecording"
    assert "app_mixmonitor" in routed.event.reason
    failed = Message({**failed, "Status": "FAILED"})
    [routed] = translator.translate(failed, now=9.0)
    assert "TryExec status FAILED" in routed.event.reason  # type: ignore[attr-defined]


def test_a_recording_that_fails_leaves_the_bridged_call_up() -> None:
    plan = CallPlan(call_id="c1", leg_a="+27115550101", leg_b="+27115550202", ring_timeout=8,
                    time_limit=5, recording_file="/r/c1.wav",
                    first_attempt=Attempt(("+27115550202",), ring_timeout=8))
    core = CallConnect(plan, created_at=0.0)
    core.start()
    translator = AmiEventTranslator()
    translator.watch("c1")
    core.handle(LegAnswered(1.0, Leg.A))
    _leg_b_answered(translator)
    core.handle(LegCreated(1.5, Leg.B, "1795.7"))
    core.handle(LegAnswered(2.0, Leg.B, "1795.7", "+27115550202"))
    failed = Message({"Event": "UserEvent", "UserEvent": "CallConnect", "Uniqueid": "1795.7",
                      "Step": "recording-failed", "Status": "FAILED"})
    for routed in translator.translate(failed, now=2.1):
        assert core.handle(routed.event) == []
    assert not core.finished and core.result()["recording_error"]


def test_mixmonitor_manager_events_no_longer_count_as_the_recording() -> None:
    # MixMonitor raises MixMonitorStart even when it could not start; the
    # dialplan's UserEvent after TryExec is what counts.
    translator = AmiEventTranslator()
    _leg_b_answered(translator)
    message = Message({"Event": "MixMonitorStart", "Uniqueid": "1795.7"})
    assert translator.translate(message, now=1.0) == []


def test_every_dial_of_leg_b_names_the_plans_recording_file() -> None:
    plan = CallPlan(call_id="c1", leg_a="+27115550101", leg_b="+27115550202", ring_timeout=8,
                    time_limit=5, recording_file="/r/c1.wav",
                    first_attempt=Attempt(("+27115550202",), ring_timeout=8))
    core = CallConnect(plan, created_at=0.0)
    core.start()
    [dial] = core.handle(LegAnswered(1.0, Leg.A))
    assert dial.record_file == "/r/c1.wav"  # type: ignore[attr-defined]


def test_each_calls_channels_are_found_and_forgotten_by_call() -> None:
    translator = AmiEventTranslator()
    for call_id in ("c1", "c2"):
        translator.watch(call_id)
        for n, dest in enumerate((f"{call_id}-b1", f"{call_id}-b2")):
            translator.translate(Message({
                "Event": "DialBegin", "Uniqueid": f"{call_id}-a", "DestUniqueid": dest,
                "DestChannel": f"PJSIP/{dest}", "DialString": f"t{n}"}), now=1.0)
    assert [translator.channel_of(c, leg) for c in ("c1", "c2") for leg in (Leg.A, Leg.B)] \
        == ["c1-a", "c1-b1", "c2-a", "c2-b1"]
    # The first of leg B's channels hangs up: the other is leg B's now.
    [ended] = translator.translate(Message({"Event": "Hangup", "Uniqueid": "c1-b1"}), now=2.0)
    assert ended.call_id == "c1" and translator.channel_of("c1", Leg.B) == "c1-b2"
    translator.forget("c1")
    assert (translator.channel_of("c1", Leg.A), translator.channel_of("c1", Leg.B)) == (None, None)
    assert translator.translate(Message({"Event": "Hangup", "Uniqueid": "c1-b2"}), now=3.0) == []
    assert translator.channel_of("c2", Leg.B) == "c2-b1", "another call's channels stay"
    # An incoming call claimed: its channel replaces the placeholder for leg A.
    translator.watch("c3")
    translator.claim("c3", "1700000000.7")
    assert translator.channel_of("c3", Leg.A) == "1700000000.7"
    assert translator.translate(Message({"Event": "Hangup", "Uniqueid": "c3-a"}), now=4.0) == []


def test_an_event_name_given_twice_names_no_event() -> None:
    translator = AmiEventTranslator()
    translator.watch("c1")
    message = Message({"Event": "Hangup", "Uniqueid": "c1-a"})
    message["Event"] = ["Hangup", "Hangup"]
    assert translator.translate(message, now=1.0) == []
