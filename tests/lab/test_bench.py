"""make bench's smoke: a few calls at 1 call/s through both lanes (a bare AMI
loop and the daemon's API), so a bench that can no longer place calls fails
here rather than reporting a sustained rate of 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_places_and_completes_calls_in_both_lanes(lab: None) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.run", "--smoke"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "control      1.0 calls/s: 3/3 completed" in output, output
    assert "controller   1.0 calls/s: 3/3 completed" in output, output
