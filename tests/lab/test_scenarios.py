"""Every scenario folder in sip-lab/scenarios, placed on the real lab."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from controller.app import Controller
from controller.calls.service import CallRequest

SCENARIOS = Path(__file__).resolve().parents[2] / "sip-lab" / "scenarios"
CALL_TIMEOUT = 60.0


def scenarios() -> list[Path]:
    return sorted(p for p in SCENARIOS.iterdir() if (p / "scenario.toml").exists())


def start_phone(folder: Path, phone: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A phone of the scenario's own, for exactly one call."""
    argv = ["sipp", "-sf", str((folder / phone["scenario"]).resolve()), "-i", "127.0.0.1",
            "-p", str(phone["port"]), "-mi", "127.0.0.1", "-mp", str(phone["media_port"]),
            "-nostdin", "-m", "1", *phone.get("args", [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.lab
@pytest.mark.parametrize("folder", scenarios(), ids=lambda p: p.name)
async def test_scenario(folder: Path, controller: Controller) -> None:
    spec = tomllib.loads((folder / "scenario.toml").read_text())
    phone = start_phone(folder, spec["phone"]) if "phone" in spec else None
    try:
        if phone is not None:
            await asyncio.sleep(0.3)  # let it bind its port
        call = await controller.calls.place(CallRequest(**spec["call"]))
        result = await asyncio.wait_for(call.wait(), CALL_TIMEOUT)
    finally:
        if phone is not None:
            try:
                phone.wait(timeout=10)
            except subprocess.TimeoutExpired:
                phone.kill()
    expect = spec["expect"]
    observed = {
        "status": result["status"],
        "leg_a_status": result["leg_a_status"],
        "leg_b_status": result["leg_b_status"],
        "hangup_by": result["hangup_by"],
        "whisper_played": result["whisper_played"],
        "recorded": result["recorded"],
        "leg_a_cause": result["leg_a"]["hangup_cause"],
        "leg_b_cause": result["leg_b"]["hangup_cause"],
        "b_dialed": result["leg_b"]["dialed"],
        "states": [step["to"] for step in result["timeline"]],
    }
    wanted = {key: observed[key] for key in expect}
    assert wanted == expect, (
        f"{folder.name}: {result['reason']}\nlegs: {json.dumps([result['leg_a'], result['leg_b']])}"
        f"\ntimeline: {json.dumps(result['timeline'])}")
    if expect.get("recorded"):
        assert Path(result["recording"]["path"]).stat().st_size > 1000
