"""The bench's report: each figure next to its goal, the table printed, and
the charts (CPU per call against rate for both lanes; the completion
webhook's latency percentiles per step; success against rate; whisper end to
leg B's INVITE per step; and the inbound lanes' answer -> first action and
CPU per call against rate)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import percentile
from .inbound_calls import InboundStep
from .lanes import Call, Step

SUCCESS_GOAL = 0.999
CPU_PER_CALL_GOAL_MS = 2.5
INBOUND_ACTION_GOAL_MS = 20.0
WHISPER_GAP_GOAL_MS = 5.0
# A control step whose own whisper end -> INVITE p99 is above this is the
# switch saturated (0.6-1 s at 35 calls/s on 2 cores): a difference to it
# says nothing about the controller.
SANE_CONTROL_GAP_MS = 50.0


@dataclass
class WhisperGapStep:
    """Whisper end -> leg B's INVITE p99 of both lanes at one rate of one run,
    and whether the goal is judged there (``left_out`` says why not)."""

    run: int
    rate: float
    controller_p99_ms: float | None
    control_p99_ms: float | None
    difference_ms: float | None
    left_out: str | None = None


@dataclass
class Report:
    machine: dict[str, str]
    settings: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    whisper_gap_steps: list[WhisperGapStep] = field(default_factory=list)
    sustained: dict[str, list[float]] = field(default_factory=dict)  # lane -> each run's rate
    inbound_steps: list[InboundStep] = field(default_factory=list)
    cpu_parts: dict[str, Any] = field(default_factory=dict)  # see Bench.cpu_by_part

    def figure(self, name: str, value: Any, goal: str, met: bool | None, unit: str = "") -> None:
        self.figures.append({"figure": name, "value": value, "unit": unit, "goal": goal,
                             "met": met})

    def common_rate(self) -> float:
        """The rate both lanes sustained (the median of their runs): the
        switch's own limit here, when the controller keeps up."""
        return min(statistics.median(self.sustained["control"]),
                   statistics.median(self.sustained["controller"]))

    def lane_steps(self, lane: str, run: int | None = None) -> list[Step]:
        return [s for s in self.steps if s.lane == lane and (run is None or s.run == run)]


def webhook_percentiles(calls: list[Call]) -> dict[str, float | None]:
    latencies = [ms for c in calls if (ms := c.webhook_ms) is not None]
    return {name: percentile(latencies, q) for name, q in (("p50", 0.5), ("p90", 0.9),
                                                          ("p99", 0.99))}


def reasons(failures: dict[str, int]) -> str:
    """How the calls that did not complete ended, for a step's line or a figure's note."""
    if not failures:
        return ""
    return "; not completed: " + ", ".join(f"{count} {why}" for why, count in failures.items())


