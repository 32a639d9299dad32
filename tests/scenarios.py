"""The lab scenario folders (sip-lab/scenarios) and how a call's result is
checked against a scenario's [expect]: one definition for every backend's
scenario tests (the real Asterisk lab, the FreeSWITCH Event Socket peer)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).resolve().parents[1] / "sip-lab" / "scenarios"


def scenario_folders() -> list[Path]:
    return sorted(p for p in SCENARIOS.iterdir() if (p / "scenario.toml").exists())


def scenario_spec(folder: Path) -> dict[str, Any]:
    spec: dict[str, Any] = tomllib.loads((folder / "scenario.toml").read_text())
    return spec


def observed(result: dict[str, Any]) -> dict[str, Any]:
    """The fields a scenario's [expect] may name."""
    return {
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


def assert_expected(folder: Path, result: dict[str, Any]) -> None:
    """The result has exactly what the scenario expects, and a recording
    with something in it where one is expected."""
    expect = scenario_spec(folder)["expect"]
    wanted = {key: observed(result)[key] for key in expect}
    assert wanted == expect, (
        f"{folder.name}: {result['reason']}\nlegs: {json.dumps([result['leg_a'], result['leg_b']])}"
        f"\ntimeline: {json.dumps(result['timeline'])}")
    if expect.get("recorded"):
        assert Path(result["recording"]["path"]).stat().st_size > 1000
