"""Fixtures for tests against the real lab: Asterisk 22 and SIPp phones on
127.0.0.1 (sip-lab/lab). A lab that cannot start fails these tests with the
reason and the fix; nothing here skips."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controller.app import Controller
from controller.backends.asterisk.backend import AsteriskBackend
from controller.cli import ConsoleListener
from controller.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "sip-lab" / "lab"
LAB_CONFIG = REPO / "sip-lab" / "callconnect.toml"
TOOLS = ("sipp", "tcpdump", "espeak-ng", "sox", "debootstrap")


@pytest.fixture(scope="session")
def lab() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests run Asterisk in a chroot and need root: run `sudo make test`")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `sudo make install` first")
    was_up = subprocess.run([LAB, "status"], capture_output=True).returncode == 0
    started = subprocess.run([LAB, "up"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.fail(f"the lab did not start (sip-lab/lab up):\n{started.stdout}{started.stderr}")
    yield
    if not was_up:
        subprocess.run([LAB, "down"], capture_output=True, timeout=120)


@pytest.fixture
def lab_config(lab: None) -> Config:
    return load_config(LAB_CONFIG)


@pytest.fixture
async def controller(lab_config: Config) -> AsyncIterator[Controller]:
    async with Controller(lab_config, ConsoleListener(lab_config, progress=False)) as running:
        yield running


@pytest.fixture
async def switch(lab_config: Config) -> AsyncIterator[AsteriskBackend]:
    backend = AsteriskBackend(lab_config.asterisk)
    await backend.connect()
    yield backend
    await backend.close()


@pytest.fixture(autouse=True)
async def no_channels_left(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After every lab test the switch has no channels left."""
    yield
    if "lab" not in request.fixturenames:
        return
    backend = AsteriskBackend(load_config(LAB_CONFIG).asterisk)
    await backend.connect()
    try:
        channels: list[str] = []
        for _ in range(50):
            channels = await backend.active_channels()
            if not channels:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"channels left on the switch after the test: {channels}")
    finally:
        await backend.close()
