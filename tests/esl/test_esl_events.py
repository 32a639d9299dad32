"""Event Socket wire text (tests/fixtures/esl, see its README) replayed through
the backend's framer, the event decoder, the translator and the core: each call
must end with the outcome it really had, however the bytes are split, with
malformed frames mixed in. Then the translation rules one by one: several
Leg B channels at once, the winner, the confirm step."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from greenswitch.esl import ESLEvent

from controller.backends.freeswitch.causes import dial_outcome, originate_failure, q850_cause
from controller.backends.freeswitch.ids import leg_uuid, originate_job_uuid
from controller.backends.freeswitch.steps import AnswerSteps
from controller.backends.freeswitch.tracking import PlaybackKind
from controller.backends.freeswitch.translator import FsEventTranslator, Routed, WaitForKey
from controller.backends.freeswitch.wire import (
    BODY_KEY,
    EslFramer,
    Frame,
    channel_names,
    channel_rows,
    decode_event,
    parse_plain_event,
)
from controller.core.commands import ChooseTargets
from controller.core.events import (
    AnswerAccepted,
    AnswerDeclined,
    DialFinished,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
    MessageFinished,
    OriginateFailed,
    RecordingStarted,
    RouteExhausted,
    WhisperFinished,
)
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus, DialOutcome, Leg
from controller.core.plan import Attempt, CallPlan
from tests.wire import chunked

FIXTURES = Path(__file__).parent.parent / "fixtures" / "esl"

# fixture: (call status, leg A status, leg B status, hangup_by, whisper in the plan)
OUTCOMES = {
    "happy-path": ("completed", "completed", "completed", "time_limit", True),
    "happy-path.json": ("completed", "completed", "completed", "time_limit", True),
    "a-busy": ("busy", "busy", "not-dialed", None, True),
    "a-no-answer": ("no-answer", "no-answer", "not-dialed", None, True),
    "a-rejects": ("busy", "rejected", "not-dialed", None, True),
    "a-bad-gateway": ("failed", "failed", "not-dialed", None, True),
    "a-hangs-up-during-whisper": ("canceled", "completed", "not-dialed", "leg_a", True),
    "a-hangs-up-while-bridged": ("completed", "completed", "completed", "leg_a", False),
    "b-busy": ("busy", "completed", "busy", None, True),
    "b-no-answer": ("no-answer", "completed", "no-answer", None, True),
    "b-rejects": ("busy", "completed", "rejected", None, True),
    "b-hangs-up": ("completed", "completed", "completed", "leg_b", True),
}


def frames_of(chunks: list[bytes]) -> list[Frame]:
    framer = EslFramer()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    return frames


def events_of(frames: list[Frame]) -> list[dict[str, str]]:
    return [e for e in (decode_event(f) for f in frames) if e is not None]


def channels_of(wire: bytes) -> tuple[str, list[str]]:
    """Leg A's and Leg B's channel ids, from the controller's own filters
    (the fixtures hold every reply it got). Older wire text has
    ``<call id>-a`` and ``-b``; newer ``<32 hex>-a`` and ``-b<nn>``."""
    ids = [m.decode() for m in re.findall(rb"filter added\. \[Unique-ID\]=\[([0-9a-z-]+)\]", wire)]
    a = [i for i in ids if i.endswith("-a")]
    assert len(a) == 1, "fixture has no leg A filter"
    return a[0], [i for i in ids if i != a[0]]


def playback_paths(events: list[dict[str, str]], a: str) -> list[str]:
    """Leg A's files in the order it played them (what the backend registers
    when it sends PlayWhisper and PlayMessageThenHangup)."""
    paths: list[str] = []
    for e in events:
        if e.get("Unique-ID") != a:
            continue
        path = e.get("Playback-File-Path") or (
            e.get("Application-Data") if e.get("Application") == "playback" else None)
        if path and path not in paths:
            paths.append(path)
    return paths


# How the router answers once leg B's only target was not reached.
_EXHAUSTED = {"busy": CallStatus.BUSY, "rejected": CallStatus.BUSY,
              "no-answer": CallStatus.NO_ANSWER}


def replay(events: list[dict[str, str]], wire: bytes, whisper: bool) -> CallConnect:
    # The call id as the controller gave it to the switch (the originate's
    # Job-UUID is derived from it): on the channels, or in the originate.
    a, b_legs = channels_of(wire)
    call_id = next((e["variable_callconnect_call_id"] for e in events
                    if "variable_callconnect_call_id" in e), None)
    if call_id is None:
        [arg] = [e["Job-Command-Arg"] for e in events if e.get("Job-Command") == "originate"]
        match = re.search(r"callconnect_call_id=([^,}]+)", arg)
        assert match, "no call id in the originate"
        call_id = match.group(1)
    paths = playback_paths(events, a)
    plan = CallPlan(call_id=call_id, leg_a="+27115550101", leg_b="+27115550202",
                    ring_timeout=8, time_limit=4,
                    whisper_audio=paths[0] if whisper and paths else ("/m/w.wav" if whisper else None),
                    recording_file="/r/x.wav",
                    first_attempt=Attempt(("+27115550202",), 8))
    translator = FsEventTranslator()
    translator.watch(call_id)
    translator.adopt(call_id, Leg.A, a)
    for channel in b_legs:
        translator.adopt(call_id, Leg.B, channel, "+27115550202")
    for i, path in enumerate(paths):
        kind = PlaybackKind.WHISPER if whisper and i == 0 else PlaybackKind.MESSAGE
        translator.expect_playback(call_id, path, kind)
    message = paths[-1] if len(paths) > (1 if whisper else 0) else "/m/sorry.wav"
    core = CallConnect(plan, created_at=0.0)
    core.start()
    for event in events:
        for routed in translator.translate(event, now=0.0):
            assert routed.call_id == call_id
            commands = core.handle(routed.event)
            for command in commands:
                if isinstance(command, ChooseTargets):  # the router: nobody else to ring
                    status = _EXHAUSTED.get(command.previous or "", CallStatus.FAILED)
                    core.handle(RouteExhausted(routed.event.at, status, "leg B not reached",
                                               message))
    return core


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_recorded_call_ends_with_its_outcome(name: str) -> None:
    wire = (FIXTURES / f"{name}.esl").read_bytes()
    status, a_status, b_status, hangup_by, whisper = OUTCOMES[name]
    core = replay(events_of(frames_of([wire])), wire, whisper)
    result = core.result()
    assert core.finished, f"{name}: call did not end, state {core.state}"
    assert (result["status"], result["leg_a_status"], result["leg_b_status"],
            result["hangup_by"]) == (status, a_status, b_status, hangup_by)


def test_fixture_list_covers_every_fixture() -> None:
    assert sorted(p.name.removesuffix(".esl") for p in FIXTURES.glob("*.esl")) == sorted(OUTCOMES)


@pytest.mark.parametrize("name", ["happy-path", "b-no-answer", "a-busy", "happy-path.json"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frames_split_across_reads_give_the_same_frames(name: str, seed: int) -> None:
    wire = (FIXTURES / f"{name}.esl").read_bytes()
    whole = frames_of([wire])
    rng = random.Random(seed)
    split = frames_of(chunked(wire, [rng.randint(1, 300) for _ in range(len(wire))]))
    assert split == whole
    assert frames_of(chunked(wire, [1] * len(wire))) == whole


MALFORMED = [
    b"this is not a header line\n\n",  # no name: value
    b"Content-Length: 5\n\nhello",  # no Content-Type
    b"Content-Type: text/event-plain\nContent-Length: twelve\n\n",  # bad length
    b"\xff\xfe\x00 binary noise\n\n",
    b"Content-Length: 21\nContent-Type: text/event-plain\n\nno colon on this line",
    b"Content-Length: 9\nContent-Type: text/event-json\n\n{not json",
    b"Content-Type: text/event-plain\nContent-Length: 0\n\n",  # an event with no text
]


def test_malformed_and_unknown_frames_are_skipped_not_fatal() -> None:
    wire = (FIXTURES / "b-hangs-up.esl").read_bytes()
    a = channels_of(wire)[0].encode()
    unknown = (b"Event-Name: CHANNEL_SOMETHING_NEW\nUnique-ID: " + a + b"\n\n")
    foreign = (b"Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: someone-else\n"
               b"Hangup-Cause: USER_BUSY\n\n")
    extra = [b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(t) + t
             for t in (unknown, foreign)]
    cut = wire.index(b"Event-Name: CHANNEL_BRIDGE")
    cut = wire.rindex(b"Content-Length", 0, cut)
    framer = EslFramer()
    frames = framer.feed(wire[:cut])
    for garbage in [*MALFORMED, *extra]:
        frames += framer.feed(garbage)
    frames += framer.feed(wire[cut:])
    assert framer.skipped == 4
    core = replay(events_of(frames), wire, whisper=True)
    assert core.finished
    assert (core.result()["status"], core.result()["hangup_by"]) == ("completed", "leg_b")


def test_events_of_other_calls_are_ignored() -> None:
    wire = (FIXTURES / "b-busy.esl").read_bytes()
    translator = FsEventTranslator()
    translator.watch("00000000-0000-0000-0000-000000000000")
    routed: list[Routed] = []
    for event in events_of(frames_of([wire])):
        routed += translator.translate(event, now=0.0)
    assert routed == []


def test_greenswitch_reads_the_same_headers_but_glues_the_job_result() -> None:
    """The peer's plain events read the same through greenswitch's ESLEvent as
    through ours, except what made the backend replace greenswitch's reader:
    an event body ends up inside greenswitch's Content-Length header."""
    wire = (FIXTURES / "a-bad-gateway.esl").read_bytes() + (FIXTURES / "b-busy.esl").read_bytes()
    checked = bodies = 0
    for frame in frames_of([wire]):
        if frame.content_type != "text/event-plain":
            continue
        ours = parse_plain_event(frame.body)
        assert ours is not None
        theirs = ESLEvent(frame.body).headers
        if BODY_KEY in ours:
            body = ours.pop(BODY_KEY).strip()
            assert body.startswith(("+OK", "-ERR"))
            assert theirs.pop("Content-Length").endswith("\n\n" + body)
            assert theirs == ours
            bodies += 1
            continue
        assert theirs == ours
        checked += 1
    assert checked > 10 and bodies == 2


