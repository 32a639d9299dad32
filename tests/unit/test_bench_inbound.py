"""The inbound lanes' figures (bench/inbound_calls.py, bench/report.py): the
callers' channels read from AMI events as a bare observer receives them, a
step's latencies and completions, and the figures at the steps both lanes
sustained."""

from __future__ import annotations

from bench.inbound_calls import ChannelLog, InboundStep, inbound_step
from bench.report import Report, add_inbound_figures

NUMBER, OTHER = "+27115550951", "+27115550950"


def event(name: str, uniqueid: str, at: float, **headers: str) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uniqueid, "Timestamp": f"{at:.6f}", **headers}


def a_call(log: ChannelLog, uniqueid: str, at: float, number: str = NUMBER,
           cause: str = "16") -> None:
    """A caller's channel as Asterisk reports it: arrival, its first action
    answering it (Answer, Newstate Up, then Playback), the switch's hangup."""
    for one in (event("Newchannel", uniqueid, at, Exten=number, Context="callconnect-inbound"),
                event("Newstate", uniqueid, at + 0.001, ChannelState="4"),
                event("Newexten", uniqueid, at + 0.012, Application="Answer"),
                event("Newstate", uniqueid, at + 0.013, ChannelState="6"),
                event("Newexten", uniqueid, at + 0.016, Application="Playback"),
                event("Newexten", uniqueid, at + 2.5, Application="Playback"),  # a second play
                event("Newstate", uniqueid, at + 2.6, ChannelState="6"),
                event("Hangup", uniqueid, at + 4.6, Cause=cause)):
        log.feed(one)


def test_a_callers_channel_is_timed_from_answer_and_arrival_to_its_first_action() -> None:
    log = ChannelLog(frozenset({NUMBER}))
    a_call(log, "1.1", 100.0)
    [channel] = log.since(0, NUMBER)
    assert channel.completed
    assert round(channel.answer_to_action_ms or 0, 3) == 3.0  # the first Up and first Playback
    assert round(channel.arrival_to_action_ms or 0, 3) == 16.0


def test_channels_of_other_numbers_and_events_of_other_channels_are_left_out() -> None:
    log = ChannelLog(frozenset({NUMBER}))
    a_call(log, "1.1", 100.0, number="+27115550999")  # not the bench's number
    log.feed(event("Newexten", "9.9", 100.0, Application="Playback"))  # never seen arriving
    log.feed({"Event": "Newchannel", "Uniqueid": "2.2", "Exten": NUMBER})  # no timestamp
    assert log.channels == {}


def test_a_step_counts_only_calls_answered_played_and_hung_up_normally() -> None:
    log = ChannelLog(frozenset({NUMBER, OTHER}))
    a_call(log, "1.1", 100.0)
    a_call(log, "1.2", 101.0, cause="34")  # hung up, but not by the lane's own hangup
    a_call(log, "1.3", 102.0, number=OTHER)  # the other lane's
    log.feed(event("Newchannel", "1.4", 103.0, Exten=NUMBER))  # arrived, never answered
    step = inbound_step("controller", 1.0, 4, log.since(0, NUMBER))
    assert (step.offered, step.completed, step.success) == (4, 1, 0.25)
    assert step.answer_to_action_ms == {"p50": 3.0, "p99": 3.0}
    # Four calls offered, three seen on the switch.
    assert step.failures == {"cause 34": 1, "still up": 1, "never reached the switch": 1}
    mark = len(log.order)  # the next step's calls come after this
    a_call(log, "1.5", 104.0)
    later = inbound_step("controller", 2.0, 1, log.since(mark, NUMBER))
    assert (later.completed, later.success) == (1, 1.0)


def step(lane: str, rate: float, success: float, answer_p99: float, arrival_p99: float,
         cpu: float | None = None) -> InboundStep:
    return InboundStep(lane, rate, 10, round(10 * success), success,
                       {"p50": 1.0, "p99": answer_p99}, {"p50": 2.0, "p99": arrival_p99},
                       cpu_ms_per_call=cpu, switch_cpu_ms_per_call=20.0 if lane == "control"
                       else 25.0)


def test_the_inbound_figures_are_read_at_the_steps_both_lanes_sustained() -> None:
    report = Report({}, {})
    report.inbound_steps = [
        step("control", 1.0, 1.0, 4.0, 5.0), step("control", 5.0, 1.0, 5.0, 6.0),
        step("control", 10.0, 0.9, 900.0, 900.0),
        step("controller", 1.0, 1.0, 6.0, 20.0, cpu=9.0),
        step("controller", 5.0, 1.0, 8.0, 15.0, cpu=7.0),
        step("controller", 10.0, 0.5, 500.0, 800.0, cpu=6.0)]
    add_inbound_figures(report)
    found = {f["figure"].split(",")[0].split(" (")[0].strip(): f for f in report.figures}
    answer = found["inbound: answer -> first action"]
    assert (answer["value"], answer["met"]) == (8.0, True)  # 10 calls/s was sustained by neither
    assert "5 calls/s" in str(answer["unit"])
    assert found["controller lane minus control lane there"]["value"] == 3.0
    assert found["inbound: arrival -> first action p99"]["value"] == 15.0  # at 1 call/s
    assert found["inbound: sustained rate"]["value"] == 1.0
    cpu = found["inbound: controller CPU per inbound call at 5.0 calls/s"]
    assert cpu["value"] == 7.0
    assert found["Asterisk's CPU per inbound call there"]["value"] == 1.25


def test_no_step_sustained_by_both_lanes_gives_no_figure_and_misses_the_goal() -> None:
    report = Report({}, {})
    report.inbound_steps = [step("control", 1.0, 1.0, 4.0, 5.0),
                            step("controller", 1.0, 0.5, 6.0, 20.0)]
    add_inbound_figures(report)
    answer = report.figures[0]
    assert (answer["value"], answer["met"]) == (None, False)
