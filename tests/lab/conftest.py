"""Fixtures for tests against the real lab: Asterisk 22 and SIPp phones on
127.0.0.1 (sip-lab/lab). A lab that cannot start fails these tests with the
reason and the fix; nothing here skips."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from panoramisk import Manager

from controller.app import Controller
from controller.backends.asterisk.backend import AsteriskBackend
from controller.cli import ConsoleListener
from controller.config import Config, load_config
from tests.conftest import WebhookReceiver
from tests.lab.callers import ASTERISK_SIP
from tests.lab.live_parts import NUMBER, LabSwitch

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
    was_up = subprocess.run([LAB, "status", "asterisk"], capture_output=True).returncode == 0
    started = subprocess.run([LAB, "up", "asterisk"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.fail("the lab did not start (sip-lab/lab up asterisk):\n"
                    f"{started.stdout}{started.stderr}")
    yield
    if not was_up:
        subprocess.run([LAB, "down", "asterisk"], capture_output=True, timeout=120)


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
    config = load_config(LAB_CONFIG).asterisk
    backend = AsteriskBackend(config)
    await backend.connect()
    try:
        channels: list[str] = []
        for _ in range(50):
            channels = await backend.active_channels()
            if not channels:
                return
            await asyncio.sleep(0.1)
    finally:
        await backend.close()
    # This test fails; the next ones start on an empty switch all the same.
    await hang_up_every_channel(config.host, config.port)
    pytest.fail(f"channels left on the switch after the test: {channels}")


async def hang_up_every_channel(host: str, port: int) -> None:
    manager = Manager(loop=asyncio.get_running_loop(), host=host, port=port,
                      username=OBSERVER_USERNAME, secret=OBSERVER_SECRET, ping_delay=10)
    await asyncio.wait_for(manager.connect(), 10)
    try:
        await asyncio.wait_for(manager.send_action({"Action": "Hangup", "Channel": "/.*/"}), 10)
    finally:
        manager.close()


# ---------------------------------------------------------------- the daemon as a process

TOKEN = "lab-token-1"
CALL_TIMEOUT = 60.0
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# The lab's AMI account for watching the switch (sip-lab/asterisk/manager.conf):
# the controller's own account passes only the events the controller reads.
OBSERVER_USERNAME = OBSERVER_SECRET = "lab-observer"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DaemonProcess:
    def __init__(self, store: Path, log: Path, env: dict[str, str],
                 config: Path = LAB_CONFIG) -> None:
        self.port = free_port()
        self.config = config
        self.log = log
        self.env = {**os.environ, "CALLCONNECT_API_PORT": str(self.port),
                    "CALLCONNECT_API_TOKENS": TOKEN, "CALLCONNECT_STORE_PATH": str(store),
                    "CALLCONNECT_WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
                    "CALLCONNECT_WEBHOOK_RETRY_BASE_SECONDS": "0.2", **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controller", "--config", str(self.config),
                 "--log-level", "info", "--json-logs", "daemon"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    async def ready(self, want: int = 200, timeout: float = 30,
                    until: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
        """Wait on /status, as a supervisor would, for ``want`` with a body
        that satisfies ``until``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, \
                    f"daemon exited: {self.log.read_text()[-2000:]}"
                try:
                    response = await client.get("/status")
                    last = response.json()
                    if response.status_code == want and until(last):
                        return dict(last)
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.1)
        raise AssertionError(f"/status never answered {want}: {last}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
async def start_daemon(lab: None, tmp_path: Path) -> AsyncIterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(**env: str) -> DaemonProcess:
        daemon = DaemonProcess(tmp_path / "callconnect.sqlite3", tmp_path / "daemon.log", env)
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


def log_events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines for one event name."""
    events = []
    for line in daemon.log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name:
                events.append(entry)
    return events


def api(daemon: DaemonProcess, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=daemon.url, headers=headers, timeout=10)


async def wait_for_state(client: httpx.AsyncClient, call_id: str, *states: str,
                         timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/calls/{call_id}")
        if response.status_code == 200:
            body = response.json()
            if body["state"] in states:
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_id} never reached {states}: {body.get('state')}")


# ---------------------------------------------------------------- live calls through the daemon

async def put_number(daemon: DaemonProcess, settings: dict[str, Any],
                     number: str = NUMBER) -> None:
    async with api(daemon) as client:
        response = await client.put(f"/v1/numbers/{quote(number, safe='')}", json=settings)
    assert response.status_code == 200, response.text


async def put_group(daemon: DaemonProcess, name: str, agents: list[str]) -> None:
    async with api(daemon) as client:
        response = await client.put(f"/v1/groups/{name}", json={"agents": agents})
    assert response.status_code == 200, response.text


async def calls_to(daemon: DaemonProcess, number: str, timeout: float = 20) -> list[str]:
    """The ids of the calls that came in to ``number`` (waits for the first)."""
    deadline = time.monotonic() + timeout
    async with api(daemon) as client:
        while time.monotonic() < deadline:
            calls = (await client.get("/v1/calls")).json()["calls"]
            found = [c["call_uuid"] for c in calls if c.get("to") == number]
            if found:
                return found
            await asyncio.sleep(0.1)
    raise AssertionError(f"no call to {number} reached the daemon within {timeout:g} s")


async def ended(daemon: DaemonProcess, call_id: str) -> dict[str, Any]:
    """The call once it ended: its GET /v1/calls/{id} body."""
    async with api(daemon) as client:
        return await wait_for_state(client, call_id, "ended")


async def webhooks(receiver: WebhookReceiver, *types: str, timeout: float = 30,
                   ) -> list[dict[str, Any]]:
    """The bodies received once one of each type in ``types`` has arrived."""
    deadline = time.monotonic() + timeout
    while not all(any(b["type"] == t for b in receiver.bodies) for t in types):
        got = [b["type"] for b in receiver.bodies]
        assert time.monotonic() < deadline, f"waited for {types}; got {got}"
        await asyncio.sleep(0.05)
    return receiver.bodies


@pytest.fixture
def lab_switch(lab: None) -> LabSwitch:
    """The live-call tests' switch (tests/lab/live_calls.py, live_actions.py)."""
    return LabSwitch(ASTERISK_SIP, idle_unanswered="final 480")