# ---------------------------------------------------------------- translation rules

CALL = "c0ffee00-0000-4000-8000-000000000001"
A, B = leg_uuid(CALL, Leg.A), leg_uuid(CALL, Leg.B)
B1, B2 = leg_uuid(CALL, Leg.B, 1), leg_uuid(CALL, Leg.B, 2)
TARGET = "+27115550202"


def one_target(translator: FsEventTranslator) -> None:
    translator.expect_dial(CALL, [(B, TARGET)], None)


def translated(*events: dict[str, str], setup: Any = one_target,
               translator: FsEventTranslator | None = None) -> list[object]:
    if translator is None:
        translator = FsEventTranslator()
        translator.watch(CALL)
        setup(translator)
    out: list[object] = []
    for event in events:
        out += [r.event for r in translator.translate(event, now=5.0)]
    return out


def ev(name: str, channel: str, **headers: str) -> dict[str, str]:
    """An event as the decoder gives it: ``Hangup_Cause`` for ``Hangup-Cause``."""
    return {"Event-Name": name, "Unique-ID": channel,
            **{k.replace("__", "_").replace("_", "-") if not k.startswith("variable_") else k: v
               for k, v in headers.items()}}


def test_event_time_is_the_switch_timestamp() -> None:
    [event] = translated({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": A,
                          "Event-Date-Timestamp": "1795260166633697"},
                         {"Event-Name": "CHANNEL_PARK", "Unique-ID": A,
                          "Event-Date-Timestamp": "1795260166671000"})
    assert event == LegAnswered(1795260166.633697, Leg.A, A)
    [event] = translated({"Event-Name": "CHANNEL_CREATE", "Unique-ID": B})
    assert event == LegCreated(5.0, Leg.B, B)