def add_figures(report: Report, samples: list[tuple[int, int]], overload: dict[str, Any],
                whisper_ready: list[bool]) -> None:
    control_runs, controller_runs = report.sustained["control"], report.sustained["controller"]
    ratios = [b / a for a, b in zip(control_runs, controller_runs, strict=True) if a]
    ratio = statistics.median(ratios) if ratios else None
    runs = ", ".join(f"{b:g}/{a:g}" for a, b in zip(control_runs, controller_runs, strict=True))
    report.figure("sustained rate (>= 99.9 % success), controller / control, median of runs",
                  ratio and round(ratio, 3), ">= 0.95", ratio is not None and ratio >= 0.95,
                  f"(runs: {runs} calls/s)")
    common = report.common_rate()
    add_whisper_gap_figures(report)
    # The first run's step at the control lane's peak (or the highest below it).
    peak = [s for s in report.lane_steps("controller", 1) if s.rate <= (control_runs[0] or 1)]
    at_peak = peak[-1] if peak else None
    control_peak = {s.rate: s for s in report.lane_steps("control", 1)}.get(
        at_peak.rate if at_peak else -1)
    lag = at_peak.event_lag_p99_ms if at_peak else None
    report.figure("AMI event lag p99 at peak (histogram bucket bound)", lag, "<= 5 ms",
                  lag is not None and lag <= 5, "ms")
    # The same moment seen by a bare AMI client: Asterisk's own delivery delay.
    bare = at_peak.observer_lag_p99_ms if at_peak else None
    excess = None if lag is None or bare is None else round(lag - bare, 2)
    report.figure("  of which the controller's own (minus a bare AMI client's p99)", excess,
                  "<= 5 ms", excess is not None and excess <= 5, "ms")
    cpu = at_peak.cpu_ms_per_call if at_peak else None
    report.figure(f"controller CPU per call at {at_peak.rate if at_peak else '?'} calls/s "
                  "(control's peak; each component alone: python -m bench.micro)",
                  cpu and round(cpu, 2), f"<= {CPU_PER_CALL_GOAL_MS} ms",
                  cpu is not None and cpu <= CPU_PER_CALL_GOAL_MS, "ms")
    waited = at_peak.loop_wait_percent if at_peak else None
    report.figure("  the daemon's event loop there, waiting (runnable) for a CPU", waited, "-", None,
                  "% of the step's time")
    parts = report.cpu_parts
    if parts:
        report.figure(f"  by part, at {parts['rate']:g} calls/s on asyncio's own loop "
                      "(bench.cpu_parts)", parts["total_ms"], "-", None,
                      "ms: " + ", ".join(f"{part} {ms:.2f}"
                                         for part, ms in parts["ms_per_call"].items()))
    ours = at_peak.switch_cpu_ms_per_call if at_peak else None
    bare_switch = control_peak.switch_cpu_ms_per_call if control_peak else None
    report.figure("  Asterisk's CPU per call there, controller lane / control lane",
                  ours and bare_switch and round(ours / bare_switch, 2), "-", None,
                  f"({ours and round(ours, 2)} / {bare_switch and round(bare_switch, 2)} ms)")
    slope = None
    if len({n for n, _ in samples}) > 2:
        slope = statistics.linear_regression([n for n, _ in samples],
                                             [r for _, r in samples]).slope
    report.figure("controller memory per active call (RSS slope)", slope and round(slope, 1),
                  "<= 64 KiB", slope is not None and slope <= 64, "KiB")
    sustained_steps = [s for s in report.lane_steps("controller")
                       if s.rate <= common and s.success >= SUCCESS_GOAL and s.webhook_ms]
    worst = max(sustained_steps, key=lambda s: (s.webhook_ms or {}).get("p99") or 0.0,
                default=None)
    worst_p99 = (worst.webhook_ms or {}).get("p99") if worst else None
    report.figure("call end -> completion webhook received, p99, worst sustained step",
                  worst_p99 and round(worst_p99, 1), "<= 50 ms",
                  worst_p99 is not None and worst_p99 <= 50,
                  f"ms (at {worst.rate:g} calls/s, run {worst.run})" if worst else "ms")
    share = sum(whisper_ready) / len(whisper_ready) if whisper_ready else None
    report.figure("whisper audio ready before leg A answered", share, ">= 99.9 %",
                  share is not None and share >= 0.999)
    admitted_ok = (overload["admitted_completed"] / overload["admitted"]
                   if overload["admitted"] else None)
    report.figure("at 1.5x: admitted calls that complete / admitted", admitted_ok, "1.0",
                  admitted_ok == 1.0, f"({overload['admitted_completed']}/{overload['admitted']}, "
                                      f"{overload['refused']} refused, "
                                      f"{overload['unanswered']} unanswered in 10 s"
                                      f"{reasons(overload.get('admitted_failures', {}))})")
    refusal = overload["refusal_p99_ms"]
    report.figure("at 1.5x: 429 answer time p99", refusal and round(refusal, 2), "<= 10 ms",
                  refusal is not None and refusal <= 10, "ms")


