"""Event Socket wire text (tests/fixtures/esl, see its README) replayed through
the backend's framer, the event decoder, the translator and the core: each call
must end with the outcome it really had, however the bytes are split, with
malformed frames mixed in."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from greenswitch.esl import ESLEvent

from controller.backends.freeswitch.events import (
    BODY_KEY,
    EslFramer,
    Frame,
    FsEventTranslator,
    PlaybackKind,
    Routed,
    channel_names,
    decode_event,
    leg_uuid,
    originate_failure,
    originate_job_uuid,
    parse_plain_event,
    q850_cause,
)
from controller.calls.core import (
    CallConnect,
    CallPlan,
    DialFinished,
    Leg,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    MessageFinished,
    OriginateFailed,
    RecordingStarted,
    WhisperFinished,
)
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


def call_id_of(wire: bytes) -> str:
    """From the controller's own filter on leg A (every fixture has it)."""
    match = re.search(rb"filter added\. \[Unique-ID\]=\[([0-9a-f-]{36})-a\]", wire)
    assert match, "fixture has no leg A filter"
    return match.group(1).decode()


def playback_paths(events: list[dict[str, str]], call_id: str) -> list[str]:
    """Leg A's files in the order it played them (what the backend registers
    when it sends PlayWhisper and PlayMessageThenHangup)."""
    paths: list[str] = []
    for e in events:
        if e.get("Unique-ID") != leg_uuid(call_id, Leg.A):
            continue
        path = e.get("Playback-File-Path") or (
            e.get("Application-Data") if e.get("Application") == "playback" else None)
        if path and path not in paths:
            paths.append(path)
    return paths


def replay(events: list[dict[str, str]], call_id: str, whisper: bool) -> CallConnect:
    paths = playback_paths(events, call_id)
    plan = CallPlan(call_id=call_id, leg_a="+27115550101", leg_b="+27115550202",
                    ring_timeout=8, time_limit=4,
                    whisper_audio=paths[0] if whisper and paths else ("/m/w.wav" if whisper else None),
                    b_unreached_audio="/m/sorry.wav", recording_file="/r/x.wav")
    translator = FsEventTranslator()
    translator.watch(call_id)
    for i, path in enumerate(paths):
        kind = PlaybackKind.WHISPER if whisper and i == 0 else PlaybackKind.MESSAGE
        translator.expect_playback(call_id, path, kind)
    core = CallConnect(plan, created_at=0.0)
    core.start()
    for event in events:
        for routed in translator.translate(event, now=0.0):
            assert routed.call_id == call_id
            core.handle(routed.event)
    return core


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_recorded_call_ends_with_its_outcome(name: str) -> None:
    wire = (FIXTURES / f"{name}.esl").read_bytes()
    status, a_status, b_status, hangup_by, whisper = OUTCOMES[name]
    core = replay(events_of(frames_of([wire])), call_id_of(wire), whisper)
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
    call_id = call_id_of(wire)
    a = leg_uuid(call_id, Leg.A).encode()
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
    core = replay(events_of(frames), call_id, whisper=True)
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


def translated(*events: dict[str, str], setup: Any = None) -> list[object]:
    translator = FsEventTranslator()
    translator.watch(CALL)
    if setup is not None:
        setup(translator)
    out: list[object] = []
    for event in events:
        out += [r.event for r in translator.translate(event, now=5.0)]
    return out


def test_event_time_is_the_switch_timestamp() -> None:
    [event] = translated({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": A,
                          "Event-Date-Timestamp": "1795260166633697"})
    assert event == LegAnswered(1795260166.633697, Leg.A)
    [event] = translated({"Event-Name": "CHANNEL_CREATE", "Unique-ID": B})
    assert event == LegCreated(5.0, Leg.B)


def test_party_hangups_give_leghungup_with_the_cause_by_name_before_q850_is_set() -> None:
    # CHANNEL_HANGUP has Hangup-Cause and, for a refusal, recv_refuse; the
    # q850 variable comes only with CHANNEL_HANGUP_COMPLETE.
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": B, "Hangup-Cause": "USER_BUSY",
         "variable_sip_hangup_disposition": "recv_refuse"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": B, "Hangup-Cause": "USER_BUSY",
         "variable_hangup_cause_q850": "17", "variable_sip_hangup_disposition": "recv_refuse"})
    assert events == [LegHungUp(5.0, Leg.B, 17), LegEnded(5.0, Leg.B, 17, "USER_BUSY")]


def test_switch_hangups_are_not_the_party_hanging_up() -> None:
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": B, "Hangup-Cause": "NO_ANSWER"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": B, "Hangup-Cause": "NO_ANSWER",
         "variable_hangup_cause_q850": "19", "variable_sip_hangup_disposition": "send_cancel"})
    assert events == [LegEnded(5.0, Leg.B, 19, "NO_ANSWER")]


def test_a_recv_disposition_seen_only_at_hangup_complete_still_counts() -> None:
    events = translated(
        {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": A, "Hangup-Cause": "NORMAL_CLEARING"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": A,
         "Hangup-Cause": "NORMAL_CLEARING", "variable_sip_hangup_disposition": "recv_bye"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": A})
    assert events == [LegHungUp(5.0, Leg.A, 16), LegEnded(5.0, Leg.A, 16, "NORMAL_CLEARING")]


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
         "variable_sip_hangup_disposition": "recv_bye"},
        {"Event-Name": "PLAYBACK_STOP", "Unique-ID": A, "Playback-File-Path": "/m/w.wav",
         "Playback-Status": "break"},
        setup=expect)
    assert events == [LegHungUp(5.0, Leg.A, 16)]


@pytest.mark.parametrize(("variables", "status"), [
    ({"variable_originate_disposition": "USER_BUSY"}, "BUSY"),
    ({"variable_originate_disposition": "NO_ANSWER"}, "NOANSWER"),
    ({"variable_originate_disposition": "CALL_REJECTED"}, "CALL_REJECTED"),
    ({"variable_DIALSTATUS": "NOANSWER"}, "NOANSWER"),
    ({}, "FAILED"),
])
def test_bridge_that_ends_without_b_answering_is_dial_finished(variables: dict[str, str],
                                                              status: str) -> None:
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
    assert events == [LegCreated(5.0, Leg.B), LegHungUp(5.0, Leg.B, 21),
                      DialFinished(5.0, "CALL_REJECTED"),
                      LegEnded(5.0, Leg.B, 21, "CALL_REJECTED")]


def test_bridge_end_after_b_answered_says_nothing() -> None:
    assert translated(
        {"Event-Name": "CHANNEL_ANSWER", "Unique-ID": B},
        {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": A, "Application": "bridge",
         "variable_originate_disposition": "SUCCESS"}) == [LegAnswered(5.0, Leg.B)]


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
    with pytest.raises(ValueError):
        channel_names("-ERR no reply")