def test_leg_a_we_originate_is_answered_once_it_is_parked() -> None:
    # Between its answer and park() an application sent to it would be cut
    # short, so its next step waits for CHANNEL_PARK; its time stays the answer's.
    translator = FsEventTranslator()
    translator.watch(CALL)
    assert translated(ev("CHANNEL_ANSWER", A), translator=translator) == []
    assert translator.a_answered(CALL)
    assert translated(ev("CHANNEL_PARK", A), translator=translator) == [LegAnswered(5.0, Leg.A, A)]
    # Back in park() after a failed bridge: nothing new.
    assert translated(ev("CHANNEL_PARK", A), translator=translator) == []


def test_leg_a_hanging_up_before_it_is_parked_was_still_answered() -> None:
    events = translated(
        ev("CHANNEL_ANSWER", A),
        ev("CHANNEL_HANGUP", A, Hangup_Cause="NORMAL_CLEARING",
           variable_sip_hangup_disposition="recv_bye"),
        ev("CHANNEL_HANGUP_COMPLETE", A, Hangup_Cause="NORMAL_CLEARING",
           variable_hangup_cause_q850="16", variable_sip_hangup_disposition="recv_bye"))
    assert events == [LegAnswered(5.0, Leg.A, A), LegHungUp(5.0, Leg.A, 16, A),
                      LegEnded(5.0, Leg.A, 16, "NORMAL_CLEARING", A)]