def whisper_gap_steps(steps: list[Step]) -> list[WhisperGapStep]:
    """Controller minus control, step by step (the same run and rate), each
    control step judged sane or left out with the reason."""
    lanes = {lane: {(s.run, s.rate): s for s in steps if s.lane == lane}
             for lane in ("control", "controller")}
    compared = []
    for key in sorted(lanes["control"].keys() | lanes["controller"].keys()):
        control, ours = lanes["control"].get(key), lanes["controller"].get(key)
        ours_ms = ours.gap_p99_ms if ours else None
        bare_ms = control.gap_p99_ms if control else None
        left_out = None
        if control is None:
            left_out = "the control lane stopped below this rate"
        elif control.success < SUCCESS_GOAL:
            left_out = f"control {100 * control.success:.1f} % completed"
        elif bare_ms is None:
            left_out = "no whisper timed in the control lane"
        elif bare_ms > SANE_CONTROL_GAP_MS:
            left_out = f"control p99 {bare_ms:.0f} ms"
        elif ours is None:
            left_out = "the controller lane stopped below this rate"
        elif ours_ms is None:
            left_out = "no whisper timed in the controller lane"
        difference = None if ours_ms is None or bare_ms is None else round(ours_ms - bare_ms, 1)
        compared.append(WhisperGapStep(*key,
                                       ours_ms and round(ours_ms, 2), bare_ms and round(bare_ms, 2),
                                       difference, left_out))
    return compared


def add_whisper_gap_figures(report: Report) -> None:
    """The goal judged per step, over the steps whose control lane is sane:
    pooling the steps' calls would let the saturated control steps' seconds
    of delay swamp the difference."""
    compared = report.whisper_gap_steps = whisper_gap_steps(report.steps)
    judged = [g for g in compared if g.left_out is None]
    worst = max(judged, key=lambda g: g.difference_ms or 0.0, default=None)
    value = worst.difference_ms if worst else None
    report.figure("whisper end -> leg B INVITE on the wire, p99, controller minus control, "
                  "worst step judged", value, f"<= {WHISPER_GAP_GOAL_MS:g} ms",
                  value is not None and value <= WHISPER_GAP_GOAL_MS,
                  (f"ms (run {worst.run} at {worst.rate:g} calls/s; " if worst else "ms (")
                  + f"{len(judged)} of {len(compared)} steps judged: those whose control lane "
                  f"completed >= {100 * SUCCESS_GOAL:g} % with its own p99 <= "
                  f"{SANE_CONTROL_GAP_MS:g} ms)")
    for run in sorted({g.run for g in judged}):
        shown = ", ".join(f"{g.rate:g}: {g.difference_ms:+.1f}" for g in judged if g.run == run)
        report.figure(f"  run {run}, controller minus control per step judged "
                      "(calls/s: ms)", shown, "-", None)
    left_out = "; ".join(
        f"run {run}: " + ", ".join(f"{g.rate:g} ({g.left_out})" for g in compared
                                   if g.run == run and g.left_out is not None)
        for run in sorted({g.run for g in compared if g.left_out is not None}))
    report.figure("  steps left out (calls/s)", left_out or None, "-", None)


