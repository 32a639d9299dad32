"""Every scenario folder in sip-lab/scenarios, placed on the lab's real
FreeSWITCH. A scenario's own phone runs 100 ports above the Asterisk lab's
(its sip: URI is moved with it), so both labs can be up at once."""

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
PORT_SHIFT, MEDIA_SHIFT = 100, 1000


def moved(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The scenario's call and phone on the FreeSWITCH lab's ports."""
    call = dict(spec["call"])
    phone = spec.get("phone")
    if phone is None:
        return call, None
    port = phone["port"]
    phone = {**phone, "port": port + PORT_SHIFT, "media_port": phone["media_port"] + MEDIA_SHIFT}
    for leg in ("leg_a", "leg_b"):
        if isinstance(call.get(leg), str):
            call[leg] = call[leg].replace(f"127.0.0.1:{port}", f"127.0.0.1:{phone['port']}")
    return call, phone


def start_phone(folder: Path, phone: dict[str, Any]) -> subprocess.Popen[bytes]:
    argv = ["sipp", "-sf", str((folder / phone["scenario"]).resolve()), "-i", "127.0.0.1",
            "-p", str(phone["port"]), "-mi", "127.0.0.1", "-mp", str(phone["media_port"]),
            "-nostdin", "-m", "1", *phone.get("args", [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.fslab
@pytest.mark.parametrize("folder", scenario_folders(), ids=lambda p: p.name)
async def test_scenario_on_freeswitch(folder: Path, fs_controller: Controller) -> None:
    call_spec, phone_spec = moved(scenario_spec(folder))
    phone = start_phone(folder, phone_spec) if phone_spec is not None else None
    try:
        if phone is not None:
            await asyncio.sleep(0.3)  # let it bind its port
        call = await fs_controller.calls.start(CallRequest(**call_spec))
        result = await asyncio.wait_for(call.wait(), CALL_TIMEOUT)
    finally:
        if phone is not None:
            try:
                phone.wait(timeout=10)
            except subprocess.TimeoutExpired:
                phone.kill()
    assert_expected(folder, result)