def test_a_claimed_incoming_leg_a_is_answered_at_once() -> None:
    incoming = "3f1c7d52-0000-4000-8000-00000000000a"
    assert translated(ev("CHANNEL_ANSWER", incoming),
                      setup=lambda t: t.claim(CALL, incoming)) == [
        LegAnswered(5.0, Leg.A, incoming)]


def test_channels_we_did_not_dial_are_not_ours() -> None:
    assert translated(ev("CHANNEL_CREATE", B1), ev("CHANNEL_ANSWER", leg_uuid("other", Leg.A)),
                      ev("CHANNEL_HANGUP_COMPLETE", "someone-else")) == []


def test_party_hangups_give_leghungup_with_the_cause_by_name_before_q850_is_set() -> None:
    # CHANNEL_HANGUP has Hangup-Cause and, for a refusal, recv_refuse; the
    # q850 variable comes only with CHANNEL_HANGUP_COMPLETE.
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": B, "Hangup-Cause": "USER_BUSY",
         "variable_sip_hangup_disposition": "recv_refuse"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": B, "Hangup-Cause": "USER_BUSY",
         "variable_hangup_cause_q850": "17", "variable_sip_hangup_disposition": "recv_refuse"})
    assert events == [LegHungUp(5.0, Leg.B, 17, B), LegEnded(5.0, Leg.B, 17, "USER_BUSY", B)]


def test_switch_hangups_are_not_the_party_hanging_up() -> None:
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": B, "Hangup-Cause": "NO_ANSWER"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": B, "Hangup-Cause": "NO_ANSWER",
         "variable_hangup_cause_q850": "19", "variable_sip_hangup_disposition": "send_cancel"})
    assert events == [LegEnded(5.0, Leg.B, 19, "NO_ANSWER", B)]


def test_a_recv_disposition_seen_only_at_hangup_complete_still_counts() -> None:
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": A, "Hangup-Cause": "NORMAL_CLEARING"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": A,
         "Hangup-Cause": "NORMAL_CLEARING", "variable_sip_hangup_disposition": "recv_bye"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": A})
    assert events == [LegHungUp(5.0, Leg.A, 16, A), LegEnded(5.0, Leg.A, 16, "NORMAL_CLEARING", A)]


def test_a_received_bye_is_seen_at_hangup_by_its_sip_term_status() -> None:
    # FreeSWITCH 1.10.12: sofia_handle_sip_i_bye sets sip_term_status, hangs
    # up, and only then sets sip_hangup_disposition=recv_bye.
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": A, "Hangup-Cause": "NORMAL_CLEARING",
         "variable_sip_term_status": "200", "variable_proto_specific_hangup_cause": "sip:200"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": A,
         "Hangup-Cause": "NORMAL_CLEARING", "variable_sip_hangup_disposition": "recv_bye"})
    assert events == [LegHungUp(5.0, Leg.A, 16, A), LegEnded(5.0, Leg.A, 16, "NORMAL_CLEARING", A)]