def add_inbound_figures(report: Report) -> None:
    """The inbound lanes' figures, read at the steps both lanes sustained."""
    lanes = {lane: [s for s in report.inbound_steps if s.lane == lane]
             for lane in ("control", "controller")}
    sustained = {lane: max((s.rate for s in steps if s.success >= SUCCESS_GOAL), default=0.0)
                 for lane, steps in lanes.items()}
    control = {s.rate: s for s in lanes["control"]}
    both = [(control[s.rate], s) for s in lanes["controller"]
            if s.rate <= min(sustained.values()) and s.success >= SUCCESS_GOAL]
    worst = max(both, key=lambda pair: pair[1].answer_to_action_ms.get("p99") or 0.0,
                default=None)
    ours = worst[1].answer_to_action_ms.get("p99") if worst else None
    bare = worst[0].answer_to_action_ms.get("p99") if worst else None
    report.figure("inbound: answer -> first action (Playback) p99, controller lane, worst "
                  "step both sustained", ours, f"<= {INBOUND_ACTION_GOAL_MS:g} ms",
                  ours is not None and ours <= INBOUND_ACTION_GOAL_MS,
                  f"ms (at {worst[1].rate:g} calls/s)" if worst else "ms")
    report.figure("  controller lane minus control lane there",
                  None if ours is None or bare is None else round(ours - bare, 2), "-", None,
                  f"ms (control lane {bare})")
    gaps = [(c.rate, c.arrival_to_action_ms.get("p99"), b.arrival_to_action_ms.get("p99"))
            for b, c in both]
    arrival = max(((rate, ours_ms - bare_ms, ours_ms, bare_ms)
                   for rate, ours_ms, bare_ms in gaps if ours_ms is not None and bare_ms is not None),
                  key=lambda gap: gap[1], default=None)
    report.figure("inbound: arrival -> first action p99, controller minus control (worst step)",
                  arrival and round(arrival[1], 2), "-", None,
                  f"ms ({arrival[2]} / {arrival[3]} ms at {arrival[0]:g} calls/s)" if arrival
                  else "ms")
    offered = max((s.rate for s in report.inbound_steps), default=0.0)
    report.figure("inbound: sustained rate (>= 99.9 % success), controller / control",
                  round(sustained["controller"] / sustained["control"], 3)
                  if sustained["control"] else None, "-", None,
                  f"({sustained['controller']:g}/{sustained['control']:g} calls/s; "
                  f"ramp up to {offered:g})")
    top = both[-1] if both else None
    cpu = top[1].cpu_ms_per_call if top else None
    report.figure(f"inbound: controller CPU per inbound call at {top[1].rate if top else '?'} "
                  "calls/s (highest step both sustained)", cpu, "-", None, "ms")
    switch = top[1].switch_cpu_ms_per_call if top else None
    bare_switch = top[0].switch_cpu_ms_per_call if top else None
    report.figure("  Asterisk's CPU per inbound call there, controller lane / control lane",
                  switch and bare_switch and round(switch / bare_switch, 2), "-", None,
                  f"({switch} / {bare_switch} ms)")


