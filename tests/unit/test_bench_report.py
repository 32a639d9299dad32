"""The bench's figures from its steps (bench/report.py): the median of the
runs' sustained ratios, CPU per call at the control lane's peak, the worst
sustained step's webhook p99."""

from __future__ import annotations

from pathlib import Path

from bench.lanes import Call, Step
from bench.report import Report, add_figures, chart, webhook_percentiles

OVERLOAD = {"admitted": 60, "admitted_completed": 60, "refused": 30, "unanswered": 0,
            "refusal_p99_ms": 4.0}


def report() -> Report:
    bench = Report({"cores": "2", "date": "today"}, {})
    bench.sustained = {"control": [40.0, 45.0, 40.0], "controller": [40.0, 40.0, 35.0]}
    for rate, cpu, p99 in ((20.0, 2.0, 30.0), (40.0, 2.2, 45.0), (45.0, 3.0, 900.0)):
        bench.steps.append(Step(1, "control", rate, 10, 10, 1.0, switch_cpu_ms_per_call=4.0))
        bench.steps.append(Step(1, "controller", rate, 10, 10 if rate < 45 else 5,
                                1.0 if rate < 45 else 0.5, cpu_ms_per_call=cpu,
                                switch_cpu_ms_per_call=5.0,
                                webhook_ms={"p50": 10.0, "p90": 20.0, "p99": p99}))
    bench.gaps_ms = {"control": [1.0, 2.0], "controller": [3.0, 4.0]}
    return bench


def figures(bench: Report) -> dict[str, dict[str, object]]:
    add_figures(bench, [(1, 1000), (2, 1030), (3, 1060)], OVERLOAD, [True, True])
    return {f["figure"].strip().split(",")[0].split(" (")[0]: f for f in bench.figures}


def test_the_sustained_ratio_is_the_median_of_the_runs() -> None:
    ratio = figures(report())["sustained rate"]
    assert ratio["value"] == round(40 / 45, 3)  # runs: 1.0, 0.889, 0.875
    assert ratio["met"] is False and "40/40, 40/45, 35/40" in str(ratio["unit"])


def test_cpu_per_call_is_read_at_the_control_lanes_peak() -> None:
    found = figures(report())
    cpu = found["controller CPU per call at 40.0 calls/s"]
    assert (cpu["value"], cpu["met"]) == (2.2, True)
    assert found["Asterisk's CPU per call there"]["value"] == 1.25


def test_the_webhook_figure_is_the_worst_sustained_step() -> None:
    webhook = figures(report())["call end -> completion webhook received"]
    assert (webhook["value"], webhook["met"]) == (45.0, True)  # 45 calls/s was not sustained
    assert "40 calls/s" in str(webhook["unit"])


def test_webhook_percentiles_skip_calls_without_a_webhook() -> None:
    calls = [Call("controller", str(n), "", 0.0, ended_at=10.0, webhook_at=10.0 + n / 1000)
             for n in range(1, 101)] + [Call("controller", "lost", "", 0.0, ended_at=10.0)]
    shown = webhook_percentiles(calls)
    assert shown["p50"] is not None and abs(shown["p50"] - 50.0) < 1.5
    assert shown["p99"] is not None and abs(shown["p99"] - 99.0) < 1.5


def test_the_charts_are_drawn(tmp_path: Path) -> None:
    bench = report()
    figures(bench)
    chart(bench, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