def test_a_switch_hangup_with_an_earlier_sip_status_is_still_the_switchs() -> None:
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": A, "Hangup-Cause": "NORMAL_CLEARING",
         "variable_sip_term_status": "200", "variable_sip_hangup_disposition": "send_bye"})
    assert events == [LegEnded(5.0, Leg.A, 16, "NORMAL_CLEARING", A)]


@pytest.mark.parametrize(("event", "cause"), [
    ({"variable_hangup_cause_q850": "21", "Hangup-Cause": "USER_BUSY"}, 21),
    ({"Hangup-Cause": "CALL_REJECTED"}, 21),
    ({"Hangup-Cause": "no_user_response"}, 18),
    ({"variable_hangup_cause": "NO_ANSWER"}, 19),
    ({"Hangup-Cause": "ALLOTTED_TIMEOUT"}, 16),  # FreeSWITCH's own causes are 16 in Q.850
    ({"Hangup-Cause": "ORIGINATOR_CANCEL"}, 16),
    ({"Hangup-Cause": "SOMETHING_NEW"}, 0),
    ({"variable_hangup_cause_q850": "x", "Hangup-Cause": "USER_BUSY"}, 17),
])
def test_q850_cause(event: dict[str, str], cause: int) -> None:
    assert q850_cause(event) == cause


def test_whisper_end_playback_stop_or_unplayable_file() -> None:
    def expect(t: FsEventTranslator) -> None:
        t.expect_playback(CALL, "/m/w.wav", PlaybackKind.WHISPER)
        t.expect_playback(CALL, "/m/sorry.wav", PlaybackKind.MESSAGE)

    assert translated(
        {"Event-Name": "PLAYBACK_STOP", "Unique-ID": A, "Playback-File-Path": "/m/w.wav",
         "Playback-Status": "done"},
        {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": A, "Application": "playback",
         "Application-Data": "/m/w.wav", "Application-Response": "FILE PLAYED"},
        {"Event-Name": "PLAYBACK_STOP", "Unique-ID": A, "Playback-File-Path": "/other.wav"},
        setup=expect) == [WhisperFinished(5.0, True)]
    # A file FreeSWITCH cannot open raises no PLAYBACK_START/STOP.
    assert translated(
        {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": A, "Application": "playback",
         "Application-Data": "/m/w.wav", "Application-Response": "FILE NOT FOUND"},
        {"Event-Name": "PLAYBACK_STOP", "Unique-ID": A, "Playback-File-Path": "/m/sorry.wav",
         "Playback-Status": "done"},
        setup=expect) == [WhisperFinished(5.0, False), MessageFinished(5.0)]


def test_no_whisper_end_once_leg_a_is_hanging_up() -> None:
    def expect(t: FsEventTranslator) -> None:
        t.expect_playback(CALL, "/m/w.wav", PlaybackKind.WHISPER)

    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": A, "Hangup-Cause": "NORMAL_CLEARING",
         "variable_sip_term_status": "200"},
        {"Event-Name": "PLAYBACK_STOP", "Unique-ID": A, "Playback-File-Path": "/m/w.wav",
         "Playback-Status": "break"},
        setup=expect)
    assert events == [LegHungUp(5.0, Leg.A, 16, A)]


@pytest.mark.parametrize(("variables", "status"), [
    ({"variable_originate_disposition": "USER_BUSY"}, DialOutcome.BUSY),
    ({"variable_originate_disposition": "NO_ANSWER"}, DialOutcome.NO_ANSWER),
    ({"variable_originate_disposition": "CALL_REJECTED"}, DialOutcome.FAILED),
    ({"variable_originate_disposition": "ORIGINATOR_CANCEL"}, DialOutcome.CANCELED),
    ({"variable_originate_disposition": "ALLOTTED_TIMEOUT"}, DialOutcome.NO_ANSWER),  # leg_timeout
    ({"variable_originate_disposition": "SUBSCRIBER_ABSENT"}, DialOutcome.FAILED),
    ({}, DialOutcome.FAILED),
])
def test_bridge_that_ends_without_b_answering_is_dial_finished(variables: dict[str, str],
                                                              status: DialOutcome) -> None:
    complete = {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": A,
                "Application": "bridge", **variables}
    assert translated(complete, complete) == [DialFinished(5.0, status)]


