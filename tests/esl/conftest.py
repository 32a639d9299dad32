"""Fixtures for the FreeSWITCH backend's tests: an Event Socket peer on
loopback (tests/esl/peer/) and controller configs pointing at it. After
every test that used a peer, the peer must have no channels left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from controller.backends.base import IncomingCall
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.config import Config, FreeswitchConfig, MediaConfig

from .peer import EslPeer, Listener, freeswitch_controller

__all__ = ["Listener", "freeswitch_controller"]

PASSWORD = "esl-test-secret"

MakeConfig = Callable[..., Config]


def esl_config(tmp_path: Path, port: int, *, password: str = PASSWORD,
               action_timeout: float = 2.0, connect_timeout: float = 2.0,
               gateway: str = "lab") -> Config:
    config = Config(backend="freeswitch")
    config.freeswitch = FreeswitchConfig(
        host="127.0.0.1", port=port, password=password, connect_timeout=connect_timeout,
        action_timeout=action_timeout, gateway=gateway, uri_profile="internal")
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"))
    return config


async def channels_gone(peer: EslPeer, prefix: str = "", within: float = 3.0) -> list[str]:
    """The peer's channels (starting with ``prefix``) still there after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        left = [c for c in peer.channel_ids() if c.startswith(prefix)]
        if not left or loop.time() >= deadline:
            return left
        await asyncio.sleep(0.05)


@pytest.fixture
async def peer() -> AsyncIterator[EslPeer]:
    """A peer with quick phones (the scenario tests use the lab's timings)."""
    switch = EslPeer(password=PASSWORD, answer_delay=0.1, reject_delay=0.1, hangup_after=1.0)
    await switch.start()
    try:
        yield switch
        left = await channels_gone(switch)
        if left:
            pytest.fail(f"channels left on the peer after the test: {left}")
    finally:
        await switch.stop()


@pytest.fixture
def make_config(tmp_path: Path, peer: EslPeer) -> MakeConfig:
    def make(**overrides: object) -> Config:
        return esl_config(tmp_path, peer.port, **overrides)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def backend(make_config: MakeConfig) -> AsyncIterator[FreeswitchBackend]:
    """The FreeSWITCH backend, connected to the peer."""
    switch = FreeswitchBackend(make_config().freeswitch)
    await switch.connect()
    try:
        yield switch
    finally:
        await switch.close()


@pytest.fixture
def announced(backend: FreeswitchBackend) -> asyncio.Queue[IncomingCall]:
    """The incoming calls the backend announces (on_incoming)."""
    queue: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def take(incoming: IncomingCall) -> None:
        queue.put_nowait(incoming)

    backend.on_incoming = take
    return queue


Waiter = Callable[[Callable[[], bool], float], Awaitable[None]]


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
