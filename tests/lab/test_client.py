"""`callconnect call --url` on the lab: the call goes through the daemon
process (POST /v1/calls), `--wait` follows it to its end, and `callconnect
calls recording` downloads what the switch recorded."""

from __future__ import annotations

import audioop
import json
import os
import re
import signal
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.conftest import REPO, TOKEN, DaemonProcess

CALLCONNECT = Path(sys.executable).parent / "callconnect"
# Where sip-lab/lab keeps the switch's root; the lab config's media folders
# point into the default one, so a moved lab moves them too.
LAB_ROOT = Path(os.environ.get("CALLCONNECT_LAB_DIR") or REPO / ".lab") / "root"


def callconnect(*args: str, daemon: DaemonProcess) -> subprocess.CompletedProcess[str]:
    """The installed entry point as a process, the token in its environment."""
    if not CALLCONNECT.is_file():
        pytest.fail(f"{CALLCONNECT} is missing: install the package (`make install`)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONNECT_")}
    done = subprocess.run([str(CALLCONNECT), *args], capture_output=True, text=True, timeout=90,
                          cwd=REPO, env={**clean, "PYTHONPATH": str(REPO),
                                         "CALLCONNECT_TOKEN": TOKEN})
    assert TOKEN not in done.stdout + done.stderr
    return done


@pytest.mark.lab
async def test_call_through_the_daemon_waits_for_the_end_and_its_recording_downloads(
        start_daemon: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    media = LAB_ROOT / "var" / "lib" / "callconnect"
    daemon = start_daemon(CALLCONNECT_MEDIA_WHISPER_DIR=str(media / "media"),
                          CALLCONNECT_MEDIA_RECORDING_DIR=str(media / "recordings"))
    await daemon.ready()
    done = callconnect("call", "--url", daemon.url, "--leg-a", "+27115550101",
                       "--leg-b", "011 555 0202", "--time-limit", "3",
                       "--whisper", "Connecting you to John Smith from the website form",
                       "--wait", daemon=daemon)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [m.group(1) for line in done.stderr.splitlines()
             if (m := re.match(r"\[\s*[0-9.]+s\] (\S+)", line))]
    assert steps == ["dialing-a", "ringing-a", "whispering", "dialing-b", "ringing-b",
                     "bridged", "ending", "ended"]
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["hangup_by"] == "time_limit"
    assert result["leg_b"]["target"] == "+27115550202"
    call_id = result["call_uuid"]

    # The daemon placed it: the call is in its store, as any API call is.
    shown = callconnect("calls", "show", call_id, "-o", "json", "--url", daemon.url,
                        daemon=daemon)
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    assert stored["status"] == "completed"
    assert stored["result"]["recording"] == result["recording"]

    wav = tmp_path / "call.wav"
    fetched = callconnect("calls", "recording", call_id, "--file", str(wav), "--url", daemon.url,
                          daemon=daemon)
    assert fetched.returncode == 0, fetched.stderr
    with wave.open(str(wav)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        seconds = audio.getnframes() / audio.getframerate()
        level = audioop.rms(audio.readframes(audio.getnframes()), 2)
    assert abs(seconds - result["talk_seconds"]) < 0.7, (seconds, result["talk_seconds"])
    assert level > 1000, f"recording is near silence (RMS {level})"
    assert wav.read_bytes() == Path(result["recording"]["path"]).read_bytes()


@pytest.mark.lab
async def test_ctrl_c_while_waiting_hangs_the_call_up_through_the_daemon(
        daemon: DaemonProcess) -> None:
    if not CALLCONNECT.is_file():
        pytest.fail(f"{CALLCONNECT} is missing: install the package (`make install`)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONNECT_")}
    waiting = subprocess.Popen(
        [str(CALLCONNECT), "call", "--leg-a", "+27115550101", "--leg-b", "+27115550202",
         "--no-record", "--time-limit", "120", "--wait"], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**clean, "PYTHONPATH": str(REPO), "CALLCONNECT_URL": daemon.url,
             "CALLCONNECT_TOKEN": TOKEN})
    try:
        assert waiting.stderr is not None
        seen = []
        for line in waiting.stderr:
            seen.append(line)
            if " bridged " in line:
                waiting.send_signal(signal.SIGINT)
                break
        assert any(" bridged " in line for line in seen), "".join(seen)
        try:
            out, err = waiting.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            waiting.kill()
            out, err = waiting.communicate()
            pytest.fail(f"still following 60 s after Ctrl-C:\n{''.join(seen)}{err}{out}")
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert "interrupted: hanging up call" in err
    result = json.loads(out)
    assert result["status"] == "completed" and result["hangup_by"] == "api"
