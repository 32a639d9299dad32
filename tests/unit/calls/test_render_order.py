"""The whisper is rendered, and the recording folder made, only once a call
has passed every check and the switch is reachable: a refused call leaves no
file behind. Bad input is still named before the switch is looked at."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.calls.request import CallRequest
from controller.calls.service import CallService
from controller.config import Config, MediaConfig
from controller.errors import InvalidField, SwitchUnavailable
from controller.tts import WhisperRenderer
from tests.conftest import LiveClients
from tests.unit.conftest import QuietListener, RecordingSwitch

WHISPER = "Connecting you to John Smith from the website form"


def service(tmp_path: Path, connected: bool, live_clients: LiveClients) -> CallService:
    config = Config()
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"))
    switch = RecordingSwitch()
    switch.connected = connected
    return CallService(config, switch, WhisperRenderer(tmp_path / "media"),  # type: ignore[arg-type]
                       QuietListener(), outbound=live_clients(config.outbound))


async def test_a_call_refused_because_the_switch_is_down_leaves_no_file(
        tmp_path: Path, live_clients: LiveClients) -> None:
    calls = service(tmp_path, connected=False, live_clients=live_clients)
    with pytest.raises(SwitchUnavailable):
        await calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                      whisper=WHISPER))
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no whisper, no recording folder"


async def test_bad_input_is_named_before_the_switch_is_looked_at(
        tmp_path: Path, live_clients: LiveClients) -> None:
    calls = service(tmp_path, connected=False, live_clients=live_clients)
    with pytest.raises(InvalidField):
        await calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                      caller_id="12x"))


async def test_a_placed_call_has_its_whisper_and_recording_folder(
        tmp_path: Path, live_clients: LiveClients) -> None:
    calls = service(tmp_path, connected=True, live_clients=live_clients)
    call = await calls.start(CallRequest(leg_a="+27115550101", leg_b="+27115550202",
                                         whisper=WHISPER))
    try:
        assert call.whisper is not None and call.whisper.path.exists()
        assert (tmp_path / "recordings").is_dir()
    finally:
        if call.task is not None:
            call.task.cancel()
