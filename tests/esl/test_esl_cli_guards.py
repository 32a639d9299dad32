"""The command line refuses bad input with exit code 2 and a message that
names the field and the rule, and sends nothing to the switch (here the
Event Socket peer; the lab's CLI tests do the same against Asterisk)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PASSWORD
from .peer import EslPeer

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("option", "value", "field", "rule"), [
    ("--whisper", "Connecting you\r\nto John", "whisper", "control character U+000D"),
    ("--whisper", "Call from ${CALLERID(num)}", "whisper", "dialplan expressions"),
    ("--whisper", "<speak>Hi</speak>", "whisper", "markup"),
    ("--caller-id", "123\r\nAction: Hangup", "caller_id", "digits with an optional leading +"),
    ("--webhook", "http://127.0.0.1:9/hook?token=s3cret", "webhook_url",
     "outbound.allow_private"),
    ("--leg-b", "sip:agent@pbx.example.com;transport=tcp", "leg_b", "without ;parameters"),
])
async def test_bad_input_exits_2_naming_the_field_and_dials_nothing(
        peer: EslPeer, tmp_path: Path, option: str, value: str, field: str, rule: str) -> None:
    config = tmp_path / "callconnect.toml"
    config.write_text(f'backend = "freeswitch"\n[freeswitch]\nport = {peer.port}\n'
                      f'password = "{PASSWORD}"\ngateway = "lab"\n'
                      f'[media]\nwhisper_dir = "{tmp_path / "media"}"\n'
                      f'recording_dir = "{tmp_path / "recordings"}"\n')
    legs = ["--leg-a", "+27115550101"] + ([] if option == "--leg-b" else ["--leg-b", "+27115550202"])
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "controller", "--config", str(config), "call",
                         *legs, option, value, "--wait"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stdout + done.stderr
    error = json.loads(done.stdout)
    assert error["success"] is False and error["details"]["field"] == field
    assert rule in error["message"] and f"callconnect: {error['message']}" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    sent = [command for conn in peer.connections for command in conn.commands]
    assert not any("originate" in command for command in sent), sent


async def test_bad_input_is_named_even_when_the_switch_is_unreachable(tmp_path: Path) -> None:
    """Exit 2 for the request's fault comes before exit 3 for the switch's."""
    config = tmp_path / "callconnect.toml"
    config.write_text('backend = "freeswitch"\n[freeswitch]\nport = 9\nconnect_timeout = 1.0\n'
                      f'[media]\nwhisper_dir = "{tmp_path / "media"}"\n'
                      f'recording_dir = "{tmp_path / "recordings"}"\n')
    for whisper, code in (("Call from ${CALLERID(num)}", 2), ("Connecting you", 3)):
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "controller", "--config", str(config), "call",
                             "--leg-a", "+27115550101", "--leg-b", "+27115550202",
                             "--whisper", whisper, "--wait"],
            capture_output=True, text=True, timeout=60, cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
        assert done.returncode == code, done.stdout + done.stderr
        error = json.loads(done.stdout)
        expected = "dialplan expressions" if code == 2 else "cannot reach the FreeSWITCH"
        assert expected in error["message"], error


async def test_a_refused_destination_exits_4_like_every_compliance_refusal(
        peer: EslPeer, tmp_path: Path) -> None:
    """Premium-rate numbers are refused by default: exit 4, as documented, and nothing dialed."""
    config = tmp_path / "callconnect.toml"
    config.write_text(f'backend = "freeswitch"\n[freeswitch]\nport = {peer.port}\n'
                      f'password = "{PASSWORD}"\ngateway = "lab"\n'
                      f'[media]\nwhisper_dir = "{tmp_path / "media"}"\n'
                      f'recording_dir = "{tmp_path / "recordings"}"\n')
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "controller", "--config", str(config), "call",
                         "--leg-a", "+27115550101", "--leg-b", "+19005551234", "--wait"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert done.returncode == 4, done.stdout + done.stderr
    assert json.loads(done.stdout)["error_id"] == "destination-refused"
    sent = [command for conn in peer.connections for command in conn.commands]
    assert not any("originate" in command for command in sent), sent
