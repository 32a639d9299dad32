"""The `callconnect` command line, run as a user would, against the lab."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import StartReceiver

REPO = Path(__file__).resolve().parents[2]
CALLCONNECT = [sys.executable, "-m", "controller", "--config", str(REPO / "sip-lab" / "callconnect.toml")]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CALLCONNECT, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


@pytest.mark.lab
def test_call_wait_prints_each_step_and_the_result(lab: None) -> None:
    done = run("call", "--leg-a", "011 555 0101", "--leg-b", "+27 11 555 0202",
               "--whisper", "Connecting you to John Smith from the website form",
               "--time-limit", "2", "--wait")
    assert done.returncode == 0, done.stderr
    steps = [m.group(1) for line in done.stderr.splitlines()
             if (m := re.match(r"\[\s*[0-9.]+s\] (\S+)", line))]
    assert steps == ["dialing-a", "ringing-a", "whispering", "dialing-b", "ringing-b",
                     "bridged", "ending", "ended"]
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert result["leg_a"]["target"] == "+27115550101"
    assert result["leg_b"]["target"] == "+27115550202"
    assert Path(result["recording"]["path"]).exists()


@pytest.mark.lab
async def test_call_without_wait_returns_at_once_and_the_call_goes_on(
        lab: None, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    done = await asyncio.to_thread(
        run, "call", "--leg-a", "+27115550101", "--leg-b", "+27115550202",
        "--whisper", "Connecting you", "--time-limit", "4", "--webhook", receiver.url)
    # It returned while the call was still going: the end is reported later.
    assert not receiver.arrived.is_set()
    assert done.returncode == 0, done.stdout + done.stderr
    response = json.loads(done.stdout)
    assert set(response) >= {"success", "call_uuid", "leg_a_status", "leg_b_status", "recorded"}
    assert response["success"] is True
    assert response["leg_a_status"] == "initiated"
    assert response["leg_b_status"] == "pending"
    assert response["recorded"] is True
    # The detached follower drives the call to its end and reports it.
    await asyncio.wait_for(receiver.arrived.wait(), 30)
    [body] = receiver.bodies
    data = body["data"]
    assert data["call_uuid"] == response["call_uuid"]
    assert data["status"] == "completed"


@pytest.mark.lab
@pytest.mark.parametrize(("leg_a", "leg_b", "error_id", "says"), [
    ("0800FLOWERS", "+27115550202", "invalid-number", "leg_a"),
    ("+27115550101", "12", "invalid-number", "leg_b"),
    ("011 555 0101", "+27115550101", "same-legs", "same"),
])
def test_bad_input_is_refused_before_anything_is_dialed(
        lab: None, leg_a: str, leg_b: str, error_id: str, says: str) -> None:
    done = run("call", "--leg-a", leg_a, "--leg-b", leg_b, "--wait")
    assert done.returncode == 2
    error = json.loads(done.stdout)
    assert error["success"] is False and error["error_id"] == error_id
    assert says in error["message"]


@pytest.mark.lab
def test_unreachable_switch_says_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[asterisk]\nport = 5999\nconnect_timeout = 2\n')
    done = subprocess.run([sys.executable, "-m", "controller", "--config", str(config), "call",
                           "--leg-a", "+27115550101", "--leg-b", "+27115550202", "--wait"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode == 3
    error = json.loads(done.stdout)
    assert error["error_id"] == "switch-unavailable"
    assert "cannot reach Asterisk AMI at 127.0.0.1:5999" in error["message"]
