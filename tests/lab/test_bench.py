"""make bench's smoke: a few calls at 1 call/s through both outbound lanes (a
bare AMI loop and the daemon's API) and both inbound lanes (callers to a
number the dialplan alone answers, and to one set on the daemon), so a bench
that can no longer place calls fails here rather than reporting a sustained
rate of 0; the step that counts the daemon's CPU by part; and the count of
calls Asterisk loses to a Redirect sent the moment leg A reports its answer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_places_and_completes_calls_in_every_lane(lab: None) -> None:
    workdirs = Path(tempfile.gettempdir()).glob
    before = set(workdirs("callconnect-bench-*"))
    run = subprocess.run([sys.executable, "-m", "bench.run", "--smoke"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # Its daemons' stores and logs are removed when it ends well.
    assert set(workdirs("callconnect-bench-*")) <= before, output
    assert "[bench] control      1.0 calls/s: 3/3 completed" in output, output
    assert "[bench] controller   1.0 calls/s: 3/3 completed" in output, output
    for lane in ("control", "controller"):
        # Every call answered and its first action timed on the switch's clock.
        assert re.search(rf"\[bench\] inbound {lane:<10}   1.0 calls/s: 3/3 completed .*"
                         r"answer -> first action p50 / p99 [0-9.]+ / [0-9.]+ ms", output), output
    # The daemon counted by part: every part of a call's life did some work,
    # and the parts add up to the whole the line gives.
    counted = re.search(r"\[bench\] CPU by part at 1 calls/s, 3/3 completed, asyncio's own "
                        r"loop: ([0-9.]+) ms a call = (.*)", output)
    assert counted, output
    parts = {name: float(ms) for name, ms in re.findall(r"([a-z ]+) ([0-9.]+)(?:, |$)",
                                                        counted.group(2))}
    assert set(parts) == {"api", "switch events", "call flow", "store", "webhooks",
                          "event loop and the rest"}, counted.group(0)
    assert all(ms > 0 for ms in parts.values()), counted.group(0)
    assert abs(sum(parts.values()) - float(counted.group(1))) < 0.05, counted.group(0)


def test_a_bench_that_fails_says_why_and_keeps_its_daemons_logs(lab: None) -> None:
    # A real failure: the environment overrides the secret in the bench's
    # daemon config (CALLCONNECT_ASTERISK_SECRET), so Asterisk refuses its login.
    run = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--only", "outbound"],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "CALLCONNECT_ASTERISK_SECRET": "not-the-lab-secret"})
    output = run.stdout + run.stderr
    kept = re.search(r"\[bench\] the daemons' stores and logs are kept in (\S+)", run.stderr)
    assert run.returncode == 1 and kept, output
    try:
        assert re.search(r"\[bench\] stopped: the bench's daemon .*refused login", run.stderr), output
        assert "refused login" in (Path(kept.group(1)) / "daemon.log").read_text(), output
        # The daemon that never became ready was stopped, not left running.
        assert not processes_naming(kept.group(1)), output
    finally:
        shutil.rmtree(kept.group(1), ignore_errors=True)


def test_the_redirect_race_accounts_for_every_call_it_places_in_both_lanes(lab: None) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.redirect_race", "--calls", "10",
                          "--rate", "5"], cwd=REPO, capture_output=True, text=True, timeout=180)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lanes = re.findall(r"\[race\] (\S+): 10 calls at 5/s: 10 answered; ended normally "
                       r"\(cause 16\) (\d+), lost (\d+) .*, otherwise 0 .*; not ended in time 0$",
                       run.stdout, re.MULTILINE)
    assert [lane for lane, _, _ in lanes] == ["at-report", "in-wait"], output
    assert all(int(normal) + int(lost) == 10 for _, normal, lost in lanes), output


def processes_naming(text: str) -> list[str]:
    """The command lines of the running processes that contain ``text``."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        if text in command:
            found.append(command)
    return found