def test_a_refusal_reported_by_the_bridge_before_bs_hangup_still_counts() -> None:
    events = translated(
        {"Event-Name": "CHANNEL_CREATE", "Unique-ID": B},
        {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": A, "Application": "bridge",
         "variable_originate_disposition": "CALL_REJECTED"},
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": B, "Hangup-Cause": "CALL_REJECTED",
         "variable_sip_hangup_disposition": "recv_refuse"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": B,
         "Hangup-Cause": "CALL_REJECTED", "variable_hangup_cause_q850": "21"})
    assert events == [LegCreated(5.0, Leg.B, B), LegHungUp(5.0, Leg.B, 21, B),
                      DialFinished(5.0, DialOutcome.FAILED),
                      LegEnded(5.0, Leg.B, 21, "CALL_REJECTED", B)]


def test_leg_b_answered_is_the_channel_freeswitch_bridges() -> None:
    assert translated(
        ev("CHANNEL_ANSWER", B, variable_callconnect_target=TARGET,
           Event_Date_Timestamp="4000000"),
        {"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": A, "Bridge-A-Unique-ID": A,
         "Bridge-B-Unique-ID": B},
        {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": A, "Application": "bridge",
         "variable_originate_disposition": "call accepted"}) == [
        LegAnswered(4.0, Leg.B, B, TARGET)]  # at B's answer; the bridge's end says nothing


def test_simultaneous_ring_the_winner_and_the_losers() -> None:
    """Three targets at once: one refuses, two answer almost together; the
    one FreeSWITCH bridges wins, the other is hung up with LOSE_RACE."""
    def dial(t: FsEventTranslator) -> None:
        t.expect_dial(CALL, [(B, "+27115550202"), (B1, "sip:ann@x.org"),
                             (B2, "endpoint:agent-7")], None)

    translator = FsEventTranslator()
    translator.watch(CALL)
    dial(translator)
    assert translator.b_channels(CALL) == [B, B1, B2]
    events = translated(
        ev("CHANNEL_CREATE", B), ev("CHANNEL_CREATE", B1), ev("CHANNEL_CREATE", B2),
        ev("CHANNEL_PROGRESS", B), ev("CHANNEL_PROGRESS", B1),
        ev("CHANNEL_HANGUP", B, Hangup_Cause="USER_BUSY",
           variable_sip_hangup_disposition="recv_refuse"),
        ev("CHANNEL_ANSWER", B1), ev("CHANNEL_ANSWER", B2),
        ev("CHANNEL_HANGUP", B1, Hangup_Cause="LOSE_RACE"),
        {"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": A, "Bridge-B-Unique-ID": B2},
        ev("CHANNEL_HANGUP_COMPLETE", B, Hangup_Cause="USER_BUSY",
           variable_hangup_cause_q850="17", variable_sip_hangup_disposition="recv_refuse"),
        ev("CHANNEL_HANGUP_COMPLETE", B1, Hangup_Cause="LOSE_RACE",
           variable_hangup_cause_q850="16", variable_sip_hangup_disposition="send_bye"),
        translator=translator)
    assert events == [
        LegCreated(5.0, Leg.B, B), LegCreated(5.0, Leg.B, B1), LegCreated(5.0, Leg.B, B2),
        LegRinging(5.0, Leg.B), LegRinging(5.0, Leg.B),
        LegHungUp(5.0, Leg.B, 17, B),
        LegAnswered(5.0, Leg.B, B2, "endpoint:agent-7"),
        LegEnded(5.0, Leg.B, 17, "USER_BUSY", B),
        LegEnded(5.0, Leg.B, 16, "LOSE_RACE", B1),  # its own channel: the core ignores it
    ]
    assert translator.b_channels(CALL) == [B2]


