"""Fixtures for tests against the lab's real FreeSWITCH 1.10.12 and its SIPp
phones on 127.0.0.1 (sip-lab/lab up freeswitch). A lab that cannot start
fails these tests with the reason and the fix; nothing here skips. After
every test FreeSWITCH has no channels left (``show channels``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from controller.app import Controller
from controller.cli import ConsoleListener
from controller.config import Config, load_config
from tests.lab.callers import FREESWITCH_SIP
from tests.lab.conftest import DaemonProcess
from tests.lab.live_parts import LabSwitch

from .esl import channel_rows, fs_api

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "sip-lab" / "lab"
FS_CONFIG = REPO / "sip-lab" / "callconnect-freeswitch.toml"
TOOLS = ("sipp", "tcpdump", "espeak-ng", "sox")


@pytest.fixture(scope="session")
def fslab() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the FreeSWITCH lab tests build FreeSWITCH into /var/cache and need root: "
                    "run `sudo make test`")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `sudo make install` first")
    was_up = subprocess.run([LAB, "status", "freeswitch"], capture_output=True).returncode == 0
    started = subprocess.run([LAB, "up", "freeswitch"], capture_output=True, text=True,
                             timeout=1800)
    if started.returncode != 0:
        pytest.fail("the FreeSWITCH lab did not start (sip-lab/lab up freeswitch):\n"
                    f"{started.stdout}{started.stderr}")
    yield
    if not was_up:
        subprocess.run([LAB, "down", "freeswitch"], capture_output=True, timeout=120)


@pytest.fixture
def fs_config(fslab: None) -> Config:
    return load_config(FS_CONFIG)


@pytest.fixture
async def fs_controller(fs_config: Config) -> AsyncIterator[Controller]:
    async with Controller(fs_config, ConsoleListener(fs_config, progress=False)) as running:
        yield running


async def channels_left(within: float = 5.0) -> list[str]:
    """FreeSWITCH's channels still there after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        rows = await channel_rows()
        if not rows or loop.time() >= deadline:
            return [f"{row.get('uuid')} {row.get('name')}" for row in rows]
        await asyncio.sleep(0.1)


@pytest.fixture(autouse=True)
async def no_fs_channels_left(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After every FreeSWITCH lab test the switch has no channels left."""
    yield
    if "fslab" not in request.fixturenames:
        return
    left = await channels_left()
    if left:
        # This test fails; the next ones start on an empty switch all the same.
        await fs_api("hupall NORMAL_CLEARING")
        pytest.fail(f"channels left on FreeSWITCH after the test: {left}")


@pytest.fixture
async def start_daemon(fslab: None,
                          tmp_path: Path) -> AsyncIterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(**env: str) -> DaemonProcess:
        daemon = DaemonProcess(tmp_path / "callconnect.sqlite3", tmp_path / "daemon.log", env,
                               config=FS_CONFIG)
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
async def daemon(start_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    running = start_daemon()
    await running.ready()
    return running


@pytest.fixture
def lab_switch(fslab: None) -> LabSwitch:
    """The live-call tests' switch (tests/lab/live_calls.py, live_actions.py)."""
    return LabSwitch(FREESWITCH_SIP, idle_unanswered="final 504")
