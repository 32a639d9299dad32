"""Markdown tables of the latest bench run, for the README:
python -m bench.table [REPORT.json] (docs/bench/latest.json by default)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LATEST = Path(__file__).resolve().parents[1] / "docs" / "bench" / "latest.json"


def cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.table", description=__doc__)
    parser.add_argument("report", nargs="?", type=Path, default=LATEST,
                        help="a make bench report (default: docs/bench/latest.json)")
    path = parser.parse_args(argv).report
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read the report {path}: {exc}")
    machine = report["machine"]
    print(f"Run of {machine['date']} on {machine['cores']} cores ({machine['cpu']}), "
          f"{machine['memory_gib']} GiB; {machine['asterisk']}; SIPp {machine['sipp']}; "
          f"Python {machine['python']}. Command: `sudo make bench`.\n")
    print("| figure | value | goal | met |\n| --- | --- | --- | --- |")
    for figure in report["figures"]:
        value = figure["value"]
        shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
        met = "-" if figure["met"] is None and figure["goal"] == "-" else (
            "yes" if figure["met"] else "**no**")
        print(f"| {figure['figure'].strip()} | {shown} {figure['unit']} | {figure['goal']} | {met} |")
    print("\n| run | lane | calls/s | completed | controller CPU ms/call | Asterisk CPU ms/call "
          "| webhook p50 / p99 ms | whisper->INVITE p99 ms | event lag p99 ms (bucket) "
          "| bare AMI client lag p99 ms | event loop waiting for a CPU % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for step in report["steps"]:
        webhook = step.get("webhook_ms") or {}
        latency = (f"{cell(webhook.get('p50'), 0)} / {cell(webhook.get('p99'), 0)}"
                   if webhook else "-")
        print(f"| {step['run']} | {step['lane']} | {step['rate']:g} "
              f"| {100 * step['success']:.1f} % | {cell(step['cpu_ms_per_call'], 2)} "
              f"| {cell(step['switch_cpu_ms_per_call'], 2)} | {latency} "
              f"| {cell(step['gap_p99_ms'])} | {cell(step['event_lag_p99_ms'])} "
              f"| {cell(step['observer_lag_p99_ms'])} | {cell(step.get('loop_wait_percent'), 0)} |")
    failed = ([(step["run"], step["lane"], step) for step in report["steps"]]
              + [("-", f"inbound {step['lane']}", step) for step in report.get("inbound_steps", [])])
    failed = [(run, lane, step) for run, lane, step in failed if step.get("failures")]
    if failed:
        print("\nThe calls that did not complete, by how they ended:\n\n"
              "| run | lane | calls/s | not completed | how (calls) |\n| --- | --- | --- | --- | --- |")
        for run, lane, step in failed:
            whys = step["failures"]
            print(f"| {run} | {lane} | {step['rate']:g} | {sum(whys.values())} "
                  f"| {'; '.join(f'{why} ({count})' for why, count in whys.items())} |")
    inbound = report.get("inbound_steps") or []
    if inbound:
        print("\n| lane (inbound) | calls/s | completed | answer -> first action p50 / p99 ms "
              "| arrival -> first action p50 / p99 ms | controller CPU ms/call "
              "| Asterisk CPU ms/call |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for step in inbound:
            answer, arrival = step["answer_to_action_ms"], step["arrival_to_action_ms"]
            print(f"| {step['lane']} | {step['rate']:g} | {100 * step['success']:.1f} % "
                  f"| {cell(answer['p50'])} / {cell(answer['p99'])} "
                  f"| {cell(arrival['p50'])} / {cell(arrival['p99'])} "
                  f"| {cell(step['cpu_ms_per_call'], 2)} | {cell(step['switch_cpu_ms_per_call'], 2)} |")


if __name__ == "__main__":
    main()
