"""Every scenario folder in sip-lab/scenarios, placed on the real lab."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.app import Controller
from controller.calls.request import CallRequest
from tests.scenarios import assert_expected, scenario_folders, scenario_spec

CALL_TIMEOUT = 60.0


def start_phone(folder: Path, phone: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A phone of the scenario's own, for exactly one call."""
    argv = ["sipp", "-sf", str((folder / phone["scenario"]).resolve()), "-i", "127.0.0.1",
            "-p", str(phone["port"]), "-mi", "127.0.0.1", "-mp", str(phone["media_port"]),
            "-nostdin", "-m", "1", *phone.get("args", [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.lab
@pytest.mark.parametrize("folder", scenario_folders(), ids=lambda p: p.name)
async def test_scenario(folder: Path, controller: Controller) -> None:
    spec = scenario_spec(folder)
    phone = start_phone(folder, spec["phone"]) if "phone" in spec else None
    try:
        if phone is not None:
            await asyncio.sleep(0.3)  # let it bind its port
        call = await controller.calls.start(CallRequest(**spec["call"]))
        result = await asyncio.wait_for(call.wait(), CALL_TIMEOUT)
    finally:
        if phone is not None:
            try:
                phone.wait(timeout=10)
            except subprocess.TimeoutExpired:
                phone.kill()
    assert_expected(folder, result)
