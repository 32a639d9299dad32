"""The live calls' one outbound client, against a real HTTP server on loopback:
a Controller makes it once, its dial-whom asks and action URL fetches go
through it (so they share a kept-alive connection instead of each building a
client, its TLS context and a connection), and stopping the Controller closes
it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from controller.app import Controller
from controller.config import Config, MediaConfig
from controller.outbound import OutboundConfig
from tests.conftest import Serve
from tests.unit.conftest import QuietListener

NUMBER = "+27115550202"
WAIT = 10.0


@dataclass
class Site:
    """A dial-whom URL (/whom) and an action URL (/next, answering no
    actions); for each request, its path and the connection it came on."""

    base: str = ""
    asked: list[tuple[str, int]] = field(default_factory=list)  # (path, the client's port)
    connections: list[RequestHandler] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        assert request.transport is not None
        self.asked.append((request.path, request.transport.get_extra_info("peername")[1]))
        self.connections.append(request.protocol)
        if request.path == "/whom":
            return web.Response(text=NUMBER)
        return web.Response(status=204)


@pytest.fixture
async def site(serve: Serve) -> Site:
    site = Site()
    app = web.Application()
    app.router.add_get("/whom", site.handle)
    app.router.add_post("/next", site.handle)
    site.base = await serve(app)
    return site


def controller(tmp_path: Path) -> Controller:
    config = Config(outbound=OutboundConfig(allow_private=True))
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"))
    return Controller(config, QuietListener())  # type: ignore[arg-type]


async def test_dial_whom_and_action_urls_go_through_the_controllers_one_client(
        site: Site, tmp_path: Path) -> None:
    running = controller(tmp_path)
    try:
        first = await running.calls.dial_whom.ask(f"{site.base}/whom", None, {"CallSid": "c1"})
        actions = await running.calls.live.fetcher.fetch(f"{site.base}/next", "gather", {"digits": "1"})
        second = await running.calls.dial_whom.ask(f"{site.base}/whom", None, {"CallSid": "c2"})
    finally:
        await running.stop()
    assert first.numbers == second.numbers == [NUMBER] and actions is None
    # One connection for all three: one client, which kept it open between them.
    port = site.asked[0][1]
    assert site.asked == [("/whom", port), ("/next", port), ("/whom", port)]


async def test_stopping_the_controller_closes_its_client_and_its_connections(
        site: Site, tmp_path: Path) -> None:
    running = controller(tmp_path)
    try:
        await running.calls.dial_whom.ask(f"{site.base}/whom", None, {"CallSid": "c1"})
        [connection] = site.connections
        assert connection.transport is not None, "kept open for the next request"
    finally:
        await running.stop()
    async with asyncio.timeout(WAIT):
        while connection.transport is not None:  # the server has yet to see it closed
            await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="closed"):  # a closed client sends nothing
        await running.calls.live.fetcher.fetch(f"{site.base}/next", "gather", {})
    assert len(site.asked) == 1