def test_a_second_attempt_gets_new_channels_and_the_first_ones_stay_known() -> None:
    translator = FsEventTranslator()
    translator.watch(CALL)
    one_target(translator)
    assert translator.next_b_index(CALL) == 1
    first = translated(
        ev("CHANNEL_CREATE", B),
        ev("CHANNEL_EXECUTE_COMPLETE", A, Application="bridge",
           variable_originate_disposition="NO_ANSWER"), translator=translator)
    translator.expect_dial(CALL, [(B1, "+27115550203")], None)
    second = translated(
        ev("CHANNEL_HANGUP_COMPLETE", B, Hangup_Cause="NO_ANSWER"),  # late: the first attempt's
        ev("CHANNEL_CREATE", B1, variable_callconnect_target="+27115550203"),
        ev("CHANNEL_EXECUTE_COMPLETE", A, Application="bridge",
           variable_originate_disposition="USER_BUSY"), translator=translator)
    assert first == [LegCreated(5.0, Leg.B, B), DialFinished(5.0, DialOutcome.NO_ANSWER)]
    assert second == [LegEnded(5.0, Leg.B, 19, "NO_ANSWER", B), LegCreated(5.0, Leg.B, B1),
                      LegHungUp(5.0, Leg.B, 17, B1), DialFinished(5.0, DialOutcome.BUSY)]
    assert translator.channels(CALL) == [A, B, B1]
    assert translator.next_b_index(CALL) == 2


KEYED = AnswerSteps("1", "/m/w.wav", 5)


def confirm(steps: AnswerSteps | None = KEYED) -> FsEventTranslator:
    translator = FsEventTranslator()
    translator.watch(CALL)
    translator.expect_dial(CALL, [(B, TARGET), (B1, "+27115550203")], steps)
    return translator


def test_answer_steps_the_first_answer_wins_and_hears_the_prompt() -> None:
    translator = confirm()
    events = translated(
        ev("CHANNEL_ANSWER", B1), ev("CHANNEL_ANSWER", B),  # B answers too late
        ev("PLAYBACK_START", B1, Playback_File_Path="/m/w.wav"),
        ev("PLAYBACK_STOP", B1, Playback_File_Path="/m/w.wav", Playback_Status="done"),
        ev("DTMF", B1, DTMF_Digit="1"),
        {"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": A, "Bridge-B-Unique-ID": B1},
        translator=translator)
    assert events == [LegAnswered(5.0, Leg.B, B1, "+27115550203"),
                      WaitForKey(5.0, B1, 5), AnswerAccepted(5.0)]
    assert translator.siblings(CALL, B1) == [B]
    assert translator.confirm_expired(CALL, B1, 9.0) == []  # decided already


@pytest.mark.parametrize(("events", "reason"), [
    ([ev("DTMF", B, DTMF_Digit="2")], "pressed 2, not the confirm key"),
    ([ev("DTMF", B, DTMF_Digit="\n")], "pressed ?, not the confirm key"),
    ([ev("PLAYBACK_START", B, Playback_File_Path="/m/w.wav")], "pressed no key in time"),
])
def test_a_wrong_key_or_the_prompt_again_declines(events: list[dict[str, str]],
                                                  reason: str) -> None:
    translator = confirm()
    before = translated(ev("CHANNEL_ANSWER", B),
                        ev("PLAYBACK_START", B, Playback_File_Path="/m/w.wav"),
                        ev("PLAYBACK_STOP", B, Playback_File_Path="/m/w.wav"),
                        translator=translator)
    assert before == [LegAnswered(5.0, Leg.B, B, TARGET), WaitForKey(5.0, B, 5)]
    assert translated(*events, translator=translator) == [AnswerDeclined(5.0, reason)]
    assert translator.declined_channel(CALL) == B
    # Whatever comes next, the decline is said once; the dial's end follows.
    after = translated(ev("DTMF", B, DTMF_Digit="1"),
                       ev("PLAYBACK_START", B, Playback_File_Path="/m/w.wav"),
                       ev("CHANNEL_EXECUTE_COMPLETE", A, Application="bridge",
                          variable_originate_disposition="NORMAL_CLEARING"),
                       translator=translator)
    assert after == [DialFinished(5.0, DialOutcome.FAILED)]