def print_table(report: Report) -> None:
    print()
    print(f"{'figure':<90} {'value':>18}  {'goal':<20} met")
    for f in report.figures:
        value = "-" if f["value"] is None else f"{f['value']} {f['unit']}".strip()
        met = "-" if f["met"] is None and f["goal"] == "-" else ("yes" if f["met"] else "NO")
        print(f"{f['figure']:<90} {value:>18}  {f['goal']:<20} {met}")
    print()


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((cpu, webhook), (success, gaps)) = plt.subplots(2, 2, figsize=(12, 8.5))
    controller = report.lane_steps("controller", 1)
    control = report.lane_steps("control", 1)
    for steps, attribute, style, label in (
            (controller, "cpu_ms_per_call", "s-", "controller (the daemon)"),
            (controller, "switch_cpu_ms_per_call", "^-", "Asterisk, controller lane"),
            (control, "switch_cpu_ms_per_call", "o-", "Asterisk, control lane")):
        shown = [(s.rate, getattr(s, attribute)) for s in steps if getattr(s, attribute)]
        cpu.plot([r for r, _ in shown], [v for _, v in shown], style, label=label)
    cpu.axhline(CPU_PER_CALL_GOAL_MS, color="grey", linestyle=":", label="controller goal")
    cpu.set(xlabel="offered calls/s", ylabel="CPU ms per call", title="CPU per call against rate")
    for name, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-")):
        shown = [(s.rate, (s.webhook_ms or {}).get(name)) for s in controller]
        webhook.plot([r for r, v in shown if v is not None],
                     [v for _, v in shown if v is not None], style, label=name)
    webhook.axhline(50, color="grey", linestyle=":", label="p99 goal")
    webhook.set(xlabel="offered calls/s", ylabel="ms", yscale="log",
                title="call end -> completion webhook, per step")
    for lane, style in (("control", "o-"), ("controller", "s-")):
        steps = report.lane_steps(lane, 1)
        success.plot([s.rate for s in steps], [100 * s.success for s in steps], style, label=lane)
    success.axhline(100 * SUCCESS_GOAL, color="grey", linestyle=":")
    success.set(xlabel="offered calls/s", ylabel="completed %", title="success against rate")
    judged = [g for g in report.whisper_gap_steps if g.left_out is None]
    styles = ("o-", "s-", "^-", "v-", "D-")
    for index, run in enumerate(sorted({g.run for g in judged})):
        of_run = [g for g in judged if g.run == run]
        gaps.plot([g.rate for g in of_run], [g.difference_ms for g in of_run],
                  styles[index % len(styles)], label=f"run {run}")
    gaps.axhline(WHISPER_GAP_GOAL_MS, color="grey", linestyle=":", label="goal")
    gaps.axhline(0, color="black", linewidth=0.5)
    gaps.set(xlabel="offered calls/s", ylabel="ms",
             title="whisper end -> leg B INVITE p99, controller minus control,\n"
                   f"every run's steps judged (control p99 <= {SANE_CONTROL_GAP_MS:g} ms)")
    for axes in (cpu, webhook, success, gaps):
        axes.legend()
    fig.suptitle(f"callconnect bench (first run), {report.machine['cores']} cores, "
                 f"{report.machine['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def inbound_chart(report: Report, path: Path) -> None:
    """The inbound lanes against rate: answer -> first action p99 (and
    arrival -> first action, where the controller's claim shows), and CPU per
    inbound call."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, cpu) = plt.subplots(1, 2, figsize=(12, 5))
    for lane, marker, colour in (("control", "o", "tab:blue"), ("controller", "s", "tab:orange")):
        steps = [s for s in report.inbound_steps if s.lane == lane]
        for attribute, line, what in (("answer_to_action_ms", "-", "answer"),
                                      ("arrival_to_action_ms", "--", "arrival")):
            shown = [(s.rate, p99) for s in steps
                     if (p99 := getattr(s, attribute).get("p99")) is not None]
            latency.plot([r for r, _ in shown], [v for _, v in shown], marker + line,
                         color=colour, label=f"{lane} lane, {what} -> first action")
        shown = [(s.rate, s.switch_cpu_ms_per_call) for s in steps
                 if s.switch_cpu_ms_per_call is not None]
        cpu.plot([r for r, _ in shown], [v for _, v in shown], marker + "-", color=colour,
                 label=f"Asterisk, {lane} lane")
    controller = [(s.rate, s.cpu_ms_per_call) for s in report.inbound_steps
                  if s.lane == "controller" and s.cpu_ms_per_call is not None]
    cpu.plot([r for r, _ in controller], [v for _, v in controller], "^-", color="tab:green",
             label="controller (the daemon)")
    latency.axhline(INBOUND_ACTION_GOAL_MS, color="grey", linestyle=":",
                    label="answer -> first action goal")
    latency.set(xlabel="offered calls/s", ylabel="p99 ms", title="first action (Playback) p99")
    cpu.set(xlabel="offered calls/s", ylabel="CPU ms per inbound call",
            title="CPU per inbound call against rate")
    for axes in (latency, cpu):
        axes.set_ylim(bottom=0)
        axes.legend(fontsize="small")
    fig.suptitle(f"callconnect bench, inbound lanes, {report.machine['cores']} cores, "
                 f"{report.machine['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
