"""The lab's hint ("sudo make lab-up") is in the unreachable-AMI error only
when the config is the lab's own (sip-lab/callconnect.toml, beside the lab's
script); a production host's error does not send its admin to a make target."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.app import make_backend
from controller.config import load_config
from controller.errors import SwitchUnavailable

REPO = Path(__file__).resolve().parents[4]
LAB_CONFIG = REPO / "sip-lab" / "callconnect.toml"
HINT = "(lab: sudo make lab-up)"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nothing else takes
    it) but not listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


async def unreachable_error(config_file: Path, port: int) -> str:
    config = load_config(config_file, environ={"CALLCONNECT_ASTERISK_PORT": str(port),
                                               "CALLCONNECT_ASTERISK_CONNECT_TIMEOUT": "5"})
    backend = make_backend(config)
    with pytest.raises(SwitchUnavailable) as caught:
        await backend.connect()
    await backend.close()
    assert f"cannot reach Asterisk AMI at 127.0.0.1:{port}" in caught.value.message
    return caught.value.message


async def test_the_labs_config_gets_the_lab_hint(closed_port: int) -> None:
    assert load_config(LAB_CONFIG, environ={}).is_lab
    assert HINT in await unreachable_error(LAB_CONFIG, closed_port)


async def test_any_other_config_does_not(closed_port: int, tmp_path: Path) -> None:
    copy = tmp_path / "callconnect.toml"
    shutil.copy(LAB_CONFIG, copy)
    assert not load_config(copy, environ={}).is_lab
    assert HINT not in await unreachable_error(copy, closed_port)
    example = REPO / "callconnect.example.toml"
    assert not load_config(example, environ={}).is_lab
    assert HINT not in await unreachable_error(example, closed_port)
