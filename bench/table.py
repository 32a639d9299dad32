"""Markdown tables of the latest bench run, for the README:
python -m bench.table"""

from __future__ import annotations

import json
from pathlib import Path

LATEST = Path(__file__).resolve().parents[1] / "docs" / "bench" / "latest.json"


def main() -> None:
    report = json.loads(LATEST.read_text())
    machine = report["machine"]
    print(f"Run of {machine['date']} on {machine['cores']} cores ({machine['cpu']}), "
          f"{machine['memory_gib']} GiB; {machine['asterisk']}; SIPp {machine['sipp']}; "
          f"Python {machine['python']}. Command: `sudo make bench`.\n")
    print("| figure | value | goal | met |\n| --- | --- | --- | --- |")
    for figure in report["figures"]:
        value = figure["value"]
        shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
        print(f"| {figure['figure'].strip()} | {shown} {figure['unit']} | {figure['goal']} | "
              f"{'yes' if figure['met'] else '**no**'} |")
    print("\n| lane | calls/s | completed | whisper->INVITE p99 ms | controller CPU % "
          "| event lag p99 ms (bucket) | bare AMI client lag p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for step in report["steps"]:
        def cell(value: float | None, digits: int = 1) -> str:
            return "-" if value is None else f"{value:.{digits}f}"
        print(f"| {step['lane']} | {step['rate']:g} | {100 * step['success']:.1f} % "
              f"| {cell(step['gap_p99_ms'])} | {cell(step['cpu_percent'], 0)} "
              f"| {cell(step['event_lag_p99_ms'])} | {cell(step['observer_lag_p99_ms'])} |")


if __name__ == "__main__":
    main()
