"""The real daemon with its switch pointed at a port nobody listens on: the
API answers, no call is ever placed, and no lab is needed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.lab.conftest import DaemonProcess, free_port


def switch_down_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "CALLCONNECT_BACKEND": "asterisk",
        "CALLCONNECT_ASTERISK_PORT": str(free_port()),  # nothing listens there
        "CALLCONNECT_ASTERISK_CONNECT_TIMEOUT": "0.5",
        "CALLCONNECT_MEDIA_WHISPER_DIR": str(tmp / "media"),
        "CALLCONNECT_MEDIA_WHISPER_SWITCH_DIR": "",
        "CALLCONNECT_MEDIA_RECORDING_DIR": str(tmp / "recordings"),
        "CALLCONNECT_MEDIA_RECORDING_SWITCH_DIR": "",
        **extra,
    }


def serving(process: DaemonProcess) -> None:
    """Wait until the API answers (503 on /status: the switch is down, as intended)."""
    deadline = time.monotonic() + 30
    while True:
        assert process.process is not None and process.process.poll() is None, \
            f"daemon exited: {process.log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{process.url}/status", timeout=2).status_code == 503:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, process.log.read_text()[-2000:]
        time.sleep(0.1)