def test_no_key_in_time_declines_when_the_backend_says_so() -> None:
    translator = confirm(AnswerSteps("#", None, 3))
    assert translated(ev("CHANNEL_ANSWER", B), translator=translator) == [
        LegAnswered(5.0, Leg.B, B, TARGET), WaitForKey(5.0, B, 3)]  # no prompt: at once
    assert translator.confirm_expired(CALL, B1, 9.0) == []  # not the one answering
    assert [r.event for r in translator.confirm_expired(CALL, B, 9.0)] == [
        AnswerDeclined(9.0, "pressed no key in time")]
    assert translator.confirm_expired(CALL, B, 9.5) == []


def test_a_whisper_on_answer_alone_is_accepted_by_the_bridge() -> None:
    translator = confirm(AnswerSteps(None, "/m/w.wav", 5))
    assert translated(
        ev("CHANNEL_ANSWER", B),
        ev("PLAYBACK_START", B, Playback_File_Path="/m/w.wav"),
        ev("PLAYBACK_STOP", B, Playback_File_Path="/m/w.wav"),
        ev("DTMF", B, DTMF_Digit="5"),  # no key asked: nothing
        {"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": A, "Bridge-B-Unique-ID": B},
        translator=translator) == [LegAnswered(5.0, Leg.B, B, TARGET), AnswerAccepted(5.0)]


def test_leg_b_hanging_up_during_the_confirm_ends_the_dial() -> None:
    translator = confirm()
    assert translated(
        ev("CHANNEL_ANSWER", B),
        ev("CHANNEL_HANGUP", B, Hangup_Cause="NORMAL_CLEARING", variable_sip_term_status="200"),
        ev("CHANNEL_EXECUTE_COMPLETE", A, Application="bridge",
           variable_originate_disposition="NORMAL_CLEARING"),
        translator=translator)[-2:] == [LegHungUp(5.0, Leg.B, 16, B),
                                        DialFinished(5.0, DialOutcome.FAILED)]


def test_originate_job_results() -> None:
    job = originate_job_uuid(CALL)
    assert len(job) == 36  # mod_event_socket keeps at most 36 characters
    ok = {"Event-Name": "BACKGROUND_JOB", "Job-UUID": job, BODY_KEY: f"+OK {A}\n"}
    failed = {"Event-Name": "BACKGROUND_JOB", "Job-UUID": job, BODY_KEY: "-ERR GATEWAY_DOWN\n"}
    other = {"Event-Name": "BACKGROUND_JOB", "Job-UUID": "someone-elses", BODY_KEY: "-ERR X\n"}
    [event] = translated(ok, failed, other)
    assert isinstance(event, OriginateFailed)
    assert event.reason.startswith("FreeSWITCH originate: -ERR GATEWAY_DOWN (the sofia gateway")
    assert originate_failure("") == "FreeSWITCH originate: no reply"


def test_recording_start_is_reported_for_leg_a() -> None:
    assert translated({"Event-Name": "RECORD_START", "Unique-ID": A},
                      {"Event-Name": "RECORD_START", "Unique-ID": B}) == [RecordingStarted(5.0)]


def test_plain_event_values_are_decoded_line_by_line() -> None:
    text = ("Event-Name: CHANNEL_CREATE\nvariable_sdp: v=0%0D%0Ax%3A%20y\n"
            "Unique-ID: abc\nContent-Length: 4\n\nbody")
    assert parse_plain_event(text) == {"Event-Name": "CHANNEL_CREATE",
                                       "variable_sdp": "v=0\r\nx: y", "Unique-ID": "abc",
                                       BODY_KEY: "body"}


def test_show_channels_as_json() -> None:
    assert channel_names('{"row_count":0}') == []
    assert channel_names('{"row_count":1,"rows":[{"uuid":"u","name":"sofia/x/1"}]}') == \
        ["sofia/x/1"]
    assert channel_rows('{"row_count":1,"rows":[{"uuid":"u","presence_id":null,"x":2}]}') == \
        [{"uuid": "u", "presence_id": "", "x": "2"}]
    with pytest.raises(ValueError):
        channel_names("-ERR no reply")
    assert dial_outcome({"variable_originate_disposition": "call accepted"}) is DialOutcome.ANSWERED
