"""The lab scenarios on the peer, and recording the wire as fixtures."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.scenarios import SCENARIOS, scenario_folders, scenario_spec

from .switch import EslPeer

if TYPE_CHECKING:
    from controller.app import Controller
    from controller.calls.runner import ActiveCall
    from controller.config import Config
    from controller.core.states import Transition


_PHONE_USERS = {"answer.xml": "answer", "busy.xml": "busy", "no-answer.xml": "no-answer",
                "reject.xml": "reject"}


def scenario_call(folder: Path) -> dict[str, Any]:
    """The scenario's [call], with a [phone] of its own (a SIPp phone in the
    lab) mapped to the peer's phone of the same behaviour, named by the SIP
    URI's user part."""
    spec = scenario_spec(folder)
    call = dict(spec["call"])
    phone = spec.get("phone")
    if phone is not None:
        script = Path(phone["scenario"]).name
        args = phone.get("args", [])
        user = _PHONE_USERS.get(script)
        if script == "hangup-after.xml":
            values = dict(zip(args[1::3], args[2::3], strict=False))
            user = f"hangup-after-{values.get('hangup_after', '4000')}"
        if user is None:
            raise ValueError(f"{folder.name}: no peer phone for {script}")
        for leg in ("leg_a", "leg_b"):
            target = str(call[leg])
            if target.startswith("sip:") and f":{phone['port']}" in target:
                call[leg] = re.sub(r"^sip:[^@]+@", f"sip:{user}@", target)
    return call


class Listener:
    """A CallListener that only keeps what it is told (no store, no webhooks)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.transitions: dict[str, list[str]] = {}
        self.results: dict[str, dict[str, Any]] = {}

    async def call_created(self, call: ActiveCall) -> None:
        self.created.append(call.call_id)

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None:
        self.transitions.setdefault(call.call_id, []).extend(str(t.to_state) for t in transitions)

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        self.results[call.call_id] = result

    async def call_reported(self, call: ActiveCall, event: str, data: dict[str, Any]) -> None: ...


def freeswitch_controller(config: Config, listener: Listener | None = None,
                          event_format: str = "plain") -> Controller:
    """The real Controller with ``backend = "freeswitch"`` (controller.app's
    make_backend builds the FreeSWITCH backend). For ``event_format="json"``,
    which no setting chooses, it is built around a backend asked for JSON."""
    import controller.app as app_module
    from controller.app import Controller
    from controller.backends.base import Backend
    from controller.backends.freeswitch.backend import FreeswitchBackend

    assert config.backend == "freeswitch"
    listener = listener or Listener()
    if event_format == "plain":
        controller = Controller(config, listener)
        assert isinstance(controller.backend, FreeswitchBackend)
        return controller

    def make_backend(config: Config) -> Backend:
        return FreeswitchBackend(config.freeswitch, event_format=event_format)

    original = app_module.make_backend
    app_module.make_backend = make_backend
    try:
        return Controller(config, listener)
    finally:
        app_module.make_backend = original


async def record(out_dir: Path) -> None:
    """Run each scenario on its own peer and controller; keep the wire."""
    import tempfile

    from controller.calls.request import CallRequest
    from controller.config import Config, FreeswitchConfig, MediaConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[str, dict[str, Any], str]] = [
        (folder.name, scenario_call(folder), "plain") for folder in scenario_folders()]
    runs.append(("a-bad-gateway", {"leg_a": "+27115550101", "leg_b": "+27115550202",
                                   "whisper": "You will not hear this"}, "plain"))
    runs.append(("happy-path.json", scenario_call(SCENARIOS / "happy-path"), "json"))
    with tempfile.TemporaryDirectory() as tmp:
        for name, call, fmt in runs:
            peer = EslPeer(password="fixture")
            await peer.start()
            config = Config(backend="freeswitch")
            gateway = "no-such-gateway" if name == "a-bad-gateway" else "lab"
            config.freeswitch = FreeswitchConfig(port=peer.port, password="fixture",
                                                 gateway=gateway)
            config.media = MediaConfig(whisper_dir=f"{tmp}/media",
                                       recording_dir=f"{tmp}/recordings")
            async with freeswitch_controller(config, event_format=fmt) as controller:
                active = await controller.calls.start(CallRequest(**call))
                result = await asyncio.wait_for(active.wait(), 60)
                await asyncio.sleep(0.2)
            await peer.stop()
            wire = bytes(peer.connections[0].wire)
            (out_dir / f"{name}.esl").write_bytes(wire)
            print(f"{name}: {result['status']} ({len(wire)} bytes)", file=sys.stderr)
